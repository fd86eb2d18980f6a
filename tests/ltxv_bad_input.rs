//! What users meet when an LTX-Video workflow cannot run: each a clear message and exit code, never a
//! panic, and no partial output file. Runs the tiny pipeline workflows of `tests/data/pipeline/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pipeline")
}

fn run(workflow: &str, output_dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph"))
        .arg("run")
        .arg(data().join(workflow))
        .arg("--models-dir")
        .arg(data().join("models"))
        .arg("--input-dir")
        .arg(data().join("input"))
        .arg("--output-dir")
        .arg(output_dir)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn an_image_that_does_not_exist_is_a_validation_error() {
    let root = tempfile::tempdir().unwrap();
    let output = run("ltxv_i2v_tiny.json", &root.path().join("output"), &["--set", "78.image=holiday.png"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("node 78") && text.contains("'image'") && text.contains("holiday.png"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing ran, nothing written");
}

#[test]
fn a_missing_text_encoder_is_a_validation_error_naming_the_folders() {
    let root = tempfile::tempdir().unwrap();
    let output =
        run("ltxv_t2v_tiny.json", &root.path().join("output"), &["--set", "38.clip_name=t5xxl_fp16.safetensors"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("'t5xxl_fp16.safetensors' not found in folder kind 'text_encoders'"), "{text}");
    assert!(text.contains("t5-tiny-fp16.safetensors"), "the files that are there are listed: {text}");
}

#[test]
fn a_length_that_is_not_8k_plus_1_is_a_validation_error() {
    let root = tempfile::tempdir().unwrap();
    let output = run("ltxv_t2v_tiny.json", &root.path().join("output"), &["--set", "70.length=12"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("node 70") && text.contains("length 12 is not 8k + 1") && text.contains("try 9 or 17"),
        "{text}"
    );
}

#[test]
fn an_output_folder_that_cannot_be_written_fails_the_saver_cleanly() {
    let root = tempfile::tempdir().unwrap();
    // A file where the output folder should be: nothing can be created under it.
    let blocked = root.path().join("output");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let output = run("ltxv_t2v_tiny.json", &blocked, &[]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("SaveVideo"), "the failing node is named: {text}");
    assert_eq!(std::fs::read(&blocked).unwrap(), b"not a folder", "nothing already there is touched");
    let entries: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no partial file next to it");
}
