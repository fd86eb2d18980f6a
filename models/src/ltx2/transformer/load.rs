//! Loading the LTX-2 transformer from the official single files (`ltx-2-19b-dev.safetensors`, 2.3, and
//! ComfyUI's split diffusion-model files: official names under `model.diffusion_model.`, or bare), or from
//! a diffusers `transformer/` folder (diffusers names, renamed part by part: diffusers 0.42.1
//! `convert_ltx2_transformer_to_diffusers`).
//!
//! The release is read from the tensors (ComfyUI's detection): `audio_adaln_single` marks LTX-2 (without
//! it the file is an LTX-Video 0.9.x transformer); `prompt_scale_shift_table` in the blocks marks the 2.3
//! layout, and without `prompt_adaln_single` the 2.5 one. Sizes come from the shapes; the head split and
//! the flags that no shape shows (`causal_temporal_positioning`, `av_ca_timestep_scale_multiplier`, …)
//! from the `config` metadata or `config.json`.

use super::config::{Ltx2TransformerConfig, Ltx2Version};
use super::model::Ltx2Transformer;
use crate::block_stack::BlockHolding;
use crate::fp8::{Fp8Format, LinearStorage};
use crate::weights::{RenamingBackend, WeightError, WeightSource, rename_parts};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::Path;
use std::sync::Arc;

/// Prefix of the transformer in the official single files.
pub const SINGLE_FILE_PREFIX: &str = "model.diffusion_model";

/// Official module names and their diffusers names.
const DIFFUSERS_NAMES: [(&str, &str); 14] = [
    ("patchify_proj", "proj_in"),
    ("audio_patchify_proj", "audio_proj_in"),
    ("adaln_single", "time_embed"),
    ("audio_adaln_single", "audio_time_embed"),
    ("av_ca_video_scale_shift_adaln_single", "av_cross_attn_video_scale_shift"),
    ("av_ca_a2v_gate_adaln_single", "av_cross_attn_video_a2v_gate"),
    ("av_ca_audio_scale_shift_adaln_single", "av_cross_attn_audio_scale_shift"),
    ("av_ca_v2a_gate_adaln_single", "av_cross_attn_audio_v2a_gate"),
    ("scale_shift_table_a2v_ca_video", "video_a2v_cross_attn_scale_shift_table"),
    ("scale_shift_table_a2v_ca_audio", "audio_a2v_cross_attn_scale_shift_table"),
    ("prompt_adaln_single", "prompt_adaln"),
    ("audio_prompt_adaln_single", "audio_prompt_adaln"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
];

/// Tensors under the transformer's prefix that belong to other parts (the text connectors).
const OTHER_PARTS: [&str; 2] = ["video_embeddings_connector.", "audio_embeddings_connector."];

/// Where the transformer sits in a weight source, and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ltx2Layout {
    /// diffusers names instead of the official ones.
    pub diffusers: bool,
    /// The prefix before every transformer tensor (no trailing dot; empty for none).
    pub prefix: String,
}

impl Ltx2Layout {
    /// The stored name of the tensor the model calls `name` (official, without prefix).
    pub fn stored_name(&self, name: &str) -> String {
        let name = if self.diffusers { rename_parts(name, &DIFFUSERS_NAMES) } else { name.to_string() };
        if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) }
    }

    /// A `VarBuilder` taking the official names, handing out tensors as `dtype` (fp8 linear weights stay
    /// fp8).
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
        if self.diffusers {
            let layout = Ltx2Layout { diffusers: true, prefix: String::new() };
            RenamingBackend::new(builder, move |name| layout.stored_name(name)).into_var_builder()
        } else {
            builder
        }
    }

    /// The dtype of the transformer's builder: the file's own (bf16, f16, f32) for every tensor but the
    /// fp8 weights, which the linear layers keep as fp8 codes and widen with their scales (Lightricks'
    /// fp8 files: fp8 block linears beside bf16 tables); f32 when the dtypes mix otherwise.
    pub fn storage_dtype(&self, source: &WeightSource) -> Result<DType, WeightError> {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}.", self.prefix) };
        let others = OTHER_PARTS.map(|part| format!("{prefix}{part}"));
        let names = source
            .names()
            .filter(|name| name.starts_with(&prefix) && !others.iter().any(|other| name.starts_with(other.as_str())));
        source.common_dtype(names, "LTX-2 transformer weights")
    }
}

/// Finds the LTX-2 transformer in `source`.
pub fn detect_layout(source: &WeightSource) -> Result<Ltx2Layout, WeightError> {
    let candidates = [(false, SINGLE_FILE_PREFIX), (false, ""), (true, ""), (true, SINGLE_FILE_PREFIX)];
    for (diffusers, prefix) in candidates {
        let layout = Ltx2Layout { diffusers, prefix: prefix.to_string() };
        if source.contains(&layout.stored_name("audio_adaln_single.linear.weight")) {
            return Ok(layout);
        }
    }
    let files = describe(source);
    for (diffusers, prefix) in candidates {
        let layout = Ltx2Layout { diffusers, prefix: prefix.to_string() };
        if source.contains(&layout.stored_name("adaln_single.linear.weight")) {
            return Err(WeightError::Invalid {
                file: files,
                message: "this is an LTX-Video 0.9.x transformer (it has no audio stream), not LTX-2".into(),
            });
        }
    }
    Err(WeightError::Invalid {
        file: files,
        message: format!(
            "no LTX-2 transformer found: expected '{SINGLE_FILE_PREFIX}.audio_adaln_single.linear.weight' \
             (single file) or 'audio_time_embed.linear.weight' (diffusers); the file may hold only the VAEs, the \
             text encoder or the connectors"
        ),
    })
}

/// The configuration of the transformer in `source`.
pub fn read_config(source: &WeightSource, layout: &Ltx2Layout) -> Result<Ltx2TransformerConfig, WeightError> {
    let matrix = |name: &str| -> Result<(usize, usize), WeightError> {
        let stored = layout.stored_name(name);
        match source.shape(&stored).as_deref() {
            Some(&[rows, columns]) => Ok((rows, columns)),
            Some(other) => Err(WeightError::Invalid {
                file: source.file_of(&stored),
                message: format!("tensor '{stored}' has shape {other:?}, expected a matrix"),
            }),
            None => Err(WeightError::Missing { files: describe(source), tensor: stored, expected: Vec::new() }),
        }
    };
    let has = |name: &str| source.contains(&layout.stored_name(name));
    let version = if !has("transformer_blocks.0.prompt_scale_shift_table") {
        Ltx2Version::V2_0
    } else if has("prompt_adaln_single.linear.weight") {
        Ltx2Version::V2_3
    } else {
        Ltx2Version::V2_5
    };
    let mut config = Ltx2TransformerConfig::ltx2_19b().for_version(version);
    config.gated_attention = has("transformer_blocks.0.attn1.to_gate_logits.weight");
    config.caption_projection = has("caption_projection.linear_1.weight");
    config.ff_bias = has("transformer_blocks.0.ff.net.0.proj.bias");
    config.audio_ff_bias = has("transformer_blocks.0.audio_ff.net.0.proj.bias");
    config.keyframes_embedding = has("keyframes_abs_pos_embedding");

    let (dv, in_channels) = matrix("patchify_proj.weight")?;
    let (da, audio_in_channels) = matrix("audio_patchify_proj.weight")?;
    config.in_channels = in_channels;
    config.audio_in_channels = audio_in_channels;
    config.out_channels = matrix("proj_out.weight")?.0;
    config.audio_out_channels = matrix("audio_proj_out.weight")?.0;
    config.num_layers =
        (0..usize::MAX).take_while(|i| has(&format!("transformer_blocks.{i}.scale_shift_table"))).count();
    if config.num_layers == 0 {
        return Err(WeightError::Missing {
            files: describe(source),
            tensor: layout.stored_name("transformer_blocks.0.scale_shift_table"),
            expected: Vec::new(),
        });
    }
    config.cross_attention_dim = matrix("transformer_blocks.0.attn2.to_k.weight")?.1;
    config.audio_cross_attention_dim = matrix("transformer_blocks.0.audio_attn2.to_k.weight")?.1;
    if config.caption_projection {
        config.caption_channels = matrix("caption_projection.linear_1.weight")?.1;
    }
    // The released head split (32 heads in both streams), unless the checkpoint's config says otherwise.
    config.num_attention_heads = 32.min(dv).max(1);
    config.attention_head_dim = dv / config.num_attention_heads;
    config.audio_num_attention_heads = 32.min(da).max(1);
    config.audio_attention_head_dim = da / config.audio_num_attention_heads;
    if let Some(json) = checkpoint_config(source, layout)? {
        config.apply_json(&json);
    }
    if config.inner_dim() != dv || config.audio_inner_dim() != da {
        return Err(WeightError::Invalid {
            file: describe(source),
            message: format!(
                "the config's heads ({} × {} video, {} × {} audio) do not match the {dv}- and {da}-wide streams",
                config.num_attention_heads,
                config.attention_head_dim,
                config.audio_num_attention_heads,
                config.audio_attention_head_dim
            ),
        });
    }
    Ok(config)
}

/// The `transformer` section of the single file's `config` metadata, or the diffusers `config.json`.
fn checkpoint_config(source: &WeightSource, layout: &Ltx2Layout) -> Result<Option<serde_json::Value>, WeightError> {
    let invalid = |file: String, error: &dyn std::fmt::Display| WeightError::Invalid {
        file,
        message: format!("the model config is not valid JSON: {error}"),
    };
    if let Some(text) = source.metadata("config") {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(describe(source), &e))?;
        return Ok(json.get("transformer").cloned().or(Some(json)));
    }
    if layout.diffusers
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

fn describe(source: &WeightSource) -> String {
    source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// How to hold the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Which blocks stay in memory; the others are read from the mapped file when a forward pass reaches
    /// them.
    pub blocks: BlockHolding,
    /// Widen every weight to f32 at load time, instead of keeping the linear layers in the file's dtype
    /// (bf16, f16, fp8) and widening them as they are used.
    pub widen_at_load: bool,
    /// Round the linear layers' weights that are not already fp8 to this fp8 format at load (ComfyUI's
    /// `UNETLoader` `weight_dtype`); fp8 weights keep the format they are stored in.
    pub fp8_storage: Option<Fp8Format>,
}

impl LoadOptions {
    /// How the linear layers' weights are held.
    pub fn linear_storage(&self) -> LinearStorage {
        match (self.widen_at_load, self.fp8_storage) {
            (true, _) => LinearStorage::Widen,
            (false, Some(format)) => LinearStorage::Fp8(format),
            (false, None) => LinearStorage::AsStored,
        }
    }
}

impl Ltx2Transformer {
    /// Loads the transformer from `source`, detecting layout and release.
    pub fn load(source: &Arc<WeightSource>, device: &Device, options: LoadOptions) -> Result<Self, WeightError> {
        let layout = detect_layout(source)?;
        let config = read_config(source, &layout)?;
        Self::load_with_config(source, &layout, &config, device, options)
    }

    /// Loads with an explicit layout and configuration. Every tensor under the transformer's prefix must be
    /// used (the text connectors, which share the prefix in single files, excepted); with streamed blocks,
    /// every block must have the tensors of the first, with the same shapes.
    pub fn load_with_config(
        source: &Arc<WeightSource>,
        layout: &Ltx2Layout,
        config: &Ltx2TransformerConfig,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self, WeightError> {
        let dtype = if options.widen_at_load { DType::F32 } else { layout.storage_dtype(source)? };
        let vb = layout.var_builder_with(source, dtype, device, options.linear_storage());
        let model = Ltx2Transformer::new(config, &vb, options.blocks).map_err(|e| source.explain(&e))?;
        let prefix = if layout.prefix.is_empty() { String::new() } else { format!("{}.", layout.prefix) };
        let blocks = format!("{prefix}transformer_blocks.");
        if options.blocks.streams() {
            source.check_repeated_blocks(&blocks, config.num_layers, &[])?;
        }
        let unexpected: Vec<String> = source
            .unused(&prefix)
            .into_iter()
            .filter(|name| {
                let local = &name[prefix.len()..];
                let other_part = OTHER_PARTS.iter().any(|part| local.starts_with(part));
                let streamed_block = options.blocks.streams() && name.starts_with(&blocks);
                !other_part && !streamed_block
            })
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(model)
    }

    /// Opens and loads a single file (or ComfyUI's split diffusion-model file).
    pub fn load_file(path: &Path, device: &Device, options: LoadOptions) -> Result<Self, WeightError> {
        Self::load(&Arc::new(WeightSource::open(&[path])?), device, options)
    }
}
