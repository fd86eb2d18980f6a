//! The LTX-Video nodes run end to end on the demo's tiny models (real structure, real names, real T5
//! vocabulary): text-to-video and image-to-video graphs with ComfyUI's class and input names, progress
//! with latent previews per sampler step, and the errors users meet.

use kinograph_engine::{
    ApiPrompt, Environment, Event, EventKind, Executor, RunOptions, RunOutcome, RunStatus, ValidationReport,
};
use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER, write_demo_models};
use kinograph_nodes::nodes::latent::read_latent_file;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn environment(root: &Path) -> Environment {
    write_demo_models(&root.join("models")).unwrap();
    Environment {
        output_dir: root.join("output"),
        input_dir: root.join("input"),
        models: kinograph_engine::ModelFolders::new(root.join("models")),
    }
}

fn text_to_video(steps: u64, sampler: &str) -> Value {
    json!({
        "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": DEMO_TEXT_ENCODER, "type": "ltxv", "device": "default"}},
        "44": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": DEMO_CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox running through fresh snow", "clip": ["38", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "low quality, worst quality", "clip": ["38", 0]}},
        "70": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 96, "height": 64, "length": 9, "batch_size": 1}},
        "71": {"class_type": "LTXVScheduler", "inputs": {"steps": steps, "max_shift": 2.05, "base_shift": 0.95, "stretch": true, "terminal": 0.1, "latent": ["70", 0]}},
        "69": {"class_type": "LTXVConditioning", "inputs": {"frame_rate": 25, "positive": ["6", 0], "negative": ["7", 0]}},
        "73": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "72": {"class_type": "SamplerCustom", "inputs": {"add_noise": true, "noise_seed": 497_797_676_867_141_u64, "cfg": 3,
            "model": ["44", 0], "positive": ["69", 0], "negative": ["69", 1], "sampler": ["73", 0], "sigmas": ["71", 0], "latent_image": ["70", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["72", 0], "vae": ["44", 2]}},
        "90": {"class_type": "SaveLatent", "inputs": {"samples": ["72", 0], "filename_prefix": "latents/t2v"}},
        "91": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}}
    })
}

fn run(env: Environment, prompt: &Value) -> (Result<RunOutcome, ValidationReport>, Vec<Event>) {
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), env);
    let prompt = ApiPrompt::parse(&prompt.to_string(), "test").unwrap();
    let graph = match executor.validate(&prompt) {
        Ok(graph) => Arc::new(graph),
        Err(report) => return (Err(report), Vec::new()),
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = RunOptions {
        events: Arc::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(executor.run(graph, options));
    let events = events.lock().unwrap().clone();
    (Ok(outcome), events)
}

#[test]
fn text_to_video_runs_with_progress_previews_and_saves_the_latent() {
    let root = tempfile::tempdir().unwrap();
    let (outcome, events) = run(environment(root.path()), &text_to_video(3, "euler"));
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    let progress: Vec<(u64, u64, bool)> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Progress { node, value, max, preview } if node == "72" => {
                Some((*value, *max, preview.is_some()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(progress, vec![(1, 3, true), (2, 3, true), (3, 3, true)]);
    let preview = events
        .iter()
        .find_map(|event| match &event.kind {
            EventKind::Progress { preview: Some(preview), .. } => Some(preview.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((preview.width, preview.height, preview.rgb.len()), (3, 2, 3 * 2 * 3));
    let latent = read_latent_file(&root.path().join("output/latents/t2v_00001_.latent")).unwrap();
    assert_eq!(latent.dims(), &[1, 128, 2, 2, 3]);
    let image = outcome.outputs["91"]["text"][0].as_str().unwrap().to_string();
    assert!(image.contains("[9, 64, 96, 3]"), "{image}");
}

#[test]
fn every_builtin_sampler_runs_the_graph() {
    let root = tempfile::tempdir().unwrap();
    let env = environment(root.path());
    for sampler in ["euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "lcm"] {
        let (outcome, _) = run(env.clone(), &text_to_video(2, sampler));
        let outcome = outcome.unwrap();
        assert_eq!(outcome.status, RunStatus::Success, "{sampler}: {:?}", outcome.failure);
    }
}

#[test]
fn impossible_sizes_and_missing_models_are_validation_errors() {
    let root = tempfile::tempdir().unwrap();
    let env = environment(root.path());
    let mut prompt = text_to_video(2, "euler");
    prompt["70"]["inputs"]["length"] = json!(10);
    prompt["70"]["inputs"]["width"] = json!(100);
    prompt["38"]["inputs"]["clip_name"] = json!("t5xxl_fp16.safetensors");
    let (result, _) = run(env, &prompt);
    let Err(report) = result else { panic!("validation should fail") };
    let text = report.to_text();
    assert!(text.contains("length 10 is not 8k + 1"), "{text}");
    assert!(text.contains("width 100 is not a multiple of 32"), "{text}");
    assert!(text.contains("t5xxl_fp16.safetensors"), "{text}");
}

#[test]
fn a_truncated_checkpoint_is_a_clear_error_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let env = environment(root.path());
    let good = root.path().join("models/checkpoints").join(DEMO_CHECKPOINT);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(root.path().join("models/checkpoints/truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let mut prompt = text_to_video(2, "euler");
    prompt["44"]["inputs"]["ckpt_name"] = json!("truncated.safetensors");
    let (outcome, _) = run(env, &prompt);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    let failure = outcome.failure.unwrap();
    assert_eq!(failure.node_id, "44");
    assert!(failure.exception_message.contains("truncated.safetensors"), "{}", failure.exception_message);
    assert!(!root.path().join("output/latents").exists(), "nothing saved");
}

/// The rest of ComfyUI's sampling node set on one graph: loaders of single parts, `BasicScheduler`,
/// `RandomNoise`, `CFGGuider`, `SamplerCustomAdvanced`, `KSampler`, `ConditioningZeroOut`,
/// `DisableNoise`, `BasicGuider`, `ManualSigmas`, `VAEDecodeTiled`, `VAEEncode`, `SaveLatent`. `KSampler`
/// and `SamplerCustomAdvanced` with the same scheduler, seed and CFG give the same latent.
#[test]
fn the_whole_sampling_node_set_agrees_with_itself() {
    let root = tempfile::tempdir().unwrap();
    let env = environment(root.path());
    let checkpoint = root.path().join("models/checkpoints").join(DEMO_CHECKPOINT);
    for folder in ["diffusion_models", "vae"] {
        std::fs::create_dir_all(root.path().join("models").join(folder)).unwrap();
        std::fs::copy(&checkpoint, root.path().join("models").join(folder).join(DEMO_CHECKPOINT)).unwrap();
    }
    let prompt = json!({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": DEMO_CHECKPOINT, "weight_dtype": "default"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": DEMO_CHECKPOINT}},
        "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": DEMO_TEXT_ENCODER, "type": "ltxv"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "waves on a beach", "clip": ["3", 0]}},
        "5": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["4", 0]}},
        "6": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}},
        "7": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": 123}},
        "9": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "cfg": 2.5}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "heun"}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["8", 0], "guider": ["9", 0], "sampler": ["10", 0], "sigmas": ["7", 0], "latent_image": ["6", 0]}},
        "12": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 123, "steps": 3, "cfg": 2.5, "sampler_name": "heun", "scheduler": "simple",
            "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0], "denoise": 1.0}},
        "13": {"class_type": "SaveLatent", "inputs": {"samples": ["11", 0], "filename_prefix": "advanced"}},
        "14": {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": "ksampler"}},
        "15": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["11", 0], "vae": ["2", 0], "tile_size": 64, "overlap": 32, "temporal_size": 8, "temporal_overlap": 4}},
        "16": {"class_type": "VAEEncode", "inputs": {"pixels": ["15", 0], "vae": ["2", 0]}},
        "17": {"class_type": "DisableNoise", "inputs": {}},
        "18": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["4", 0]}},
        "19": {"class_type": "ManualSigmas", "inputs": {"sigmas": "0.5, 0.25, 0"}},
        "20": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["17", 0], "guider": ["18", 0], "sampler": ["10", 0], "sigmas": ["19", 0], "latent_image": ["16", 0]}},
        "21": {"class_type": "SaveLatent", "inputs": {"samples": ["20", 1], "filename_prefix": "refined"}}
    });
    let (outcome, _) = run(env, &prompt);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    let read =
        |name: &str| read_latent_file(&root.path().join("output").join(format!("{name}_00001_.latent"))).unwrap();
    let (advanced, ksampler, refined) = (read("advanced"), read("ksampler"), read("refined"));
    assert_eq!(advanced.dims(), &[1, 128, 2, 2, 2]);
    let difference: f32 =
        (&advanced - &ksampler).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
    assert_eq!(difference, 0.0, "KSampler and SamplerCustomAdvanced sample identically");
    assert_eq!(refined.dims(), advanced.dims(), "encode of the tiled decode gives the latent shape back");
}
