//! Finding and loading T5 encoder weights in the layouts users have:
//! - ComfyUI single files (`models/text_encoders/t5xxl_fp16.safetensors`): HF tensor names with no prefix,
//!   `shared.weight` and/or `encoder.embed_tokens.weight`, no configuration;
//! - checkpoints that bundle the text encoder under `text_encoders.t5xxl.transformer.` (or any other
//!   prefix before `encoder.final_layer_norm.weight`);
//! - diffusers `text_encoder/` folders: `config.json` plus `model.safetensors`, or shards listed in
//!   `model.safetensors.index.json`.

use super::config::{T5Config, embedding_name};
use super::encoder::T5Encoder;
use crate::block_stack::BlockHolding;
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The prefix ComfyUI gives a T5-XXL bundled inside a checkpoint.
pub const COMFY_BUNDLED_PREFIX: &str = "text_encoders.t5xxl.transformer.";

const FINAL_NORM: &str = "encoder.final_layer_norm.weight";

/// How to hold the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct T5LoadOptions {
    /// Which blocks stay in memory; the others are read from the weight file when a forward pass reaches
    /// them.
    pub blocks: BlockHolding,
}

/// Names (relative to a block) of the tensors only block 0 carries: the relative attention bias, in
/// transformers' and llama.cpp's names.
pub(super) const FIRST_BLOCK_ONLY: [&str; 2] = [super::block::RELATIVE_ATTENTION_BIAS, "attn_rel_b.weight"];

impl T5Encoder {
    /// Opens T5 weights at `path`: a safetensors file, a diffusers `text_encoder/` folder, or a diffusers
    /// pipeline folder that has one.
    pub fn open(path: &Path, device: &Device) -> Result<Self, WeightError> {
        let files = weight_files(path)?;
        let source = Arc::new(WeightSource::open(&files)?);
        Self::load(&source, device)
    }

    /// Loads the encoder from `source`, every block in memory: [`Self::load_with`] with the default options.
    pub fn load(source: &Arc<WeightSource>, device: &Device) -> Result<Self, WeightError> {
        Self::load_with(source, device, T5LoadOptions::default())
    }

    /// Loads the encoder from `source`. The prefix is found from `encoder.final_layer_norm.weight`; the
    /// configuration comes from a T5 `config.json` beside the first file when there is one (a diffusers
    /// folder) and from the tensor shapes otherwise (single files carry none; see
    /// [`T5Config::from_weights`]).
    pub fn load_with(source: &Arc<WeightSource>, device: &Device, options: T5LoadOptions) -> Result<Self, WeightError> {
        let prefix = find_prefix(source)?;
        let config = match sibling_config(source) {
            Some(path) => T5Config::from_json_file(&path)?,
            None => T5Config::from_weights(source, &prefix)?,
        };
        Self::load_with_config_and_options(source, &prefix, &config, device, options)
    }

    /// Loads the encoder under `prefix` of `source` with a given configuration, every block in memory. Every
    /// tensor's shape is checked against it, and tensors under `{prefix}encoder.` that the model does not
    /// use are an error (they would mean another architecture, or a quantisation this loader does not
    /// understand).
    pub fn load_with_config(
        source: &Arc<WeightSource>,
        prefix: &str,
        config: &T5Config,
        device: &Device,
    ) -> Result<Self, WeightError> {
        Self::load_with_config_and_options(source, prefix, config, device, T5LoadOptions::default())
    }

    /// [`Self::load_with_config`], holding the blocks as `options` says. Streamed blocks are checked on the
    /// file's headers now: every block must have the tensors of the first (its relative attention bias
    /// aside), with the same shapes.
    pub fn load_with_config_and_options(
        source: &Arc<WeightSource>,
        prefix: &str,
        config: &T5Config,
        device: &Device,
        options: T5LoadOptions,
    ) -> Result<Self, WeightError> {
        let storage = storage_dtype(source, prefix)?;
        let builder = source.var_builder(prefix.trim_end_matches('.'), storage, device);
        let encoder = T5Encoder::new_held(&builder, config, options.blocks).map_err(|error| source.explain(&error))?;
        let blocks = format!("{prefix}encoder.block.");
        if options.blocks.streams() {
            source.check_repeated_blocks(&blocks, config.num_layers, &FIRST_BLOCK_ONLY)?;
        }
        let tied = format!("{prefix}encoder.embed_tokens.weight");
        let unused: Vec<String> = source
            .unused(&format!("{prefix}encoder."))
            .into_iter()
            .filter(|name| *name != tied && !(options.blocks.streams() && name.starts_with(&blocks)))
            .collect();
        if let Some(first) = unused.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unused });
        }
        Ok(encoder)
    }
}

/// The prefix before `encoder.final_layer_norm.weight` (empty for ComfyUI's own T5 files and diffusers
/// folders). A checkpoint with several T5 encoders must use ComfyUI's bundled prefix for the one to load.
pub fn find_prefix(source: &WeightSource) -> Result<String, WeightError> {
    let mut prefixes: Vec<&str> = source
        .names()
        .filter_map(|name| name.strip_suffix(FINAL_NORM))
        .filter(|prefix| prefix.is_empty() || prefix.ends_with('.'))
        .collect();
    prefixes.sort_unstable();
    match prefixes.as_slice() {
        [] => Err(WeightError::Missing {
            files: source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
            tensor: format!("{FINAL_NORM} (no T5 encoder found: this is not a T5 text encoder file)"),
            expected: Vec::new(),
        }),
        [only] => Ok((*only).to_string()),
        several if several.contains(&COMFY_BUNDLED_PREFIX) => Ok(COMFY_BUNDLED_PREFIX.to_string()),
        several => Err(WeightError::Invalid {
            file: source.file_of(&format!("{}{FINAL_NORM}", several[0])),
            message: format!("holds several T5 encoders (prefixes {several:?}); cannot tell which to load"),
        }),
    }
}

/// The dtype of the encoder's builder, which the embedding is kept in: see
/// [`WeightSource::common_dtype`]. The projections keep fp8 weights as fp8 whatever it is (ComfyUI's
/// `t5xxl_fp8_e4m3fn.safetensors`, and scaled files such as `umt5_xxl_fp8_e4m3fn_scaled`, with their
/// `scaled_fp8` marker and `scale_weight`s). Integer and quantised-block dtypes are refused, naming the
/// tensor.
pub fn storage_dtype(source: &WeightSource, prefix: &str) -> Result<DType, WeightError> {
    let embedding = format!("{prefix}{}", embedding_name(source, prefix));
    let encoder = format!("{prefix}encoder.");
    source.common_dtype(source.names().filter(|name| *name == embedding || name.starts_with(&encoder)), "T5 weights")
}

/// A T5 `config.json` in the folder of the source's first file, if there is one.
fn sibling_config(source: &WeightSource) -> Option<PathBuf> {
    let folder = source.files().first()?.parent()?;
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    (json.get("model_type").and_then(serde_json::Value::as_str) == Some("t5")).then_some(path)
}

/// The safetensors files of the T5 weights at `path`: the file itself, or for a folder (or a pipeline
/// folder's `text_encoder/`) the shards named by `model.safetensors.index.json`, else `model.safetensors`.
pub fn weight_files(path: &Path) -> Result<Vec<PathBuf>, WeightError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let folder = if path.join("text_encoder").is_dir() { path.join("text_encoder") } else { path.to_path_buf() };
    if !folder.is_dir() {
        return Err(WeightError::Open { file: path.display().to_string(), reason: "no such file or folder".into() });
    }
    let index = folder.join("model.safetensors.index.json");
    if index.is_file() {
        let file = index.display().to_string();
        let text = std::fs::read_to_string(&index)
            .map_err(|error| WeightError::Open { file: file.clone(), reason: error.to_string() })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|error| WeightError::Invalid { file: file.clone(), message: format!("not JSON: {error}") })?;
        let Some(map) = json.get("weight_map").and_then(serde_json::Value::as_object) else {
            return Err(WeightError::Invalid { file, message: "has no 'weight_map' object".into() });
        };
        let shards: BTreeSet<&str> = map.values().filter_map(serde_json::Value::as_str).collect();
        if shards.is_empty() {
            return Err(WeightError::Invalid { file, message: "'weight_map' names no files".into() });
        }
        return Ok(shards.into_iter().map(|shard| folder.join(shard)).collect());
    }
    let single = folder.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(WeightError::Open {
        file: folder.display().to_string(),
        reason: "no model.safetensors.index.json or model.safetensors in this folder".into(),
    })
}
