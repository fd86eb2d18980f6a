//! The queue survives `kill -9`: 20 prompts queued, the server killed while one of them runs, restarted on
//! the same state folder. The 19 others run in their order, the history holds everything that had finished
//! (and the killed prompt, recorded as interrupted), and every output file is whole.

use super::{
    ServerProcess, agent, check_output_file, demo_prompt, demo_root, get_json, output_files, post_json, wait_for,
};
use serde_json::{Value as Json, json};
use std::path::Path;
use std::time::Duration;

#[test]
fn a_server_killed_while_a_prompt_runs_restarts_with_its_queue_and_history() {
    let root = demo_root();
    let mut server = ServerProcess::start(root.path(), &[]);
    let agent = agent();
    let ids: Vec<String> = (0..20).map(|index| format!("prompt-{index:02}")).collect();
    for (index, id) in ids.iter().enumerate() {
        let body = json!({"prompt": demo_prompt(index as u64, &format!("kill/{id}")), "prompt_id": id});
        let (status, answer) = post_json(&agent, &server.url("/prompt"), &body);
        assert_eq!(status, 200, "{answer}");
    }

    let (finished_before, running) =
        wait_for("three prompts finished and a fourth running", Duration::from_mins(5), || {
            let queue = get_json(&agent, &server.url("/queue"));
            let running = queue["queue_running"][0][1].as_str()?.to_string();
            let history = get_json(&agent, &server.url("/history"));
            let finished: Vec<String> = history.as_object()?.keys().cloned().collect();
            (finished.len() >= 3 && !finished.contains(&running)).then_some((finished, running))
        });
    server.kill_hard();

    let server = ServerProcess::start(root.path(), &[]);
    let history = wait_for("all 20 prompts in the history", Duration::from_mins(10), || {
        let history = get_json(&agent, &server.url("/history"));
        (history.as_object()?.len() == ids.len()).then_some(history)
    });
    let history = history.as_object().unwrap();
    let order: Vec<&String> = history.keys().collect();
    assert_eq!(order, ids.iter().collect::<Vec<_>>(), "the history holds every prompt once, in queue order");
    assert_eq!(get_json(&agent, &server.url("/queue")), json!({"queue_running": [], "queue_pending": []}));

    let output = root.path().join("output");
    let mut interrupted = Vec::new();
    for (id, entry) in history {
        let status = &entry["status"];
        let last_message = status["messages"].as_array().and_then(|m| m.last()).map(|m| m[0].clone());
        if status["status_str"] == "success" {
            let files = output_files(&output, entry);
            assert_eq!(files.len(), 10, "{id}: nine frames and a video: {entry}");
            for file in files {
                check_output_file(&file);
            }
        } else {
            assert_eq!(last_message, Some(Json::from("execution_interrupted")), "{id}: {entry}");
            interrupted.push(id.clone());
        }
    }
    println!(
        "killed while {running} ran, with {} finished; after the restart the history holds all {}, interrupted: {interrupted:?}",
        finished_before.len(),
        history.len()
    );
    // The prompt that ran at the kill is the only one that did not finish (unless it finished just before).
    assert!(interrupted.iter().all(|id| *id == running), "interrupted {interrupted:?}, running at the kill {running}");
    assert!(finished_before.iter().all(|id| history[id]["status"]["status_str"] == "success"));

    // No file in the output folder is damaged: the killed prompt's half-written files never took a final name.
    check_every_file(&output.join("kill"));
}

fn check_every_file(folder: &Path) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            check_every_file(&path);
        } else if !(name.starts_with('.') && name.ends_with(".partial")) {
            check_output_file(&path);
        }
    }
}
