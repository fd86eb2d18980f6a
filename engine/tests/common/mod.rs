//! Test-only nodes and helpers shared by the engine's integration tests.
#![allow(dead_code)]

use kinograph_engine::{
    ApiPrompt, Cache, Environment, ExecutionContext, Executor, Graph, InputSpec, Node, NodeError, NodeInputs,
    NodeOutput, NodeSchema, NodeValue, Registry, RunOptions, RunOutcome, StoredObject, StoredTensor, Value,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records which nodes ran, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn record(&self, context: &ExecutionContext) {
        self.0.lock().unwrap().push(context.node_id().to_string());
    }
    pub fn take(&self) -> Vec<String> {
        let mut ran = std::mem::take(&mut *self.0.lock().unwrap());
        ran.sort();
        ran
    }
}

/// `Number`: outputs its INT widget (0..=100).
pub struct Number(pub Log);
impl Node for Number {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Number").input(InputSpec::int("value", 0).min(0).max(100)).output("INT", "value")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![Value::Int(inputs.int_wide("value")?)]))
    }
}

/// `Add`: a + b.
pub struct Add(pub Log);
impl Node for Add {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Add")
            .input(InputSpec::socket("a", "INT"))
            .input(InputSpec::socket("b", "INT"))
            .output("INT", "sum")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![Value::Int(inputs.int_wide("a")? + inputs.int_wide("b")?)]))
    }
}

/// `Show`: an output node that shows any value.
pub struct Show(pub Log);
impl Node for Show {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Show").input(InputSpec::socket("value", "*")).output_node()
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let text = inputs.get("value").map(Value::display_text).unwrap_or_default();
        Ok(NodeOutput::new(vec![]).with_ui(json!({"text": [text]})))
    }
}

/// `Sleep`: passes `value` on after `ms` milliseconds, checking for cancellation every 5 ms.
pub struct Sleep(pub Log);
impl Node for Sleep {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Sleep")
            .input(InputSpec::socket("value", "*"))
            .input(InputSpec::int("ms", 100).min(0).max(60_000))
            .output("*", "value")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let ms = inputs.int("ms")? as u64;
        let steps = ms.div_ceil(5);
        for step in 0..steps {
            std::thread::sleep(Duration::from_millis(5));
            context.progress(step + 1, steps)?;
        }
        Ok(NodeOutput::new(vec![inputs.get("value").cloned().unwrap()]))
    }
}

/// `Fail`: always fails, naming its input.
pub struct Fail(pub Log);
impl Node for Fail {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Fail").input(InputSpec::socket("value", "*")).output("INT", "never")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let value = inputs.get("value").map(Value::display_text).unwrap_or_default();
        Err(NodeError::msg(format!("cannot handle {value}")))
    }
}

/// `Liar`: declares an INT output but returns a STRING.
pub struct Liar(pub Log);
impl Node for Liar {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Liar").output("INT", "number")
    }
    fn execute(&self, _: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec!["seven".into()]))
    }
}

/// `PanicInFingerprint`: a node whose `fingerprint` panics (custom code going wrong while the run is
/// planned); `execute` would pass its value through.
pub struct PanicInFingerprint(pub Log);
impl Node for PanicInFingerprint {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PanicInFingerprint").input(InputSpec::int("value", 0)).output("INT", "value")
    }
    fn fingerprint(&self, constants: &NodeInputs, _: &Environment) -> Option<Vec<u8>> {
        panic!("fingerprint exploded on {}", constants.int_wide("value").unwrap_or_default())
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![Value::Int(inputs.int_wide("value")?)]))
    }
}

/// A tensor-like value that can be stored on disk.
#[derive(Debug)]
pub struct Samples(pub Vec<f32>);
impl NodeValue for Samples {
    fn type_name(&self) -> &'static str {
        "SAMPLES"
    }
    fn byte_size(&self) -> usize {
        self.0.len() * 4
    }
    fn to_stored(&self) -> Option<StoredObject> {
        Some(StoredObject {
            kind: "test.samples".into(),
            metadata: json!({"count": self.0.len()}),
            tensors: vec![StoredTensor {
                name: "data".into(),
                dtype: safetensors::Dtype::F32,
                shape: vec![self.0.len()],
                data: self.0.iter().flat_map(|v| v.to_le_bytes()).collect(),
            }],
        })
    }
}

pub fn decode_samples(stored: StoredObject) -> Result<Arc<dyn NodeValue>, String> {
    let tensor = stored.tensors.into_iter().next().ok_or("no data")?;
    let values = tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Arc::new(Samples(values)))
}

/// `MakeSamples`: `count` samples of `value`.
pub struct MakeSamples(pub Log);
impl Node for MakeSamples {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("MakeSamples")
            .input(InputSpec::float("value", 0.5))
            .input(InputSpec::int("count", 4).min(1).max(1 << 24))
            .output("SAMPLES", "samples")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let samples = Samples(vec![inputs.float("value")? as f32; inputs.int("count")? as usize]);
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(samples))]))
    }
}

/// `SumSamples`: the sum of the samples, as a FLOAT.
pub struct SumSamples(pub Log);
impl Node for SumSamples {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SumSamples").input(InputSpec::socket("samples", "SAMPLES")).output("FLOAT", "sum")
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        let samples = inputs.object::<Samples>("samples")?;
        Ok(NodeOutput::new(vec![Value::Float(samples.0.iter().map(|&v| f64::from(v)).sum())]))
    }
}

/// `Pick`: a combo, plus a custom check that `width` is a multiple of 8.
pub struct Pick(pub Log);
impl Node for Pick {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Pick")
            .input(InputSpec::combo("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m"]))
            .input(InputSpec::int("width", 64).min(8).max(4096))
            .input(InputSpec::float("cfg", 3.0).min(0.0).max(100.0))
            .input(InputSpec::boolean("flag", false))
            .input(InputSpec::socket("model", "MODEL").optional())
            .output("STRING", "sampler")
    }
    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        match constants.int("width") {
            Ok(width) if width % 8 != 0 => {
                vec![("width".into(), format!("width must be a multiple of 8, got {width}"))]
            }
            _ => Vec::new(),
        }
    }
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        self.0.record(context);
        Ok(NodeOutput::new(vec![inputs.string("sampler")?.into()]))
    }
}

/// A registry of all test nodes sharing one log.
pub fn registry(log: &Log) -> Registry {
    let mut registry = Registry::new();
    registry.register(Number(log.clone())).unwrap();
    registry.register(Add(log.clone())).unwrap();
    registry.register(Show(log.clone())).unwrap();
    registry.register(Sleep(log.clone())).unwrap();
    registry.register(Fail(log.clone())).unwrap();
    registry.register(MakeSamples(log.clone())).unwrap();
    registry.register(SumSamples(log.clone())).unwrap();
    registry.register(Pick(log.clone())).unwrap();
    registry.register(Liar(log.clone())).unwrap();
    registry.register(PanicInFingerprint(log.clone())).unwrap();
    registry.register_decoder("test.samples", decode_samples);
    registry
}

pub fn executor(log: &Log, cache: Arc<Cache>) -> Executor {
    Executor::new(Arc::new(registry(log)), Environment::default()).with_cache(cache)
}

pub fn prompt(json: serde_json::Value) -> ApiPrompt {
    ApiPrompt::from_json(json, "test").unwrap()
}

pub fn graph(executor: &Executor, json: serde_json::Value) -> Arc<Graph> {
    match executor.validate(&prompt(json)) {
        Ok(graph) => Arc::new(graph),
        Err(report) => panic!("invalid test workflow: {}", report.to_text()),
    }
}

pub fn run(executor: &Executor, graph: &Arc<Graph>) -> RunOutcome {
    run_with(executor, graph, RunOptions::default())
}

pub fn run_with(executor: &Executor, graph: &Arc<Graph>, options: RunOptions) -> RunOutcome {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(executor.run(graph.clone(), options))
}

pub fn strings(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(std::string::ToString::to_string).collect();
    items.sort();
    items
}
