//! `kinograph edit`: its help needs no display, without one it says so instead of panicking, and a
//! server it cannot use is refused with the reason.

use std::process::Command;

fn kinograph() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinograph"));
    command.current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    command
}

#[test]
fn help_works_without_a_display() {
    let output = kinograph().args(["edit", "--help"]).output().expect("kinograph runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage: kinograph edit [OPTIONS] [FILE]"), "{help}");
}

#[test]
fn without_a_display_the_error_says_what_is_missing() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/comfy-templates/ltxv_text_to_video.json");
    let output = kinograph().args(["edit", template]).output().expect("kinograph runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no display to open the editor window on: set DISPLAY"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_file_is_named() {
    let output = kinograph().args(["edit", "no/such/workflow.json"]).output().expect("kinograph runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no/such/workflow.json"), "{stderr}");
}

#[test]
fn a_server_url_the_editor_cannot_use_is_refused_before_any_window() {
    let output = kinograph().args(["edit", "--server", "https://gpu-box:8188"]).output().expect("kinograph runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("https://gpu-box:8188: the editor talks to servers over plain HTTP only"), "{stderr}");
    let output = kinograph()
        .args(["edit", "--server", "http://gpu-box:8188", "--server-token-file", "no/such/token"])
        .output()
        .expect("kinograph runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the server token file no/such/token"), "{stderr}");
}
