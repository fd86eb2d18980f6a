//! Lazy inputs: a node evaluates only the lazy links its `check_lazy_status` asks for, and nodes that feed
//! only unasked links never run, emit nothing and are not cached.

mod common;

use common::{Log, prompt, registry, run, run_with, strings};
use kinograph_engine::{
    Cache, CancelToken, Environment, Event, EventKind, ExecutionContext, Executor, Graph, InputSpec, Node, NodeError,
    NodeInputs, NodeOutput, NodeSchema, RunOptions, RunStatus, Value,
};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// `Choose`: `on_true` when `flag` is set, else `on_false`; both lazy. `after` (optional, not lazy) only
/// orders it after another node.
struct Choose(Log);
impl Node for Choose {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Choose")
            .input(InputSpec::boolean("flag", false))
            .input(InputSpec::socket("on_false", "*").optional().lazy())
            .input(InputSpec::socket("on_true", "*").optional().lazy())
            .input(InputSpec::socket("after", "*").optional())
            .output("*", "chosen")
    }
    fn check_lazy_status(&self, inputs: &NodeInputs, unevaluated: &[&str]) -> Result<Vec<String>, NodeError> {
        let wanted = if inputs.boolean("flag")? { "on_true" } else { "on_false" };
        Ok(if unevaluated.contains(&wanted) { vec![wanted.to_string()] } else { Vec::new() })
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let wanted = if inputs.boolean("flag")? { "on_true" } else { "on_false" };
        let other = if wanted == "on_true" { "on_false" } else { "on_true" };
        if inputs.get(other).is_some() {
            return Err(NodeError::input(other, "was evaluated though not asked for"));
        }
        let chosen = inputs.get(wanted).cloned().ok_or_else(|| NodeError::input(wanted, "missing"))?;
        Ok(NodeOutput::new(vec![chosen]))
    }
}

/// `Fallback`: `primary` unless it is 0, then `backup`. It asks for `primary` first and, in a second
/// round, for `backup` only if `primary` is 0. Records what each check saw as unevaluated.
struct Fallback(Log, Arc<Mutex<Vec<Vec<String>>>>);
impl Node for Fallback {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Fallback")
            .input(InputSpec::socket("primary", "INT").lazy())
            .input(InputSpec::socket("backup", "INT").lazy())
            .output("INT", "value")
    }
    fn check_lazy_status(&self, inputs: &NodeInputs, unevaluated: &[&str]) -> Result<Vec<String>, NodeError> {
        self.1.lock().unwrap().push(unevaluated.iter().map(|name| (*name).to_string()).collect());
        Ok(match inputs.optional_int("primary")? {
            None => vec!["primary".into()],
            Some(0) => vec!["backup".into()],
            Some(_) => Vec::new(),
        })
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let primary = inputs.int_wide("primary")?;
        let value = if primary == 0 { inputs.int_wide("backup")? } else { primary };
        Ok(NodeOutput::new(vec![Value::Int(value)]))
    }
}

/// `LazySum`: `a + b` over lazy inputs, with the default check (every linked lazy input is needed); an
/// unconnected one counts as 0.
struct LazySum(Log);
impl Node for LazySum {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LazySum")
            .input(InputSpec::socket("a", "INT").optional().lazy())
            .input(InputSpec::socket("b", "INT").optional().lazy())
            .output("INT", "sum")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let a = inputs.optional_int("a")?.unwrap_or(0);
        let b = inputs.optional_int("b")?.unwrap_or(0);
        Ok(NodeOutput::new(vec![Value::Int(i128::from(a + b))]))
    }
}

/// `PanicInCheck`: its check panics.
struct PanicInCheck(Log);
impl Node for PanicInCheck {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PanicInCheck").input(InputSpec::socket("value", "*").lazy()).output("*", "value")
    }
    fn check_lazy_status(&self, _: &NodeInputs, _: &[&str]) -> Result<Vec<String>, NodeError> {
        panic!("the check exploded")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![inputs.get("value").cloned().unwrap_or(Value::Int(0))]))
    }
}

/// `AskForNothingThere`: its check asks for an input that does not exist.
struct AskForNothingThere(Log);
impl Node for AskForNothingThere {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("AskForNothingThere").input(InputSpec::socket("value", "*").lazy()).output("*", "value")
    }
    fn check_lazy_status(&self, _: &NodeInputs, _: &[&str]) -> Result<Vec<String>, NodeError> {
        Ok(vec!["valeu".into()])
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![inputs.get("value").cloned().unwrap_or(Value::Int(0))]))
    }
}

type Checks = Arc<Mutex<Vec<Vec<String>>>>;

fn lazy_executor(log: &Log, cache: Arc<Cache>) -> (Executor, Checks) {
    let checks = Checks::default();
    let mut registry = registry(log);
    registry.register(Choose(log.clone())).unwrap();
    registry.register(Fallback(log.clone(), checks.clone())).unwrap();
    registry.register(LazySum(log.clone())).unwrap();
    registry.register(AskForNothingThere(log.clone())).unwrap();
    registry.register(PanicInCheck(log.clone())).unwrap();
    (Executor::new(Arc::new(registry), Environment::default()).with_cache(cache), checks)
}

fn graph(executor: &Executor, json: serde_json::Value) -> Arc<Graph> {
    Arc::new(executor.validate(&prompt(json)).unwrap_or_else(|report| panic!("{}", report.to_text())))
}

/// Runs and returns the outcome with every event.
fn run_recording(executor: &Executor, graph: &Arc<Graph>) -> (kinograph_engine::RunOutcome, Vec<EventKind>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = RunOptions {
        events: Arc::new(move |event: &Event| sink.lock().unwrap().push(event.kind.clone())),
        ..RunOptions::default()
    };
    let outcome = run_with(executor, graph, options);
    let events = std::mem::take(&mut *events.lock().unwrap());
    (outcome, events)
}

/// The node ids any per-node event names, and those `execution_cached` lists.
fn nodes_in_events(events: &[EventKind]) -> (Vec<String>, Vec<String>) {
    let mut named = Vec::new();
    let mut cached = Vec::new();
    for event in events {
        match event {
            EventKind::Executing { node }
            | EventKind::Progress { node, .. }
            | EventKind::Executed { node, .. }
            | EventKind::NodeFinished { node } => named.push(node.clone()),
            EventKind::ExecutionCached { nodes } => cached.extend(nodes.iter().cloned()),
            _ => {}
        }
    }
    named.sort();
    named.dedup();
    cached.sort();
    (named, cached)
}

/// A switch between a plain value and a branch that fails at run time (and a slow node before it).
fn switch_graph(flag: bool) -> serde_json::Value {
    json!({
        "1": {"class_type": "Number", "inputs": {"value": 5}},
        "2": {"class_type": "Number", "inputs": {"value": 6}},
        "3": {"class_type": "Sleep", "inputs": {"value": ["2", 0], "ms": 20}},
        "4": {"class_type": "Fail", "inputs": {"value": ["3", 0]}},
        "5": {"class_type": "Choose", "inputs": {"flag": flag, "on_false": ["1", 0], "on_true": ["4", 0]}},
        "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    })
}

#[test]
fn switch_off_never_runs_the_on_true_branch() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let (outcome, events) = run_recording(&executor, &graph(&executor, switch_graph(false)));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["6"], json!({"text": ["5"]}));
    assert_eq!(log.take(), strings(&["1", "5", "6"]), "the failing branch (2, 3, 4) never runs");
    let (named, cached) = nodes_in_events(&events);
    assert_eq!(named, strings(&["1", "5", "6"]), "events name only the nodes that ran");
    assert!(cached.is_empty(), "nodes that were not needed are not reported as cached: {cached:?}");
    assert!(outcome.cached.is_empty(), "{:?}", outcome.cached);
    // Nothing of the unneeded branch went into the cache: a run that needs it runs it.
    let on_true_only = json!({
        "2": {"class_type": "Number", "inputs": {"value": 6}},
        "3": {"class_type": "Sleep", "inputs": {"value": ["2", 0], "ms": 20}},
        "7": {"class_type": "Show", "inputs": {"value": ["3", 0]}}
    });
    run(&executor, &graph(&executor, on_true_only));
    assert_eq!(log.take(), strings(&["2", "3", "7"]));
}

#[test]
fn switch_on_never_runs_the_on_false_branch() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 5}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Number", "inputs": {"value": 6}},
        "4": {"class_type": "Number", "inputs": {"value": 7}},
        "5": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["4", 0]}},
        "6": {"class_type": "Choose", "inputs": {"flag": true, "on_false": ["2", 0], "on_true": ["5", 0]}},
        "7": {"class_type": "Show", "inputs": {"value": ["6", 0]}}
    });
    let (outcome, events) = run_recording(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["7"], json!({"text": ["13"]}));
    assert_eq!(log.take(), strings(&["3", "4", "5", "6", "7"]));
    assert_eq!(nodes_in_events(&events).0, strings(&["3", "4", "5", "6", "7"]));
}

#[test]
fn a_second_round_asks_for_what_the_first_showed_was_needed() {
    let log = Log::default();
    let (executor, checks) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = |primary: i64| {
        json!({
            "1": {"class_type": "Number", "inputs": {"value": primary}},
            "2": {"class_type": "Number", "inputs": {"value": 9}},
            "3": {"class_type": "Sleep", "inputs": {"value": ["2", 0], "ms": 1}},
            "4": {"class_type": "Fallback", "inputs": {"primary": ["1", 0], "backup": ["3", 0]}},
            "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
        })
    };
    let outcome = run(&executor, &graph(&executor, workflow(0)));
    assert_eq!(outcome.outputs["5"], json!({"text": ["9"]}));
    assert_eq!(log.take(), strings(&["1", "2", "3", "4", "5"]));
    assert_eq!(
        std::mem::take(&mut *checks.lock().unwrap()),
        [vec!["primary".to_string(), "backup".to_string()], vec!["backup".to_string()]],
        "two rounds: primary first, then backup; no third check once nothing is unevaluated"
    );

    let outcome = run(&executor, &graph(&executor, workflow(4)));
    assert_eq!(outcome.outputs["5"], json!({"text": ["4"]}));
    assert_eq!(log.take(), strings(&["1", "4", "5"]), "a non-zero primary leaves the backup branch alone");
    assert_eq!(checks.lock().unwrap().len(), 2, "asked for primary, then for nothing more");
}

#[test]
fn nested_lazy_nodes_evaluate_only_the_selected_path() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 3}},
        "2": {"class_type": "Number", "inputs": {"value": 4}},
        "3": {"class_type": "Fail", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Choose", "inputs": {"flag": false, "on_false": ["1", 0], "on_true": ["3", 0]}},
        "5": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "6": {"class_type": "Choose", "inputs": {"flag": true, "on_false": ["5", 0], "on_true": ["4", 0]}},
        "7": {"class_type": "Show", "inputs": {"value": ["6", 0]}}
    });
    let (outcome, events) = run_recording(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["7"], json!({"text": ["3"]}));
    assert_eq!(log.take(), strings(&["1", "4", "6", "7"]));
    assert_eq!(nodes_in_events(&events).0, strings(&["1", "4", "6", "7"]));
}

#[test]
fn a_source_of_an_eager_link_and_an_unneeded_lazy_link_runs_once() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = |flag: bool| {
        json!({
            "1": {"class_type": "Number", "inputs": {"value": 2}},
            "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
            "4": {"class_type": "Number", "inputs": {"value": 8}},
            "5": {"class_type": "Choose", "inputs": {"flag": flag, "on_false": ["4", 0], "on_true": ["1", 0]}},
            "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}
        })
    };
    let outcome = run(&executor, &graph(&executor, workflow(false)));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!((&outcome.outputs["3"], &outcome.outputs["6"]), (&json!({"text": ["4"]}), &json!({"text": ["8"]})));
    assert_eq!(log.take(), strings(&["1", "2", "3", "4", "5", "6"]));

    // Needed through both links, it still runs once (a fresh cache, so that it runs at all).
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let outcome = run(&executor, &graph(&executor, workflow(true)));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!((&outcome.outputs["3"], &outcome.outputs["6"]), (&json!({"text": ["4"]}), &json!({"text": ["2"]})));
    assert_eq!(log.take(), strings(&["1", "2", "3", "5", "6"]));
}

/// The lazy node asks only after every eager consumer of the shared nodes has finished (a slow `after`
/// input holds it back): their outputs must still be there for the branch it asks for.
#[test]
fn a_branch_asked_for_late_finds_the_outputs_it_shares_with_finished_nodes() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Number", "inputs": {"value": 10}},
        "5": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["4", 0]}},
        "6": {"class_type": "Sleep", "inputs": {"value": ["4", 0], "ms": 60}},
        "7": {"class_type": "Choose", "inputs": {"flag": true, "on_false": ["4", 0], "on_true": ["5", 0], "after": ["6", 0]}},
        "8": {"class_type": "Show", "inputs": {"value": ["7", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["8"], json!({"text": ["12"]}));
    assert_eq!(log.take(), strings(&["1", "2", "3", "4", "5", "6", "7", "8"]));
}

#[test]
fn changing_the_switch_runs_only_the_newly_needed_branch() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = |flag: bool| {
        json!({
            "1": {"class_type": "Number", "inputs": {"value": 1}},
            "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
            "3": {"class_type": "Number", "inputs": {"value": 30}},
            "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["3", 0]}},
            "5": {"class_type": "Choose", "inputs": {"flag": flag, "on_false": ["2", 0], "on_true": ["4", 0]}},
            "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}
        })
    };
    let first = run(&executor, &graph(&executor, workflow(false)));
    assert_eq!(first.outputs["6"], json!({"text": ["2"]}));
    assert_eq!(log.take(), strings(&["1", "2", "5", "6"]));

    let second = run(&executor, &graph(&executor, workflow(true)));
    assert_eq!(second.outputs["6"], json!({"text": ["60"]}));
    assert_eq!(log.take(), strings(&["3", "4", "5", "6"]), "only the on_true branch and what follows the switch");

    let third = run(&executor, &graph(&executor, workflow(false)));
    assert_eq!(third.outputs["6"], json!({"text": ["2"]}));
    assert!(log.take().is_empty(), "both settings are cached now");
    assert_eq!(
        strings(&third.cached.iter().map(String::as_str).collect::<Vec<_>>()),
        strings(&["1", "2", "3", "4", "5", "6"]),
        "cached, or only needed by cached nodes"
    );
}

#[test]
fn a_lazily_asked_node_found_in_the_cache_does_not_run() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let shown = json!({
        "3": {"class_type": "Number", "inputs": {"value": 30}},
        "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["3", 0]}},
        "9": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    });
    run(&executor, &graph(&executor, shown));
    log.take();
    let switched = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "3": {"class_type": "Number", "inputs": {"value": 30}},
        "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["3", 0]}},
        "5": {"class_type": "Choose", "inputs": {"flag": true, "on_false": ["1", 0], "on_true": ["4", 0]}},
        "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    });
    let (outcome, events) = run_recording(&executor, &graph(&executor, switched));
    assert_eq!(outcome.outputs["6"], json!({"text": ["60"]}));
    assert_eq!(log.take(), strings(&["5", "6"]), "4 comes from the cache, 3 and 1 are not needed");
    assert_eq!(outcome.cached, ["4"]);
    assert_eq!(nodes_in_events(&events), (strings(&["5", "6"]), Vec::new()));
}

#[test]
fn the_default_check_asks_for_every_linked_lazy_input() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 20}},
        "2": {"class_type": "LazySum", "inputs": {"a": ["1", 0]}},
        "3": {"class_type": "Number", "inputs": {"value": 3}},
        "4": {"class_type": "LazySum", "inputs": {"a": ["2", 0], "b": ["3", 0]}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["5"], json!({"text": ["23"]}));
    assert_eq!(log.take(), strings(&["1", "2", "3", "4", "5"]));
}

#[test]
fn asking_for_an_input_that_is_not_connected_fails_the_node() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "AskForNothingThere", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!((failure.node_id.as_str(), failure.node_type.as_str()), ("2", "AskForNothingThere"));
    assert!(failure.exception_message.contains("'valeu'"), "{}", failure.exception_message);
    assert!(log.take().is_empty(), "neither the node nor its lazy source ran");
}

#[test]
fn a_panic_in_the_check_fails_that_node() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "PanicInCheck", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    });
    let outcome = run(&executor, &graph(&executor, workflow));
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!(failure.node_id, "2");
    assert!(failure.exception_message.contains("the check exploded"), "{}", failure.exception_message);
}

/// Cancelling while the switch waits for the branch it asked for stops the run as an interruption.
#[test]
fn cancelling_while_a_lazy_branch_runs_interrupts_the_run() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let workflow = json!({
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "ms": 20000}},
        "3": {"class_type": "Choose", "inputs": {"flag": true, "on_false": ["1", 0], "on_true": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}
    });
    let cancel = CancelToken::new();
    let canceller = cancel.clone();
    let options = RunOptions {
        cancel: cancel.clone(),
        events: Arc::new(move |event: &Event| {
            if matches!(&event.kind, EventKind::Progress { node, value: 2, .. } if node == "2") {
                canceller.cancel();
            }
        }),
        ..RunOptions::default()
    };
    let outcome = run_with(&executor, &graph(&executor, workflow), options);
    assert_eq!(outcome.status, RunStatus::Interrupted);
    assert_eq!(log.take(), strings(&["1", "2"]), "the switch and the output never ran");
}

#[test]
fn a_failure_in_the_selected_branch_fails_the_run() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let outcome = run(&executor, &graph(&executor, switch_graph(true)));
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.failure.unwrap().node_id, "4");
    assert_eq!(log.take(), strings(&["2", "3", "4"]), "the on_false branch is not asked for");
}

#[test]
fn object_info_marks_lazy_inputs() {
    let log = Log::default();
    let (executor, _) = lazy_executor(&log, Arc::new(Cache::default()));
    let info = executor.registry().object_info(&Environment::default());
    assert_eq!(info["Choose"]["input"]["optional"]["on_true"], json!(["*", {"lazy": true}]));
    assert_eq!(info["Choose"]["input"]["optional"]["after"], json!(["*"]));
}
