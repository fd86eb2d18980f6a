//! `kinograph edit`: its help needs no display, and without one it says so instead of panicking.

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
