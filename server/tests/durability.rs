//! The queue and history outlive the server: stopped with prompts waiting and one running, a new server
//! on the same state folder has the waiting prompts in the same order, the finished entries, the one
//! that was running recorded as interrupted, and runs the rest.

use crate::support::{TestServer, save_prompt, slow_prompt, status_messages};
use serde_json::json;

#[test]
fn waiting_prompts_and_the_history_survive_a_restart() {
    let server = TestServer::start();
    let client = server.client();
    let done = client.queue(&json!({"prompt": save_prompt("finished before the restart"), "client_id": "c"}));
    client.wait_for_history(&done);
    let running = client.queue(&json!({"prompt": slow_prompt("cut short", 100_000, 5)}));
    client.wait_until_running(&running);
    let waiting: Vec<String> = [
        json!({"prompt": save_prompt("next")}),
        json!({"prompt": save_prompt("then this")}),
        json!({"prompt": save_prompt("and this"), "number": 1000.0}),
        json!({"prompt": slow_prompt("but this first", 100_000, 5), "front": true}),
    ]
    .iter()
    .map(|body| client.queue(body))
    .collect();
    let order_before = client.queue_ids().1;
    assert_eq!(order_before, [waiting[3].as_str(), &waiting[0], &waiting[1], &waiting[2]]);

    let server = server.restart();
    let client = server.client();
    // The new worker may already have taken the first waiting prompt.
    let (now_running, now_pending) = client.queue_ids();
    let order_after: Vec<String> = now_running.into_iter().chain(now_pending).collect();
    assert_eq!(order_after, order_before, "the waiting prompts, in the same order");

    let history = client.get("/history").json();
    let finished = &history[&done];
    assert_eq!(finished["status"]["status_str"], "success");
    assert_eq!(finished["prompt"][3]["client_id"], "c");
    let filename = finished["outputs"]["1"]["images"][0]["filename"].as_str().unwrap();
    assert_eq!(client.get(&format!("/view?filename={filename}")).text(), "finished before the restart");
    let cut_short = &history[&running];
    assert_eq!(cut_short["status"]["status_str"], "error");
    assert_eq!(status_messages(cut_short).last().unwrap(), "execution_interrupted");

    // The slow one, now at the head, stops when asked; the rest then run in order.
    client.wait_until_running(&waiting[3]);
    client.post("/interrupt", &json!({"prompt_id": waiting[3]}));
    client.wait_for_history(&waiting[2]);
    let finished: Vec<String> = client.get("/history").json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(finished, [done.as_str(), &running, &waiting[3], &waiting[0], &waiting[1], &waiting[2]]);
}
