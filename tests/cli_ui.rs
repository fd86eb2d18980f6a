//! End-to-end tests of UI workflows through the binary: run, validate and convert accept either format,
//! and read workflows carried inside PNG outputs.

use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/comfy-templates");

fn kinograph() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinograph"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn hello_ui() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello_ui.json")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(file: &Path, output: &Path) -> Output {
    kinograph().arg("run").arg(file).arg("--output-dir").arg(output).output().expect("kinograph runs")
}

#[test]
fn a_ui_workflow_runs_headless() {
    let output = tempfile::tempdir().unwrap();
    let result = run(&hello_ui(), output.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    let written = std::fs::read_to_string(output.path().join("hello/prompt_00001_.txt")).unwrap();
    assert_eq!(written, "a red fox running through fresh snow, golden hour, cinematic, 35mm film");
    let stdout = text(&result.stdout);
    assert!(stdout.contains("#6 Show seed (PreviewAny): 497797676867141"), "{stdout}");
    assert!(!stdout.contains("Muted preview"), "a muted node never runs: {stdout}");
}

/// A PNG with one `tEXt` chunk (CRCs are not checked by the reader).
fn png_with_text(key: &str, value: &str) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut bytes = (data.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&[0; 4]);
        bytes
    };
    let mut text_chunk = key.as_bytes().to_vec();
    text_chunk.push(0);
    text_chunk.extend_from_slice(value.as_bytes());
    let mut bytes = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    bytes.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
    bytes.extend(chunk(b"tEXt", &text_chunk));
    bytes.extend(chunk(b"IEND", &[]));
    bytes
}

#[test]
fn a_png_output_runs_the_workflow_it_carries() {
    let folder = tempfile::tempdir().unwrap();
    let image = folder.path().join("ComfyUI_00001_.png");
    let workflow = std::fs::read_to_string(hello_ui()).unwrap();
    std::fs::write(&image, png_with_text("workflow", &workflow)).unwrap();
    let result = run(&image, &folder.path().join("out"));
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert!(folder.path().join("out/hello/prompt_00001_.txt").exists());
}

#[test]
fn validation_errors_name_the_title_the_user_sees() {
    let folder = tempfile::tempdir().unwrap();
    let mut workflow: Json = serde_json::from_str(&std::fs::read_to_string(hello_ui()).unwrap()).unwrap();
    workflow["nodes"][4]["inputs"][0]["link"] = Json::Null;
    let file = folder.path().join("broken.json");
    std::fs::write(&file, workflow.to_string()).unwrap();
    let result = kinograph().arg("validate").arg(&file).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("node 4 \"Save prompt\" (SaveText), input 'text'"), "{stderr}");
}

#[test]
fn missing_node_types_of_a_template_are_reported() {
    let template = Path::new(TEMPLATES).join("hunyuan_video_text_to_video.json");
    let folder = tempfile::tempdir().unwrap();
    let result = kinograph().current_dir(folder.path()).arg("validate").arg(&template).arg("--json").output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let body: Json = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(body["node_errors"]["26"]["errors"][0]["type"], "missing_node_type");
    assert_eq!(body["node_errors"]["26"]["class_type"], "FluxGuidance");
    assert_eq!(body["node_errors"]["11"]["class_type"], "DualCLIPLoader");

    let readable = kinograph().current_dir(folder.path()).arg("validate").arg(&template).output().unwrap();
    assert_eq!(readable.status.code(), Some(1));
    let stderr = text(&readable.stderr);
    assert!(stderr.contains("node 26 (FluxGuidance): unknown node type 'FluxGuidance'"), "{stderr}");
    assert!(stderr.contains("unknown node type 'EmptyHunyuanLatentVideo'"), "{stderr}");
    assert!(stderr.contains("similar: 'EmptyLTXVLatentVideo'"), "{stderr}");
}

#[test]
fn missing_models_of_a_template_name_the_folders_searched() {
    let template = Path::new(TEMPLATES).join("ltxv_text_to_video.json");
    let folder = tempfile::tempdir().unwrap();
    let readable = kinograph().current_dir(folder.path()).arg("validate").arg(&template).output().unwrap();
    assert_eq!(readable.status.code(), Some(1));
    let stderr = text(&readable.stderr);
    assert!(
        stderr.contains(
            "node 44 \"Load Checkpoint\" (CheckpointLoaderSimple), input 'ckpt_name': model file 'ltx-video-2b-v0.9.safetensors' not found in folder kind 'checkpoints'; searched: models/checkpoints"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("'t5xxl_fp16.safetensors' not found in folder kind 'text_encoders'"), "{stderr}");
    assert!(!stderr.contains("\"Note\""), "notes are not nodes: {stderr}");
}

#[test]
fn convert_prints_the_api_prompt_and_warnings() {
    let result = kinograph().arg("convert").arg(hello_ui()).output().unwrap();
    assert!(result.status.success(), "{}", text(&result.stderr));
    let prompt: Json = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(
        prompt["3"],
        json!({"inputs": {"string_a": ["1", 0], "string_b": ["2", 0], "delimiter": ", "},
               "class_type": "StringConcatenate", "_meta": {"title": "Full prompt"}})
    );
    assert_eq!(prompt["5"]["inputs"], json!({"value": 497_797_676_867_141_i64}));
    for gone in ["7", "8", "9"] {
        assert!(prompt.get(gone).is_none(), "node {gone} (reroute, note, muted) is not in the prompt");
    }
    assert!(result.stderr.is_empty(), "{}", text(&result.stderr));

    let folder = tempfile::tempdir().unwrap();
    let mut workflow: Json = serde_json::from_str(&std::fs::read_to_string(hello_ui()).unwrap()).unwrap();
    workflow["nodes"][3]["widgets_values"] = json!(["", ", "]);
    let file = folder.path().join("old.json");
    std::fs::write(&file, workflow.to_string()).unwrap();
    let result = kinograph().arg("convert").arg(&file).output().unwrap();
    assert!(result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("warning:") && stderr.contains("node 3 \"Full prompt\" (StringConcatenate)"), "{stderr}");
    assert!(stderr.contains("holds 2 values, the schema expects 3"), "{stderr}");
}

#[test]
fn convert_reports_unreadable_files() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("bad.json");
    std::fs::write(&file, r#"{"nodes": [{"id": 3}], "links": []}"#).unwrap();
    let result = kinograph().arg("convert").arg(&file).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    assert!(text(&result.stderr).contains("node 3 has no type"), "{}", text(&result.stderr));
}
