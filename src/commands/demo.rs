//! `kinograph demo`: the built-in default. Writes tiny random LTX-Video models of the real structure
//! into the models folder (no download), then runs the text-to-video workflow (or image-to-video) on
//! them and writes an MP4.

use super::run::{RunArgs, run_loaded};
use super::{BudgetArgs, FolderArgs, Loaded, registry};
use crate::EXIT_INVALID;
use crate::progress::EventMode;
use clap::Args;
use kinograph_engine::{ApiPrompt, Environment, InputValue};
use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER, write_demo_models};
use serde_json::{Value as Json, json};
use std::path::PathBuf;

const TEXT_TO_VIDEO: &str = include_str!("../../workflows/ltxv_text_to_video.json");
const IMAGE_TO_VIDEO: &str = include_str!("../../workflows/ltxv_image_to_video.json");
const LTX2_TEXT_TO_VIDEO: &str = include_str!("../../workflows/ltx2_text_to_video.json");
/// The input image the image-to-video demo writes and loads.
const DEMO_IMAGE: &str = "kinograph-demo.png";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run image-to-video (from a generated picture) instead of text-to-video.
    #[arg(long, conflicts_with = "ltx2")]
    pub image_to_video: bool,
    /// Run LTX-2 text-to-video with sound (`workflows/ltx2_text_to_video.json`: two stages, latent
    /// upsampler, distilled LoRA) on tiny LTX-2 models written under ComfyUI's file names.
    #[arg(long)]
    pub ltx2: bool,
    /// Sampler steps.
    #[arg(long, default_value_t = 8)]
    pub steps: u32,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// How to report progress (as for `kinograph run`).
    #[arg(long, value_enum, default_value_t = EventMode::Bars)]
    pub events: EventMode,
}

pub fn run(args: &DemoArgs) -> u8 {
    match prepare(args) {
        Ok((loaded, env, run_args)) => run_loaded(loaded, registry(), env, &run_args),
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_INVALID
        }
    }
}

fn prepare(args: &DemoArgs) -> Result<(Loaded, Environment, RunArgs), String> {
    if args.ltx2 {
        return prepare_ltx2(args);
    }
    let env = args.folders.environment()?;
    let models = write_demo_models(env.models.models_dir())?;
    eprintln!("demo models: {} and {}", models.checkpoint.display(), models.text_encoder.display());
    let (source, name) = if args.image_to_video {
        let image = args.folders.input_dir.join(DEMO_IMAGE);
        kinograph_nodes::demo::write_demo_image(&image)?;
        (IMAGE_TO_VIDEO, "ltxv_image_to_video.json")
    } else {
        (TEXT_TO_VIDEO, "ltxv_text_to_video.json")
    };
    let mut prompt = ApiPrompt::parse(source, name).map_err(|e| e.to_string())?;
    let prefix = if args.image_to_video { "video/demo_i2v" } else { "video/demo_t2v" };
    let settings: [(&str, &str, Json); 8] = [
        ("CheckpointLoaderSimple", "ckpt_name", json!(DEMO_CHECKPOINT)),
        ("CLIPLoader", "clip_name", json!(DEMO_TEXT_ENCODER)),
        (if args.image_to_video { "LTXVImgToVideo" } else { "EmptyLTXVLatentVideo" }, "width", json!(256)),
        (if args.image_to_video { "LTXVImgToVideo" } else { "EmptyLTXVLatentVideo" }, "height", json!(192)),
        (if args.image_to_video { "LTXVImgToVideo" } else { "EmptyLTXVLatentVideo" }, "length", json!(25)),
        ("LTXVScheduler", "steps", json!(args.steps)),
        ("SaveVideo", "filename_prefix", json!(prefix)),
        ("LoadImage", "image", json!(DEMO_IMAGE)),
    ];
    for (class_type, input, value) in settings {
        for node in prompt.nodes.values_mut().filter(|node| node.class_type.as_deref() == Some(class_type)) {
            node.inputs.insert(input.to_string(), InputValue::Literal(value.clone()));
        }
    }
    Ok(finish(prompt, name, args, env))
}

/// The LTX-2 demo: tiny models of every part, then the two-stage text-to-video with sound at 192×128 (stage
/// 1 at 192×128, stage 2 at 384×256), 25 frames.
fn prepare_ltx2(args: &DemoArgs) -> Result<(Loaded, Environment, RunArgs), String> {
    let env = args.folders.environment()?;
    let models = kinograph_nodes::demo_ltx2::write_ltx2_demo_models(env.models.models_dir())?;
    eprintln!(
        "demo models: {}, {}, {}, {}",
        models.checkpoint.display(),
        models.text_encoder.display(),
        models.upsampler.display(),
        models.lora.display()
    );
    let name = "ltx2_text_to_video.json";
    let mut prompt = ApiPrompt::parse(LTX2_TEXT_TO_VIDEO, name).map_err(|e| e.to_string())?;
    let settings: [(&str, &str, Json); 6] = [
        ("EmptyLTXVLatentVideo", "width", json!(192)),
        ("EmptyLTXVLatentVideo", "height", json!(128)),
        ("EmptyLTXVLatentVideo", "length", json!(25)),
        ("LTXVEmptyLatentAudio", "frames_number", json!(25)),
        ("LTXVScheduler", "steps", json!(args.steps)),
        ("SaveVideo", "filename_prefix", json!("video/demo_ltx2")),
    ];
    for (class_type, input, value) in settings {
        for node in prompt.nodes.values_mut().filter(|node| node.class_type.as_deref() == Some(class_type)) {
            node.inputs.insert(input.to_string(), InputValue::Literal(value.clone()));
        }
    }
    Ok(finish(prompt, name, args, env))
}

/// The run of a demo workflow: its arguments, and its UI form for the MP4's metadata.
fn finish(prompt: ApiPrompt, name: &str, args: &DemoArgs, env: Environment) -> (Loaded, Environment, RunArgs) {
    let run_args = RunArgs {
        file: PathBuf::from(format!("built-in demo ({name})")),
        overrides: Vec::new(),
        prompt_seed: None,
        folders: args.folders.clone(),
        events: args.events,
        cache_ram: 1 << 30,
        budget: args.budget.clone(),
        cache_dir: None,
        jobs: None,
    };
    let ui_workflow = kinograph_engine::ui_from_prompt(&prompt, &registry(), &env).ok().map(|ui| ui.to_json());
    (Loaded { prompt, ui_workflow }, env, run_args)
}
