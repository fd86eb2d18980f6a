//! The remaining nodes of ComfyUI's LTX-2 templates: `SamplerEulerAncestral`, `SetFirstSigma`,
//! `LTXVDualCFGGuider`, `LTXVReferenceAudio`, `GetICLoRAParameters`, and the noise mask a
//! `SetLatentNoiseMask` puts on a video latent. Each against ComfyUI's schema (written out in the tests from
//! its `comfy_extras` sources), its behaviour, and its errors.

use candle_core::{Device, Tensor};
use kinograph_engine::{
    ApiPrompt, Environment, ExecutionContext, Executor, NodeError, NodeInputs, NodeOutput, RunOptions, RunStatus, Value,
};
use kinograph_models::sampling::samplers::{Denoiser, EulerAncestral, SampleOptions, Sampler, SamplingError};
use kinograph_nodes::values::{SamplerChoice, Sigmas};
use serde_json::{Value as Json, json};
use std::sync::Arc;

mod guiders;
mod ic_lora;
mod masks;
mod samplers;

fn inputs(pairs: Vec<(&str, Value)>) -> NodeInputs {
    let mut inputs = NodeInputs::default();
    for (name, value) in pairs {
        inputs.insert(name, value);
    }
    inputs
}

fn run(class: &str, pairs: Vec<(&str, Value)>) -> Result<NodeOutput, NodeError> {
    let registry = kinograph_nodes::registry();
    let node = registry.get(class).unwrap_or_else(|| panic!("{class} is not registered"));
    node.execute(&inputs(pairs), &ExecutionContext::detached("1", class, Environment::default()))
}

/// The `/object_info` entry of `class` without the keys that only describe it (display name,
/// description, tooltips: kinograph words its own), for comparing with ComfyUI's.
fn object_info(class: &str) -> Json {
    let info = kinograph_nodes::registry().object_info(&Environment::default());
    let mut entry = info.get(class).unwrap_or_else(|| panic!("{class} is not registered")).clone();
    for section in ["required", "optional"] {
        if let Some(inputs) = entry["input"].get_mut(section).and_then(Json::as_object_mut) {
            for spec in inputs.values_mut() {
                if let Some(options) = spec.get_mut(1).and_then(Json::as_object_mut) {
                    options.remove("tooltip");
                    if options.is_empty() {
                        spec.as_array_mut().unwrap().truncate(1);
                    }
                }
            }
        }
    }
    json!({
        "input": entry["input"],
        "input_order": entry["input_order"],
        "output": entry["output"],
        "output_name": entry["output_name"],
        "category": entry["category"],
    })
}

fn sigmas(values: &[f32]) -> Value {
    Value::from(Arc::new(Sigmas { values: values.to_vec() }))
}

fn run_workflow(workflow: Json) -> kinograph_engine::RunOutcome {
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), Environment::default());
    let prompt = ApiPrompt::from_json(workflow, "test").unwrap();
    let graph = Arc::new(executor.validate(&prompt).unwrap_or_else(|report| panic!("{}", report.to_text())));
    tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, RunOptions::default()))
}

/// Tiny demo models in a temporary folder, and nodes run against them.
struct DemoModels {
    _root: tempfile::TempDir,
    env: Environment,
}

impl DemoModels {
    /// The LTX-2 demo models.
    fn ltx2() -> Self {
        Self::written(|models| kinograph_nodes::demo_ltx2::write_ltx2_demo_models(models).map(drop))
    }

    /// The LTX-Video 0.9 demo models.
    fn ltxv() -> Self {
        Self::written(|models| kinograph_nodes::demo::write_demo_models(models).map(drop))
    }

    fn written(write: impl FnOnce(&std::path::Path) -> Result<(), String>) -> Self {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("models")).unwrap();
        let env = Environment {
            output_dir: root.path().join("output"),
            input_dir: root.path().join("input"),
            models: kinograph_engine::ModelFolders::new(root.path().join("models")),
        };
        DemoModels { _root: root, env }
    }

    fn run(&self, class: &str, pairs: Vec<(&str, Value)>) -> Vec<Value> {
        let registry = kinograph_nodes::registry();
        let node = registry.get(class).unwrap_or_else(|| panic!("{class} is not registered"));
        let context = ExecutionContext::detached("1", class, self.env.clone());
        node.execute(&inputs(pairs), &context).unwrap_or_else(|error| panic!("{class}: {error}")).values
    }
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
