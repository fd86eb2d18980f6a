//! Many machines: a front end whose prompts run on remote workers over a real NATS JetStream server
//! (started by each test on a free loopback port), with clients sending prompts as ComfyUI's websocket
//! client does. Every prompt completes exactly once, its messages reach its client, a dead worker's prompt
//! runs on another worker, and a restarted front end loses nothing.

use crate::support::nats::{NatsServer, RemoteWorker};
use crate::support::socket::{Frame, connect_as, is_finished};
use crate::support::{Options, TestServer, slow_prompt};
use kinograph_server::queue::QueueConfig;
use kinograph_server::queue::jetstream::JetStreamConfig;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// A front end whose prompts go to JetStream workers.
fn front_end(config: &JetStreamConfig) -> TestServer {
    TestServer::start_with(Options { queue: QueueConfig::JetStream(config.clone()), ..Options::default() })
}

/// How many messages of each type each prompt sent, from the frames of one socket.
fn messages_by_prompt(frames: &[Frame]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for message in frames.iter().filter_map(Frame::json) {
        let (Some(kind), Some(prompt_id)) = (message["type"].as_str(), message["data"]["prompt_id"].as_str()) else {
            continue;
        };
        let kind = if is_finished(message, prompt_id) { "finished" } else { kind };
        *counts.entry(prompt_id.to_string()).or_default().entry(kind.to_string()).or_default() += 1;
    }
    counts
}

/// The status of the history entry of `prompt_id` in a `/history` body.
fn status_of(history: &Json, prompt_id: &str) -> String {
    history[prompt_id]["status"]["status_str"].as_str().unwrap_or("missing").to_string()
}

#[test]
fn ten_websocket_prompts_run_once_each_on_two_workers() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let _workers = [RemoteWorker::named(&nats.config(), "left"), RemoteWorker::named(&nats.config(), "right")];
    let client = server.client();
    let mut socket = connect_as(server.address, "many");
    let ids: Vec<String> = (0..10).map(|index| format!("many-machines-{index}")).collect();
    for (index, prompt_id) in ids.iter().enumerate() {
        let prompt = slow_prompt(&format!("prompt {index}"), 3, 20);
        let queued = client.queue(&json!({"prompt": prompt, "client_id": "many", "prompt_id": prompt_id}));
        assert_eq!(&queued, prompt_id);
    }

    let mut frames = Vec::new();
    let mut finished = 0;
    while finished < ids.len() {
        let frame = socket.next();
        if frame.json().is_some_and(|message| ids.iter().any(|id| is_finished(message, id))) {
            finished += 1;
        }
        frames.push(frame);
    }
    // Anything late (a second run) would come now.
    frames.extend(std::iter::from_fn(|| socket.try_next(Duration::from_millis(500))));
    let counts = messages_by_prompt(&frames);
    for prompt_id in &ids {
        let sent = &counts[prompt_id];
        for (kind, times) in [("execution_start", 1), ("execution_success", 1), ("finished", 1), ("executed", 1)] {
            assert_eq!(sent.get(kind), Some(&times), "prompt {prompt_id}'s {kind} messages: {sent:?}");
        }
        assert!(sent.get("progress").is_some_and(|&progress| progress >= 3), "{prompt_id}: {sent:?}");
    }
    assert!(frames.iter().any(|frame| matches!(frame, Frame::Binary(_))), "preview frames came through");

    // Each worker numbers its files from one, so each worker's files are under its own subfolder, in the
    // `executed` messages and in the history alike, and `/view` serves them from the front end's folder.
    let executed: BTreeMap<String, Json> = frames
        .iter()
        .filter_map(Frame::json)
        .filter(|message| message["type"] == "executed")
        .map(|message| (message["data"]["prompt_id"].as_str().unwrap().to_string(), message["data"]["output"].clone()))
        .collect();
    let history = client.get("/history").json();
    assert_eq!(history.as_object().map(serde_json::Map::len), Some(10), "{history}");
    let mut served = std::collections::BTreeSet::new();
    for (index, prompt_id) in ids.iter().enumerate() {
        assert_eq!(status_of(&history, prompt_id), "success");
        let file = &history[prompt_id]["outputs"]["2"]["images"][0];
        assert_eq!(file, &executed[prompt_id]["images"][0], "the history names the file the message named");
        let (name, subfolder) = (file["filename"].as_str().unwrap(), file["subfolder"].as_str().unwrap());
        assert!(["left", "right"].contains(&subfolder), "{file}");
        let reply = client.get(&format!("/view?filename={name}&subfolder={subfolder}&type=output"));
        assert_eq!(reply.status, 200, "{file}");
        let text = String::from_utf8(reply.body.clone()).unwrap();
        assert!(text.contains(&format!("prompt {index}")), "{file} holds prompt {index}'s text: {text}");
        assert!(served.insert(format!("{subfolder}/{name}")), "two prompts share {subfolder}/{name}");
    }
    assert_eq!(client.queue_ids(), (vec![], vec![]));
    let bucket = nats.object_names(kinograph_server::queue::jetstream::outputs::OUTPUTS_BUCKET);
    assert_eq!(bucket, Vec::<String>::new(), "copied files leave the object store");
}

#[test]
fn a_dead_workers_prompt_runs_on_another_worker() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let first = RemoteWorker::start(&nats.config());
    let client = server.client();
    let mut socket = connect_as(server.address, "survivor");
    let prompt_id =
        client.queue(&json!({"prompt": slow_prompt("long", 30, 50), "client_id": "survivor", "prompt_id": "long-one"}));
    client.wait_until_running(&prompt_id);
    first.kill();
    let _second = RemoteWorker::start(&nats.config());

    let entry = client.wait_for_history(&prompt_id);
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    socket.until_finished(&prompt_id);
    let late: Vec<Frame> = std::iter::from_fn(|| socket.try_next(Duration::from_millis(500))).collect();
    assert!(!late.iter().filter_map(Frame::json).any(|message| is_finished(message, &prompt_id)), "finished once");
    assert_eq!(client.get("/history").json().as_object().map(serde_json::Map::len), Some(1));
    assert_eq!(client.queue_ids(), (vec![], vec![]));
}

#[test]
fn a_restarted_front_end_loses_nothing() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    // This worker writes into the front end's own output folder, as on one machine or with a shared mount.
    let _worker = RemoteWorker::sharing(&nats.config(), &server.output_dir());
    let client = server.client();
    let ids: Vec<String> =
        (0..4).map(|index| client.queue(&json!({"prompt": slow_prompt(&format!("r{index}"), 5, 40)}))).collect();
    client.wait_until_running(&ids[0]);
    // The worker goes on while the front end is away; what it finished meanwhile is read on restart.
    let server = server.restart();
    let client = server.client();
    for prompt_id in &ids {
        let entry = client.wait_for_history(prompt_id);
        assert_eq!(entry["status"]["status_str"], "success", "{entry}");
        let file = &entry["outputs"]["2"]["images"][0];
        assert_eq!(file["subfolder"], "", "a shared folder keeps the names the nodes gave");
        assert!(server.output_dir().join(file["filename"].as_str().unwrap()).is_file(), "{file}");
    }
    assert_eq!(client.get("/history").json().as_object().map(serde_json::Map::len), Some(4));
    assert_eq!(client.queue_ids(), (vec![], vec![]));
}

#[test]
fn a_prompt_every_worker_died_on_is_recorded_as_failed_with_the_reason() {
    let Some(nats) = NatsServer::start() else { return };
    let config = JetStreamConfig { max_deliver: 1, ..nats.config() };
    let server = front_end(&config);
    let worker = RemoteWorker::start(&config);
    let client = server.client();
    let mut socket = connect_as(server.address, "unlucky");
    let prompt_id =
        client.queue(&json!({"prompt": slow_prompt("doomed", 40, 50), "client_id": "unlucky", "prompt_id": "doomed"}));
    client.wait_until_running(&prompt_id);
    worker.kill();
    // The stream gives up on it when a worker asks for work after the ack wait (one delivery allowed), and
    // the front end records why; the worker asking never runs it.
    let _next = RemoteWorker::start(&config);
    let entry = client.wait_for_history(&prompt_id);
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
    let messages = entry["status"]["messages"].as_array().unwrap();
    let error = messages.iter().find(|m| m[0] == "execution_error").expect("an execution_error");
    assert_eq!(error[1]["exception_type"], "undelivered", "{error}");
    assert!(error[1]["exception_message"].as_str().unwrap().contains("handed out 1 times"), "{error}");
    socket.until_finished(&prompt_id);
    assert_eq!(client.queue_ids(), (vec![], vec![]));
    std::thread::sleep(Duration::from_secs(3));
    let history = client.get("/history").json();
    assert_eq!(status_of(&history, &prompt_id), "error", "it did not run again");
    assert_eq!(history.as_object().map(serde_json::Map::len), Some(1));
}

#[test]
fn a_nats_server_with_a_login_takes_it_in_the_url_and_a_wrong_one_is_refused_without_showing_it() {
    let Some(nats) = NatsServer::start_with_login("kino", "s3cret-pass") else { return };
    // With the login in the URL, prompts run on a worker as without one.
    let server = front_end(&nats.config());
    let _worker = RemoteWorker::start(&nats.config());
    let client = server.client();
    let prompt_id = client.queue(&json!({"prompt": slow_prompt("logged-in", 2, 10), "prompt_id": "logged-in"}));
    assert_eq!(client.wait_for_history(&prompt_id)["status"]["status_str"], "success");

    // A wrong password: the front end does not start, and says where it could not connect, password hidden.
    let wrong = JetStreamConfig::new(&nats.url.replace("s3cret-pass", "wrong-pass"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let workspace = crate::support::Workspace::new();
    let options =
        crate::support::Options { queue: QueueConfig::JetStream(wrong), ..crate::support::Options::default() };
    let Err(error) = crate::support::bind(&runtime, &workspace, &options) else { panic!("a wrong password was taken") };
    let message = error.to_string();
    assert!(message.contains("cannot connect to NATS at nats://kino:***@127.0.0.1"), "{message}");
    assert!(!message.contains("wrong-pass") && !message.contains("s3cret"), "{message}");
}

#[test]
fn system_stats_lists_each_worker_with_its_device_and_the_prompt_it_runs() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let _first = RemoteWorker::named(&nats.config(), "gpu-box-1");
    let _second = RemoteWorker::named(&nats.config(), "gpu box 2");
    let client = server.client();
    let workers = |client: &crate::support::Client| client.get("/system_stats").json()["workers"].clone();
    let listed = crate::support::wait_for("both workers in /system_stats", || {
        let workers = workers(&client);
        (workers.as_array().map(Vec::len) == Some(2)).then_some(workers)
    });
    let names: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, ["gpu-box-1", "gpu_box_2"], "names are made plain");
    assert!(listed.as_array().unwrap().iter().all(|w| w["device"] == "cpu" && w["last_seen"].as_u64().is_some()));

    let prompt_id = client.queue(&json!({"prompt": slow_prompt("watched", 80, 50), "prompt_id": "watched"}));
    crate::support::wait_for("a worker to say it runs the prompt", || {
        workers(&client).as_array()?.iter().any(|w| w["current_prompt"] == prompt_id.as_str()).then_some(())
    });
    client.wait_for_history(&prompt_id);
}

#[test]
fn a_stopped_worker_hands_its_prompt_back_at_once() {
    let Some(nats) = NatsServer::start() else { return };
    // A dead worker's prompt would wait this long; a stopped worker's must not.
    let config = JetStreamConfig { ack_wait: Duration::from_secs(30), ..nats.config() };
    let server = front_end(&config);
    let first = RemoteWorker::start(&config);
    let client = server.client();
    let prompt_id = client.queue(&json!({"prompt": slow_prompt("handed back", 60, 50), "prompt_id": "handed-back"}));
    client.wait_until_running(&prompt_id);
    let stopped = std::time::Instant::now();
    first.stop();
    let _second = RemoteWorker::start(&config);
    let entry = client.wait_for_history(&prompt_id);
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    assert!(stopped.elapsed() < Duration::from_secs(20), "handed on after {:?}", stopped.elapsed());
    assert_eq!(client.get("/history").json().as_object().map(serde_json::Map::len), Some(1));
}

#[test]
fn a_front_end_whose_nats_store_was_lost_queues_its_prompts_again() {
    let Some(lost) = NatsServer::start() else { return };
    let server = front_end(&lost.config());
    let client = server.client();
    // No worker yet: the prompts wait in the stream, and in the front end's database.
    let ids: Vec<String> =
        (0..3).map(|index| client.queue(&json!({"prompt": slow_prompt(&format!("kept {index}"), 2, 10)}))).collect();
    drop(lost);
    let Some(fresh) = NatsServer::start() else { return };
    let options = Options { queue: QueueConfig::JetStream(fresh.config()), ..Options::default() };
    let server = server.restart_with(options);
    let _worker = RemoteWorker::start(&fresh.config());
    let client = server.client();
    for prompt_id in &ids {
        let entry = client.wait_for_history(prompt_id);
        assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(client.get("/history").json().as_object().map(serde_json::Map::len), Some(3), "each ran once");
    assert_eq!(client.queue_ids(), (vec![], vec![]));
}

#[test]
fn a_prompt_sent_to_the_front_runs_before_those_waiting_on_any_worker() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let client = server.client();
    // Nothing runs until a worker comes: three wait, then one is sent to the front.
    let waiting: Vec<String> =
        (0..3).map(|index| client.queue(&json!({"prompt": slow_prompt(&format!("w{index}"), 1, 10)}))).collect();
    let urgent = client.queue(&json!({"prompt": slow_prompt("urgent", 1, 10), "front": true}));
    let (_, pending) = client.queue_ids();
    assert_eq!(pending.first(), Some(&urgent), "/queue shows it first");
    let _worker = RemoteWorker::start(&nats.config());
    let started_at = |prompt_id: &str| {
        let entry = client.wait_for_history(prompt_id);
        let messages = entry["status"]["messages"].as_array().unwrap().clone();
        let start = messages.iter().find(|m| m[0] == "execution_start").expect("an execution_start");
        start[1]["timestamp"].as_u64().unwrap()
    };
    let urgent_start = started_at(&urgent);
    for prompt_id in &waiting {
        assert!(started_at(prompt_id) >= urgent_start, "{prompt_id} ran before the prompt sent to the front");
    }
}

#[test]
fn a_worker_numbering_its_files_from_one_again_never_overwrites_an_earlier_output() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let client = server.client();
    let view = |entry: &Json| {
        let file = &entry["outputs"]["2"]["images"][0];
        let (name, subfolder) = (file["filename"].as_str().unwrap(), file["subfolder"].as_str().unwrap());
        let reply = client.get(&format!("/view?filename={}&subfolder={subfolder}", crate::support::encode(name)));
        assert_eq!(reply.status, 200, "{file}");
        (name.to_string(), String::from_utf8(reply.body).unwrap())
    };
    // The same name, each time with an empty output folder: both number their file 00001.
    let first = RemoteWorker::named(&nats.config(), "again");
    let one = client.queue(&json!({"prompt": slow_prompt("first text", 1, 1)}));
    let (first_name, first_text) = view(&client.wait_for_history(&one));
    first.stop();
    let _second = RemoteWorker::named(&nats.config(), "again");
    let two = client.queue(&json!({"prompt": slow_prompt("second text", 1, 1)}));
    let (second_name, second_text) = view(&client.wait_for_history(&two));
    assert_ne!(first_name, second_name, "the second file got a name of its own");
    assert!(first_text.contains("first text") && second_text.contains("second text"), "{first_text} / {second_text}");
    let (_, again) = view(&client.wait_for_history(&one));
    assert!(again.contains("first text"), "the first output is as it was: {again}");
}

#[test]
fn prompts_deleted_or_cleared_from_the_queue_never_reach_a_worker() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let client = server.client();
    let prompt = |label: &str| json!({"prompt": slow_prompt(label, 1, 10)});
    // No worker yet: what waits can be cleared, or deleted one by one, before any worker sees it.
    let cleared: Vec<String> = (0..3).map(|index| client.queue(&prompt(&format!("cleared {index}")))).collect();
    let reply = client.post("/queue", &json!({"clear": true}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let deleted = client.queue(&prompt("deleted"));
    let kept = client.queue(&prompt("kept"));
    let urgent_deleted = client.queue(&json!({"prompt": slow_prompt("deleted too", 1, 10), "front": true}));
    let reply = client.post("/queue", &json!({"delete": [deleted, urgent_deleted]}));
    assert_eq!(reply.status, 200, "{}", reply.text());

    let _worker = RemoteWorker::start(&nats.config());
    assert_eq!(client.wait_for_history(&kept)["status"]["status_str"], "success");
    std::thread::sleep(Duration::from_secs(2));
    let history = client.get("/history").json();
    assert_eq!(history.as_object().map(serde_json::Map::len), Some(1), "only the kept prompt ran: {history}");
    assert!(cleared.iter().all(|id| history.get(id).is_none()), "{history}");
    assert_eq!(client.queue_ids(), (vec![], vec![]));
}

#[test]
fn an_interrupt_by_id_reaches_the_worker_running_that_prompt_only() {
    let Some(nats) = NatsServer::start() else { return };
    let server = front_end(&nats.config());
    let _workers = [RemoteWorker::start(&nats.config()), RemoteWorker::start(&nats.config())];
    let client = server.client();
    let mut socket = connect_as(server.address, "stopper");
    let long = |label: &str| json!({"prompt": slow_prompt(label, 400, 50), "client_id": "stopper"});
    let stopped = client.queue(&long("stopped"));
    let spared = client.queue(&long("spared"));
    client.wait_until_running(&stopped);
    client.wait_until_running(&spared);
    let asked = std::time::Instant::now();
    assert_eq!(client.post("/interrupt", &json!({"prompt_id": stopped})).status, 200);
    let entry = client.wait_for_history(&stopped);
    assert!(asked.elapsed() < Duration::from_secs(10), "stopped after {:?}", asked.elapsed());
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
    let kinds: Vec<&str> =
        entry["status"]["messages"].as_array().unwrap().iter().filter_map(|m| m[0].as_str()).collect();
    assert!(kinds.contains(&"execution_interrupted"), "{kinds:?}");
    socket.until_finished(&stopped);
    // The other prompt runs on.
    let (running, _) = client.queue_ids();
    assert_eq!(running, std::slice::from_ref(&spared));
    assert_eq!(client.post("/interrupt", &json!({})).status, 200, "without an id: every running prompt");
    let entry = client.wait_for_history(&spared);
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
}
