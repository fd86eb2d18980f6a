//! Loading the transformer, in either layout it is published in (the names map one to one, diffusers
//! 0.42.1 `loaders/single_file_utils.py`, `convert_ltx_transformer_checkpoint_to_diffusers`):
//! - ComfyUI / original single files: the transformer under `model.diffusion_model.` (or with no prefix)
//!   with the original names, which the model is built with;
//! - diffusers folders (`transformer/diffusion_pytorch_model*.safetensors` + `config.json`), read through
//!   the shared [`RenamingBackend`].
//!
//! The two layouts differ only in four module names, which [`WeightLayout::stored_name`] maps:
//! `patchify_proj`/`proj_in`, `adaln_single`/`time_embed`, `q_norm`/`norm_q` and `k_norm`/`norm_k`.
//! Storage may be f32, f16 or bf16; tensors are widened to f32 as they are fetched.

use super::config::LtxvTransformerConfig;
use super::model::LtxvTransformer;
use crate::block_stack::BlockHolding;
use crate::fp8::LinearStorage;
use crate::weights::{RenamingBackend, WeightError, WeightSource, rename_parts};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of the transformer in ComfyUI / original single-file checkpoints.
pub const SINGLE_FILE_PREFIX: &str = "model.diffusion_model";

/// The module names that differ between the layouts: (original, diffusers).
const DIFFUSERS_NAMES: [(&str, &str); 4] =
    [("patchify_proj", "proj_in"), ("adaln_single", "time_embed"), ("q_norm", "norm_q"), ("k_norm", "norm_k")];

/// The input projection's weight, by which [`detect_layout`] finds the transformer.
const PATCHIFY_WEIGHT: &str = "patchify_proj.weight";

/// Which names the checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// Original LTX-Video / ComfyUI names (`patchify_proj`, `adaln_single`, `q_norm`, `k_norm`), the ones
    /// the model is built with.
    Original,
    /// diffusers names (`proj_in`, `time_embed`, `norm_q`, `norm_k`).
    Diffusers,
}

impl WeightLayout {
    /// The name under which this layout stores the tensor the model calls `name` (both without prefix).
    pub fn stored_name(self, name: &str) -> String {
        match self {
            WeightLayout::Original => name.to_string(),
            WeightLayout::Diffusers => rename_parts(name, &DIFFUSERS_NAMES),
        }
    }
}

/// Where the transformer sits in a weight source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedLayout {
    /// The names used.
    pub layout: WeightLayout,
    /// The prefix before every transformer tensor name (without the trailing dot; empty for none).
    pub prefix: String,
}

impl DetectedLayout {
    /// The full stored name (prefix included) of the tensor the model calls `name`.
    pub fn stored_name(&self, name: &str) -> String {
        let stored = self.layout.stored_name(name);
        if self.prefix.is_empty() { stored } else { format!("{}.{stored}", self.prefix) }
    }

    /// A `VarBuilder` over the transformer in `source` that takes the model's (original) names, as
    /// [`LtxvTransformer::new`] asks for them: rooted at the prefix, and renamed for the diffusers layout.
    /// Linear layers keep fp8 weights as fp8.
    pub fn var_builder(&self, source: &Arc<WeightSource>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        self.var_builder_with(source, dtype, device, LinearStorage::AsStored)
    }

    /// [`Self::var_builder`] with the linear layers' weights held as `storage` says.
    pub fn var_builder_with(
        &self,
        source: &Arc<WeightSource>,
        dtype: DType,
        device: &Device,
        storage: LinearStorage,
    ) -> VarBuilder<'static> {
        let builder = source.var_builder_with(&self.prefix, dtype, device, storage);
        match self.layout {
            WeightLayout::Original => builder,
            WeightLayout::Diffusers => {
                RenamingBackend::new(builder, |name| WeightLayout::Diffusers.stored_name(name)).into_var_builder()
            }
        }
    }
}

/// Finds the transformer in `source`: `model.diffusion_model.patchify_proj.weight` (single file), a bare
/// `patchify_proj.weight` (original names, no prefix) or `proj_in.weight` (diffusers).
pub fn detect_layout(source: &WeightSource) -> Result<DetectedLayout, WeightError> {
    let candidates = [
        (WeightLayout::Original, SINGLE_FILE_PREFIX),
        (WeightLayout::Original, ""),
        (WeightLayout::Diffusers, ""),
        (WeightLayout::Diffusers, SINGLE_FILE_PREFIX),
    ];
    for (layout, prefix) in candidates {
        let detected = DetectedLayout { layout, prefix: prefix.to_string() };
        if source.contains(&detected.stored_name(PATCHIFY_WEIGHT)) {
            return Ok(detected);
        }
    }
    Err(WeightError::Invalid {
        file: source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        message: format!(
            "no LTX-Video transformer found: expected '{SINGLE_FILE_PREFIX}.patchify_proj.weight' (single file) or \
             'proj_in.weight' (diffusers)"
        ),
    })
}

/// The configuration of the transformer in `source`: sizes from the tensor shapes, then the head split
/// and flags from the checkpoint's config (the single file's `__metadata__.config.transformer`, or the
/// diffusers `config.json` beside the weights).
pub fn read_config(source: &WeightSource, detected: &DetectedLayout) -> Result<LtxvTransformerConfig, WeightError> {
    let files = || source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    let shape = |name: &str| -> Result<Vec<usize>, WeightError> {
        let full = detected.stored_name(name);
        source.shape(&full).ok_or_else(|| WeightError::Missing { files: files(), tensor: full, expected: Vec::new() })
    };
    let two_dims = |name: &str| -> Result<(usize, usize), WeightError> {
        match shape(name)?.as_slice() {
            &[rows, columns] => Ok((rows, columns)),
            other => Err(WeightError::Invalid {
                file: source.file_of(&detected.stored_name(name)),
                message: format!("tensor '{}' has shape {other:?}, expected a matrix", detected.stored_name(name)),
            }),
        }
    };
    let (inner_dim, in_channels) = two_dims(PATCHIFY_WEIGHT)?;
    let (out_channels, _) = two_dims("proj_out.weight")?;
    let (_, caption_channels) = two_dims("caption_projection.linear_1.weight")?;
    let num_layers = (0..usize::MAX)
        .take_while(|i| source.contains(&detected.stored_name(&format!("transformer_blocks.{i}.scale_shift_table"))))
        .count();
    let mut config =
        LtxvTransformerConfig::from_shapes(inner_dim, in_channels, out_channels, caption_channels, num_layers);

    if let Some(json) = checkpoint_config(source, detected)? {
        config.apply_json(&json);
    }
    if config.inner_dim() != inner_dim {
        return Err(WeightError::Invalid {
            file: files(),
            message: format!(
                "config says {} heads × {} = {} wide, but '{}' is {inner_dim} wide",
                config.num_attention_heads,
                config.attention_head_dim,
                config.inner_dim(),
                detected.stored_name(PATCHIFY_WEIGHT)
            ),
        });
    }
    Ok(config)
}

/// The transformer section of the checkpoint's JSON config, if it has one.
fn checkpoint_config(
    source: &WeightSource,
    detected: &DetectedLayout,
) -> Result<Option<serde_json::Value>, WeightError> {
    let invalid = |file: String, error: &dyn std::fmt::Display| WeightError::Invalid {
        file,
        message: format!("the model config is not valid JSON: {error}"),
    };
    if let Some(text) = source.metadata("config") {
        let file = source.files().first().map(|f| f.display().to_string()).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(file, &e))?;
        return Ok(json.get("transformer").cloned().or(Some(json)));
    }
    if detected.layout == WeightLayout::Diffusers
        && let Some(path) = source.files().first().and_then(|f| f.parent()).map(|dir| dir.join("config.json"))
        && path.is_file()
    {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| WeightError::Open { file: name.clone(), reason: e.to_string() })?;
        return serde_json::from_str(&text).map(Some).map_err(|e| invalid(name, &e));
    }
    Ok(None)
}

/// The weight files of a diffusers transformer folder: `dir/diffusion_pytorch_model*.safetensors`, or the
/// same under `dir/transformer/` when `dir` is the pipeline folder.
pub fn diffusers_weight_files(dir: &Path) -> Result<Vec<PathBuf>, WeightError> {
    let folder = if dir.join("transformer").is_dir() { dir.join("transformer") } else { dir.to_path_buf() };
    let entries = std::fs::read_dir(&folder)
        .map_err(|e| WeightError::Open { file: folder.display().to_string(), reason: e.to_string() })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(std::result::Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().and_then(|n| n.to_str()).is_some_and(|name| {
                name.starts_with("diffusion_pytorch_model")
                    && std::path::Path::new(name).extension().is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"))
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(WeightError::Open {
            file: folder.display().to_string(),
            reason: "no diffusion_pytorch_model*.safetensors in this folder".into(),
        });
    }
    Ok(files)
}

/// How to hold the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LtxvLoadOptions {
    /// How the linear layers' weights are held: fp8 weights stay fp8 unless it is [`LinearStorage::Widen`];
    /// everything else is f32.
    pub storage: LinearStorage,
    /// Which blocks stay in memory; the others are read from the weight file when a forward pass reaches
    /// them.
    pub blocks: BlockHolding,
}

impl LtxvTransformer {
    /// Loads the transformer from `source`, detecting the layout; every transformer tensor must be used
    /// and have the expected shape.
    pub fn load(source: &Arc<WeightSource>, device: &Device) -> Result<Self, WeightError> {
        Self::load_with_options(source, device, LtxvLoadOptions::default())
    }

    /// [`Self::load`], holding the linear layers' weights as `storage` says (fp8 weights stay fp8 unless
    /// it is [`LinearStorage::Widen`]; the rest is f32).
    pub fn load_with_storage(
        source: &Arc<WeightSource>,
        device: &Device,
        storage: LinearStorage,
    ) -> Result<Self, WeightError> {
        Self::load_with_options(source, device, LtxvLoadOptions { storage, blocks: BlockHolding::Resident })
    }

    /// [`Self::load`], holding the weights as `options` says. Streamed blocks are checked on the file's
    /// headers now: every block must have the tensors of the first, with the same shapes.
    pub fn load_with_options(
        source: &Arc<WeightSource>,
        device: &Device,
        options: LtxvLoadOptions,
    ) -> Result<Self, WeightError> {
        let detected = detect_layout(source)?;
        let config = read_config(source, &detected)?;
        Self::load_with_config_and_options(source, &detected, &config, device, options)
    }

    /// Loads with an explicit layout and configuration.
    pub fn load_with_config(
        source: &Arc<WeightSource>,
        detected: &DetectedLayout,
        config: &LtxvTransformerConfig,
        device: &Device,
    ) -> Result<Self, WeightError> {
        Self::load_with_config_and_options(source, detected, config, device, LtxvLoadOptions::default())
    }

    fn load_with_config_and_options(
        source: &Arc<WeightSource>,
        detected: &DetectedLayout,
        config: &LtxvTransformerConfig,
        device: &Device,
        options: LtxvLoadOptions,
    ) -> Result<Self, WeightError> {
        let vb = detected.var_builder_with(source, DType::F32, device, options.storage);
        let model = LtxvTransformer::new_held(config, &vb, options.blocks).map_err(|e| source.explain(&e))?;
        let prefix = if detected.prefix.is_empty() { String::new() } else { format!("{}.", detected.prefix) };
        if !options.blocks.streams() {
            source.reject_unused(&prefix)?;
            return Ok(model);
        }
        // The blocks' tensors are under their stored names: diffusers renames `q_norm`, not the block prefix.
        let blocks = format!("{prefix}transformer_blocks.");
        source.check_repeated_blocks(&blocks, config.num_layers, &[])?;
        let unexpected: Vec<String> =
            source.unused(&prefix).into_iter().filter(|name| !name.starts_with(&blocks)).collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(model)
    }

    /// Opens and loads a single-file checkpoint.
    pub fn load_file(path: &Path, device: &Device) -> Result<Self, WeightError> {
        Self::load(&Arc::new(WeightSource::open(&[path])?), device)
    }

    /// Opens and loads a diffusers transformer folder (or the pipeline folder above it).
    pub fn load_diffusers(dir: &Path, device: &Device) -> Result<Self, WeightError> {
        Self::load(&Arc::new(WeightSource::open(&diffusers_weight_files(dir)?)?), device)
    }
}
