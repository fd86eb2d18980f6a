//! The HTTP API in ComfyUI's shapes: what `POST /prompt` answers and refuses, the queue and history as
//! clients read and edit them, what the server says about itself, and every route again under `/api`.

use crate::support::{TestServer, failing_prompt, save_prompt, slow_prompt, socket, status_messages, upload, wait_for};
use serde_json::{Value as Json, json};

/// The keys of a JSON object, in order.
fn keys(value: &Json) -> Vec<&str> {
    value.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[test]
fn a_queued_prompt_answers_id_number_and_node_errors_and_runs_into_the_history() {
    let server = TestServer::start();
    let client = server.client();
    let reply = client.post("/prompt", &json!({"prompt": save_prompt("hello"), "client_id": "tester"}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(keys(&answer), ["prompt_id", "number", "node_errors"]);
    let prompt_id = answer["prompt_id"].as_str().unwrap();
    assert_eq!(prompt_id.len(), 36, "a uuid4 in its usual form: {prompt_id}");
    assert!(answer["number"].is_number());
    assert_eq!(answer["node_errors"], json!({}));

    let entry = client.wait_for_history(prompt_id);
    assert_eq!(keys(&entry), ["prompt", "outputs", "status", "meta"]);
    let item = entry["prompt"].as_array().expect("the 5-tuple");
    assert_eq!(item.len(), 5);
    assert_eq!(item[0], answer["number"]);
    assert_eq!(item[1], prompt_id);
    assert_eq!(item[2]["1"]["class_type"], "SaveText");
    assert_eq!(item[3]["client_id"], "tester");
    assert_eq!(item[4], json!(["1"]));
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    assert_eq!(status_messages(&entry), ["execution_start", "execution_cached", "execution_success"]);
    assert_eq!(entry["meta"]["1"]["real_node_id"], "1");

    // What ComfyUI's example client does next: fetch every image the outputs list.
    let image = &entry["outputs"]["1"]["images"][0];
    assert_eq!(image["type"], "output");
    assert_eq!(image["subfolder"], "");
    let filename = image["filename"].as_str().unwrap();
    assert_eq!(filename, "saved_00001_.txt");
    let file = client.get(&format!("/view?filename={filename}&subfolder=&type=output"));
    assert_eq!(file.status, 200);
    assert_eq!(file.text(), "hello");
}

#[test]
fn a_client_chosen_prompt_id_is_kept_and_a_duplicate_is_refused() {
    let server = TestServer::start();
    let client = server.client();
    let body = json!({"prompt": save_prompt("mine"), "prompt_id": "my-own-id"});
    let reply = client.post("/prompt", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["prompt_id"], "my-own-id");
    client.wait_for_history("my-own-id");

    let duplicate = client.post("/prompt", &body);
    assert_eq!(duplicate.status, 400, "{}", duplicate.text());
    assert_eq!(duplicate.json()["error"]["type"], "duplicate_prompt_id");
    let wrong_type = client.post("/prompt", &json!({"prompt": save_prompt("x"), "prompt_id": 7}));
    assert_eq!(wrong_type.status, 400);
}

#[test]
fn invalid_prompts_are_refused_in_comfyuis_error_shape() {
    let server = TestServer::start();
    let client = server.client();
    let invalid = json!({
        "1": {"class_type": "SlowCount", "inputs": {"steps": "many", "step_ms": 1, "label": ""}},
        "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "x"}},
    });
    let reply = client.post("/prompt", &json!({"prompt": invalid}));
    assert_eq!(reply.status, 400, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(keys(&answer), ["error", "node_errors"]);
    assert_eq!(keys(&answer["error"]), ["type", "message", "details", "extra_info"]);
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    let node = &answer["node_errors"]["1"];
    assert_eq!(node["class_type"], "SlowCount");
    assert_eq!(node["dependent_outputs"], json!(["2"]));
    assert_eq!(node["errors"][0]["extra_info"]["input_name"], "steps", "{node}");

    let unknown = client.post("/prompt", &json!({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}));
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    assert!(unknown.json()["error"]["message"].is_string());

    for body in [json!({}), json!({"prompt": null}), json!({"client_id": "x"})] {
        let reply = client.post("/prompt", &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["error"]["type"], "no_prompt", "{answer}");
        assert_eq!(keys(&answer["error"]), ["type", "message", "details", "extra_info"]);
        assert_eq!(answer["node_errors"], json!({}));
    }
    let not_json = client.send("POST", "/prompt", Some("application/json"), b"{\"prompt\": ".to_vec());
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["error"]["type"], "invalid_json");
    assert_eq!(client.get("/queue").json()["queue_pending"], json!([]), "nothing refused was queued");
}

#[test]
fn a_failing_node_leaves_an_error_entry_with_its_message() {
    let server = TestServer::start();
    let client = server.client();
    let prompt_id = client.queue(&json!({"prompt": failing_prompt("the node gave up")}));
    let entry = client.wait_for_history(&prompt_id);
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);
    assert_eq!(status_messages(&entry), ["execution_start", "execution_cached", "execution_error"]);
    let error = &entry["status"]["messages"][2][1];
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["node_type"], "Fail");
    assert_eq!(error["exception_message"], "the node gave up");
    assert_eq!(entry["outputs"], json!({}));
}

#[test]
fn get_prompt_and_get_queue_report_the_running_and_pending_prompts() {
    let server = TestServer::start();
    let client = server.client();
    assert_eq!(client.get("/prompt").json(), json!({"exec_info": {"queue_remaining": 0}}));
    assert_eq!(client.get("/queue").json(), json!({"queue_running": [], "queue_pending": []}));

    let running = client.queue(&json!({"prompt": slow_prompt("long", 10_000, 5), "client_id": "c"}));
    client.wait_until_running(&running);
    let pending = client.queue(&json!({"prompt": save_prompt("later"), "extra_data": {"extra_pnginfo": {}}}));
    assert_eq!(client.get("/prompt").json()["exec_info"]["queue_remaining"], 2);
    let queue = client.get("/queue").json();
    assert_eq!(keys(&queue), ["queue_running", "queue_pending"]);
    let running_item = &queue["queue_running"][0];
    assert_eq!(running_item.as_array().unwrap().len(), 5);
    assert_eq!(running_item[1], running);
    assert_eq!(running_item[3]["client_id"], "c");
    assert_eq!(running_item[4], json!(["2"]));
    let pending_item = &queue["queue_pending"][0];
    assert_eq!(pending_item[1], pending);
    assert_eq!(pending_item[2], save_prompt("later"));
    assert!(pending_item[0].as_f64().unwrap() > running_item[0].as_f64().unwrap());

    assert_eq!(client.post("/interrupt", &json!({})).status, 200);
    client.wait_for_history(&pending);
    assert_eq!(client.get("/prompt").json()["exec_info"]["queue_remaining"], 0);
}

#[test]
fn history_pages_like_comfyui_and_can_be_deleted_and_cleared() {
    let server = TestServer::start();
    let client = server.client();
    let ids: Vec<String> = (0..4)
        .map(|index| {
            let id = client.queue(&json!({"prompt": save_prompt(&format!("entry {index}"))}));
            client.wait_for_history(&id);
            id
        })
        .collect();
    let history = client.get("/history").json();
    assert_eq!(keys(&history), ids, "every entry, oldest first");
    assert_eq!(keys(&client.get("/history?max_items=2").json()), ids[2..], "the newest two");
    assert_eq!(keys(&client.get("/history?max_items=2&offset=1").json()), ids[1..3]);
    assert_eq!(keys(&client.get("/history?offset=3").json()), ids[3..]);
    assert_eq!(client.get("/history/no-such-prompt").json(), json!({}));
    assert_eq!(keys(&client.get(&format!("/history/{}", ids[1])).json()), [ids[1].as_str()]);

    assert_eq!(client.post("/history", &json!({"delete": [ids[0]]})).status, 200);
    assert_eq!(keys(&client.get("/history").json()), ids[1..]);
    assert_eq!(client.get(&format!("/history/{}", ids[0])).json(), json!({}));
    assert_eq!(client.post("/history", &json!({"clear": true})).status, 200);
    assert_eq!(client.get("/history").json(), json!({}));
    assert!(server.output_dir().join("saved_00001_.txt").exists(), "output files stay");
}

#[test]
fn the_info_routes_describe_nodes_features_system_and_models() {
    let server = TestServer::start();
    let client = server.client();
    let info = client.get("/object_info").json();
    assert_eq!(keys(&info), ["SaveText", "SlowCount", "Fail"]);
    let save = &info["SaveText"];
    assert_eq!(save["name"], "SaveText");
    assert_eq!(save["output_node"], true);
    assert_eq!(save["input"]["required"]["text"][0], "STRING");
    assert_eq!(info["SlowCount"]["output"], json!(["STRING"]));
    assert_eq!(info["SlowCount"]["input"]["required"]["steps"][1]["min"], 1);

    let one = client.get("/object_info/SlowCount").json();
    assert_eq!(keys(&one), ["SlowCount"]);
    assert_eq!(one["SlowCount"], info["SlowCount"]);
    assert_eq!(client.get("/object_info/NoSuchNode").json(), json!({}));

    let features = client.get("/features").json();
    assert_eq!(features["supports_preview_metadata"], true);
    assert_eq!(features["max_upload_size"], 100 << 20);
    let stats = client.get("/system_stats").json();
    assert_eq!(stats["system"]["os"], "test");
    assert_eq!(stats["devices"], json!([]));

    let models = client.get("/models").json();
    assert!(models.as_array().unwrap().iter().any(|kind| kind == "checkpoints"), "{models}");
    assert_eq!(client.get("/models/checkpoints").json(), json!([]));
    assert_eq!(client.get("/models/no_such_folder").status, 404);
    assert_eq!(client.get("/embeddings").json(), json!([]));
    assert_eq!(client.get("/extensions").json(), json!([]));
}

#[test]
fn every_route_is_also_under_api() {
    let server = TestServer::start();
    let client = server.client();
    for path in ["/prompt", "/queue", "/history", "/object_info", "/object_info/Fail", "/features", "/system_stats"] {
        let plain = client.get(path);
        let prefixed = client.get(&format!("/api{path}"));
        assert_eq!((plain.status, prefixed.status), (200, 200), "{path}");
        assert_eq!(plain.json(), prefixed.json(), "{path}");
    }
    assert_eq!(client.get("/api/models").json(), client.get("/models").json());
    assert_eq!(client.get("/api/embeddings").status, 200);
    assert_eq!(client.get("/api/extensions").status, 200);

    let prompt_id = client.queue(&json!({"prompt": save_prompt("via api")}));
    let reply = client.post("/api/prompt", &json!({"prompt": save_prompt("also via api")}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let second = reply.json()["prompt_id"].as_str().unwrap().to_string();
    client.wait_for_history(&prompt_id);
    let entry = wait_for("the second prompt's entry", || {
        let reply = client.get(&format!("/api/history/{second}"));
        assert_eq!(reply.status, 200);
        reply.json().get(&second).cloned()
    });
    let filename = entry["outputs"]["1"]["images"][0]["filename"].as_str().unwrap();
    let file = client.get(&format!("/api/view?filename={filename}&type=output"));
    assert_eq!((file.status, file.text().as_str()), (200, "also via api"));

    for (path, body) in [
        ("/api/queue", json!({"clear": true})),
        ("/api/history", json!({"delete": [prompt_id]})),
        ("/api/interrupt", json!({})),
        ("/api/free", json!({"unload_models": true, "free_memory": true})),
    ] {
        assert_eq!(client.post(path, &body).status, 200, "{path}");
    }
    let upload = upload(&client, "/api/upload/image", "api.png", b"bytes", &[]);
    assert_eq!(upload.status, 200, "{}", upload.text());
    assert_eq!(upload.json(), json!({"name": "api.png", "subfolder": "", "type": "input"}));
    let mut socket = socket::connect(server.address, "/api/ws?clientId=x", &[]).expect("/api/ws opens");
    assert_eq!(socket.next_json()["data"]["sid"], "x");
}
