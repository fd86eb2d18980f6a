//! `ModelSamplingLTXV` against ComfyUI's own node (`tests/data/model_sampling_ltxv.json`, made by
//! `tools/fixtures/make_model_sampling_fixtures.py`): the shift it reads off the latent, the schedules
//! `BasicScheduler` then takes from the model (its `/object_info` entry is checked in `object_info.rs`).

use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use kinograph_nodes::demo::{DEMO_CHECKPOINT, write_demo_models};
use kinograph_nodes::nodes::loaders::load_checkpoint;
use kinograph_nodes::nodes::sampling::{BasicScheduler, ModelSamplingLtxv};
use kinograph_nodes::values::{DiffusionModel, Latent, Sigmas};
use serde_json::Value as Json;
use std::sync::Arc;

fn fixture() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/model_sampling_ltxv.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn first_object<T: NodeValue>(output: &NodeOutput) -> Arc<T> {
    output.values[0].downcast::<T>().expect("an output of the declared type")
}

/// Shifts within 1e-12 (the same f64 line), sigmas within 1e-6 (ComfyUI computes them in float32).
#[test]
fn model_sampling_ltxv_shifts_the_schedules_as_comfyui() {
    let folder = tempfile::tempdir().unwrap();
    write_demo_models(folder.path()).unwrap();
    let model = load_checkpoint("ckpt_name", &folder.path().join("checkpoints").join(DEMO_CHECKPOINT)).unwrap().model;
    let env = Environment::default();
    let context = ExecutionContext::detached("1", "ModelSamplingLTXV", env.clone());
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let mut inputs = NodeInputs::default();
        inputs.insert("model", Value::from(model.clone()));
        inputs.insert("max_shift", Value::Float(case["max_shift"].as_f64().unwrap()));
        inputs.insert("base_shift", Value::Float(case["base_shift"].as_f64().unwrap()));
        if let Some(shape) = case["latent_shape"].as_array() {
            let shape: Vec<usize> = shape.iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let samples = Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
            inputs.insert("latent", Value::from(Arc::new(Latent::new(samples))));
        }
        let shifted: Arc<DiffusionModel> = first_object(&ModelSamplingLtxv.execute(&inputs, &context).unwrap());
        let expected_shift = case["shift"].as_f64().unwrap();
        assert!((shifted.shift - expected_shift).abs() < 1e-12, "{case}: shift {} vs {expected_shift}", shifted.shift);
        assert_eq!(model.shift, 2.37, "the input model keeps its own shift");
        for (scheduler, by_steps) in case["schedules"].as_object().unwrap() {
            for (steps, expected) in by_steps.as_object().unwrap() {
                let mut inputs = NodeInputs::default();
                inputs.insert("model", Value::from(shifted.clone()));
                inputs.insert("scheduler", Value::String(scheduler.as_str().into()));
                inputs.insert("steps", Value::Int(steps.parse().unwrap()));
                inputs.insert("denoise", Value::Float(1.0));
                let sigmas: Arc<Sigmas> = first_object(&BasicScheduler.execute(&inputs, &context).unwrap());
                let expected: Vec<f64> = expected.as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
                assert_eq!(
                    sigmas.values.len(),
                    expected.len(),
                    "shift {expected_shift}, {scheduler} {steps}: {:?}",
                    sigmas.values
                );
                for (ours, theirs) in sigmas.values.iter().zip(&expected) {
                    assert!(
                        (f64::from(*ours) - theirs).abs() <= 1e-6,
                        "shift {expected_shift}, {scheduler}, {steps} steps: {:?} vs {expected:?}",
                        sigmas.values
                    );
                }
            }
        }
    }
}
