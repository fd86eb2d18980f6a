//! `SamplerEulerAncestral`, `SetFirstSigma` and `PrimitiveBoolean`.

use super::*;

// ---------------------------------------------------------------------------------------------------
// SamplerEulerAncestral

#[test]
fn sampler_euler_ancestral_schema_is_comfyuis() {
    assert_eq!(
        object_info("SamplerEulerAncestral"),
        json!({
            "input": {"required": {
                "eta": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": false}],
                "s_noise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": false}],
            }},
            "input_order": {"required": ["eta", "s_noise"]},
            "output": ["SAMPLER"],
            "output_name": ["SAMPLER"],
            "category": "sampling/custom_sampling/samplers",
        })
    );
}

/// A toy flow denoiser: `0.6·x + 0.25·tanh(x) + 0.05 − 0.4σ·x`.
struct Toy;

impl Denoiser for Toy {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        Ok((x.affine(0.6 - 0.4 * sigma, 0.05)? + x.tanh()?.affine(0.25, 0.0)?)?)
    }
}

fn sample(sampler: &dyn Sampler) -> Vec<f32> {
    let x =
        Tensor::arange(0f32, 24.0, &Device::Cpu).unwrap().affine(0.1, -1.0).unwrap().reshape((1, 2, 3, 2, 2)).unwrap();
    let mut callback = |_: &kinograph_models::sampling::samplers::StepInfo<'_>| Ok(());
    let mut options = SampleOptions { seed: 7, flow_shift: 2.37, callback: &mut callback };
    let out = sampler.sample(&mut Toy, x, &[1.0, 0.6, 0.3, 0.0], &mut options).unwrap();
    out.flatten_all().unwrap().to_vec1().unwrap()
}

fn euler_ancestral_node(eta: f64, s_noise: f64) -> Arc<SamplerChoice> {
    let out =
        run("SamplerEulerAncestral", vec![("eta", Value::Float(eta)), ("s_noise", Value::Float(s_noise))]).unwrap();
    out.values[0].downcast::<SamplerChoice>().expect("a SAMPLER")
}

/// The node's sampler runs `euler_ancestral` with its `eta` and `s_noise` (the maths of those against ComfyUI
/// is `kinograph-models`' `euler_ancestral_options_match_comfyui`): eta 0 is plain Euler, other values
/// change the result, and the same values give the same result as the sampler built directly.
#[test]
fn sampler_euler_ancestral_uses_its_eta_and_s_noise() {
    let choice = euler_ancestral_node(0.5, 0.7);
    assert_eq!(choice.sampler.name(), "euler_ancestral");
    let ours = sample(choice.sampler.as_ref());
    assert_eq!(ours, sample(&EulerAncestral { eta: 0.5, s_noise: 0.7 }));
    assert_ne!(ours, sample(&EulerAncestral::default()), "eta 0.5, s_noise 0.7 differ from the defaults");
    assert_ne!(ours, sample(&EulerAncestral { eta: 0.5, s_noise: 1.0 }), "s_noise is used");
    let euler = sample(&kinograph_models::sampling::samplers::Euler);
    let no_noise = sample(euler_ancestral_node(0.0, 1.0).sampler.as_ref());
    for (a, b) in no_noise.iter().zip(&euler) {
        assert!((a - b).abs() < 1e-6, "eta 0 is Euler: {a} vs {b}");
    }
}

#[test]
fn sampler_euler_ancestral_rejects_a_negative_or_infinite_option() {
    let Err(error) = run("SamplerEulerAncestral", vec![("eta", Value::Float(-0.5)), ("s_noise", Value::Float(1.0))])
    else {
        panic!("a negative eta must fail")
    };
    let text = error.to_string();
    assert!(text.contains("'eta'") && text.contains("from 0 to 100"), "{text}");
    let Err(error) =
        run("SamplerEulerAncestral", vec![("eta", Value::Float(1.0)), ("s_noise", Value::Float(f64::INFINITY))])
    else {
        panic!("an infinite s_noise must fail")
    };
    assert!(error.to_string().contains("'s_noise'"), "{error}");
}

// ---------------------------------------------------------------------------------------------------
// SetFirstSigma

#[test]
fn set_first_sigma_schema_is_comfyuis() {
    assert_eq!(
        object_info("SetFirstSigma"),
        json!({
            "input": {"required": {
                "sigmas": ["SIGMAS"],
                "sigma": ["FLOAT", {"default": 136.0, "min": 0.0, "max": 20000.0, "step": 0.001, "round": false}],
            }},
            "input_order": {"required": ["sigmas", "sigma"]},
            "output": ["SIGMAS"],
            "output_name": ["SIGMAS"],
            "category": "sampling/custom_sampling/sigmas",
        })
    );
}

#[test]
fn set_first_sigma_replaces_only_the_first_value() {
    let out =
        run("SetFirstSigma", vec![("sigmas", sigmas(&[1.0, 0.725, 0.4, 0.0])), ("sigma", Value::Float(0.909_375))])
            .unwrap();
    let result = out.values[0].downcast::<Sigmas>().unwrap();
    assert_eq!(result.values, vec![0.909_375, 0.725, 0.4, 0.0]);
    // A single sigma is replaced too; the input SIGMAS are not changed.
    let input = sigmas(&[0.5]);
    let out = run("SetFirstSigma", vec![("sigmas", input.clone()), ("sigma", Value::Float(136.0))]).unwrap();
    assert_eq!(out.values[0].downcast::<Sigmas>().unwrap().values, vec![136.0]);
    assert_eq!(input.downcast::<Sigmas>().unwrap().values, vec![0.5]);
}

/// Empty SIGMAS (`ManualSigmas` of a text without numbers) fail in `SetFirstSigma`, naming it and its input.
#[test]
fn set_first_sigma_of_empty_sigmas_is_an_error_naming_the_node_and_input() {
    let outcome = run_workflow(json!({
        "1": {"class_type": "ManualSigmas", "inputs": {"sigmas": "none"}},
        "2": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["1", 0], "sigma": 0.9}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    }));
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!((failure.node_id.as_str(), failure.node_type.as_str()), ("2", "SetFirstSigma"));
    assert!(failure.exception_message.contains("'sigmas'"), "{}", failure.exception_message);
    assert!(failure.exception_message.contains("at least one sigma"), "{}", failure.exception_message);
}

// ---------------------------------------------------------------------------------------------------
// PrimitiveBoolean

/// ComfyUI's `PrimitiveBoolean` (`comfy_extras/nodes_primitive.py`): one BOOLEAN `value`, a BOOLEAN out,
/// in `utils/primitive`, passing its value through. ComfyUI declares no default (the UI shows false);
/// kinograph's BOOLEAN widgets always carry one, false.
#[test]
fn primitive_boolean_matches_comfyui() {
    assert_eq!(
        object_info("PrimitiveBoolean"),
        json!({
            "input": {"required": {"value": ["BOOLEAN", {"default": false}]}},
            "input_order": {"required": ["value"]},
            "output": ["BOOLEAN"],
            "output_name": ["BOOLEAN"],
            "category": "utils/primitive",
        })
    );
    let info = kinograph_nodes::registry().object_info(&Environment::default());
    assert_eq!(info["PrimitiveBoolean"]["display_name"], json!("Boolean"));
    for value in [true, false] {
        let out = run("PrimitiveBoolean", vec![("value", Value::Bool(value))]).unwrap();
        assert!(matches!(out.values[0], Value::Bool(v) if v == value));
    }
}
