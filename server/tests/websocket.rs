//! The websocket as ComfyUI's clients read it: the `status` greeting with the client's `sid`, a prompt's
//! messages in ComfyUI's order with binary preview frames (plain, or with metadata once asked for), the
//! history entry already stored when the final `executing {node: null}` arrives, and no prompt messages
//! for sockets the prompt did not name.

use crate::support::socket::{Frame, Socket, connect, connect_as};
use crate::support::{TestServer, failing_prompt, slow_prompt, wait_for};
use serde_json::{Value as Json, json};
use std::time::Duration;

/// A message in a few words: its type, with the node for `executing`/`executed` and the step for
/// `progress`.
fn label(message: &Json) -> String {
    let data = &message["data"];
    let node = data["node"].as_str().unwrap_or("null");
    match message["type"].as_str().expect("a type") {
        "executing" => format!("executing {node}"),
        "executed" => format!("executed {node}"),
        "progress" => format!("progress {}/{}", data["value"], data["max"]),
        other => other.to_string(),
    }
}

/// The labels of the text messages, without `status` and `progress_state`.
fn prompt_labels(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(Frame::json)
        .filter(|message| !matches!(message["type"].as_str(), Some("status" | "progress_state")))
        .map(label)
        .collect()
}

/// Every message that arrives until the socket is quiet for half a second.
fn drain(socket: &mut Socket) -> Vec<Frame> {
    std::iter::from_fn(|| socket.try_next(Duration::from_millis(500))).collect()
}

#[test]
fn a_clients_prompt_sends_comfyuis_messages_in_order_with_preview_frames() {
    let server = TestServer::start();
    let client = server.client();
    let mut plain = connect_as(server.address, "watcher");
    let mut with_metadata = connect_as(server.address, "watcher");
    with_metadata.send_json(&json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}));
    let flags = with_metadata.next_json();
    assert_eq!(flags["type"], "feature_flags", "{flags}");
    assert_eq!(flags["data"]["supports_preview_metadata"], true);
    let mut bystander = connect_as(server.address, "bystander");

    let prompt_id = client.queue(&json!({"prompt": slow_prompt("watched", 3, 20), "client_id": "watcher"}));
    let frames = plain.until_finished(&prompt_id);
    // The entry is on disk before the final message goes out.
    let history = client.get(&format!("/history/{prompt_id}")).json();
    assert!(history.get(&prompt_id).is_some(), "the history lacks the prompt that was announced finished: {history}");

    let expected = [
        "execution_start",
        "execution_cached",
        "executing 1",
        "progress 1/3",
        "progress 2/3",
        "progress 3/3",
        "executing 2",
        "executed 2",
        "execution_success",
        "executing null",
    ];
    assert_eq!(prompt_labels(&frames), expected);
    for message in frames.iter().filter_map(Frame::json).filter(|message| message["type"] != "status") {
        assert_eq!(message["data"]["prompt_id"], prompt_id.as_str(), "{message}");
    }
    let executed = frames.iter().filter_map(Frame::json).find(|message| message["type"] == "executed").unwrap();
    assert_eq!(executed["data"]["output"]["images"][0]["filename"], "counted_00001_.txt");
    let statuses: Vec<&Json> = frames.iter().filter_map(Frame::json).filter(|m| m["type"] == "status").collect();
    let last_status = statuses.last().expect("status messages while the prompt ran");
    assert_eq!(last_status["data"]["status"]["exec_info"]["queue_remaining"], 0, "{last_status}");
    assert!(last_status["data"].get("sid").is_none(), "sid only in the greeting");

    // One JPEG preview per step, each right after its progress message.
    let mut previews = 0;
    for (index, frame) in frames.iter().enumerate() {
        if let Frame::Binary(bytes) = frame {
            previews += 1;
            assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 1], "PREVIEW_IMAGE, JPEG");
            assert_eq!(&bytes[8..10], &[0xFF, 0xD8], "a JPEG's first bytes");
            assert_eq!(frames[index - 1].kind(), Some("progress"));
        }
    }
    assert_eq!(previews, 3);

    let rich_frames = with_metadata.until_finished(&prompt_id);
    assert_eq!(prompt_labels(&rich_frames), expected);
    let rich_previews: Vec<&Vec<u8>> = rich_frames
        .iter()
        .filter_map(|frame| if let Frame::Binary(bytes) = frame { Some(bytes) } else { None })
        .collect();
    assert_eq!(rich_previews.len(), 3);
    for bytes in rich_previews {
        assert_eq!(&bytes[..4], &[0, 0, 0, 4], "PREVIEW_IMAGE_WITH_METADATA");
        let length = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let metadata: Json = serde_json::from_slice(&bytes[8..8 + length]).expect("JSON metadata");
        assert_eq!(metadata["node_id"], "1");
        assert_eq!(metadata["display_node_id"], "1");
        assert_eq!(metadata["prompt_id"], prompt_id.as_str());
        assert_eq!(metadata["image_type"], "image/jpeg");
        assert_eq!(&bytes[8 + length..10 + length], &[0xFF, 0xD8]);
    }

    let overheard = drain(&mut bystander);
    assert!(!overheard.is_empty(), "status is broadcast");
    for frame in &overheard {
        assert_eq!(frame.kind(), Some("status"), "another client's socket got {frame:?}");
    }
}

#[test]
fn a_prompt_without_client_id_sends_no_execution_messages_to_other_sockets() {
    let server = TestServer::start();
    let client = server.client();
    let mut other = connect_as(server.address, "other");
    let prompt_id = client.queue(&json!({"prompt": slow_prompt("anonymous", 2, 10)}));
    client.wait_for_history(&prompt_id);
    let frames = drain(&mut other);
    let kinds: Vec<&str> = frames.iter().filter_map(Frame::kind).collect();
    for kind in ["execution_start", "execution_cached", "executing", "executed", "execution_success"] {
        assert!(!kinds.contains(&kind), "{kind} reached a socket the prompt did not name: {kinds:?}");
    }
    assert!(kinds.contains(&"status"), "{kinds:?}");
    // As in ComfyUI, progress of a prompt that named no client goes to everyone.
    assert_eq!(kinds.iter().filter(|kind| **kind == "progress").count(), 2, "{kinds:?}");
}

#[test]
fn a_socket_without_client_id_gets_one_and_hears_its_prompts() {
    let server = TestServer::start();
    let client = server.client();
    let mut socket = connect(server.address, "/ws", &[]).expect("the websocket opens");
    let greeting = socket.next_json();
    assert_eq!(greeting["type"], "status");
    assert_eq!(greeting["data"]["status"]["exec_info"]["queue_remaining"], 0);
    let sid = greeting["data"]["sid"].as_str().expect("a sid").to_string();
    assert!(sid.len() == 32 && sid.bytes().all(|byte| byte.is_ascii_hexdigit()), "a uuid in hex: {sid}");

    let prompt_id = client.queue(&json!({"prompt": slow_prompt("mine", 1, 0), "client_id": sid}));
    let frames = socket.until_finished(&prompt_id);
    assert!(prompt_labels(&frames).contains(&"execution_success".to_string()));
}

#[test]
fn a_failing_prompt_sends_execution_error_then_the_final_message() {
    let server = TestServer::start();
    let client = server.client();
    let mut socket = connect_as(server.address, "unlucky");
    let prompt_id = client.queue(&json!({"prompt": failing_prompt("no luck"), "client_id": "unlucky"}));
    let frames = socket.until_finished(&prompt_id);
    let labels = prompt_labels(&frames);
    assert_eq!(labels, ["execution_start", "execution_cached", "executing 1", "execution_error", "executing null"]);
    let error = frames.iter().filter_map(Frame::json).find(|message| message["type"] == "execution_error").unwrap();
    assert_eq!(error["data"]["node_id"], "1");
    assert_eq!(error["data"]["node_type"], "Fail");
    assert_eq!(error["data"]["exception_message"], "no luck");
    let entry =
        wait_for("the failed entry", || client.get(&format!("/history/{prompt_id}")).json().get(&prompt_id).cloned());
    assert_eq!(entry["status"]["status_str"], "error");
}
