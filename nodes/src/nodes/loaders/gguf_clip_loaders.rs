//! ComfyUI-GGUF's text-encoder loaders, `CLIPLoaderGGUF` and `DualCLIPLoaderGGUF` (city96's `nodes.py`):
//! files from `models/text_encoders` and `models/clip`, `.gguf` (folder kind `clip_gguf`) or safetensors, with
//! the core loaders' `type` list.
//!
//! With type `ltxv`, a T5 GGUF (llama.cpp's `t5encoder`, such as `t5-v1_1-xxl-encoder-Q8_0.gguf`) is LTX-Video's
//! text encoder, with T5's own tokenizer as ComfyUI-GGUF keeps ComfyUI's for T5-XXL. LTX-2 takes two files, as
//! ComfyUI's `DualCLIPLoader` does for `ltxv`: Gemma 3 (a llama.cpp `gemma3` GGUF such as
//! `gemma-3-12b-it-Q4_K_M.gguf`, or the safetensors Gemma) and the text projection and connectors (an LTX-2
//! checkpoint or a connectors file), in either order. The GGUF Gemma then works as `LTXAVTextEncoderLoader`'s
//! does, its layers streamed when it is large and its matrices kept quantized.

use super::loaded_models::BlockSizes;
use super::ltx2_loaders::gemma_clip;
use super::model_loaders::{CLIP_TYPES, file_fingerprint, load_text_encoder, open, t5_clip};
use crate::values::TextEncoder;
use kinograph_engine::prelude::*;
use kinograph_models::gemma3::{find_prefix, is_gemma3_gguf};
use kinograph_models::t5::T5Encoder;
use kinograph_models::weights::WeightSource;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder kind of `.gguf` text encoders; safetensors come from `text_encoders`.
const GGUF_FOLDER: &str = "clip_gguf";
const FOLDER: &str = "text_encoders";

/// The files a `clip_name` input offers: safetensors and `.gguf`, sorted, as ComfyUI-GGUF lists them.
fn clip_file_input(name: &str, env: &Environment) -> InputSpec {
    let mut spec = InputSpec::model_file(name, FOLDER, env);
    if let kinograph_engine::schema::InputKind::Combo(options) = &mut spec.kind {
        options.options.extend(env.models.list(GGUF_FOLDER));
        options.options.sort();
        options.options.dedup();
    }
    spec
}

fn is_gguf_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

fn clip_path(env: &Environment, inputs: &NodeInputs, input: &str) -> Result<PathBuf, NodeError> {
    let name = inputs.string(input)?;
    let folder = if is_gguf_name(name) { GGUF_FOLDER } else { FOLDER };
    env.models.resolve(folder, name).map_err(|missing| NodeError::input(input, missing))
}

fn clip_fingerprint(env: &Environment, constants: &NodeInputs, input: &str) -> Option<Vec<u8>> {
    let name = constants.string(input).ok()?;
    file_fingerprint(env, if is_gguf_name(name) { GGUF_FOLDER } else { FOLDER }, constants, input)
}

/// Kinograph runs `ltxv` (T5-XXL for LTX-Video, Gemma 3 with connectors for LTX-2).
fn validate_type(constants: &NodeInputs) -> Vec<(String, String)> {
    match constants.optional_string("type") {
        Ok(Some(kind)) if kind != "ltxv" => vec![(
            "type".to_string(),
            format!(
                "kinograph runs LTX-Video's T5-XXL and LTX-2's Gemma 3 text encoders: type must be 'ltxv', not \
                 '{kind}'"
            ),
        )],
        _ => Vec::new(),
    }
}

/// Whether `source` holds Gemma 3 (a llama.cpp `gemma3` GGUF or a safetensors Gemma).
fn is_gemma(source: &WeightSource) -> bool {
    is_gemma3_gguf(source) || (source.gguf_files().next().is_none() && find_prefix(source).is_ok())
}

/// The T5 encoder in `path`: a llama.cpp T5 GGUF, or a safetensors T5 as `CLIPLoader` reads it.
fn load_t5(input: &str, path: &Path, source: &Arc<WeightSource>) -> Result<Arc<TextEncoder>, NodeError> {
    if source.gguf_files().next().is_none() {
        return load_text_encoder(input, path);
    }
    super::loaded_models::load_counted("t5-gguf", path, || {
        t5_clip(input, path, &t5_gguf_sizes(source), |device, options| {
            T5Encoder::load_gguf_with(source, device, options)
        })
    })
}

/// What a llama.cpp T5 keeps in memory, all of it and per block (`enc.blk.N.`): the block matrices as
/// stored (quantized blocks stay blocks), a quantized tensor outside the blocks (the embedding table) at
/// the f32 size it is widened to.
fn t5_gguf_sizes(source: &WeightSource) -> BlockSizes {
    let bytes = |name: &str| -> usize {
        let stored = source.stored_bytes(name).unwrap_or(0);
        let quantized = source.ggml_type(name).is_some_and(|ty| ty.candle_dtype().is_some_and(|d| d.block_size() > 1));
        if quantized && !name.starts_with("enc.blk.") {
            source.shape(name).map_or(stored, |shape| shape.iter().product::<usize>() * 4)
        } else {
            stored
        }
    };
    let under = |prefix: &str| source.names().filter(|name| name.starts_with(prefix)).map(bytes).sum::<usize>();
    BlockSizes { total: under(""), blocks: under("enc.blk."), largest_block: under("enc.blk.0.") }
}

/// `CLIPLoaderGGUF`, titled "`CLIPLoader` (GGUF)": one text encoder.
pub struct ClipLoaderGguf;

impl Node for ClipLoaderGguf {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("CLIPLoaderGGUF")
            .display_name("CLIPLoader (GGUF)")
            .category("bootleg")
            .input(clip_file_input("clip_name", env))
            .input(InputSpec::combo("type", CLIP_TYPES))
            .output("CLIP", "CLIP")
    }

    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        validate_type(constants)
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        clip_fingerprint(env, constants, "clip_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = clip_path(context.env(), inputs, "clip_name")?;
        let source = open("clip_name", &path)?;
        if is_gemma(&source) {
            return Err(NodeError::input(
                "clip_name",
                format!(
                    "{} is Gemma 3, LTX-2's text encoder, which needs the text projection and connectors of an \
                     LTX-2 checkpoint: load it with DualCLIPLoaderGGUF (the connectors file or checkpoint as the \
                     other clip) or LTXAVTextEncoderLoader",
                    path.display()
                ),
            ));
        }
        Ok(NodeOutput::new(vec![Value::from(load_t5("clip_name", &path, &source)?)]))
    }
}

/// `DualCLIPLoaderGGUF`, titled "`DualCLIPLoader` (GGUF)": two text encoder files, one CLIP.
pub struct DualClipLoaderGguf;

impl Node for DualClipLoaderGguf {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("DualCLIPLoaderGGUF")
            .display_name("DualCLIPLoader (GGUF)")
            .category("bootleg")
            .input(clip_file_input("clip_name1", env))
            .input(clip_file_input("clip_name2", env))
            .input(InputSpec::combo("type", CLIP_TYPES))
            .output("CLIP", "CLIP")
    }

    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        validate_type(constants)
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        let mut print = clip_fingerprint(env, constants, "clip_name1")?;
        print.extend(clip_fingerprint(env, constants, "clip_name2")?);
        Some(print)
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let first = clip_path(context.env(), inputs, "clip_name1")?;
        let second = clip_path(context.env(), inputs, "clip_name2")?;
        let gemma_first = is_gemma(&*open("clip_name1", &first)?);
        let gemma_second = is_gemma(&*open("clip_name2", &second)?);
        let clip = match (gemma_first, gemma_second) {
            (true, false) => gemma_clip(("clip_name1", &first), ("clip_name2", &second))?,
            (false, true) => gemma_clip(("clip_name2", &second), ("clip_name1", &first))?,
            (true, true) => {
                return Err(NodeError::input(
                    "clip_name2",
                    "both files are Gemma 3: LTX-2 takes Gemma 3 and the text projection and connectors (an LTX-2 \
                     checkpoint or connectors file)",
                ));
            }
            (false, false) => {
                return Err(NodeError::input(
                    "clip_name1",
                    format!(
                        "neither {} nor {} is Gemma 3: with type 'ltxv' DualCLIPLoaderGGUF loads LTX-2's Gemma 3 \
                         (gemma3 GGUF or safetensors) with the connectors; T5 alone loads with CLIPLoaderGGUF",
                        first.display(),
                        second.display()
                    ),
                ));
            }
        };
        Ok(NodeOutput::new(vec![Value::from(clip)]))
    }
}
