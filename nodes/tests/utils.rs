//! The utility nodes, run through the engine as a workflow would run them.

use kinograph_engine::{ApiPrompt, CancelToken, Environment, EventKind, Executor, RunOptions, RunStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn executor(output: &std::path::Path) -> Executor {
    let env = Environment { output_dir: output.to_path_buf(), ..Environment::default() };
    Executor::new(Arc::new(kinograph_nodes::registry()), env)
}

fn run(executor: &Executor, workflow: serde_json::Value, options: RunOptions) -> kinograph_engine::RunOutcome {
    let prompt = ApiPrompt::from_json(workflow, "test").unwrap();
    let graph = Arc::new(executor.validate(&prompt).unwrap_or_else(|report| panic!("{}", report.to_text())));
    tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, options))
}

#[test]
fn primitives_and_concatenate_feed_save_text() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor(output.path());
    let workflow = json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "left"}},
        "2": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "right\nside"}},
        "3": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["2", 0], "delimiter": "+"}},
        "4": {"class_type": "SaveText", "inputs": {"text": ["3", 0], "filename_prefix": "notes/out"}},
        "5": {"class_type": "PrimitiveFloat", "inputs": {"value": 2.5}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "7": {"class_type": "PrimitiveBoolean", "inputs": {"value": true}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
        "9": {"class_type": "PrimitiveInt", "inputs": {"value": -12}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}}
    });
    let outcome = run(&executor, workflow, RunOptions::default());
    assert_eq!(outcome.status, RunStatus::Success);
    assert_eq!(std::fs::read_to_string(output.path().join("notes/out_00001_.txt")).unwrap(), "left+right\nside");
    assert_eq!(
        outcome.outputs["4"]["files"],
        json!([{"filename": "out_00001_.txt", "subfolder": "notes", "type": "output"}])
    );
    assert_eq!(outcome.outputs["6"]["text"], json!(["2.5"]));
    assert_eq!(outcome.outputs["8"]["text"], json!(["true"]));
    assert_eq!(outcome.outputs["10"]["text"], json!(["-12"]));
}

#[test]
fn delay_reports_progress_and_stops_when_cancelled() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor(output.path());
    let cancel = CancelToken::new();
    let canceller = cancel.clone();
    let options = RunOptions {
        cancel: cancel.clone(),
        events: Arc::new(move |event: &kinograph_engine::Event| {
            if matches!(event.kind, EventKind::Progress { value: 3, .. }) {
                canceller.cancel();
            }
        }),
        ..RunOptions::default()
    };
    let workflow = json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "late"}},
        "2": {"class_type": "Delay", "inputs": {"value": ["1", 0], "seconds": 30.0}},
        "3": {"class_type": "SaveText", "inputs": {"text": ["2", 0], "filename_prefix": "late"}}
    });
    let started = Instant::now();
    let outcome = run(&executor, workflow, options);
    assert_eq!(outcome.status, RunStatus::Interrupted);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(std::fs::read_dir(output.path()).map_or(0, Iterator::count), 0);
}

#[test]
fn save_text_refuses_to_write_outside_the_output_folder() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor(&output.path().join("inner"));
    let workflow = json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
        "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "../escape"}}
    });
    let outcome = run(&executor, workflow, RunOptions::default());
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert!(failure.exception_message.contains("filename_prefix"), "{}", failure.exception_message);
    assert_eq!(std::fs::read_dir(output.path()).unwrap().count(), 0);
}

/// `ComfySwitchNode` evaluates only the branch its switch selects: the other branch here divides by zero
/// and would fail the run, and neither runs nor is reported when it is not selected.
#[test]
fn switch_runs_only_the_selected_branch() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor(output.path());
    let workflow = |switch: bool| {
        json!({
            "1": {"class_type": "PrimitiveFloat", "inputs": {"value": 2.5}},
            "2": {"class_type": "PrimitiveFloat", "inputs": {"value": 4.0}},
            "3": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a / 0", "values.a": ["2", 0]}},
            "4": {"class_type": "ComfySwitchNode", "inputs": {"switch": switch, "on_false": ["1", 0], "on_true": ["3", 0]}},
            "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}
        })
    };
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = started.clone();
    let options = RunOptions {
        events: Arc::new(move |event: &kinograph_engine::Event| {
            if let EventKind::Executing { node } = &event.kind {
                seen.lock().unwrap().push(node.clone());
            }
        }),
        ..RunOptions::default()
    };
    let outcome = run(&executor, workflow(false), options);
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["5"]["text"], json!(["2.5"]));
    let mut executed = outcome.executed.clone();
    executed.sort();
    assert_eq!(executed, ["1", "4", "5"], "the on_true branch (2, 3) never runs");
    let mut started = std::mem::take(&mut *started.lock().unwrap());
    started.sort();
    assert_eq!(started, ["1", "4", "5"]);

    // Switched on, the same executor runs the on_true branch, which fails; the on_false side is cached.
    let outcome = run(&executor, workflow(true), RunOptions::default());
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!((failure.node_id.as_str(), failure.node_type.as_str()), ("3", "ComfyMathExpression"));
    assert!(failure.exception_message.contains("ZeroDivisionError"), "{}", failure.exception_message);
}

/// An unconnected selected input lets the connected one through, which is then the only one evaluated.
#[test]
fn switch_with_one_input_passes_that_one() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor(output.path());
    let workflow = json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "plain prompt"}},
        "2": {"class_type": "ComfySwitchNode", "inputs": {"switch": true, "on_false": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    });
    let outcome = run(&executor, workflow, RunOptions::default());
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["3"]["text"], json!(["plain prompt"]));
}

#[test]
fn switch_inputs_are_lazy_in_object_info() {
    let info = kinograph_nodes::registry().object_info(&Environment::default());
    let inputs = &info["ComfySwitchNode"]["input"];
    assert_eq!(inputs["optional"]["on_false"], json!(["*", {"lazy": true}]));
    assert_eq!(inputs["optional"]["on_true"], json!(["*", {"lazy": true}]));
    assert_eq!(inputs["required"]["switch"], json!(["BOOLEAN", {"default": false}]));
}
