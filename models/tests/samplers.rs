//! The samplers against ComfyUI's maths (fixtures from `tools/fixtures/make_sampler_fixtures.py`, which
//! follows `comfy/k_diffusion/sampling.py` and `KSAMPLER.sample` for a CONST model in float32 torch on the
//! CPU, with torch's generator and torchsde's Brownian tree for the extra noise).
//!
//! Tolerance: 1e-5 absolute on the sampled latents (ComfyUI computes the step coefficients in float32,
//! kinograph in f64), 1e-6 on single Brownian draws, exact for seed words and model sigmas (as float32).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kinograph_models::sampling::samplers::brownian::{BrownianNoise, SeedSequence};
use kinograph_models::sampling::samplers::{
    Denoiser, Euler, LTXV_FLOW_SHIFT, SampleOptions, Sampler, SamplerRegistry, SamplingError, StepInfo, sample_flow,
};
use kinograph_models::sampling::torch_noise::prepare_noise;
use serde_json::Value;

const TOLERANCE: f32 = 1e-5;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sampling/samplers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f64s(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn f32s(value: &Value) -> Vec<f32> {
    f64s(value).into_iter().map(|v| v as f32).collect()
}

fn shape(fixture: &Value) -> Vec<usize> {
    fixture["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

/// The fixture's toy model, `(0.6 − 0.4σ)·x + 0.25·tanh(x) + 0.05`, recording the sigmas it is called at.
#[derive(Default)]
struct Toy {
    sigmas: Vec<f64>,
}

impl Denoiser for Toy {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        self.sigmas.push(sigma);
        let scale = f64::from(0.6_f32 - 0.4_f32 * sigma as f32);
        Ok(((x.affine(scale, 0.05)? + x.tanh()?.affine(0.25, 0.0)?)?).contiguous()?)
    }
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn values(tensor: &Tensor) -> Vec<f32> {
    tensor.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn mask_tensor(per_frame: &[f32]) -> Tensor {
    tensor(per_frame.to_vec(), &[1, 1, per_frame.len(), 1, 1])
}

#[test]
fn every_sampler_matches_comfyui() {
    let fixture = fixture();
    let shape = shape(&fixture);
    let latent = tensor(f32s(&fixture["latent"]), &shape);
    let registry = SamplerRegistry::builtin();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 100);
    let mut worst = 0.0_f32;
    for case in cases {
        let name = case["sampler"].as_str().unwrap();
        let seed = case["seed"].as_u64().unwrap();
        let sigmas = f64s(&case["sigmas"]);
        let label = format!("{name} / {} / seed {seed} / mask {}", case["sigmas_name"], case["mask"]);
        let sampler = registry.get(name).unwrap_or_else(|| panic!("{name} is built in"));
        let noise = tensor(prepare_noise(i128::from(seed), &shape, None), &shape);
        let mask = case["mask"].as_array().map(|_| mask_tensor(&f32s(&case["mask"])));
        let mut toy = Toy::default();
        let mut steps = Vec::new();
        let mut callback = |info: &StepInfo<'_>| {
            steps.push((info.step, info.total));
            Ok(())
        };
        let mut options = SampleOptions { seed, flow_shift: LTXV_FLOW_SHIFT, callback: &mut callback };
        let output = sample_flow(sampler.as_ref(), &mut toy, &noise, &latent, &sigmas, mask.as_ref(), &mut options)
            .unwrap_or_else(|error| panic!("{label}: {error}"));

        let total = sigmas.len() - 1;
        assert_eq!(steps, (0..total).map(|step| (step, total)).collect::<Vec<_>>(), "{label}: callbacks");
        let model_sigmas: Vec<f32> = toy.sigmas.iter().map(|&s| s as f32).collect();
        assert_eq!(model_sigmas, f32s(&case["model_sigmas"]), "{label}: sigmas of the model calls");
        let expected = f32s(&case["output"]);
        for (index, (ours, theirs)) in values(&output).iter().zip(&expected).enumerate() {
            let difference = (ours - theirs).abs();
            worst = worst.max(difference);
            assert!(difference <= TOLERANCE, "{label}: element {index} is {ours}, ComfyUI gives {theirs}");
        }
    }
    println!("largest difference from ComfyUI: {worst:e}");
}

#[test]
fn seed_sequence_matches_numpy() {
    let fixture = fixture();
    for case in fixture["seed_sequences"].as_array().unwrap() {
        let entropy = u128::from(case["entropy"].as_u64().unwrap());
        let spawn_key: Vec<u128> = case["spawn_key"]
            .as_array()
            .map(|key| key.iter().map(|v| u128::from(v.as_u64().unwrap())).collect())
            .unwrap_or_default();
        let words: Vec<u32> = case["words"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(SeedSequence::new(entropy, &spawn_key, 24).generate_state(4), words, "{case}");
    }
}

#[test]
fn brownian_noise_matches_torchsde() {
    let fixture = fixture();
    let shape = shape(&fixture);
    let like = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
    for case in fixture["brownian"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap();
        let noise =
            BrownianNoise::new(case["sigma_min"].as_f64().unwrap(), case["sigma_max"].as_f64().unwrap(), seed, &like);
        for draw in case["draws"].as_array().unwrap() {
            let ours =
                values(&noise.draw(draw["sigma"].as_f64().unwrap(), draw["sigma_next"].as_f64().unwrap()).unwrap());
            for (index, (a, b)) in ours.iter().zip(f32s(&draw["noise"])).enumerate() {
                assert!((a - b).abs() <= 1e-6, "seed {seed}, draw {draw}: element {index} is {a}, torchsde gives {b}");
            }
        }
    }
}

#[test]
fn brownian_noise_does_not_depend_on_the_query_order() {
    let like = Tensor::zeros((1, 4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let sigmas = [1.0, 0.95, 0.9, 0.8, 0.7, 0.55, 0.4, 0.3, 0.2, 0.15, 0.1];
    let steps: Vec<(f64, f64)> = sigmas.windows(2).map(|pair| (pair[0], pair[1])).collect();
    let noise = BrownianNoise::new(0.1, 1.0, 9, &like);
    let forward: Vec<Vec<f32>> = steps.iter().map(|&(a, b)| values(&noise.draw(a, b).unwrap())).collect();
    let backward = BrownianNoise::new(0.1, 1.0, 9, &like);
    let mut reversed: Vec<Vec<f32>> = steps.iter().rev().map(|&(a, b)| values(&backward.draw(a, b).unwrap())).collect();
    reversed.reverse();
    assert_eq!(forward, reversed);
    let fresh = BrownianNoise::new(0.1, 1.0, 9, &like);
    assert_eq!(values(&fresh.draw(0.55, 0.4).unwrap()), forward[5]);
    assert_ne!(forward[0], forward[1]);
}

#[test]
fn the_callback_can_cancel_sampling() {
    let shape = [1, 4, 2, 3, 3];
    let noise = tensor(prepare_noise(3, &shape, None), &shape);
    let latent = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
    let sigmas = [1.0, 0.75, 0.5, 0.25, 0.0];
    for sampler in SamplerRegistry::builtin().names() {
        let sampler = SamplerRegistry::builtin().get(&sampler).unwrap();
        let mut toy = Toy::default();
        let mut seen = 0;
        let mut callback = |info: &StepInfo<'_>| {
            seen += 1;
            if info.step == 1 { Err(SamplingError::Cancelled) } else { Ok(()) }
        };
        let mut options = SampleOptions { seed: 3, flow_shift: LTXV_FLOW_SHIFT, callback: &mut callback };
        let result = sample_flow(sampler.as_ref(), &mut toy, &noise, &latent, &sigmas, None, &mut options);
        assert!(matches!(result, Err(SamplingError::Cancelled)), "{}: {result:?}", sampler.name());
        assert_eq!(seen, 2, "{}: stops at the step that cancelled", sampler.name());
    }
}

#[test]
fn the_kept_frames_stay_the_latent() {
    let shape = [1, 4, 2, 3, 3];
    let noise = tensor(prepare_noise(11, &shape, None), &shape);
    let latent = tensor(prepare_noise(12, &shape, None), &shape);
    let mask = mask_tensor(&[0.0, 1.0]);
    for name in SamplerRegistry::builtin().names() {
        let sampler = SamplerRegistry::builtin().get(&name).unwrap();
        let mut options = SampleOptions { seed: 11, flow_shift: LTXV_FLOW_SHIFT, callback: &mut |_| Ok(()) };
        let output = sample_flow(
            sampler.as_ref(),
            &mut Toy::default(),
            &noise,
            &latent,
            &[1.0, 0.5, 0.0],
            Some(&mask),
            &mut options,
        )
        .unwrap();
        let kept = output.narrow(2, 0, 1).unwrap();
        let original = latent.narrow(2, 0, 1).unwrap();
        // Exact for the samplers whose last step returns the prediction, within rounding for the others.
        for (a, b) in values(&kept).iter().zip(values(&original)) {
            assert!((a - b).abs() <= 1e-5, "{name}: the first frame is kept ({a} against {b})");
        }
        assert_ne!(values(&output.narrow(2, 1, 1).unwrap()), values(&latent.narrow(2, 1, 1).unwrap()), "{name}");
    }
}

#[test]
fn masks_that_do_not_broadcast_are_rejected() {
    let shape = [1, 4, 2, 3, 3];
    let noise = tensor(prepare_noise(1, &shape, None), &shape);
    let latent = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
    let mut options = SampleOptions { seed: 1, flow_shift: LTXV_FLOW_SHIFT, callback: &mut |_| Ok(()) };
    for bad in [mask_tensor(&[0.0, 1.0, 1.0]), tensor(vec![1.0; 6], &[2, 3])] {
        let error = sample_flow(&Euler, &mut Toy::default(), &noise, &latent, &[1.0, 0.0], Some(&bad), &mut options)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("denoise mask") && message.contains("[1, 4, 2, 3, 3]"), "{message}");
    }
}

#[test]
fn invalid_sigmas_are_rejected() {
    let shape = [1, 4, 2, 3, 3];
    let noise = tensor(prepare_noise(1, &shape, None), &shape);
    let mut options = SampleOptions { seed: 1, flow_shift: LTXV_FLOW_SHIFT, callback: &mut |_| Ok(()) };
    for sigmas in [vec![], vec![1.0, 0.0, 0.5, 0.0], vec![1.0, f64::NAN, 0.0], vec![0.5, 1.0]] {
        let result = sample_flow(&Euler, &mut Toy::default(), &noise, &noise, &sigmas, None, &mut options);
        assert!(matches!(result, Err(SamplingError::InvalidSigmas { .. })), "{sigmas:?}: {result:?}");
    }
}

/// A sampler defined outside the library: one jump to the prediction.
struct Jump;

impl Sampler for Jump {
    fn name(&self) -> &'static str {
        "jump"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        x: Tensor,
        sigmas: &[f64],
        _options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        denoiser.denoise(&x, sigmas[0])
    }
}

#[test]
fn a_custom_sampler_registers_by_name() {
    let mut registry = SamplerRegistry::builtin();
    assert_eq!(
        registry.names(),
        ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "lcm", "gradient_estimation"]
    );
    assert!(registry.get("jump").is_none());
    registry.register(Arc::new(Jump));
    assert_eq!(registry.names().last().map(String::as_str), Some("jump"));
    let jump = registry.get("jump").unwrap();
    let shape = [1, 4, 2, 3, 3];
    let noise = tensor(prepare_noise(2, &shape, None), &shape);
    let latent = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
    let mut options = SampleOptions { seed: 2, flow_shift: LTXV_FLOW_SHIFT, callback: &mut |_| Ok(()) };
    let mut toy = Toy::default();
    let output = sample_flow(jump.as_ref(), &mut toy, &noise, &latent, &[1.0, 0.0], None, &mut options).unwrap();
    let expected = Toy::default().denoise(&noise, 1.0).unwrap();
    assert_eq!(values(&output), values(&expected));
    assert_eq!(toy.sigmas, [1.0]);
    // Registering a name again replaces the sampler in place.
    registry.register(Arc::new(Jump));
    assert_eq!(registry.names().len(), 8);
}

/// `euler_ancestral` with the `eta` and `s_noise` of ComfyUI's `SamplerEulerAncestral` node, against
/// `tools/fixtures/make_euler_ancestral_fixtures.py` (eta 0, below and above 1, `s_noise` 0 and scaled).
#[test]
fn euler_ancestral_options_match_comfyui() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sampling/euler_ancestral_options.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let shape = shape(&fixture);
    let latent = tensor(f32s(&fixture["latent"]), &shape);
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let (eta, s_noise) = (case["eta"].as_f64().unwrap(), case["s_noise"].as_f64().unwrap());
        let seed = case["seed"].as_u64().unwrap();
        let sigmas = f64s(&case["sigmas"]);
        let label = format!("eta {eta} / s_noise {s_noise} / {}", case["sigmas_name"]);
        let sampler = kinograph_models::sampling::samplers::EulerAncestral { eta, s_noise };
        let noise = tensor(prepare_noise(i128::from(seed), &shape, None), &shape);
        let mut callback = |_: &StepInfo<'_>| Ok(());
        let mut options = SampleOptions { seed, flow_shift: LTXV_FLOW_SHIFT, callback: &mut callback };
        let output = sample_flow(&sampler, &mut Toy::default(), &noise, &latent, &sigmas, None, &mut options)
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        for (index, (ours, theirs)) in values(&output).iter().zip(f32s(&case["output"])).enumerate() {
            assert!((ours - theirs).abs() <= TOLERANCE, "{label}: element {index} is {ours}, ComfyUI gives {theirs}");
        }
    }
}
