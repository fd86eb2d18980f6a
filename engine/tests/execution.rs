//! Execution: partial re-execution, cache sharing and bounds, the disk tier, concurrency,
//! cancellation and runtime errors.

mod common;

use common::{Log, executor, graph, run, run_with, strings};
use kinograph_engine::{Cache, CancelToken, DiskCache, EventKind, RunOptions, RunStatus};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sum_graph(left: i64, right: i64) -> serde_json::Value {
    json!({
        "1": {"class_type": "Number", "inputs": {"value": left}},
        "2": {"class_type": "Number", "inputs": {"value": right}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Number", "inputs": {"value": 7}},
        "5": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["4", 0]}},
        "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}},
        "7": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    })
}

#[test]
fn runs_every_needed_node_once_and_shows_outputs() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let outcome = run(&executor, &graph(&executor, sum_graph(1, 2)));
    assert_eq!(outcome.status, RunStatus::Success);
    assert_eq!(log.take(), strings(&["1", "2", "3", "4", "5", "6", "7"]));
    assert_eq!(outcome.outputs["6"], json!({"text": ["10"]}));
    assert_eq!(outcome.outputs["7"], json!({"text": ["7"]}));
}

#[test]
fn changing_one_constant_reruns_exactly_that_node_and_its_descendants() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    run(&executor, &graph(&executor, sum_graph(1, 2)));
    log.take();

    let again = run(&executor, &graph(&executor, sum_graph(1, 2)));
    assert!(log.take().is_empty(), "an identical prompt executes nothing");
    assert_eq!(again.outputs["6"], json!({"text": ["10"]}), "cached output nodes still report their UI");
    assert_eq!(again.cached.len(), 7);

    let changed = run(&executor, &graph(&executor, sum_graph(1, 5)));
    assert_eq!(log.take(), strings(&["2", "3", "5", "6"]), "node 2 changed: it and its descendants re-run");
    assert_eq!(changed.outputs["6"], json!({"text": ["13"]}));
    assert_eq!(strings(&changed.cached.iter().map(String::as_str).collect::<Vec<_>>()), strings(&["1", "4", "7"]));
}

#[test]
fn identical_subgraphs_under_different_ids_share_cache_entries() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    run(&executor, &graph(&executor, sum_graph(1, 2)));
    log.take();
    // The same computation, renumbered, plus a new output node.
    let renumbered = json!({
        "a": {"class_type": "Number", "inputs": {"value": 1}},
        "b": {"class_type": "Number", "inputs": {"value": 2}},
        "c": {"class_type": "Add", "inputs": {"b": ["b", 0], "a": ["a", 0]}},
        "d": {"class_type": "Show", "inputs": {"value": ["c", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, renumbered));
    assert_eq!(
        log.take(),
        strings(&["d"]),
        "only the new output node runs; a, b, c hit entries made under ids 1, 2, 3"
    );
    assert_eq!(outcome.outputs["d"], json!({"text": ["3"]}));
}

#[test]
fn two_copies_of_a_subgraph_in_one_prompt_run_once() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let twice = json!({
        "1": {"class_type": "Number", "inputs": {"value": 4}},
        "2": {"class_type": "Number", "inputs": {"value": 4}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, twice.clone()));
    let first = log.take();
    assert_eq!(first.len(), 3, "nodes 1 and 2 compute the same thing: one of them runs: {first:?}");
    assert!(first.contains(&"3".to_string()) && first.contains(&"4".to_string()));
    assert_eq!(outcome.outputs["3"], outcome.outputs["4"]);
    run(&executor, &graph(&executor, twice));
    assert!(log.take().is_empty());
}

#[test]
fn the_memory_bound_evicts_least_recently_used_entries() {
    let log = Log::default();
    // Room for one 4 MB sample buffer, not two.
    let cache = Arc::new(Cache::new(6 << 20));
    let executor = executor(&log, cache.clone());
    let samples = |value: f64| {
        json!({
            "1": {"class_type": "MakeSamples", "inputs": {"value": value, "count": 1 << 20}},
            "2": {"class_type": "SumSamples", "inputs": {"samples": ["1", 0]}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
        })
    };
    run(&executor, &graph(&executor, samples(1.0)));
    run(&executor, &graph(&executor, samples(2.0)));
    assert!(cache.memory().used_bytes() <= 6 << 20, "used {} bytes", cache.memory().used_bytes());
    log.take();
    // New consumers of each buffer: the recent buffer is served from memory, the older one was evicted.
    let show = |value: f64| {
        json!({
            "1": {"class_type": "MakeSamples", "inputs": {"value": value, "count": 1 << 20}},
            "4": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
        })
    };
    run(&executor, &graph(&executor, show(2.0)));
    assert_eq!(log.take(), strings(&["4"]), "the most recent buffer is still cached");
    run(&executor, &graph(&executor, show(1.0)));
    assert_eq!(log.take(), strings(&["1", "4"]), "the older 4 MB buffer was evicted");
}

#[test]
fn the_disk_tier_survives_a_new_executor_and_rejects_corrupt_entries() {
    let folder = tempfile::tempdir().unwrap();
    let workflow = json!({
        "1": {"class_type": "MakeSamples", "inputs": {"value": 0.25, "count": 1000}},
        "2": {"class_type": "SumSamples", "inputs": {"samples": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    let fresh_executor = |log: &Log| {
        let disk = DiskCache::open(folder.path(), "test").unwrap();
        executor(log, Arc::new(Cache::default().with_disk(disk)))
    };

    let log = Log::default();
    let first = fresh_executor(&log);
    run(&first, &graph(&first, workflow.clone()));
    assert_eq!(log.take(), strings(&["1", "2", "3"]));

    // A new executor with an empty memory tier, as a new process has.
    let second = fresh_executor(&log);
    let outcome = run(&second, &graph(&second, workflow.clone()));
    assert_eq!(log.take(), strings(&["3"]), "only the output node re-runs; 1 and 2 come from disk");
    assert_eq!(outcome.outputs["3"], json!({"text": ["250.0"]}));

    // Corrupt the entry of node 2 (one flipped byte in its data) and truncate the one of node 1.
    let entries: Vec<std::path::PathBuf> = walk(folder.path());
    assert_eq!(entries.len(), 2, "{entries:?}");
    for path in &entries {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(path, &bytes).unwrap();
    }
    let third = fresh_executor(&log);
    let outcome = run(&third, &graph(&third, workflow.clone()));
    assert_eq!(log.take(), strings(&["1", "2", "3"]), "corrupt entries are never trusted");
    assert_eq!(outcome.outputs["3"], json!({"text": ["250.0"]}));

    for path in walk(folder.path()) {
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    }
    let fourth = fresh_executor(&log);
    run(&fourth, &graph(&fourth, workflow.clone()));
    assert_eq!(log.take(), strings(&["1", "2", "3"]), "truncated entries are never trusted");
    let fifth = fresh_executor(&log);
    run(&fifth, &graph(&fifth, workflow));
    assert_eq!(log.take(), strings(&["3"]), "rebuilt entries are valid again");
}

fn walk(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn independent_slow_branches_run_concurrently() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default())).with_max_parallel(2);
    let branches = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "ms": 500}},
        "3": {"class_type": "Number", "inputs": {"value": 2}},
        "4": {"class_type": "Sleep", "inputs": {"value": ["3", 0], "ms": 500}},
        "5": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["4", 0]}},
        "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    });
    let started = Instant::now();
    let outcome = run(&executor, &graph(&executor, branches));
    let elapsed = started.elapsed();
    assert_eq!(outcome.status, RunStatus::Success);
    assert!(elapsed < Duration::from_millis(850), "two 500 ms branches took {elapsed:?}; serial would be 1000 ms");
}

#[test]
fn cancellation_stops_within_one_step_and_reports_interrupted() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let slow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "ms": 20000}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    let cancel = CancelToken::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let canceller = cancel.clone();
    let options = RunOptions {
        cancel: cancel.clone(),
        events: Arc::new(move |event: &kinograph_engine::Event| {
            // Cancel as soon as the slow node reports progress.
            if matches!(&event.kind, EventKind::Progress { node, value: 2, .. } if node == "2") {
                canceller.cancel();
            }
            recorder.lock().unwrap().push(event.kind.clone());
        }),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let outcome = run_with(&executor, &graph(&executor, slow), options);
    assert_eq!(outcome.status, RunStatus::Interrupted);
    assert!(started.elapsed() < Duration::from_secs(2), "stopped after {:?}", started.elapsed());
    assert_eq!(log.take(), strings(&["1", "2"]), "the output node never started");
    let events = events.lock().unwrap();
    assert!(matches!(
        events.iter().rev().nth(1),
        Some(EventKind::ExecutionInterrupted { node_id: Some(node), .. }) if node == "2"
    ));
    assert_eq!(events.last(), Some(&EventKind::Finished));
}

#[test]
fn a_runtime_error_stops_the_prompt_and_names_node_class_message_and_inputs() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default())).with_max_parallel(1);
    let failing = json!({
        "1": {"class_type": "Number", "inputs": {"value": 42}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "ms": 5000}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let options = RunOptions {
        events: Arc::new(move |event: &kinograph_engine::Event| recorder.lock().unwrap().push(event.to_comfy_json())),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let outcome = run_with(&executor, &graph(&executor, failing), options);
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(started.elapsed() < Duration::from_secs(3), "the failure stopped the slow branch");
    let failure = outcome.failure.unwrap();
    assert_eq!((failure.node_id.as_str(), failure.node_type.as_str()), ("2", "Fail"));
    assert_eq!(failure.exception_message, "cannot handle 42");
    assert_eq!(failure.current_inputs["value"], json!([42]));
    let events = events.lock().unwrap();
    let error = events.iter().find(|e| e["type"] == "execution_error").expect("an execution_error event");
    assert_eq!(error["data"]["node_id"], "2");
    assert_eq!(error["data"]["node_type"], "Fail");
    assert!(!events.iter().any(|e| e["type"] == "execution_success"));
    assert!(!log.take().contains(&"3".to_string()), "nothing downstream of the failure ran");
}

/// A panic in a node's own code while the run is planned (here its `fingerprint`) fails that node as a
/// panic in `execute` does: an error naming the node, its class and the panic, nothing run, and the run
/// ends with `execution_error` then `executing` null.
#[test]
fn a_panic_in_a_fingerprint_fails_that_node() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "PanicInFingerprint", "inputs": {"value": 9}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let options = RunOptions {
        events: Arc::new(move |event: &kinograph_engine::Event| recorder.lock().unwrap().push(event.to_comfy_json())),
        ..RunOptions::default()
    };
    let outcome = run_with(&executor, &graph(&executor, workflow), options);
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.expect("a failure");
    assert_eq!((failure.node_id.as_str(), failure.node_type.as_str()), ("3", "PanicInFingerprint"));
    assert!(failure.exception_message.contains("panicked"), "{}", failure.exception_message);
    assert!(failure.exception_message.contains("fingerprint exploded on 9"), "{}", failure.exception_message);
    assert_eq!(failure.current_inputs["value"], json!([9]));
    assert!(log.take().is_empty(), "nothing ran");
    let events = events.lock().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["execution_start", "execution_error", "executing"]);
    assert_eq!(events[1]["data"]["node_id"], "3");
    assert_eq!(events[2]["data"]["node"], json!(null));

    // The same executor still runs a prompt without the node.
    let fine = json!({
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    });
    assert_eq!(run(&executor, &graph(&executor, fine)).status, RunStatus::Success);
}

#[test]
fn events_follow_comfyui_order() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let options = RunOptions {
        prompt_id: "p1".into(),
        events: Arc::new(move |event: &kinograph_engine::Event| recorder.lock().unwrap().push(event.to_comfy_json())),
        ..RunOptions::default()
    };
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "ms": 20}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    run_with(&executor, &graph(&executor, workflow), options);
    let events = events.lock().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"execution_start"));
    assert_eq!(types[1], "execution_cached");
    assert_eq!(&types[types.len() - 2..], &["execution_success", "executing"]);
    assert_eq!(events.last().unwrap()["data"], json!({"node": null, "prompt_id": "p1"}));
    let progress: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "progress").collect();
    assert_eq!(progress.len(), 4);
    assert_eq!(progress[3]["data"], json!({"value": 4, "max": 4, "prompt_id": "p1", "node": "2"}));
    let executed = events.iter().find(|e| e["type"] == "executed").unwrap();
    assert_eq!(executed["data"]["output"], json!({"text": ["3"]}));
    assert!(events.iter().all(|e| e["data"]["prompt_id"] == "p1"));
}

#[test]
fn an_output_of_the_wrong_type_is_a_runtime_error_naming_the_output() {
    let log = Log::default();
    let executor = executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Liar", "inputs": {}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!(failure.node_id, "1");
    assert_eq!(failure.exception_message, "output 0 'number' is declared INT but the node returned a STRING value");
}

#[test]
fn a_build_without_a_decoder_leaves_disk_entries_alone() {
    let folder = tempfile::tempdir().unwrap();
    let workflow = json!({
        "1": {"class_type": "MakeSamples", "inputs": {"value": 1.0, "count": 8}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    });
    let log = Log::default();
    let with_decoder =
        executor(&log, Arc::new(Cache::default().with_disk(DiskCache::open(folder.path(), "t").unwrap())));
    run(&with_decoder, &graph(&with_decoder, workflow.clone()));
    assert_eq!(walk(folder.path()).len(), 1);

    let mut registry = kinograph_engine::Registry::new();
    registry.register(common::MakeSamples(log.clone())).unwrap();
    registry.register(common::Show(log.clone())).unwrap();
    let cache = Arc::new(Cache::default().with_disk(DiskCache::open(folder.path(), "t").unwrap()));
    let without =
        kinograph_engine::Executor::new(Arc::new(registry), kinograph_engine::Environment::default()).with_cache(cache);
    log.take();
    let outcome = run(&without, &graph(&without, workflow));
    assert_eq!(outcome.status, RunStatus::Success);
    assert_eq!(log.take(), strings(&["1", "2"]), "the entry cannot be read here, so the node runs");
    assert_eq!(walk(folder.path()).len(), 1, "but the entry is kept for builds that can read it");
}
