//! The custom sampler does its maths, appears in `KSamplerSelect`'s list, and runs a text-to-video
//! workflow that selects it, on the demo's tiny LTX-Video models.

use candle_core::{Device, Tensor};
use kinograph_engine::{ApiPrompt, Environment, Executor, ModelFolders, RunOptions, RunStatus};
use kinograph_example_custom_sampler::{EulerMidpoint, registry};
use kinograph_models::sampling::samplers::{Denoiser, SampleOptions, Sampler, SamplingError};
use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER, write_demo_models};
use serde_json::json;
use std::sync::Arc;

/// A model that always predicts `target`: the flow ODE's exact solution then reaches `target` at σ = 0.
struct Constant {
    target: Tensor,
    calls: Vec<f64>,
}

impl Denoiser for Constant {
    fn denoise(&mut self, _: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        self.calls.push(sigma);
        Ok(self.target.clone())
    }
}

#[test]
fn the_midpoint_method_follows_the_flow_exactly_for_a_constant_prediction() {
    let target = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
    let x = Tensor::new(&[1.0f32, 1.0, 1.0], &Device::Cpu).unwrap();
    let mut model = Constant { target: target.clone(), calls: Vec::new() };
    let mut steps = 0;
    let mut callback = |_: &kinograph_models::sampling::samplers::StepInfo<'_>| {
        steps += 1;
        Ok(())
    };
    let mut options = SampleOptions { seed: 0, flow_shift: 2.37, callback: &mut callback };
    let sigmas = [1.0, 0.6, 0.2, 0.0];
    let out = EulerMidpoint.sample(&mut model, x, &sigmas, &mut options).unwrap();
    let error: f32 = (out - &target).unwrap().abs().unwrap().max(0).unwrap().to_scalar().unwrap();
    assert!(error < 1e-6, "{error}");
    assert_eq!(steps, 3);
    let expected = [1.0, 0.8, 0.6, 0.4, 0.2];
    assert_eq!(model.calls.len(), expected.len(), "two calls per step, one on the last: {:?}", model.calls);
    assert!(model.calls.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{:?}", model.calls);
}

#[test]
fn a_workflow_selects_the_custom_sampler_by_name() {
    let root = tempfile::tempdir().unwrap();
    write_demo_models(&root.path().join("models")).unwrap();
    let env = Environment {
        output_dir: root.path().join("output"),
        input_dir: root.path().join("input"),
        models: ModelFolders::new(root.path().join("models")),
    };
    let registry = registry();
    let listed = registry.object_info(&env)["KSamplerSelect"]["input"]["required"]["sampler_name"][0].clone();
    assert!(listed.as_array().unwrap().contains(&json!("euler_midpoint")), "{listed}");

    let prompt = json!({
        "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": DEMO_TEXT_ENCODER, "type": "ltxv"}},
        "44": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": DEMO_CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["38", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["38", 0]}},
        "70": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}},
        "71": {"class_type": "LTXVScheduler", "inputs": {"steps": 3, "max_shift": 2.05, "base_shift": 0.95, "stretch": true, "terminal": 0.1, "latent": ["70", 0]}},
        "73": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_midpoint"}},
        "72": {"class_type": "SamplerCustom", "inputs": {"add_noise": true, "noise_seed": 7, "cfg": 3, "model": ["44", 0],
            "positive": ["6", 0], "negative": ["7", 0], "sampler": ["73", 0], "sigmas": ["71", 0], "latent_image": ["70", 0]}},
        "90": {"class_type": "SaveLatent", "inputs": {"samples": ["72", 0], "filename_prefix": "midpoint"}}
    });
    let executor = Executor::new(Arc::new(registry), env);
    let graph = Arc::new(executor.validate(&ApiPrompt::parse(&prompt.to_string(), "test").unwrap()).unwrap());
    let outcome = tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, RunOptions::default()));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert!(root.path().join("output/midpoint_00001_.latent").is_file());

    // The built-in registry does not know it: validation names the choices.
    let builtin = Executor::new(Arc::new(kinograph_nodes::registry()), Environment::default());
    let Err(report) = builtin.validate(&ApiPrompt::parse(&prompt.to_string(), "test").unwrap()) else {
        panic!("the built-in registry has no euler_midpoint")
    };
    assert!(report.to_text().contains("euler_midpoint"), "{}", report.to_text());
}
