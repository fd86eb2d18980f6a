//! The remaining nodes of ComfyUI's LTX-2 templates: `SamplerEulerAncestral`, `SetFirstSigma`,
//! `LTXVDualCFGGuider`, `LTXVReferenceAudio`, `GetICLoRAParameters`, and the noise mask a
//! `SetLatentNoiseMask` puts on a video latent. Each against ComfyUI's schema (written out below from its
//! `comfy_extras` sources), its behaviour, and its errors.

use candle_core::{Device, Tensor};
use kinograph_engine::{
    ApiPrompt, Environment, ExecutionContext, Executor, NodeError, NodeInputs, NodeOutput, RunOptions, RunStatus, Value,
};
use kinograph_models::sampling::samplers::{Denoiser, EulerAncestral, SampleOptions, Sampler, SamplingError};
use kinograph_nodes::values::{SamplerChoice, Sigmas};
use serde_json::{Value as Json, json};
use std::sync::Arc;

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
// MASK in the disk cache

/// A MASK is written to the disk cache and read back by its registered decoder with its shape and
/// values, as IMAGE and LATENT are (before the decoder was registered, `can_store` said no).
#[test]
fn masks_round_trip_through_the_disk_cache() {
    use kinograph_engine::{CacheEntry, DiskCache, Signature};
    use kinograph_nodes::values::Mask;
    let registry = kinograph_nodes::registry();
    let values = Tensor::from_vec(vec![0.0f32, 0.25, 0.5, 1.0, 0.75, 0.125], (1, 2, 3), &Device::Cpu).unwrap();
    let entry = CacheEntry::new(vec![Value::Object(Arc::new(Mask { values: values.clone() }))], None);
    assert!(DiskCache::can_store(&entry, &registry));
    let folder = tempfile::tempdir().unwrap();
    let disk = DiskCache::open(folder.path(), "test").unwrap();
    let signature = Signature([7; 32]);
    assert!(disk.store(&signature, &entry, &registry).unwrap());
    let loaded = disk.load(&signature, &registry).unwrap().expect("the stored entry");
    let mask = loaded.outputs[0].downcast::<Mask>().expect("a MASK comes back as a MASK");
    assert_eq!(mask.values.dims(), [1, 2, 3]);
    assert_eq!(
        mask.values.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        values.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// A stored mask without its tensor is refused by the decoder with a reason, not a panic.
#[test]
fn a_stored_mask_without_its_tensor_is_refused() {
    use kinograph_engine::StoredObject;
    let registry = kinograph_nodes::registry();
    let decoder = registry.decoder(kinograph_nodes::values::MASK_KIND).expect("the MASK decoder is registered");
    let stored = StoredObject { kind: kinograph_nodes::values::MASK_KIND.into(), metadata: json!({}), tensors: vec![] };
    let Err(reason) = decoder(stored) else { panic!("an empty stored mask must be refused") };
    assert!(reason.contains("'values'"), "{reason}");
}

// ---------------------------------------------------------------------------------------------------
// LTXVDualCFGGuider

#[test]
fn ltxv_dual_cfg_guider_schema_is_comfyuis() {
    let scale =
        |default: f64| json!(["FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}]);
    assert_eq!(
        object_info("LTXVDualCFGGuider"),
        json!({
            "input": {"required": {
                "model": ["MODEL"],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "video_cfg": scale(3.0),
                "audio_cfg": scale(7.0),
            }},
            "input_order": {"required": ["model", "positive", "negative", "video_cfg", "audio_cfg"]},
            "output": ["GUIDER"],
            "output_name": ["GUIDER"],
            "category": "model/sampling/guiders",
        })
    );
}

/// The tiny LTX-2 demo models in a temporary folder, and nodes run against them.
struct Ltx2Models {
    _root: tempfile::TempDir,
    env: Environment,
}

impl Ltx2Models {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        kinograph_nodes::demo_ltx2::write_ltx2_demo_models(&root.path().join("models")).unwrap();
        let env = Environment {
            output_dir: root.path().join("output"),
            input_dir: root.path().join("input"),
            models: kinograph_engine::ModelFolders::new(root.path().join("models")),
        };
        Ltx2Models { _root: root, env }
    }

    fn run(&self, class: &str, pairs: Vec<(&str, Value)>) -> Vec<Value> {
        let registry = kinograph_nodes::registry();
        let node = registry.get(class).unwrap_or_else(|| panic!("{class} is not registered"));
        let context = ExecutionContext::detached("1", class, self.env.clone());
        node.execute(&inputs(pairs), &context).unwrap_or_else(|error| panic!("{class}: {error}")).values
    }
}

/// What one LTX-2 sampling step to σ = 0 of the demo model gives with a guider: the model's guided
/// clean-latent estimate of both streams, from the same noise each time.
struct OneStep {
    models: Ltx2Models,
    model: Value,
    positive: Value,
    negative: Value,
    latent: Value,
    audio_vae: Value,
}

impl OneStep {
    fn new() -> Self {
        let models = Ltx2Models::new();
        let checkpoint = Value::from(kinograph_nodes::demo_ltx2::LTX2_CHECKPOINT);
        let model = models.run("CheckpointLoaderSimple", vec![("ckpt_name", checkpoint.clone())]).remove(0);
        let clip = models
            .run(
                "LTXAVTextEncoderLoader",
                vec![
                    ("text_encoder", Value::from(kinograph_nodes::demo_ltx2::LTX2_TEXT_ENCODER)),
                    ("ckpt_name", checkpoint.clone()),
                    ("device", Value::from("default")),
                ],
            )
            .remove(0);
        let audio_vae = models.run("LTXVAudioVAELoader", vec![("ckpt_name", checkpoint)]).remove(0);
        let audio_vae_value = audio_vae.clone();
        let encode = |text: &str| {
            models.run("CLIPTextEncode", vec![("text", Value::from(text)), ("clip", clip.clone())]).remove(0)
        };
        let (positive, negative) = (encode("a fox in the snow, birds calling"), encode("blurry, silent"));
        let int = |value: i64| Value::Int(value.into());
        let video = models
            .run(
                "EmptyLTXVLatentVideo",
                vec![("width", int(64)), ("height", int(64)), ("length", int(9)), ("batch_size", int(1))],
            )
            .remove(0);
        let audio = models
            .run(
                "LTXVEmptyLatentAudio",
                vec![
                    ("frames_number", int(9)),
                    ("frame_rate", int(24)),
                    ("batch_size", int(1)),
                    ("audio_vae", audio_vae),
                ],
            )
            .remove(0);
        let latent = models.run("LTXVConcatAVLatent", vec![("video_latent", video), ("audio_latent", audio)]).remove(0);
        OneStep { models, model, positive, negative, latent, audio_vae: audio_vae_value }
    }

    fn guider(&self, class: &str, scales: &[(&str, f64)]) -> Value {
        let mut pairs = vec![
            ("model", self.model.clone()),
            ("positive", self.positive.clone()),
            ("negative", self.negative.clone()),
        ];
        pairs.extend(scales.iter().map(|(name, value)| (*name, Value::Float(*value))));
        self.models.run(class, pairs).remove(0)
    }

    /// The sampled `(video, audio)` values.
    fn sample(&self, guider: Value) -> (Vec<f32>, Vec<f32>) {
        let noise = self.models.run("RandomNoise", vec![("noise_seed", Value::Int(3.into()))]).remove(0);
        let sampler = self.models.run("KSamplerSelect", vec![("sampler_name", Value::from("euler"))]).remove(0);
        let sigmas = self.models.run("ManualSigmas", vec![("sigmas", Value::from("1.0, 0.0"))]).remove(0);
        let out = self
            .models
            .run(
                "SamplerCustomAdvanced",
                vec![
                    ("noise", noise),
                    ("guider", guider),
                    ("sampler", sampler),
                    ("sigmas", sigmas),
                    ("latent_image", self.latent.clone()),
                ],
            )
            .remove(0);
        let latent = out.downcast::<kinograph_nodes::values::Latent>().unwrap();
        let flat = |tensor: &Tensor| tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&latent.samples), flat(&latent.audio.as_ref().expect("an audio-video latent").samples))
    }
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// On the tiny LTX-2 model, one step to σ = 0 returns the guided estimate: the dual guider's video is
/// `CFGGuider` at `video_cfg`'s and its audio `CFGGuider` at `audio_cfg`'s; equal scales are `CFGGuider`.
#[test]
fn ltxv_dual_cfg_guider_guides_video_and_audio_with_their_own_scales() {
    let step = OneStep::new();
    let (dual_video, dual_audio) =
        step.sample(step.guider("LTXVDualCFGGuider", &[("video_cfg", 3.0), ("audio_cfg", 7.0)]));
    let (cfg3_video, cfg3_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 3.0)]));
    let (cfg7_video, cfg7_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 7.0)]));
    assert!(largest_difference(&dual_video, &cfg3_video) < 1e-4, "video at video_cfg");
    assert!(largest_difference(&dual_audio, &cfg7_audio) < 1e-4, "audio at audio_cfg");
    assert!(
        largest_difference(&cfg3_audio, &cfg7_audio) > 1e-3,
        "the scales must matter for the test to mean anything"
    );
    assert!(largest_difference(&cfg3_video, &cfg7_video) > 1e-3);
    // Equal scales: CFGGuider with that scale (and its cfg = 1 shortcut).
    let (equal_video, equal_audio) =
        step.sample(step.guider("LTXVDualCFGGuider", &[("video_cfg", 1.0), ("audio_cfg", 1.0)]));
    let (one_video, one_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 1.0)]));
    assert_eq!((equal_video, equal_audio), (one_video, one_audio));
}

#[test]
fn ltxv_dual_cfg_guider_rejects_a_non_finite_scale() {
    let step_inputs = |video_cfg: f64| vec![("video_cfg", Value::Float(video_cfg)), ("audio_cfg", Value::Float(7.0))];
    // The scale is checked before the sockets are read.
    let Err(error) = run("LTXVDualCFGGuider", step_inputs(f64::NAN)) else { panic!("NaN must fail") };
    let text = error.to_string();
    assert!(text.contains("'video_cfg'") && text.contains("finite"), "{text}");
}

// ---------------------------------------------------------------------------------------------------
// GetICLoRAParameters

#[test]
fn get_iclora_parameters_schema_is_comfyuis() {
    assert_eq!(
        object_info("GetICLoRAParameters"),
        json!({
            "input": {"required": {"iclora_model": ["MODEL"]}},
            "input_order": {"required": ["iclora_model"]},
            "output": ["IC_LORA_PARAMETERS"],
            "output_name": ["iclora_parameters"],
            "category": "model/conditioning/ltxv",
        })
    );
}

/// A LoRA file in `models/loras` with one tensor that matches no layer and `metadata`.
fn write_lora(root: &std::path::Path, name: &str, metadata: &[(&str, &str)]) {
    let folder = root.join("models/loras");
    std::fs::create_dir_all(&folder).unwrap();
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &data).unwrap();
    let metadata = (!metadata.is_empty())
        .then(|| metadata.iter().map(|(key, value)| ((*key).to_string(), (*value).to_string())).collect());
    safetensors::serialize_to_file([("unrelated.lora_A.weight", view)], metadata, &folder.join(name)).unwrap();
}

/// The factor comes from the metadata of the last LoRA applied whose file has metadata, as ComfyUI's
/// `lora_metadata` attachment: a later LoRA without metadata passes it on, one with metadata replaces it.
#[test]
fn get_iclora_parameters_reads_the_last_lora_metadata() {
    use kinograph_nodes::values::IcLoraParameters;
    let root = tempfile::tempdir().unwrap();
    kinograph_nodes::demo::write_demo_models(&root.path().join("models")).unwrap();
    write_lora(root.path(), "ic_x2.safetensors", &[("reference_downscale_factor", "2")]);
    write_lora(root.path(), "plain.safetensors", &[]);
    write_lora(root.path(), "other.safetensors", &[("ss_network_dim", "16")]);
    write_lora(root.path(), "broken.safetensors", &[("reference_downscale_factor", "inf")]);
    let env = Environment {
        output_dir: root.path().join("output"),
        input_dir: root.path().join("input"),
        models: kinograph_engine::ModelFolders::new(root.path().join("models")),
    };
    let try_run = |class: &str, pairs: Vec<(&str, Value)>| {
        let registry = kinograph_nodes::registry();
        let context = ExecutionContext::detached("1", class, env.clone());
        registry.get(class).unwrap().execute(&inputs(pairs), &context).map(|mut out| out.values.remove(0))
    };
    let run_in = |class: &str, pairs: Vec<(&str, Value)>| try_run(class, pairs).unwrap();
    let base =
        run_in("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))]);
    let lora = |model: Value, name: &str| {
        run_in(
            "LoraLoaderModelOnly",
            vec![("model", model), ("lora_name", Value::from(name)), ("strength_model", Value::Float(1.0))],
        )
    };
    let factor = |model: &Value| {
        let out = run_in("GetICLoRAParameters", vec![("iclora_model", model.clone())]);
        out.downcast::<IcLoraParameters>().expect("IC_LORA_PARAMETERS").reference_downscale_factor
    };
    assert_eq!(factor(&base), 1, "no LoRA");
    let ic = lora(base.clone(), "ic_x2.safetensors");
    assert_eq!(factor(&ic), 2);
    assert_eq!(factor(&lora(ic.clone(), "plain.safetensors")), 2, "a LoRA without metadata passes it on");
    assert_eq!(factor(&lora(ic, "other.safetensors")), 1, "a LoRA with other metadata replaces it");
    // An infinite factor is an error naming the input and the file (ComfyUI raises on it too).
    let broken = lora(base, "broken.safetensors");
    let Err(error) = try_run("GetICLoRAParameters", vec![("iclora_model", broken)]) else {
        panic!("an infinite factor must fail")
    };
    let text = error.to_string();
    assert!(
        text.contains("'iclora_model'") && text.contains("broken.safetensors") && text.contains("finite"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------------
// The noise mask fitted to the latent (SetLatentNoiseMask, LTXVImgToVideo) and the masked step

fn f32s(value: &Json) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn usizes(value: &Json) -> Vec<usize> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

/// The toy denoiser of the fixture, `(0.6 − 0.4σ)·x + 0.25·tanh(x) + 0.05`, in float32 as torch computes it.
struct ComfyToy;

impl Denoiser for ComfyToy {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        let scale = f64::from(0.6_f32 - 0.4_f32 * sigma as f32);
        Ok((x.affine(scale, 0.05)? + x.tanh()?.affine(0.25, 0.0)?)?)
    }
}

/// Masks fitted to latents as ComfyUI's `prepare_mask` fits them (`tests/data/noise_mask.json`, made with
/// ComfyUI's own code by `tools/fixtures/make_noise_mask_fixtures.py`): pixel masks trilinear to the latent's
/// frames and size, batches of mask frames along time, per-frame masks, channel repeats, batch cut and
/// cycled, audio masks bilinear; and one masked `euler` step through `sample_flow` with the fitted mask.
#[test]
fn noise_masks_are_fitted_and_applied_as_comfyui_does() {
    use kinograph_models::sampling::samplers::{Euler, sample_flow};
    use kinograph_nodes::diffusion::noise_mask::reshape_mask;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/noise_mask.json");
    let fixture: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut stepped = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shape = usizes(&case["latent_shape"]);
        let mask = Tensor::from_vec(f32s(&case["mask"]), usizes(&case["mask_shape"]), &Device::Cpu).unwrap();
        let fitted = reshape_mask(&mask, &shape).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(fitted.dims(), shape.as_slice(), "{name}");
        let ours: Vec<f32> = fitted.flatten_all().unwrap().to_vec1().unwrap();
        let difference = largest_difference(&ours, &f32s(&case["fitted"]));
        assert!(difference <= 1e-6, "{name}: the fitted mask is off by {difference}");
        if case["step"].is_null() {
            continue;
        }
        let step = &case["step"];
        let tensor = |key: &str| Tensor::from_vec(f32s(&step[key]), shape.as_slice(), &Device::Cpu).unwrap();
        let sigmas: Vec<f64> = f32s(&step["sigmas"]).into_iter().map(f64::from).collect();
        let mut callback = |_: &kinograph_models::sampling::samplers::StepInfo<'_>| Ok(());
        let mut options = SampleOptions { seed: 0, flow_shift: 2.37, callback: &mut callback };
        let output = sample_flow(
            &Euler,
            &mut ComfyToy,
            &tensor("noise"),
            &tensor("latent"),
            &sigmas,
            Some(&fitted),
            &mut options,
        )
        .unwrap();
        let output: Vec<f32> = output.flatten_all().unwrap().to_vec1().unwrap();
        let difference = largest_difference(&output, &f32s(&step["output"]));
        assert!(difference <= 1e-5, "{name}: the masked step is off by {difference}");
        stepped += 1;
    }
    assert_eq!(stepped, 3);
}

/// The pixel-space mask `SetLatentNoiseMask` stores reaches the sampler fitted to the latent: on the tiny
/// LTX-Video model, with the left half of the frame masked 0, the left latent column comes back as the
/// input latent exactly and the right one is generated. (Before the mask was fitted, a `[1, 1, 64, 64]`
/// mask could not be applied to a `[1, 128, 2, 2, 2]` latent at all.)
#[test]
fn set_latent_noise_mask_keeps_the_masked_region_when_sampling() {
    use kinograph_nodes::values::{Latent, Mask};
    let root = tempfile::tempdir().unwrap();
    kinograph_nodes::demo::write_demo_models(&root.path().join("models")).unwrap();
    let models = Ltx2Models {
        env: Environment {
            output_dir: root.path().join("output"),
            input_dir: root.path().join("input"),
            models: kinograph_engine::ModelFolders::new(root.path().join("models")),
        },
        _root: root,
    };
    let int = |value: i64| Value::Int(value.into());
    let model = models
        .run("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))])
        .remove(0);
    let clip = models
        .run(
            "CLIPLoader",
            vec![
                ("clip_name", Value::from(kinograph_nodes::demo::DEMO_TEXT_ENCODER)),
                ("type", Value::from("ltxv")),
                ("device", Value::from("default")),
            ],
        )
        .remove(0);
    let positive =
        models.run("CLIPTextEncode", vec![("text", Value::from("a fox in the snow")), ("clip", clip)]).remove(0);
    let empty = models
        .run(
            "EmptyLTXVLatentVideo",
            vec![("width", int(64)), ("height", int(64)), ("length", int(9)), ("batch_size", int(1))],
        )
        .remove(0);
    // Left half 0 (keep), right half 1 (generate).
    let columns: Vec<f32> = (0..64).map(|column| if column < 32 { 0.0 } else { 1.0 }).collect();
    let mask = Tensor::from_vec(columns.repeat(64), (1, 64, 64), &Device::Cpu).unwrap();
    let masked = models
        .run("SetLatentNoiseMask", vec![("samples", empty), ("mask", Value::Object(Arc::new(Mask { values: mask })))])
        .remove(0);
    let guider = models.run("BasicGuider", vec![("model", model), ("conditioning", positive)]).remove(0);
    let noise = models.run("RandomNoise", vec![("noise_seed", int(5))]).remove(0);
    let sampler = models.run("KSamplerSelect", vec![("sampler_name", Value::from("euler"))]).remove(0);
    let sigmas = models.run("ManualSigmas", vec![("sigmas", Value::from("1.0, 0.5, 0.0"))]).remove(0);
    let out = models
        .run(
            "SamplerCustomAdvanced",
            vec![
                ("noise", noise),
                ("guider", guider),
                ("sampler", sampler),
                ("sigmas", sigmas),
                ("latent_image", masked),
            ],
        )
        .remove(0);
    let samples = &out.downcast::<Latent>().unwrap().samples;
    assert_eq!(samples.dims(), [1, 128, 2, 2, 2]);
    let column =
        |index: usize| -> Vec<f32> { samples.narrow(4, index, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    assert!(column(0).iter().all(|&value| value == 0.0), "the kept half is the input latent (zeros)");
    assert!(column(1).iter().any(|&value| value.abs() > 1e-3), "the other half is generated");
}

// ---------------------------------------------------------------------------------------------------
// LTXVReferenceAudio

#[test]
fn ltxv_reference_audio_schema_is_comfyuis() {
    let percent = |default: f64| json!(["FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001}]);
    assert_eq!(
        object_info("LTXVReferenceAudio"),
        json!({
            "input": {"required": {
                "model": ["MODEL"],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "reference_audio": ["AUDIO"],
                "audio_vae": ["VAE"],
                "identity_guidance_scale": ["FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": 0.01}],
                "start_percent": percent(0.0),
                "end_percent": percent(1.0),
            }},
            "input_order": {"required": [
                "model", "positive", "negative", "reference_audio", "audio_vae",
                "identity_guidance_scale", "start_percent", "end_percent"
            ]},
            "output": ["MODEL", "CONDITIONING", "CONDITIONING"],
            "output_name": ["MODEL", "positive", "negative"],
            "category": "model/conditioning/ltxv",
        })
    );
}

/// Half a second of a stereo tone at 16 kHz.
fn reference_clip() -> Value {
    let samples: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let waveform = Tensor::from_vec(samples.repeat(2), (1, 2, 8000), &Device::Cpu).unwrap();
    Value::Object(Arc::new(kinograph_nodes::values::Audio::new(waveform, 16_000)))
}

impl OneStep {
    /// `LTXVReferenceAudio` on this model and conditionings: (model, positive, negative).
    fn with_reference(&self, scale: f64, start_percent: f64) -> (Value, Value, Value) {
        let mut out = self.models.run(
            "LTXVReferenceAudio",
            vec![
                ("model", self.model.clone()),
                ("positive", self.positive.clone()),
                ("negative", self.negative.clone()),
                ("reference_audio", reference_clip()),
                ("audio_vae", self.audio_vae.clone()),
                ("identity_guidance_scale", Value::Float(scale)),
                ("start_percent", Value::Float(start_percent)),
                ("end_percent", Value::Float(1.0)),
            ],
        );
        let negative = out.remove(2);
        let positive = out.remove(1);
        (out.remove(0), positive, negative)
    }

    fn basic(&self, model: &Value, conditioning: &Value) -> Value {
        self.models.run("BasicGuider", vec![("model", model.clone()), ("conditioning", conditioning.clone())]).remove(0)
    }
}

/// The reference clip's tokens reach the model (the prediction changes), and identity guidance adds
/// `scale·(with clip − without clip)` to the prediction: one step to σ = 0 with `BasicGuider` returns
/// `c_ref + 3·(c_ref − c_noref)`; outside the sigma window (`start_percent` 0.5 puts σ = 1 before it) it
/// returns `c_ref`.
#[test]
fn ltxv_reference_audio_adds_the_clip_and_identity_guidance() {
    use kinograph_nodes::values::Conditioning;
    let step = OneStep::new();
    let (model, positive, negative) = step.with_reference(0.0, 0.0);
    for conditioning in [&positive, &negative] {
        let conditioning = conditioning.downcast::<Conditioning>().unwrap();
        let tokens = conditioning.entries[0].ref_audio.as_ref().expect("the clip's tokens are in the conditioning");
        assert_eq!((tokens.dim(0).unwrap(), tokens.dim(2).unwrap()), (1, 8 * 16), "[1, T, C·F] tokens");
    }
    let (ref_video, ref_audio) = step.sample(step.basic(&model, &positive));
    let (plain_video, plain_audio) = step.sample(step.basic(&step.model, &step.positive));
    assert!(largest_difference(&ref_audio, &plain_audio) > 1e-4, "the reference clip changes the prediction");
    let (guided_model, guided_positive, _) = step.with_reference(3.0, 0.0);
    let (video, audio) = step.sample(step.basic(&guided_model, &guided_positive));
    let expected = |with: &[f32], without: &[f32]| -> Vec<f32> {
        with.iter().zip(without).map(|(w, n)| w + 3.0 * (w - n)).collect()
    };
    assert!(largest_difference(&video, &expected(&ref_video, &plain_video)) < 1e-4, "video");
    assert!(largest_difference(&audio, &expected(&ref_audio, &plain_audio)) < 1e-4, "audio");
    let (late_model, late_positive, _) = step.with_reference(3.0, 0.5);
    let (late_video, late_audio) = step.sample(step.basic(&late_model, &late_positive));
    assert_eq!((late_video, late_audio), (ref_video, ref_audio), "σ = 1 is before start_percent 0.5");
}

/// ComfyUI's ID-LoRA positions: the reference's latents 0..N, moved back so the last ends 0.04 s before 0.
/// With causal positions the ends of latents 0..3 are 0, 0.01, 0.05, 0.09 s, so the shift is 0.13 s.
#[test]
fn reference_audio_positions_end_before_the_target() {
    let step = OneStep::new();
    let model = step.model.downcast::<kinograph_nodes::values::DiffusionModel>().unwrap();
    let kinograph_nodes::values::Transformer::Ltx2(transformer) = &model.transformer else { panic!("LTX-2") };
    let positions = transformer.reference_audio_positions(2, 3).unwrap();
    assert_eq!(positions.dims(), [2, 1, 3, 2]);
    let values: Vec<f32> = positions.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let expected = [-0.13f32, -0.12, -0.12, -0.08, -0.08, -0.04];
    assert!(largest_difference(&values, &expected) < 1e-6, "{values:?}");
}

#[test]
fn ltxv_reference_audio_rejects_an_empty_clip_and_a_video_vae() {
    let step = OneStep::new();
    let empty = Value::Object(Arc::new(kinograph_nodes::values::Audio::new(
        Tensor::zeros((1, 1, 0), candle_core::DType::F32, &Device::Cpu).unwrap(),
        16_000,
    )));
    let registry = kinograph_nodes::registry();
    let node = registry.get("LTXVReferenceAudio").unwrap();
    let attempt = |audio: Value, vae: Value| {
        let pairs = vec![
            ("model", step.model.clone()),
            ("positive", step.positive.clone()),
            ("negative", step.negative.clone()),
            ("reference_audio", audio),
            ("audio_vae", vae),
            ("identity_guidance_scale", Value::Float(3.0)),
            ("start_percent", Value::Float(0.0)),
            ("end_percent", Value::Float(1.0)),
        ];
        let context = ExecutionContext::detached("1", "LTXVReferenceAudio", step.models.env.clone());
        match node.execute(&inputs(pairs), &context) {
            Ok(_) => panic!("must fail"),
            Err(error) => error.to_string(),
        }
    };
    let text = attempt(empty, step.audio_vae.clone());
    assert!(text.contains("'reference_audio'") && text.contains("no samples"), "{text}");
    let checkpoint = Value::from(kinograph_nodes::demo_ltx2::LTX2_CHECKPOINT);
    let video_vae = step.models.run("CheckpointLoaderSimple", vec![("ckpt_name", checkpoint)]).remove(2);
    let text = attempt(reference_clip(), video_vae);
    assert!(text.contains("'audio_vae'") && text.contains("LTXVAudioVAELoader"), "{text}");
}

/// `LTXVAddGuide` takes `GetICLoRAParameters`' output: a factor of 1 changes nothing; a larger one (a guide
/// ComfyUI dilates onto the latent's grid, which kinograph does not yet) is refused naming the input.
#[test]
fn ltxv_add_guide_takes_iclora_parameters_of_factor_one_only() {
    use kinograph_nodes::values::{IcLoraParameters, Image, Latent};
    let root = tempfile::tempdir().unwrap();
    kinograph_nodes::demo::write_demo_models(&root.path().join("models")).unwrap();
    let models = Ltx2Models {
        env: Environment {
            output_dir: root.path().join("output"),
            input_dir: root.path().join("input"),
            models: kinograph_engine::ModelFolders::new(root.path().join("models")),
        },
        _root: root,
    };
    let int = |value: i64| Value::Int(value.into());
    let mut loaded =
        models.run("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))]);
    let vae = loaded.remove(2);
    let clip = models
        .run(
            "CLIPLoader",
            vec![
                ("clip_name", Value::from(kinograph_nodes::demo::DEMO_TEXT_ENCODER)),
                ("type", Value::from("ltxv")),
                ("device", Value::from("default")),
            ],
        )
        .remove(0);
    let text = models.run("CLIPTextEncode", vec![("text", Value::from("a fox")), ("clip", clip)]).remove(0);
    let latent = models
        .run(
            "EmptyLTXVLatentVideo",
            vec![("width", int(64)), ("height", int(64)), ("length", int(17)), ("batch_size", int(1))],
        )
        .remove(0);
    let pixels = Tensor::rand(0f32, 1.0, (1, 64, 64, 3), &Device::Cpu).unwrap();
    let image = Value::Object(Arc::new(Image::new(pixels)));
    let guide = |parameters: Option<i64>| {
        let mut pairs = vec![
            ("positive", text.clone()),
            ("negative", text.clone()),
            ("vae", vae.clone()),
            ("latent", latent.clone()),
            ("image", image.clone()),
            ("frame_idx", int(0)),
            ("strength", Value::Float(1.0)),
        ];
        if let Some(factor) = parameters {
            let value = IcLoraParameters { reference_downscale_factor: factor };
            pairs.push(("iclora_parameters", Value::Object(Arc::new(value))));
        }
        let registry = kinograph_nodes::registry();
        let context = ExecutionContext::detached("1", "LTXVAddGuide", models.env.clone());
        registry.get("LTXVAddGuide").unwrap().execute(&inputs(pairs), &context)
    };
    let samples = |out: NodeOutput| -> Vec<f32> {
        let latent = out.values[2].downcast::<Latent>().unwrap();
        latent.samples.flatten_all().unwrap().to_vec1().unwrap()
    };
    let plain = samples(guide(None).unwrap());
    assert_eq!(samples(guide(Some(1)).unwrap()), plain);
    let Err(error) = guide(Some(2)) else { panic!("a factor of 2 must be refused") };
    let text = error.to_string();
    assert!(text.contains("'iclora_parameters'") && text.contains("reference_downscale_factor is 2"), "{text}");
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
