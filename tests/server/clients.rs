//! ComfyUI's example clients' calls against `kinograph serve`: `tests/clients/websocket_client.py` makes the
//! calls of ComfyUI's `websockets_api_example.py` (websocket-client and urllib, in the same order) and
//! downloads the frames and the video through `/view`; `tests/clients/basic_client.py` makes the bare
//! `POST /prompt` of `basic_api_example.py`. Needs a Python 3 with websocket-client (`.ci/run` installs
//! Debian's `python3-websocket`).

use super::{ServerProcess, agent, check_output_file, demo_root, get_json, wait_for};
use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A Python 3 that has websocket-client: `python3` on the path, else the system's.
fn python() -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let found = Command::new(candidate).args(["-c", "import websocket"]).output();
        if found.is_ok_and(|output| output.status.success()) {
            return candidate.to_string();
        }
    }
    panic!("no python3 with websocket-client found: install it (Debian: apt-get install python3-websocket)")
}

fn client(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name).display().to_string()
}

#[test]
fn comfyuis_example_clients_run_the_demo_and_download_frames_and_video() {
    let root = demo_root();
    let server = ServerProcess::start(root.path(), &[]);
    let prompt_file = root.path().join("prompt.json");
    std::fs::write(&prompt_file, super::DEMO_PROMPT).unwrap();
    let downloads = root.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();

    let output = Command::new(python())
        .arg(client("websocket_client.py"))
        .arg(&server.address)
        .arg(&prompt_file)
        .arg(&downloads)
        .output()
        .unwrap();
    assert!(output.status.success(), "the websocket client failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: Json = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["status"], "success", "{summary}");

    // ComfyUI's timeline: status on connect, then the prompt's messages, `executing {node: null}` last.
    let messages: Vec<&str> = summary["messages"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    assert_eq!(messages.first(), Some(&"status"), "{messages:?}");
    assert_eq!(messages.last(), Some(&"executing"), "{messages:?}");
    let position =
        |kind: &str| messages.iter().position(|m| *m == kind).unwrap_or_else(|| panic!("{kind}: {messages:?}"));
    assert!(position("execution_start") < position("execution_cached"), "{messages:?}");
    assert!(position("execution_cached") < position("executing"), "{messages:?}");
    assert!(position("progress") < position("executed"), "{messages:?}");
    assert!(messages.contains(&"binary"), "sampler previews arrive as binary frames: {messages:?}");
    assert!(position("executed") < position("execution_success"), "{messages:?}");

    // The nine decoded frames as PNGs and the video as an MP4, whole, downloaded through /view.
    let files = &summary["files"];
    let frames: Vec<&str> = files["90"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    assert_eq!(frames.len(), 9, "{files}");
    let videos: Vec<&str> = files["79"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    assert_eq!(videos.len(), 1, "{files}");
    for path in frames.iter().chain(&videos) {
        check_output_file(Path::new(path));
    }
    let downloaded = std::fs::read(videos[0]).unwrap();
    let on_disk = std::fs::read(root.path().join("output/video/server_t2v_00001_.mp4")).unwrap();
    assert_eq!(downloaded, on_disk, "/view serves the file as written");

    // The basic client: a bare POST, fire and forget; the prompt runs and lands in the history.
    let output =
        Command::new(python()).arg(client("basic_client.py")).arg(&server.address).arg(&prompt_file).output().unwrap();
    assert!(output.status.success(), "the basic client failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let answer: Json = serde_json::from_slice(&output.stdout).unwrap();
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_string();
    assert_eq!(answer["node_errors"], serde_json::json!({}));
    let agent = agent();
    let entry = wait_for("the basic client's prompt to finish", Duration::from_mins(2), || {
        let history = get_json(&agent, &server.url(&format!("/history/{prompt_id}")));
        history.get(&prompt_id).cloned()
    });
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    assert_eq!(get_json(&agent, &server.url("/history")).as_object().unwrap().len(), 2);
}
