//! End-to-end tests of the `kinograph` binary: runs, validation, events, caching across processes,
//! exit codes and Ctrl-C.

use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kinograph() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinograph"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/hello_kinograph.json")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_hello(output: &Path, extra: &[&str]) -> Output {
    kinograph().arg("run").arg(hello()).arg("--output-dir").arg(output).args(extra).output().expect("kinograph runs")
}

fn json_lines(stdout: &[u8]) -> Vec<Json> {
    text(stdout).lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))).collect()
}

fn files_in(folder: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                names.extend(
                    files_in(&entry.path()).into_iter().map(|n| format!("{}/{n}", entry.file_name().to_string_lossy())),
                );
            } else {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names
}

#[test]
fn the_bundled_workflow_runs_and_writes_its_output() {
    let output = tempfile::tempdir().unwrap();
    let result = run_hello(output.path(), &[]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let written = std::fs::read_to_string(output.path().join("hello/prompt_00001_.txt")).unwrap();
    assert_eq!(written, "a red fox running through fresh snow, golden hour, cinematic, 35mm film");
    let stdout = text(&result.stdout);
    assert!(stdout.contains("#6 Show seed (PreviewAny): 497797676867141"), "{stdout}");
    assert!(stdout.contains("hello/prompt_00001_.txt"), "{stdout}");

    let again = run_hello(output.path(), &[]);
    assert!(again.status.success());
    assert!(output.path().join("hello/prompt_00002_.txt").exists(), "a second run never overwrites the first");
}

#[test]
fn set_overrides_an_input() {
    let output = tempfile::tempdir().unwrap();
    let result = run_hello(output.path(), &["--set", "2.value=watercolor", "--set", "3.delimiter=\" | \""]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let written = std::fs::read_to_string(output.path().join("hello/prompt_00001_.txt")).unwrap();
    assert_eq!(written, "a red fox running through fresh snow, golden hour | watercolor");

    let unknown = run_hello(output.path(), &["--set", "99.value=1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no node '99'"), "{}", text(&unknown.stderr));
}

#[test]
fn json_events_follow_comfyui_websocket_messages() {
    let output = tempfile::tempdir().unwrap();
    let result = run_hello(output.path(), &["--events", "json"]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let events = json_lines(&result.stdout);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..2], &["execution_start", "execution_cached"]);
    assert_eq!(&types[types.len() - 2..], &["execution_success", "executing"]);
    assert!(events.last().unwrap()["data"]["node"].is_null());
    let prompt_id = &events[0]["data"]["prompt_id"];
    assert!(events.iter().all(|e| &e["data"]["prompt_id"] == prompt_id));
    let started: Vec<&str> =
        events.iter().filter(|e| e["type"] == "executing").filter_map(|e| e["data"]["node"].as_str()).collect();
    let mut sorted = started.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec!["1", "2", "3", "4", "5", "6"]);
    let saved = events.iter().find(|e| e["type"] == "executed" && e["data"]["node"] == "4").unwrap();
    assert_eq!(saved["data"]["output"]["files"][0]["filename"], "prompt_00001_.txt");
    assert_eq!(saved["data"]["output"]["files"][0]["subfolder"], "hello");
}

#[test]
fn the_disk_cache_lets_a_new_process_skip_unchanged_nodes() {
    let output = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let executed = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--events", "json", "--cache-dir", cache_dir];
        args.extend_from_slice(extra);
        let result = run_hello(output.path(), &args);
        assert!(result.status.success(), "{}", text(&result.stderr));
        let mut nodes: Vec<String> = json_lines(&result.stdout)
            .iter()
            .filter(|e| e["type"] == "executing")
            .filter_map(|e| e["data"]["node"].as_str().map(str::to_string))
            .collect();
        nodes.sort();
        nodes
    };
    assert_eq!(executed(&[]), vec!["1", "2", "3", "4", "5", "6"]);
    assert_eq!(executed(&[]), vec!["4", "6"], "only output nodes re-run in a new process");
    assert_eq!(
        executed(&["--set", "2.value=oil paint"]),
        vec!["2", "3", "4", "6"],
        "a changed constant re-runs its node and descendants"
    );
    assert_eq!(files_in(&output.path().join("hello")).len(), 3, "every run wrote its own output file");
}

#[test]
fn validate_reports_every_error_and_exits_1() {
    let folder = tempfile::tempdir().unwrap();
    let workflow = folder.path().join("broken.json");
    std::fs::write(
        &workflow,
        r#"{
            "1": {"class_type": "PrimitiveInt", "inputs": {"value": "many"}, "_meta": {"title": "Seed"}},
            "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["8", 0]}},
            "3": {"class_type": "SaveText", "inputs": {"text": ["2", 0], "filename_prefix": "x"}},
            "4": {"class_type": "LTXVFancySampler", "inputs": {}}
        }"#,
    )
    .unwrap();
    let result = kinograph().arg("validate").arg(&workflow).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    for expected in [
        "the workflow is invalid (5 errors)",
        "node 1 \"Seed\" (PrimitiveInt), input 'value': expected an integer (INT), got \"many\"",
        "node 2 (StringConcatenate), input 'string_a': expects STRING, but is linked to output 0 'INT' of node 1",
        "node 2 (StringConcatenate), input 'string_b': is linked to node '8', which is not in the workflow",
        "node 2 (StringConcatenate), input 'delimiter': required input is missing",
        "node 4 (LTXVFancySampler): unknown node type 'LTXVFancySampler'",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }

    let result = kinograph().arg("validate").arg(&workflow).arg("--json").output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let body: Json = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(body["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(body["node_errors"]["2"]["class_type"], "StringConcatenate");
    assert_eq!(body["node_errors"]["2"]["dependent_outputs"], serde_json::json!(["3"]));
    assert_eq!(body["node_errors"]["4"]["errors"][0]["type"], "missing_node_type");

    let run = kinograph().arg("run").arg(&workflow).arg("--events").arg("json").output().unwrap();
    assert_eq!(run.status.code(), Some(1), "run refuses an invalid workflow before running anything");
    let events = json_lines(&run.stdout);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "validation_error");

    let valid = kinograph().arg("validate").arg(hello()).output().unwrap();
    assert!(valid.status.success());
    assert!(text(&valid.stdout).contains("is valid"));
}

#[test]
fn malformed_json_is_reported_with_line_and_column() {
    let folder = tempfile::tempdir().unwrap();
    let workflow = folder.path().join("bad.json");
    std::fs::write(&workflow, "{\n  \"1\": {\"class_type\": \"PrimitiveInt\",\n    \"inputs\": {\"value\": 3,}\n}\n")
        .unwrap();
    let result = kinograph().arg("run").arg(&workflow).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("is not valid JSON") && stderr.contains("line 3, column 27"), "{stderr}");

    let missing = kinograph().arg("run").arg(folder.path().join("absent.json")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read workflow"));
}

#[test]
fn a_runtime_failure_exits_2_naming_the_node_and_its_inputs() {
    let output = tempfile::tempdir().unwrap();
    let result = run_hello(output.path(), &["--set", "4.filename_prefix=../outside"]);
    assert_eq!(result.status.code(), Some(2), "{}", text(&result.stderr));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("node #4 Save prompt (SaveText) failed: input 'filename_prefix'"), "{stderr}");
    assert!(stderr.contains("filename_prefix = \"../outside\""), "{stderr}");
    assert!(!output.path().join("../outside_00001_.txt").exists());

    let json = run_hello(output.path(), &["--set", "4.filename_prefix=../outside", "--events", "json"]);
    assert_eq!(json.status.code(), Some(2));
    let events = json_lines(&json.stdout);
    let error = events.iter().find(|e| e["type"] == "execution_error").unwrap();
    assert_eq!(error["data"]["node_id"], "4");
    assert_eq!(error["data"]["node_type"], "SaveText");
    assert_eq!(error["data"]["current_inputs"]["filename_prefix"], serde_json::json!(["../outside"]));
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_promptly_with_exit_130_and_leaves_no_output() {
    let output = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let workflow = folder.path().join("slow.json");
    std::fs::write(
        &workflow,
        r#"{
            "1": {"class_type": "PrimitiveString", "inputs": {"value": "never saved"}},
            "2": {"class_type": "Delay", "inputs": {"value": ["1", 0], "seconds": 60}},
            "3": {"class_type": "SaveText", "inputs": {"text": ["2", 0], "filename_prefix": "slow"}}
        }"#,
    )
    .unwrap();
    let mut child = kinograph()
        .arg("run")
        .arg(&workflow)
        .args(["--events", "json", "--output-dir"])
        .arg(output.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until the slow node reports progress, then press Ctrl-C.
    loop {
        let line = lines.next().expect("events until progress").unwrap();
        let event: Json = serde_json::from_str(&line).unwrap();
        if event["type"] == "progress" && event["data"]["node"] == "2" {
            break;
        }
    }
    let pressed = Instant::now();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<Json> = lines.map(|line| serde_json::from_str(&line.unwrap()).unwrap()).collect();
    let exit = child.wait().unwrap();
    assert!(pressed.elapsed() < Duration::from_secs(3), "stopped after {:?}", pressed.elapsed());
    assert_eq!(exit.code(), Some(130));
    let interrupted =
        rest.iter().find(|e| e["type"] == "execution_interrupted").expect("an execution_interrupted event");
    assert_eq!(interrupted["data"]["node_id"], "2");
    assert!(files_in(output.path()).is_empty(), "no output, partial or complete: {:?}", files_in(output.path()));
}

#[test]
fn nodes_lists_the_registry_in_object_info_shape() {
    let result = kinograph().args(["nodes", "--json"]).output().unwrap();
    assert!(result.status.success());
    let info: Json = serde_json::from_slice(&result.stdout).unwrap();
    let int = &info["PrimitiveInt"];
    assert_eq!(int["input"]["required"]["value"][0], "INT");
    assert_eq!(int["input"]["required"]["value"][1]["control_after_generate"], true);
    assert_eq!(int["input_order"]["required"], serde_json::json!(["value"]));
    assert_eq!(int["output"], serde_json::json!(["INT"]));
    assert_eq!(int["category"], "utils/primitive");
    assert_eq!(info["SaveText"]["output_node"], true);
    for class in ["PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"] {
        assert!(info.get(class).is_some(), "{class} is registered");
    }

    let listing = kinograph().arg("nodes").output().unwrap();
    let listing = text(&listing.stdout);
    assert!(listing.contains("utils/primitive") && listing.contains("PrimitiveStringMultiline"), "{listing}");
    let unknown = kinograph().args(["nodes", "KSamplerX"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn every_command_has_help() {
    for command in [&["--help"][..], &["run", "--help"], &["validate", "--help"], &["nodes", "--help"]] {
        let result = kinograph().args(command).output().unwrap();
        assert!(result.status.success(), "{command:?}");
        assert!(text(&result.stdout).contains("Usage: kinograph"), "{command:?}");
    }
    let bad = kinograph().args(["run"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1), "a usage error is an invalid command line");
}

#[test]
fn bench_rejects_bad_sizes_before_building_anything() {
    let bad_latent = kinograph().args(["bench", "--transformer-latent", "2,0,24"]).output().unwrap();
    assert_eq!(bad_latent.status.code(), Some(1));
    assert!(text(&bad_latent.stderr).contains("expected three positive numbers"), "{}", text(&bad_latent.stderr));
    let no_runs = kinograph().args(["bench", "--runs", "0"]).output().unwrap();
    assert_eq!(no_runs.status.code(), Some(2));
    assert!(text(&no_runs.stderr).contains("--runs must be at least 1"));
}

#[test]
fn a_worker_or_front_end_without_a_nats_server_says_where_it_could_not_connect() {
    let folder = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (["worker", "--queue", "nats://127.0.0.1:1"], "cannot connect to NATS at nats://127.0.0.1:1"),
        (["worker", "--queue", "http://kino:secret@host:4222"], "starts with nats:// (or tls://)"),
        (["serve", "--queue", "redis://kino:secret@host:6379"], "starts with nats:// (or tls://)"),
    ] {
        let output = kinograph().current_dir(folder.path()).args(args).output().unwrap();
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("secret"), "the password is never shown: {stderr}");
        assert!(!stdout.contains("taking prompts"), "no worker says it takes prompts before it can: {stdout}");
    }
}
