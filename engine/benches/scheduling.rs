//! Scheduling overhead on generated graphs of 10,000 trivial nodes: a chain and a wide fan-out.
//!
//! Reports, per shape: validation time, a cold run (every node executes) in µs per node, and a re-run
//! that hits the cache for everything. Run with `cargo bench -p kinograph-engine`.

use kinograph_engine::{
    ApiPrompt, Cache, Environment, ExecutionContext, Executor, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, Registry, RunOptions, RunStatus, Value,
};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 10_000;
const REPEATS: usize = 5;

struct Source;
impl Node for Source {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Source").input(InputSpec::int("value", 0)).output("INT", "value")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::Int(inputs.int_wide("value")?)]))
    }
}

struct Increment;
impl Node for Increment {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Increment").input(InputSpec::socket("value", "INT")).output("INT", "value")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::Int(inputs.int_wide("value")? + 1)]))
    }
}

struct Sink;
impl Node for Sink {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Sink").input(InputSpec::socket("value", "INT")).input(InputSpec::int("tag", 0)).output_node()
    }
    fn execute(&self, _: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(Vec::new()))
    }
}

fn node(class: &str, inputs: Json) -> Json {
    let mut node = Map::new();
    node.insert("class_type".into(), Json::String(class.to_string()));
    node.insert("inputs".into(), inputs);
    Json::Object(node)
}

/// Source → Increment × (N − 2) → Sink.
fn chain() -> Json {
    let mut prompt = Map::new();
    prompt.insert("0".into(), node("Source", json!({"value": 1})));
    for index in 1..NODES - 1 {
        prompt.insert(index.to_string(), node("Increment", json!({"value": [(index - 1).to_string(), 0]})));
    }
    prompt.insert((NODES - 1).to_string(), node("Sink", json!({"value": [(NODES - 2).to_string(), 0], "tag": 0})));
    Json::Object(prompt)
}

/// Source → (N − 1) Sinks, each its own output.
fn fan_out() -> Json {
    let mut prompt = Map::new();
    prompt.insert("0".into(), node("Source", json!({"value": 1})));
    for index in 1..NODES {
        prompt.insert(index.to_string(), node("Sink", json!({"value": ["0", 0], "tag": index})));
    }
    Json::Object(prompt)
}

fn best_of(mut measure: impl FnMut() -> Duration) -> Duration {
    (0..REPEATS).map(|_| measure()).min().expect("at least one repeat")
}

fn main() {
    let mut registry = Registry::new();
    registry.register(Source).unwrap();
    registry.register(Increment).unwrap();
    registry.register(Sink).unwrap();
    let registry = Arc::new(registry);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("scheduling overhead, {NODES} trivial nodes, best of {REPEATS}");
    for (shape, workflow) in [("chain", chain()), ("fan-out", fan_out())] {
        let text = workflow.to_string();
        let prompt = ApiPrompt::parse(&text, shape).unwrap();
        let validation = best_of(|| {
            let started = Instant::now();
            let prompt = ApiPrompt::parse(&text, shape).unwrap();
            kinograph_engine::validate(&prompt, &registry, &Environment::default()).unwrap();
            started.elapsed()
        });
        let cold = best_of(|| {
            let executor =
                Executor::new(registry.clone(), Environment::default()).with_cache(Arc::new(Cache::default()));
            let graph = Arc::new(executor.validate(&prompt).unwrap());
            let started = Instant::now();
            let outcome = runtime.block_on(executor.run(graph, RunOptions::default()));
            assert_eq!(outcome.status, RunStatus::Success);
            assert_eq!(outcome.executed.len(), NODES);
            started.elapsed()
        });
        let executor = Executor::new(registry.clone(), Environment::default()).with_cache(Arc::new(Cache::default()));
        let graph = Arc::new(executor.validate(&prompt).unwrap());
        runtime.block_on(executor.run(graph.clone(), RunOptions::default()));
        let cached = best_of(|| {
            let started = Instant::now();
            let outcome = runtime.block_on(executor.run(graph.clone(), RunOptions::default()));
            assert!(outcome.executed.is_empty());
            started.elapsed()
        });
        let per_node = |d: Duration| d.as_secs_f64() * 1e6 / NODES as f64;
        println!(
            "{shape:>8}: parse+validate {:7.2} ms ({:5.2} µs/node) | cold run {:7.2} ms ({:5.2} µs/node) | cache-hit re-run {:6.2} ms",
            validation.as_secs_f64() * 1e3,
            per_node(validation),
            cold.as_secs_f64() * 1e3,
            per_node(cold),
            cached.as_secs_f64() * 1e3,
        );
    }
}
