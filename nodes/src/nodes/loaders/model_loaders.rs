//! The loader nodes themselves.

use super::loaded_models::{BlockSizes, ModelNeed, load_counted, plan_residency};
use crate::values::{DiffusionModel, TextEncoder, Transformer, VideoVae};
use kinograph_engine::prelude::*;
use kinograph_models::fp8::{Fp8Format, LinearStorage};
use kinograph_models::ltxv::transformer::{LtxvLoadOptions, LtxvTransformer};
use kinograph_models::ltxv::vae::LtxvVae;
use kinograph_models::t5::{COMFY_BUNDLED_PREFIX, T5Encoder, T5LoadOptions, T5Tokenizer};
use kinograph_models::weights::{WeightError, WeightSource};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// LTX-Video's built-in flow shift (ComfyUI `supported_models.LTXV.sampling_settings["shift"]`).
const LTXV_SHIFT: f64 = 2.37;

/// The CLIP types ComfyUI's `CLIPLoader` lists; kinograph runs `ltxv` (T5-XXL).
pub(super) const CLIP_TYPES: [&str; 16] = [
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

pub(super) fn load_error(input: &str, file: &Path, error: &WeightError) -> NodeError {
    NodeError::input(input, format!("cannot load {}: {error}", file.display()))
}

/// Bytes of f32 weights under `prefix` in `source` (what loading them costs in memory).
pub(super) fn f32_bytes(source: &WeightSource, prefix: &str) -> usize {
    source
        .names()
        .filter(|name| name.starts_with(prefix))
        .filter_map(|name| source.shape(name))
        .map(|shape| shape.iter().product::<usize>() * 4)
        .sum()
}

/// Bytes the LTX-Video transformer under `prefix` takes when its linear layers are held as `storage`
/// says and everything else in f32: one byte a weight for fp8 (the file's fp8 weights, and with an fp8
/// `weight_dtype` every matrix), the stored blocks for GGUF quantized matrices, four otherwise.
fn transformer_bytes(source: &WeightSource, prefix: &str, storage: LinearStorage) -> usize {
    source
        .names()
        .filter(|name| name.starts_with(prefix) && !kinograph_models::weights::is_quantization_companion(name))
        .filter_map(|name| {
            let shape = source.shape(name)?;
            if source.dtype(name).is_none() && storage != LinearStorage::Widen {
                // GGUF blocks, which the linear layers keep as stored.
                return source.stored_bytes(name);
            }
            let stored_fp8 = source.dtype(name).and_then(Fp8Format::of_safetensors).is_some();
            let fp8 = match storage {
                LinearStorage::Widen => false,
                LinearStorage::AsStored => stored_fp8,
                LinearStorage::Fp8(_) => stored_fp8 || (shape.len() == 2 && name.ends_with(".weight")),
            };
            Some(shape.iter().product::<usize>() * if fp8 { 1 } else { 4 })
        })
        .sum()
}

/// How `UNETLoader`'s `weight_dtype` holds the transformer's linear weights. ComfyUI casts the weights to
/// the fp8 format at load and upcasts each layer to compute; `fp8_e4m3fn_fast` also multiplies in fp8 on
/// GPUs that can. Kinograph keeps the same fp8 codes and multiplies in f32, so `fp8_e4m3fn_fast` holds the
/// weights as `fp8_e4m3fn` does. Weights the file already stores as fp8 (scaled or not) keep their own
/// format, as ComfyUI keeps scaled checkpoints whatever this input says.
fn unet_weight_storage(weight_dtype: &str) -> Result<Option<Fp8Format>, NodeError> {
    match weight_dtype {
        "default" => Ok(None),
        "fp8_e4m3fn" | "fp8_e4m3fn_fast" => Ok(Some(Fp8Format::E4M3Fn)),
        "fp8_e5m2" => Ok(Some(Fp8Format::E5M2)),
        other => Err(NodeError::input(
            "weight_dtype",
            format!("'{other}' is not one of default, fp8_e4m3fn, fp8_e4m3fn_fast, fp8_e5m2"),
        )),
    }
}

pub(super) fn open(input: &str, path: &Path) -> Result<Arc<WeightSource>, NodeError> {
    WeightSource::open(&[path]).map(Arc::new).map_err(|e| load_error(input, path, &e))
}

pub(super) fn load_model(
    input: &str,
    path: &Path,
    source: &Arc<WeightSource>,
    fp8_storage: Option<Fp8Format>,
) -> Result<Arc<DiffusionModel>, NodeError> {
    if super::is_ltx2(source) {
        return super::load_ltx2_model(input, path, source, fp8_storage);
    }
    let (kind, storage) = match fp8_storage {
        None => ("ltxv-transformer", LinearStorage::AsStored),
        Some(Fp8Format::E4M3Fn) => ("ltxv-transformer-fp8-e4m3fn", LinearStorage::Fp8(Fp8Format::E4M3Fn)),
        Some(Fp8Format::E5M2) => ("ltxv-transformer-fp8-e5m2", LinearStorage::Fp8(Fp8Format::E5M2)),
    };
    load_counted(kind, path, || {
        let device = super::compute_device();
        let prefix = kinograph_models::ltxv::transformer::detect_layout(source)
            .map_or_else(|_| String::new(), |d| if d.prefix.is_empty() { d.prefix } else { format!("{}.", d.prefix) });
        let blocks = format!("{prefix}transformer_blocks.");
        let sizes = BlockSizes {
            total: transformer_bytes(source, &prefix, storage),
            blocks: transformer_bytes(source, &blocks, storage),
            largest_block: transformer_bytes(source, &format!("{blocks}0."), storage),
        };
        let residency = plan_residency(&ModelNeed::streamable(input, path, "transformer", &sizes), &device)?;
        let options = LtxvLoadOptions { storage, blocks: residency.holding() };
        let transformer =
            LtxvTransformer::load_with_options(source, &device, options).map_err(|e| load_error(input, path, &e))?;
        let bytes = sizes.kept(residency);
        let model = DiffusionModel {
            transformer: Transformer::Ltxv(Arc::new(transformer)),
            file: path.to_path_buf(),
            shift: LTXV_SHIFT,
            bytes,
            loras: Vec::new(),
            identity_guidance: Vec::new(),
        };
        Ok((model, bytes))
    })
}

pub(super) fn load_vae(
    input: &str,
    path: &Path,
    source: &Arc<WeightSource>,
    prefix: &str,
) -> Result<Arc<VideoVae>, NodeError> {
    load_counted("ltxv-vae", path, || {
        let device = super::compute_device();
        let bytes = f32_bytes(source, prefix);
        plan_residency(&ModelNeed::whole(input, path, "VAE", bytes), &device)?;
        let vae = LtxvVae::load(source, prefix, &device).map_err(|e| load_error(input, path, &e))?;
        Ok((VideoVae { vae: Arc::new(vae), file: path.to_path_buf(), bytes }, bytes))
    })
}

/// Bytes the T5 encoder keeps in memory, all of it and per block: its weights in their stored dtype (bf16,
/// f16 or fp8 stay so and are widened as they are used; f32 stays f32).
fn t5_sizes(source: &WeightSource) -> BlockSizes {
    let prefix = kinograph_models::t5::find_prefix(source).unwrap_or_default();
    let encoder = format!("{prefix}encoder.");
    let shared = format!("{prefix}shared.");
    let bytes_under = |prefixes: &[&str]| -> usize {
        source
            .names()
            .filter(|name| prefixes.iter().any(|prefix| name.starts_with(prefix)))
            .filter_map(|name| source.stored_bytes(name))
            .sum()
    };
    let blocks = format!("{encoder}block.");
    BlockSizes {
        total: bytes_under(&[&encoder, &shared]),
        blocks: bytes_under(&[&blocks]),
        largest_block: bytes_under(&[&format!("{blocks}0.")]),
    }
}

pub(super) fn tokenizer() -> Result<Arc<T5Tokenizer>, NodeError> {
    T5Tokenizer::new().map(Arc::new).map_err(NodeError::other)
}

/// Loads the T5 encoder in `path` (a text-encoder file, or a checkpoint that bundles one).
pub fn load_text_encoder(input: &str, path: &Path) -> Result<Arc<TextEncoder>, NodeError> {
    load_counted("t5", path, || {
        let source = open(input, path)?;
        t5_clip(input, path, &t5_sizes(&source), |device, options| T5Encoder::load_with(&source, device, options))
    })
}

/// A T5 CLIP of `sizes` in memory: resident when the budget has room for it, else with its blocks streamed
/// from the file as [`plan_residency`] decides (refused when not even that fits), its encoder loaded by `load` with the options decided.
pub(super) fn t5_clip(
    input: &str,
    path: &Path,
    sizes: &BlockSizes,
    load: impl FnOnce(&candle_core::Device, T5LoadOptions) -> Result<T5Encoder, WeightError>,
) -> Result<(TextEncoder, usize), NodeError> {
    let device = super::compute_device();
    let residency = plan_residency(&ModelNeed::streamable(input, path, "text encoder", sizes), &device)?;
    let options = T5LoadOptions { blocks: residency.holding() };
    let encoder = load(&device, options).map_err(|e| load_error(input, path, &e))?;
    let bytes = sizes.kept(residency);
    let clip = TextEncoder {
        encoder: Some(Arc::new(encoder)),
        tokenizer: tokenizer()?,
        gemma: None,
        file: path.to_path_buf(),
        bytes,
    };
    Ok((clip, bytes))
}

/// What a single-file checkpoint holds.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Arc<DiffusionModel>,
    pub clip: Arc<TextEncoder>,
    pub vae: Arc<VideoVae>,
}

/// Loads a ComfyUI single-file LTX-Video checkpoint: the transformer, the VAE, and the T5 encoder if the
/// file bundles one.
pub fn load_checkpoint(input: &str, path: &Path) -> Result<Checkpoint, NodeError> {
    let source = open(input, path)?;
    // The VAE loads next and cannot stream: the transformer is weighed with it counted as staying, so that
    // a transformer that can stream does rather than leave no room for the VAE.
    let vae_next = Arc::new(());
    let budget = kinograph_engine::MemoryBudget::global();
    budget.register(
        super::loaded_models::pool_of(&super::compute_device()),
        f32_bytes(&source, "vae.") as u64,
        &vae_next,
    );
    let model = if super::is_ltx2(&source) {
        super::load_ltx2_model(input, path, &source, None)?
    } else {
        load_model(input, path, &source, None)?
    };
    drop(vae_next);
    let vae = load_vae(input, path, &source, "vae")?;
    let clip = if source.names().any(|name| name.starts_with(COMFY_BUNDLED_PREFIX)) {
        load_text_encoder(input, path)?
    } else {
        Arc::new(TextEncoder {
            encoder: None,
            tokenizer: tokenizer()?,
            gemma: None,
            file: path.to_path_buf(),
            bytes: 0,
        })
    };
    Ok(Checkpoint { model, clip, vae })
}

pub(super) fn resolve(env: &Environment, kind: &str, inputs: &NodeInputs, input: &str) -> Result<PathBuf, NodeError> {
    env.models.resolve(kind, inputs.string(input)?).map_err(|missing| NodeError::input(input, missing))
}

/// A fingerprint of a chosen model file (length and modification time), so that replacing the file
/// re-runs the loader.
pub(super) fn file_fingerprint(env: &Environment, kind: &str, constants: &NodeInputs, input: &str) -> Option<Vec<u8>> {
    let path = resolve(env, kind, constants, input).ok()?;
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{}:{modified}", metadata.len()).into_bytes())
}

/// `CheckpointLoaderSimple`: MODEL, CLIP and VAE from one checkpoint in `models/checkpoints`.
pub struct CheckpointLoaderSimple;

impl Node for CheckpointLoaderSimple {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("CheckpointLoaderSimple")
            .display_name("Load Checkpoint")
            .category("loaders")
            .description("Loads an LTX-Video or LTX-2 single-file checkpoint (transformer and VAE, and T5 if bundled).")
            .input(InputSpec::model_file("ckpt_name", "checkpoints", env).tooltip("The checkpoint (model) to load."))
            .output("MODEL", "MODEL")
            .output("CLIP", "CLIP")
            .output("VAE", "VAE")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "checkpoints", constants, "ckpt_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "checkpoints", inputs, "ckpt_name")?;
        let Checkpoint { model, clip, vae } = load_checkpoint("ckpt_name", &path)?;
        Ok(NodeOutput::new(vec![Value::from(model), Value::from(clip), Value::from(vae)]))
    }
}

/// `UNETLoader`: the transformer alone, from `models/diffusion_models`.
pub struct UnetLoader;

impl Node for UnetLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("UNETLoader")
            .display_name("Load Diffusion Model")
            .category("advanced/loaders")
            .input(InputSpec::model_file("unet_name", "diffusion_models", env))
            .input(InputSpec::combo("weight_dtype", ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]).tooltip(
                "How the linear layers' weights are kept in memory: as the file stores them (default), or rounded \
                 to fp8 at load (e4m3fn, or e5m2), one byte a weight. Each layer is widened to f32 as it is used; \
                 _fast is the same as fp8_e4m3fn here (no fp8 matmul). Weights the file already stores as fp8 \
                 keep their format and scales.",
            ))
            .output("MODEL", "MODEL")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "diffusion_models", constants, "unet_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "diffusion_models", inputs, "unet_name")?;
        let fp8_storage = unet_weight_storage(inputs.string("weight_dtype")?)?;
        let source = open("unet_name", &path)?;
        Ok(NodeOutput::new(vec![Value::from(load_model("unet_name", &path, &source, fp8_storage)?)]))
    }
}

/// `VAELoader`: a VAE from `models/vae` (a VAE file, or a checkpoint with `vae.*` tensors).
pub struct VaeLoader;

impl Node for VaeLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("VAELoader")
            .display_name("Load VAE")
            .category("loaders")
            .input(InputSpec::model_file("vae_name", "vae", env))
            .output("VAE", "VAE")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "vae", constants, "vae_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "vae", inputs, "vae_name")?;
        let source = open("vae_name", &path)?;
        let prefix = if source.names().any(|name| name.starts_with("vae.")) { "vae" } else { "" };
        Ok(NodeOutput::new(vec![Value::from(load_vae("vae_name", &path, &source, prefix)?)]))
    }
}

/// `CLIPLoader`: a text encoder from `models/text_encoders`; type `ltxv` is T5-XXL.
pub struct ClipLoader;

impl Node for ClipLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("CLIPLoader")
            .display_name("Load CLIP")
            .category("advanced/loaders")
            .input(InputSpec::model_file("clip_name", "text_encoders", env))
            .input(InputSpec::combo("type", CLIP_TYPES))
            .input(InputSpec::combo("device", ["default", "cpu"]).optional())
            .output("CLIP", "CLIP")
    }

    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        match constants.optional_string("type") {
            Ok(Some(kind)) if kind != "ltxv" => vec![(
                "type".to_string(),
                format!("kinograph runs the T5-XXL text encoder of LTX-Video: type must be 'ltxv', not '{kind}'"),
            )],
            _ => Vec::new(),
        }
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "text_encoders", constants, "clip_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "text_encoders", inputs, "clip_name")?;
        Ok(NodeOutput::new(vec![Value::from(load_text_encoder("clip_name", &path)?)]))
    }
}
