//! Test-only schemas that mirror ComfyUI's node definitions for the LTX-Video templates: the same class
//! names, input names, input order, widget kinds, defaults and display names as ComfyUI's `nodes.py`,
//! `comfy_extras/nodes_lt.py`, `nodes_video.py` and `nodes_custom_sampler.py` (ComfyUI 0.3.64).
//!
//! Kinograph's own LTX-Video nodes are being written elsewhere; once they exist these mirrors will be
//! replaced by the real registry. Executing one of these nodes is an error: they exist only so that the
//! UI → API conversion can be checked against ComfyUI's node definitions.
#![allow(dead_code)]

use kinograph_engine::{
    Environment, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, Registry,
};

struct Mirror(NodeSchema);

impl Node for Mirror {
    fn schema(&self, _: &Environment) -> NodeSchema {
        self.0.clone()
    }
    fn execute(&self, _: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Err(NodeError::msg(format!("{} is a test-only schema", self.0.class_type)))
    }
}

const MAX_RESOLUTION: i64 = 16384;

fn size(name: &str, default: i64) -> InputSpec {
    InputSpec::int(name, default).min(64).max(MAX_RESOLUTION).step(32)
}

/// ComfyUI's schemas for every node class the two LTX-Video templates use (and `LTXVPreprocess`).
pub fn ltxv_schemas() -> Vec<NodeSchema> {
    let clip_types = [
        "stable_diffusion",
        "stable_cascade",
        "sd3",
        "stable_audio",
        "mochi",
        "ltxv",
        "pixart",
        "cosmos",
        "lumina2",
        "wan",
        "hidream",
        "chroma",
        "ace",
        "omnigen2",
        "qwen_image",
        "hunyuan_image",
    ];
    vec![
        NodeSchema::new("CLIPLoader")
            .display_name("Load CLIP")
            .input(InputSpec::combo("clip_name", ["t5xxl_fp16.safetensors"]))
            .input(InputSpec::combo("type", clip_types))
            .input(InputSpec::combo("device", ["default", "cpu"]).optional())
            .output("CLIP", "CLIP"),
        NodeSchema::new("CheckpointLoaderSimple")
            .display_name("Load Checkpoint")
            .input(InputSpec::combo("ckpt_name", ["ltx-video-2b-v0.9.safetensors", "ltx-video-2b-v0.9.5.safetensors"]))
            .output("MODEL", "MODEL")
            .output("CLIP", "CLIP")
            .output("VAE", "VAE"),
        NodeSchema::new("CLIPTextEncode")
            .display_name("CLIP Text Encode (Prompt)")
            .input(InputSpec::multiline("text", "").dynamic_prompts())
            .input(InputSpec::socket("clip", "CLIP"))
            .output("CONDITIONING", "CONDITIONING"),
        NodeSchema::new("EmptyLTXVLatentVideo")
            .input(size("width", 768))
            .input(size("height", 512))
            .input(InputSpec::int("length", 97).min(1).max(MAX_RESOLUTION).step(8))
            .input(InputSpec::int("batch_size", 1).min(1).max(4096))
            .output("LATENT", "LATENT"),
        NodeSchema::new("LTXVScheduler")
            .input(InputSpec::int("steps", 20).min(1).max(10_000))
            .input(InputSpec::float("max_shift", 2.05).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::float("base_shift", 0.95).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::boolean("stretch", true))
            .input(InputSpec::float("terminal", 0.1).min(0.0).max(0.99).step(0.01))
            .input(InputSpec::socket("latent", "LATENT").optional())
            .output("SIGMAS", "SIGMAS"),
        NodeSchema::new("LTXVConditioning")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::float("frame_rate", 25.0).min(0.0).max(1000.0).step(0.01))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative"),
        NodeSchema::new("KSamplerSelect")
            .input(InputSpec::combo("sampler_name", ["euler", "euler_ancestral", "dpmpp_2m"]))
            .output("SAMPLER", "SAMPLER"),
        NodeSchema::new("SamplerCustom")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::boolean("add_noise", true))
            .input(InputSpec::int("noise_seed", 0).min(0).max(u64::MAX).control_after_generate())
            .input(InputSpec::float("cfg", 8.0).min(0.0).max(100.0).step(0.1).round(0.01))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("sampler", "SAMPLER"))
            .input(InputSpec::socket("sigmas", "SIGMAS"))
            .input(InputSpec::socket("latent_image", "LATENT"))
            .output("LATENT", "output")
            .output("LATENT", "denoised_output"),
        NodeSchema::new("VAEDecode")
            .display_name("VAE Decode")
            .input(InputSpec::socket("samples", "LATENT"))
            .input(InputSpec::socket("vae", "VAE"))
            .output("IMAGE", "IMAGE"),
        NodeSchema::new("CreateVideo")
            .display_name("Create Video")
            .input(InputSpec::socket("images", "IMAGE"))
            .input(InputSpec::float("fps", 30.0).min(1.0).max(120.0).step(1.0))
            .input(InputSpec::socket("audio", "AUDIO").optional())
            .output("VIDEO", "VIDEO"),
        NodeSchema::new("SaveVideo")
            .display_name("Save Video")
            .input(InputSpec::socket("video", "VIDEO"))
            .input(InputSpec::string("filename_prefix", "video/ComfyUI"))
            .input(InputSpec::combo("format", ["auto", "mp4"]))
            .input(InputSpec::combo("codec", ["auto", "h264"]))
            .output_node(),
        NodeSchema::new("LoadImage")
            .display_name("Load Image")
            // `VALIDATE_INPUTS(image)` checks the file itself, so ComfyUI skips the list check.
            .input(InputSpec::combo("image", ["ltxv_image_to_video_input_image.jpg"]).image_upload().node_validated())
            .output("IMAGE", "IMAGE")
            .output("MASK", "MASK"),
        NodeSchema::new("LTXVImgToVideo")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::socket("image", "IMAGE"))
            .input(size("width", 768))
            .input(size("height", 512))
            .input(InputSpec::int("length", 97).min(9).max(MAX_RESOLUTION).step(8))
            .input(InputSpec::int("batch_size", 1).min(1).max(4096))
            .input(InputSpec::float("strength", 1.0).min(0.0).max(1.0))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent"),
        NodeSchema::new("LTXVPreprocess")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::int("img_compression", 35).min(0).max(100))
            .output("IMAGE", "output_image"),
    ]
}

/// A registry of the mirrored schemas.
pub fn ltxv_registry() -> Registry {
    let mut registry = Registry::new();
    for schema in ltxv_schemas() {
        registry.register(Mirror(schema)).expect("distinct classes");
    }
    registry
}
