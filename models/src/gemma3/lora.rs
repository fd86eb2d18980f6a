//! LoRA updates of Gemma 3's weights, as ComfyUI applies a LoRA to LTX-2's text encoder (the `clip` side
//! of `LoraLoader`; the key formats are in [`crate::lora::KeyMap::gemma_text_encoder`]).
//!
//! Names are the text model's own, under ComfyUI's `model.` root: the projections (`layers.3.self_attn.q_proj`,
//! `layers.3.mlp.down_proj`) and the embedding table (`embed_tokens`, also the tied output table) take low-rank
//! updates and full differences, the norms (`layers.3.input_layernorm`, `norm`) full differences of their
//! weight `w` (the norm scales by `1 + w`). A patched model shares every base weight with the model it came from: resident
//! layers get their updates beside the shared weights, streamed layers get them as each is read from the
//! mapped file, so a LoRA costs its own size and the 12B model is never copied.
//!
//! [`tiny_lora_tensors`] and [`write_tiny_lora`] make a small LoRA for any configuration, for demos and tests, in
//! the format ComfyUI's LoRA extraction writes for a bare Gemma text encoder, the format we expect the LTX-2.3
//! templates' `gemma-3-12b-it-abliterated_lora_rank64_bf16.safetensors` to have (not checked against the file;
//! both prefixes ComfyUI reads are in [`crate::lora::KeyMap::gemma_text_encoder`]).

use super::config::Gemma3Config;
use super::model::{Gemma3Layer, Gemma3TextModel};
use crate::block_stack::StackBlock;
use crate::lora::{LayerPatch, patch_layers};
use crate::ops::stored_linear::StoredLinear;
use candle_core::{Device, Result, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The projections of one layer with their weights' `(out, in)`.
fn layer_projections(config: &Gemma3Config) -> [(&'static str, (usize, usize)); 7] {
    let (hidden, heads, kv_heads, head_dim) =
        (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim);
    let intermediate = config.intermediate_size;
    [
        ("self_attn.q_proj", (heads * head_dim, hidden)),
        ("self_attn.k_proj", (kv_heads * head_dim, hidden)),
        ("self_attn.v_proj", (kv_heads * head_dim, hidden)),
        ("self_attn.o_proj", (hidden, heads * head_dim)),
        ("mlp.gate_proj", (intermediate, hidden)),
        ("mlp.up_proj", (intermediate, hidden)),
        ("mlp.down_proj", (hidden, intermediate)),
    ]
}

impl Gemma3TextModel {
    /// Every matrix a LoRA can change, by its name under the text model, with its `(out, in)`: the
    /// projections (`layers.0.self_attn.q_proj`, …, `layers.0.mlp.down_proj`) and the embedding table
    /// (`embed_tokens`, `(vocab, hidden)`, which is also the tied output table of generation).
    pub fn linear_layers(&self) -> Vec<(String, (usize, usize))> {
        let config = self.config();
        let mut layers = vec![("embed_tokens".to_string(), (config.vocab_size, config.hidden_size))];
        for index in 0..config.num_hidden_layers {
            layers.extend(layer_projections(config).map(|(name, shape)| (format!("layers.{index}.{name}"), shape)));
        }
        layers
    }

    /// The one-dimensional weights a LoRA can change (by a full difference), with their widths: each layer's
    /// norms (`layers.0.input_layernorm`, …, `layers.0.self_attn.k_norm`) and the final `norm`.
    pub fn vector_parameters(&self) -> Vec<(String, usize)> {
        let config = self.config();
        let mut vectors = Vec::with_capacity(config.num_hidden_layers * NORMS.len() + 1);
        for index in 0..config.num_hidden_layers {
            for (name, head_width) in NORMS {
                let width = if head_width { config.head_dim } else { config.hidden_size };
                vectors.push((format!("layers.{index}.{name}"), width));
            }
        }
        vectors.push(("norm".to_string(), config.hidden_size));
        vectors
    }

    /// The model with LoRA updates (`name → patch`, names as [`Self::linear_layers`] and
    /// [`Self::vector_parameters`] give them), sharing every base weight with `self`. Resident layers carry
    /// their updates; streamed layers get them as they are read. Fails on a name the model does not have.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let mut patched = self.clone();
        if patches.is_empty() {
            return Ok(patched);
        }
        let known: BTreeSet<String> = self
            .linear_layers()
            .into_iter()
            .map(|(name, _)| name)
            .chain(self.vector_parameters().into_iter().map(|(name, _)| name))
            .collect();
        if let Some(name) = patches.keys().find(|name| !known.contains(*name)) {
            candle_core::bail!("the Gemma 3 text model has no weight '{name}' a LoRA can change");
        }
        if let Some(patch) = patches.get("embed_tokens") {
            if let Some(delta) = &patch.weight {
                patched.embed_deltas.push(delta.to_device(self.device())?);
            }
            if patch.bias.is_some() || patch.vector.is_some() {
                candle_core::bail!("the embedding table has no bias to update");
            }
        }
        if let Some(delta) = patches.get("norm").and_then(|patch| patch.vector.as_ref()) {
            patched.norm = patched.norm.patched(delta)?;
        }
        patched.layers = self.layers.with_patches(patches)?;
        Ok(patched)
    }
}

/// The norms of a layer, and whether each is a per-head norm (`head_dim` wide) rather than `hidden` wide.
const NORMS: [(&str, bool); 6] = [
    ("input_layernorm", false),
    ("post_attention_layernorm", false),
    ("pre_feedforward_layernorm", false),
    ("post_feedforward_layernorm", false),
    ("self_attn.q_norm", true),
    ("self_attn.k_norm", true),
];

impl StackBlock for Gemma3Layer {
    /// Adds `patches` (by names under the layer): weight updates to the projections, full differences to the
    /// norms. Fails on a name the layer does not have.
    fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()> {
        if patches.is_empty() {
            return Ok(());
        }
        let (norm_patches, linear_patches): (BTreeMap<String, LayerPatch>, BTreeMap<String, LayerPatch>) =
            patches.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(name, _)| name.ends_with("norm"));
        for (name, norm) in self.norms_mut() {
            if let Some(delta) = norm_patches.get(&name).and_then(|patch| patch.vector.as_ref()) {
                if delta.dims1()? != norm.width()? {
                    candle_core::bail!("the update of '{name}' is {} wide, the norm {}", delta.dims1()?, norm.width()?);
                }
                *norm = norm.patched(delta)?;
            }
        }
        patch_layers(self.linears_mut(), &linear_patches, StoredLinear::patched)
    }
}

/// The key prefix [`tiny_lora_tensors`] writes: ComfyUI's text encoder keys without the wrapper module
/// (`text_encoders.transformer.model.<name>`), as ComfyUI's LoRA extraction writes them for a bare Gemma text
/// encoder and as ComfyUI maps them onto LTX-2's (Comfy-Org/ComfyUI#12852).
pub const TINY_LORA_PREFIX: &str = "text_encoders.transformer.model.";

/// A LoRA of rank `rank` for every projection of a Gemma 3 model of `config`, in ComfyUI's extraction format:
/// `text_encoders.transformer.model.layers.{i}.<projection>.lora_up.weight` `[out, rank]` and
/// `….lora_down.weight` `[rank, in]`, no alpha (a scale of 1). The values
/// are a fixed function of `seed`, the key and the position, small enough (about 0.02 / √in for the product)
/// that the patched model stays close to the base one.
pub fn tiny_lora_tensors(config: &Gemma3Config, rank: usize, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for index in 0..config.num_hidden_layers {
        for (name, (out, inputs)) in layer_projections(config) {
            let stem = format!("{TINY_LORA_PREFIX}layers.{index}.{name}");
            let up_key = format!("{stem}.lora_up.weight");
            let down_key = format!("{stem}.lora_down.weight");
            let up = pseudo_random(&up_key, seed, (out, rank), 0.15)?;
            let down = pseudo_random(&down_key, seed, (rank, inputs), 0.15 / (inputs as f32).sqrt())?;
            tensors.insert(up_key, up);
            tensors.insert(down_key, down);
        }
    }
    Ok(tensors)
}

/// Writes [`tiny_lora_tensors`] to `path` as safetensors (f32).
pub fn write_tiny_lora(config: &Gemma3Config, rank: usize, seed: u64, path: &Path) -> Result<()> {
    let tensors: std::collections::HashMap<String, Tensor> =
        tiny_lora_tensors(config, rank, seed)?.into_iter().collect();
    candle_core::safetensors::save(&tensors, path)
}

/// Values in `[-amplitude, amplitude)` from a `SplitMix64` stream seeded by `seed` and `key`.
fn pseudo_random(key: &str, seed: u64, shape: (usize, usize), amplitude: f32) -> Result<Tensor> {
    let mut state =
        key.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let values: Vec<f32> =
        (0..shape.0 * shape.1).map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amplitude).collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{KeyMap, LoraFile};

    /// The tiny LoRA's keys are all read by the Gemma key map, one update per projection.
    #[test]
    fn tiny_lora_matches_every_projection() {
        let mut config = Gemma3Config::gemma3_12b();
        config.num_hidden_layers = 2;
        config.hidden_size = 8;
        config.intermediate_size = 12;
        config.num_attention_heads = 2;
        config.num_key_value_heads = 1;
        config.head_dim = 4;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.safetensors");
        write_tiny_lora(&config, 2, 7, &path).unwrap();
        let layers: Vec<(String, (usize, usize))> =
            (0..2).flat_map(|i| layer_projections(&config).map(|(n, s)| (format!("layers.{i}.{n}"), s))).collect();
        let lora = LoraFile::open(&path).unwrap();
        let patches = lora.patches(&KeyMap::gemma_text_encoder(&layers, &[]), &[("clip", 1.0)]).unwrap();
        assert!(patches.not_loaded.is_empty(), "{:?}", patches.not_loaded);
        assert_eq!(patches.layers["clip"].len(), 14);
        assert_eq!(tiny_lora_tensors(&config, 2, 7).unwrap().len(), 28);
    }
}
