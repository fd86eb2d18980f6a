//! LTX-2's loaders: the transformer from a single-file checkpoint (through `CheckpointLoaderSimple`),
//! `LTXAVTextEncoderLoader` (Gemma 3 with the checkpoint's text projection and connectors),
//! `LTXVAudioVAELoader` (audio VAE and vocoder) and `LatentUpscaleModelLoader`.

use super::loaded_models::{BlockSizes, ModelNeed, load_counted, load_shared, plan_residency};
use super::model_loaders::{file_fingerprint, load_error, open, resolve, tokenizer};
use crate::values::{AudioVaeModel, DiffusionModel, GemmaText, LatentUpscaleModel, TextEncoder, Transformer};
use kinograph_engine::prelude::*;
use kinograph_models::fp8::Fp8Format;
use kinograph_models::gemma3::{Gemma3TextModel, GemmaLoadOptions, GemmaTokenizer};
use kinograph_models::ltx2::audio::{AudioVae, VaeParts, Vocoder};
use kinograph_models::ltx2::checkpoint::{Contents, Part};
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::ltx2::transformer::{LoadOptions, Ltx2Transformer};
use kinograph_models::ltx2::upsampler::LatentUpsampler;
use kinograph_models::weights::{WeightError, WeightSource};
use std::path::Path;
use std::sync::Arc;

/// ComfyUI's flow shift for LTX-2 models (`supported_models.LTXAV`), used by schedulers other than
/// `LTXVScheduler` and manual sigmas.
const LTX2_SHIFT: f64 = 2.37;

/// Stored bytes of the tensors whose names start with `prefix`.
fn stored_bytes(source: &WeightSource, prefix: &str) -> usize {
    source.names().filter(|name| name.starts_with(prefix)).filter_map(|name| source.stored_bytes(name)).sum()
}

fn require(input: &str, path: &Path, source: &WeightSource, contents: &Contents, part: Part) -> Result<(), NodeError> {
    contents.require(part, source).map_err(|e| load_error(input, path, &e))
}

/// Loads the LTX-2 transformer of a checkpoint (resident, or streamed block by block when it is large),
/// with its linear weights rounded to `fp8_storage` when one is given (`UNETLoader`'s `weight_dtype`).
pub fn load_ltx2_model(
    input: &str,
    path: &Path,
    source: &Arc<WeightSource>,
    fp8_storage: Option<Fp8Format>,
) -> Result<Arc<DiffusionModel>, NodeError> {
    let kind = match fp8_storage {
        None => "ltx2-transformer",
        Some(Fp8Format::E4M3Fn) => "ltx2-transformer-fp8-e4m3fn",
        Some(Fp8Format::E5M2) => "ltx2-transformer-fp8-e5m2",
    };
    load_counted(kind, path, || {
        let device = super::compute_device();
        // The transformer's prefix: ComfyUI-GGUF's files and split diffusion-model files may have none.
        let prefix = kinograph_models::ltx2::transformer::detect_layout(source)
            .map_or_else(|_| "model.diffusion_model.".to_string(), |layout| layout.stored_name(""));
        let sizes = BlockSizes {
            total: stored_bytes(source, &prefix),
            blocks: stored_bytes(source, &format!("{prefix}transformer_blocks.")),
            largest_block: stored_bytes(source, &format!("{prefix}transformer_blocks.0.")),
        };
        let residency = plan_residency(&ModelNeed::streamable(input, path, "transformer", &sizes), &device)?;
        let options = LoadOptions { blocks: residency.holding(), widen_at_load: false, fp8_storage };
        let transformer = Ltx2Transformer::load(source, &device, options).map_err(|e| load_error(input, path, &e))?;
        let bytes = sizes.kept(residency);
        let model = DiffusionModel {
            transformer: Transformer::Ltx2(Arc::new(transformer)),
            file: path.to_path_buf(),
            shift: LTX2_SHIFT,
            bytes,
            loras: Vec::new(),
            identity_guidance: Vec::new(),
        };
        Ok((model, bytes))
    })
}

/// Whether `source` holds an LTX-2 transformer.
pub fn is_ltx2(source: &WeightSource) -> bool {
    Contents::inspect(source).transformer.is_some()
}

/// `LTXAVTextEncoderLoader`: Gemma 3 from `models/text_encoders` with the text projection and connectors of
/// an LTX-2 checkpoint.
pub struct LtxavTextEncoderLoader;

impl Node for LtxavTextEncoderLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LTXAVTextEncoderLoader")
            .display_name("Load LTXV Audio Text Encoder")
            .category("model/loaders")
            .description("Recipes:\nltxav: gemma 3 12B or matching gemma 4 model")
            .input(InputSpec::model_file("text_encoder", "text_encoders", env))
            .input(InputSpec::model_file("ckpt_name", "checkpoints", env))
            .input(InputSpec::combo("device", ["default", "cpu"]).optional())
            .output("CLIP", "CLIP")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        let mut print = file_fingerprint(env, "text_encoders", constants, "text_encoder")?;
        print.extend(file_fingerprint(env, "checkpoints", constants, "ckpt_name")?);
        Some(print)
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let gemma_path = resolve(context.env(), "text_encoders", inputs, "text_encoder")?;
        let ckpt_path = resolve(context.env(), "checkpoints", inputs, "ckpt_name")?;
        let clip = gemma_clip(("text_encoder", &gemma_path), ("ckpt_name", &ckpt_path))?;
        Ok(NodeOutput::new(vec![Value::from(clip)]))
    }
}

/// LTX-2's CLIP: Gemma 3 from `gemma` (a ComfyUI/transformers safetensors file or a llama.cpp GGUF) with the
/// text projection and connectors of `connectors` (an LTX-2 checkpoint or a connectors file); each is an
/// (input name, file) pair for errors.
pub(super) fn gemma_clip(gemma: (&str, &Path), connectors: (&str, &Path)) -> Result<Arc<TextEncoder>, NodeError> {
    let ((gemma_input, gemma_path), (ckpt_input, ckpt_path)) = (gemma, connectors);
    let (gemma_path, ckpt_path) = (gemma_path.to_path_buf(), ckpt_path.to_path_buf());
    {
        let gemma = load_counted("gemma3", &gemma_path, || {
            load_gemma(gemma_input, &gemma_path).map(|loaded| {
                let bytes = loaded.2;
                (loaded, bytes)
            })
        })?;
        let connectors = load_shared("ltx2-connectors", &ckpt_path, || {
            let source = open(ckpt_input, &ckpt_path)?;
            let contents = Contents::inspect(&source);
            require(ckpt_input, &ckpt_path, &source, &contents, Part::TextProjection)?;
            require(ckpt_input, &ckpt_path, &source, &contents, Part::TextConnectors)?;
            let width = gemma.0.config().hidden_size;
            TextConnectors::load(&source, width, &super::compute_device())
                .map_err(|e| load_error(ckpt_input, &ckpt_path, &e))
        })?;
        let stack = GemmaText {
            model: gemma.0.clone(),
            tokenizer: gemma.1.clone(),
            connectors,
            gemma_file: gemma_path.clone(),
            connector_file: ckpt_path.clone(),
        };
        Ok(Arc::new(TextEncoder {
            encoder: None,
            tokenizer: tokenizer()?,
            gemma: Some(Arc::new(stack)),
            file: gemma_path,
            bytes: gemma.2,
        }))
    }
}

type LoadedGemma = (Arc<Gemma3TextModel>, Arc<GemmaTokenizer>, usize);

/// Gemma 3 and its tokenizer: the SentencePiece model the file embeds (`spiece_model`, as ComfyUI's Gemma
/// files carry it), else `tokenizer.model` / `tokenizer.json` beside the file.
fn load_gemma(input: &str, path: &Path) -> Result<LoadedGemma, NodeError> {
    let source = open(input, path)?;
    let contents = Contents::inspect(&source);
    if contents.transformer.is_some() || contents.ltxv_transformer {
        return Err(NodeError::input(
            input,
            format!(
                "{} is a diffusion model checkpoint, not a Gemma 3 text encoder: choose the Gemma file \
                 (gemma_3_12B_it*.safetensors) here and the checkpoint in ckpt_name",
                path.display()
            ),
        ));
    }
    let device = super::compute_device();
    // llama.cpp's GGUFs name the layers `blk.N.`, the others `layers.N.`.
    let under = |test: &dyn Fn(&str) -> bool| {
        source.names().filter(|name| test(name)).map(|name| gemma_resident_bytes(&source, name)).sum::<usize>()
    };
    let sizes = BlockSizes {
        total: under(&|_| true),
        blocks: under(&|name| name.contains("layers.") || name.starts_with("blk.")),
        largest_block: under(&|name| name.contains("layers.0.") || name.starts_with("blk.0.")),
    };
    let residency = plan_residency(&ModelNeed::streamable(input, path, "text encoder", &sizes), &device)?;
    let options = GemmaLoadOptions { layers: residency.holding() };
    let bytes = sizes.kept(residency);
    if let Some(gguf) = source.gguf_files().next().cloned() {
        // llama.cpp's layout (unsloth's gemma-3-12b-it-*.gguf): the tokenizer is in the metadata.
        let model = Gemma3TextModel::load_gguf(&source, &device, options).map_err(|e| gemma_error(input, path, &e))?;
        let tokenizer = GemmaTokenizer::from_gguf(&gguf).map_err(|e| NodeError::input(input, e.to_string()))?;
        return Ok((Arc::new(model), Arc::new(tokenizer), bytes));
    }
    let model = Gemma3TextModel::load(&source, &device, options).map_err(|e| gemma_error(input, path, &e))?;
    let tokenizer = match GemmaTokenizer::from_weight_source(&source) {
        Ok(tokenizer) => tokenizer,
        Err(embedded) => path.parent().and_then(|dir| GemmaTokenizer::from_folder(dir).ok()).ok_or_else(|| {
            NodeError::input(
                input,
                format!(
                    "{}: no tokenizer: the file has no embedded SentencePiece model ({embedded}) and there is no \
                         tokenizer.model or tokenizer.json beside it",
                    path.display()
                ),
            )
        })?,
    };
    if tokenizer.vocab_size() > model.config().vocab_size {
        return Err(NodeError::input(
            input,
            format!(
                "{}: the tokenizer has {} pieces but the model's embedding table only {}: they do not belong together",
                path.display(),
                tokenizer.vocab_size(),
                model.config().vocab_size
            ),
        ));
    }
    Ok((Arc::new(model), Arc::new(tokenizer), bytes))
}

/// The memory one of Gemma's tensors takes once loaded: its stored size, except for a quantized GGUF tensor
/// that no linear layer keeps in its blocks (the embedding table, `token_embd`), which is widened to f32.
fn gemma_resident_bytes(source: &WeightSource, name: &str) -> usize {
    let stored = source.stored_bytes(name).unwrap_or(0);
    match source.ggml_type(name) {
        Some(ty) if ty.candle_dtype().is_some_and(|d| d.block_size() > 1) && !name.starts_with("blk.") => {
            source.shape(name).map_or(stored, |shape| shape.iter().product::<usize>() * 4)
        }
        _ => stored,
    }
}

fn gemma_error(input: &str, path: &Path, error: &WeightError) -> NodeError {
    NodeError::input(input, format!("cannot load {} as Gemma 3: {error}", path.display()))
}

/// `LTXVAudioVAELoader`: the audio VAE and vocoder of an LTX-2 checkpoint (or a separate audio VAE file in
/// `models/vae` or `models/checkpoints`).
pub struct LtxvAudioVaeLoader;

impl Node for LtxvAudioVaeLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        let mut spec = InputSpec::model_file("ckpt_name", "checkpoints", env).tooltip("Audio VAE checkpoint to load.");
        if let kinograph_engine::schema::InputKind::Combo(options) = &mut spec.kind {
            for name in env.models.list("vae") {
                if !options.options.contains(&name) {
                    options.options.push(name);
                }
            }
        }
        NodeSchema::new("LTXVAudioVAELoader")
            .display_name("Load LTXV Audio VAE")
            .category("model/loaders")
            .input(spec)
            .output("VAE", "Audio VAE")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "vae", constants, "ckpt_name")
            .or_else(|| file_fingerprint(env, "checkpoints", constants, "ckpt_name"))
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "vae", inputs, "ckpt_name")
            .or_else(|_| resolve(context.env(), "checkpoints", inputs, "ckpt_name"))?;
        let vae = load_counted("ltx2-audio-vae", &path, || {
            let input = "ckpt_name";
            let source = open(input, &path)?;
            let contents = Contents::inspect(&source);
            require(input, &path, &source, &contents, Part::AudioVae)?;
            require(input, &path, &source, &contents, Part::Vocoder)?;
            let device = super::compute_device();
            let vae = AudioVae::load(&source, &device, VaeParts::Both).map_err(|e| load_error(input, &path, &e))?;
            let vocoder = Vocoder::load(&source, &device).map_err(|e| load_error(input, &path, &e))?;
            let bytes = ["audio_vae.", "vocoder."].iter().map(|p| stored_bytes(&source, p) * 2).sum();
            let model =
                AudioVaeModel { vae: Arc::new(vae), vocoder: Arc::new(vocoder), device, file: path.clone(), bytes };
            Ok::<_, NodeError>((model, bytes))
        })?;
        Ok(NodeOutput::new(vec![Value::from(vae)]))
    }
}

/// `LatentUpscaleModelLoader`: an LTX-2 latent upsampler from `models/latent_upscale_models`.
pub struct LatentUpscaleModelLoader;

impl Node for LatentUpscaleModelLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LatentUpscaleModelLoader")
            .display_name("Load Latent Upscale Model")
            .category("loaders")
            .input(InputSpec::model_file("model_name", "latent_upscale_models", env))
            .output("LATENT_UPSCALE_MODEL", "LATENT_UPSCALE_MODEL")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, "latent_upscale_models", constants, "model_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = resolve(context.env(), "latent_upscale_models", inputs, "model_name")?;
        let model = load_counted("ltx2-upsampler", &path, || {
            let source = open("model_name", &path)?;
            let upsampler = LatentUpsampler::load(&source, &super::compute_device())
                .map_err(|e| load_error("model_name", &path, &e))?;
            let bytes =
                source.names().filter_map(|name| source.shape(name)).map(|s| s.iter().product::<usize>() * 4).sum();
            Ok::<_, NodeError>((
                LatentUpscaleModel { upsampler: Arc::new(upsampler), file: path.clone(), bytes },
                bytes,
            ))
        })?;
        Ok(NodeOutput::new(vec![Value::from(model)]))
    }
}
