//! The queue as ComfyUI runs it: smallest number first (`front` and a client's `number`), deleting only
//! what waits, `/interrupt` stopping the running prompt within a step only when it is the one named, the
//! next prompt running afterwards, and `/free` accepted between prompts.

use crate::support::socket::{Frame, connect_as};
use crate::support::{Client, TestServer, save_prompt, slow_prompt, status_messages};
use serde_json::json;
use std::time::{Duration, Instant};

/// Queues a slow prompt (long enough for any test, stopped by an interrupt) and waits until it runs,
/// so that what is queued next waits.
fn occupy_the_worker(client: &Client, label: &str) -> String {
    let prompt_id = client.queue(&json!({"prompt": slow_prompt(label, 100_000, 5), "client_id": "blocker"}));
    client.wait_until_running(&prompt_id);
    prompt_id
}

/// The ids in `/history`, in the order they finished.
fn finished_order(client: &Client) -> Vec<String> {
    client.get("/history").json().as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_prompt_queued_at_the_front_runs_before_earlier_ones() {
    let server = TestServer::start();
    let client = server.client();
    let blocker = occupy_the_worker(&client, "blocker");
    let first = client.queue(&json!({"prompt": save_prompt("first")}));
    let second = client.queue(&json!({"prompt": save_prompt("second")}));
    let reply = client.post("/prompt", &json!({"prompt": save_prompt("urgent"), "front": true}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let urgent = reply.json()["prompt_id"].as_str().unwrap().to_string();
    assert!(reply.json()["number"].as_f64().unwrap() < 0.0, "front numbers are negative");
    assert_eq!(client.queue_ids(), (vec![blocker.clone()], vec![urgent.clone(), first.clone(), second.clone()]));

    assert_eq!(client.post("/interrupt", &json!({})).status, 200);
    client.wait_for_history(&second);
    assert_eq!(finished_order(&client), [blocker, urgent, first, second]);
}

#[test]
fn a_client_number_sets_the_priority() {
    let server = TestServer::start();
    let client = server.client();
    let blocker = occupy_the_worker(&client, "blocker");
    let queue = |text: &str, number: f64| {
        let reply = client.post("/prompt", &json!({"prompt": save_prompt(text), "number": number}));
        assert_eq!(reply.json()["number"], number);
        reply.json()["prompt_id"].as_str().unwrap().to_string()
    };
    let last = queue("last", 5.0);
    let first = queue("first", -2.5);
    let middle = queue("middle", 1.0);
    assert_eq!(client.queue_ids().1, [first.clone(), middle.clone(), last.clone()]);
    assert_eq!(client.get("/queue").json()["queue_pending"][0][0], -2.5);

    client.post("/interrupt", &json!({"prompt_id": blocker}));
    client.wait_for_history(&last);
    assert_eq!(finished_order(&client), [blocker, first, middle, last]);
}

#[test]
fn deleting_from_the_queue_removes_only_waiting_prompts() {
    let server = TestServer::start();
    let client = server.client();
    let blocker = occupy_the_worker(&client, "blocker");
    let doomed = client.queue(&json!({"prompt": save_prompt("doomed")}));
    let kept = client.queue(&json!({"prompt": save_prompt("kept")}));
    let reply = client.post("/queue", &json!({"delete": [doomed, blocker]}));
    assert_eq!(reply.status, 200);
    assert_eq!(client.queue_ids(), (vec![blocker.clone()], vec![kept.clone()]), "the running prompt stays");

    let cleared = client.queue(&json!({"prompt": save_prompt("cleared")}));
    assert_eq!(client.post("/queue", &json!({"clear": true})).status, 200);
    assert_eq!(client.queue_ids(), (vec![blocker.clone()], vec![]));
    client.post("/interrupt", &json!({"prompt_id": blocker}));
    client.wait_for_history(&blocker);
    for id in [doomed, kept, cleared] {
        assert_eq!(client.get(&format!("/history/{id}")).json(), json!({}), "{id} never ran");
    }
}

#[test]
fn interrupt_stops_only_the_named_running_prompt_within_a_step() {
    let server = TestServer::start();
    let client = server.client();
    let mut owner = connect_as(server.address, "blocker");
    let mut bystander = connect_as(server.address, "bystander");
    let running = occupy_the_worker(&client, "running");
    let next = client.queue(&json!({"prompt": save_prompt("next")}));

    // Another id leaves it running: its progress goes on.
    assert_eq!(client.post("/interrupt", &json!({"prompt_id": next})).status, 200);
    assert_eq!(client.post("/interrupt", &json!({"prompt_id": "no-such-prompt"})).status, 200);
    let value_of = |frame: &Frame| frame.json().filter(|m| m["type"] == "progress").map(|m| m["data"]["value"].clone());
    let before = owner.until(|m| m["type"] == "progress");
    let seen = before.iter().rev().find_map(value_of).unwrap().as_u64().unwrap();
    let later = owner.until(|m| m["type"] == "progress" && m["data"]["value"].as_u64().unwrap() > seen + 5);
    assert!(!later.is_empty());
    assert_eq!(client.queue_ids(), (vec![running.clone()], vec![next.clone()]));

    let asked = Instant::now();
    assert_eq!(client.post("/interrupt", &json!({"prompt_id": running})).status, 200);
    let entry = client.wait_for_history(&running);
    assert!(asked.elapsed() < Duration::from_secs(2), "stopping took {:?}", asked.elapsed());
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);
    assert_eq!(status_messages(&entry).last().unwrap(), "execution_interrupted");

    let frames = owner.until_finished(&running);
    let interrupted = frames.iter().filter_map(Frame::json).find(|m| m["type"] == "execution_interrupted");
    let interrupted = interrupted.expect("the prompt's client hears of the interrupt");
    assert_eq!(interrupted["data"]["prompt_id"], running.as_str());
    assert_eq!(interrupted["data"]["node_id"], "1");
    let overheard = bystander.until(|m| m["type"] == "execution_interrupted");
    assert_eq!(overheard.last().unwrap().json().unwrap()["data"]["prompt_id"], running.as_str(), "broadcast");

    let entry = client.wait_for_history(&next);
    assert_eq!(entry["status"]["status_str"], "success", "the next prompt runs");
}

#[test]
fn free_is_accepted_and_prompts_still_run_after_it() {
    let server = TestServer::start();
    let client = server.client();
    let first = client.queue(&json!({"prompt": save_prompt("before")}));
    client.wait_for_history(&first);
    for body in [json!({"unload_models": true, "free_memory": true}), json!({"free_memory": true}), json!({})] {
        assert_eq!(client.post("/free", &body).status, 200, "{body}");
    }
    assert_eq!(client.send("POST", "/free", None, Vec::new()).status, 200, "an empty body");
    let second = client.queue(&json!({"prompt": save_prompt("after")}));
    assert_eq!(client.wait_for_history(&second)["status"]["status_str"], "success");
}
