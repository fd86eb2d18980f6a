//! The Gemma 3 decoder as a text encoder: transformers `Gemma3TextModel` (`modeling_gemma3.py`) returning
//! every hidden state.
//!
//! Per layer: `h += post_attention_norm(attention(input_norm(h)))`, `h += post_feedforward_norm(mlp(
//! pre_feedforward_norm(h)))`; norms are RMS norms scaled by `1 + w`; attention has per-head RMS-normed q
//! and k, grouped key/value heads, rotate-half RoPE (local or global table by layer), scores scaled by
//! `query_pre_attn_scalar^-1/2`, causal masking, and on sliding layers only the last `sliding_window`
//! keys. The MLP is `down(GELU_tanh(gate(x)) · up(x))`. Embeddings are multiplied by `√hidden` rounded
//! to the weight's dtype (61.97 in f32, 62.0 in bf16), as transformers does.
//!
//! [`Gemma3TextModel::forward_cached`] runs the same layers over new tokens only, with the earlier tokens'
//! keys and values from a [`Gemma3Cache`], for generation ([`super::generate()`]).

use super::config::{Gemma3Config, LayerType, RopeParameters};
use crate::block_stack::{BlockHolding, BlockStack};
use crate::lora::{LayerPatch, WeightDelta};
use crate::ops::activations::{gelu_tanh, softmax_last_dim};
use crate::ops::stored_linear::StoredLinear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::ops::Range;

/// A large negative logit for masked keys: finite, so that a fully masked row (a padding query) stays
/// finite instead of turning into NaN.
const MASKED: f32 = -1.0e9;

/// Gemma's RMS norm: `x / √(mean x² + ε) · (1 + w)`.
#[derive(Debug, Clone)]
pub(crate) struct GemmaNorm {
    scale: Tensor,
    eps: f32,
}

impl GemmaNorm {
    pub(crate) fn new(width: usize, eps: f64, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get(width, "weight")?.to_dtype(DType::F32)?;
        Ok(GemmaNorm { scale: (weight + 1.0)?, eps: eps as f32 })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, self.eps)
    }

    /// The same norm with `delta` (`[width]`, f32) added to its weight `w`.
    pub(super) fn patched(&self, delta: &Tensor) -> Result<Self> {
        let scale = (&self.scale + delta.to_device(self.scale.device())?)?;
        Ok(GemmaNorm { scale, eps: self.eps })
    }

    /// The width.
    pub(super) fn width(&self) -> Result<usize> {
        self.scale.dims1()
    }
}

/// One decoder layer.
#[derive(Debug, Clone)]
pub struct Gemma3Layer {
    q_proj: StoredLinear,
    k_proj: StoredLinear,
    v_proj: StoredLinear,
    o_proj: StoredLinear,
    q_norm: GemmaNorm,
    k_norm: GemmaNorm,
    gate_proj: StoredLinear,
    up_proj: StoredLinear,
    down_proj: StoredLinear,
    input_layernorm: GemmaNorm,
    post_attention_layernorm: GemmaNorm,
    pre_feedforward_layernorm: GemmaNorm,
    post_feedforward_layernorm: GemmaNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
}

impl Gemma3Layer {
    /// Weights under `model.layers.{i}`.
    pub fn new(config: &Gemma3Config, vb: &VarBuilder<'_>) -> Result<Self> {
        let (d, h, kv, hd) =
            (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim);
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        let eps = config.rms_norm_eps;
        Ok(Gemma3Layer {
            q_proj: StoredLinear::new(&attn.pp("q_proj"), d, h * hd)?,
            k_proj: StoredLinear::new(&attn.pp("k_proj"), d, kv * hd)?,
            v_proj: StoredLinear::new(&attn.pp("v_proj"), d, kv * hd)?,
            o_proj: StoredLinear::new(&attn.pp("o_proj"), h * hd, d)?,
            q_norm: GemmaNorm::new(hd, eps, &attn.pp("q_norm"))?,
            k_norm: GemmaNorm::new(hd, eps, &attn.pp("k_norm"))?,
            gate_proj: StoredLinear::new(&mlp.pp("gate_proj"), d, config.intermediate_size)?,
            up_proj: StoredLinear::new(&mlp.pp("up_proj"), d, config.intermediate_size)?,
            down_proj: StoredLinear::new(&mlp.pp("down_proj"), config.intermediate_size, d)?,
            input_layernorm: GemmaNorm::new(d, eps, &vb.pp("input_layernorm"))?,
            post_attention_layernorm: GemmaNorm::new(d, eps, &vb.pp("post_attention_layernorm"))?,
            pre_feedforward_layernorm: GemmaNorm::new(d, eps, &vb.pp("pre_feedforward_layernorm"))?,
            post_feedforward_layernorm: GemmaNorm::new(d, eps, &vb.pp("post_feedforward_layernorm"))?,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
            scale: config.query_pre_attn_scalar.powf(-0.5),
        })
    }

    /// The projections by their names under the layer (`self_attn.q_proj`, …, `mlp.down_proj`): the layers a
    /// LoRA can change.
    pub(super) fn linears_mut(&mut self) -> Vec<(String, &mut StoredLinear)> {
        let named = [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
            ("mlp.gate_proj", &mut self.gate_proj),
            ("mlp.up_proj", &mut self.up_proj),
            ("mlp.down_proj", &mut self.down_proj),
        ];
        named.into_iter().map(|(name, layer)| (name.to_string(), layer)).collect()
    }

    /// The norms by their names under the layer (`input_layernorm`, …, `self_attn.k_norm`).
    pub(super) fn norms_mut(&mut self) -> Vec<(String, &mut GemmaNorm)> {
        let named = [
            ("input_layernorm", &mut self.input_layernorm),
            ("post_attention_layernorm", &mut self.post_attention_layernorm),
            ("pre_feedforward_layernorm", &mut self.pre_feedforward_layernorm),
            ("post_feedforward_layernorm", &mut self.post_feedforward_layernorm),
            ("self_attn.q_norm", &mut self.q_norm),
            ("self_attn.k_norm", &mut self.k_norm),
        ];
        named.into_iter().map(|(name, norm)| (name.to_string(), norm)).collect()
    }

    /// `hidden` `[B, T, D]`; `rope` the (cos, sin) of this layer's table `[T, head_dim/2]`; `bias` the
    /// additive mask `[B, 1, T, T]`.
    pub fn forward(&self, hidden: &Tensor, rope: &(Tensor, Tensor), bias: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.project(hidden, rope)?;
        self.finish(hidden, &q, &k, &v, bias)
    }

    /// [`Self::forward`] for new tokens after those in `cache`: `rope` holds the new tokens' positions, the
    /// keys and values of earlier tokens come from `cache`, and the new ones are added to it (a sliding
    /// layer keeps only the last `window`). Tokens within one of `blocks` (absolute positions) also see the
    /// later tokens of their block.
    pub(crate) fn forward_cached(
        &self,
        hidden: &Tensor,
        rope: &(Tensor, Tensor),
        cache: &mut LayerCache,
        window: Option<usize>,
        blocks: &[Range<usize>],
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(hidden, rope)?;
        let position = cache.first + cache.keys.as_ref().map_or(Ok(0), |keys| keys.dim(2))?;
        let (keys, values) = match (&cache.keys, &cache.values) {
            (Some(keys), Some(values)) => (Tensor::cat(&[keys, &k], 2)?, Tensor::cat(&[values, &v], 2)?),
            _ => (k, v),
        };
        let bias = cached_bias(position, q.dim(2)?, cache.first, window, blocks, hidden.device())?;
        let output = self.finish(hidden, &q, &keys, &values, &bias)?;
        let kept = keys.dim(2)?;
        let keep = window.map_or(kept, |w| kept.min(w));
        cache.first += kept - keep;
        cache.keys = Some(keys.narrow(2, kept - keep, keep)?.contiguous()?);
        cache.values = Some(values.narrow(2, kept - keep, keep)?.contiguous()?);
        Ok(output)
    }

    /// The normed input's queries `[B, heads, T, head_dim]`, keys and values `[B, kv_heads, T, head_dim]`,
    /// queries and keys rotated.
    fn project(&self, hidden: &Tensor, rope: &(Tensor, Tensor)) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = hidden.dims3()?;
        let x = self.input_layernorm.forward(hidden)?;
        let heads = |projection: &StoredLinear, count: usize, norm: &GemmaNorm| -> Result<Tensor> {
            let projected = projection.forward(&x)?.reshape((b, t, count, self.head_dim))?;
            norm.forward(&projected)?.transpose(1, 2)?.contiguous()
        };
        let q = heads(&self.q_proj, self.heads, &self.q_norm)?;
        let k = heads(&self.k_proj, self.kv_heads, &self.k_norm)?;
        let v =
            self.v_proj.forward(&x)?.reshape((b, t, self.kv_heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope(&q, &rope.0, &rope.1)?;
        let k = candle_nn::rotary_emb::rope(&k, &rope.0, &rope.1)?;
        Ok((q, k, v))
    }

    /// Attention of the queries `q` (one per row of `hidden`) over `k`, `v` (`S` keys) with `bias`
    /// `[B, 1, T, S]`, then the residual adds and the MLP.
    fn finish(&self, hidden: &Tensor, q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, t, _) = hidden.dims3()?;
        let keys = k.dim(2)?;
        let repeat = self.heads / self.kv_heads.max(1);
        let expand = |x: &Tensor| -> Result<Tensor> {
            if repeat == 1 {
                return Ok(x.clone());
            }
            x.unsqueeze(2)?.broadcast_as((b, self.kv_heads, repeat, keys, self.head_dim))?.reshape((
                b,
                self.heads,
                keys,
                self.head_dim,
            ))
        };
        let (k, v) = (expand(k)?, expand(v)?);
        let scores = (q * self.scale)?.matmul(&k.t()?)?.broadcast_add(bias)?;
        let attended = softmax_last_dim(scores)?.matmul(&v)?;
        let attended = attended.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))?;
        let hidden = (hidden + self.post_attention_layernorm.forward(&self.o_proj.forward(&attended)?)?)?;

        let x = self.pre_feedforward_layernorm.forward(&hidden)?;
        let gated = (gelu_tanh(self.gate_proj.forward(&x)?)? * self.up_proj.forward(&x)?)?;
        hidden + self.post_feedforward_layernorm.forward(&self.down_proj.forward(&gated)?)?
    }
}

/// The keys and values one layer has kept, for decoding a token at a time.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerCache {
    /// `[B, kv_heads, S, head_dim]`, rotated.
    keys: Option<Tensor>,
    values: Option<Tensor>,
    /// The position of the first kept key.
    first: usize,
}

/// What [`Gemma3TextModel::forward_cached`] keeps between calls: each layer's keys and values (a sliding
/// layer only its last `sliding_window`) and how many tokens have been seen.
#[derive(Debug, Clone, Default)]
pub struct Gemma3Cache {
    layers: Vec<LayerCache>,
    tokens: usize,
}

impl Gemma3Cache {
    /// The number of tokens seen, which is the position of the next one.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// Gemma 3's text decoder, used as an encoder.
#[derive(Clone)]
pub struct Gemma3TextModel {
    config: Gemma3Config,
    embed_tokens: Tensor,
    /// LoRA updates of the embedding table, which is also the (tied) output table.
    pub(super) embed_deltas: Vec<WeightDelta>,
    embed_scale: f64,
    pub(super) layers: BlockStack<Gemma3Layer>,
    pub(super) norm: GemmaNorm,
}

impl std::fmt::Debug for Gemma3TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemma3TextModel")
            .field("config", &self.config)
            .field("layers", &self.layers.holding())
            .field("streamed_lora_sets", &self.layers.streamed_patch_sets())
            .finish_non_exhaustive()
    }
}

impl Gemma3TextModel {
    /// Builds the model from a `VarBuilder` rooted at the text model (`model.` in transformers'
    /// `Gemma3ForCausalLM` and ComfyUI files): `embed_tokens`, `layers.{i}`, `norm`. The builder's dtype is
    /// the dtype the projections and the embedding table are kept in. The layers are held as `holding` says:
    /// those not kept are read from `vb` whenever a forward pass reaches them ([`BlockStack`]).
    pub fn new(config: &Gemma3Config, vb: &VarBuilder<'static>, holding: BlockHolding) -> Result<Self> {
        let embed_tokens = vb.pp("embed_tokens").get((config.vocab_size, config.hidden_size), "weight")?;
        let embed_scale = rounded_scale(config.hidden_size, embed_tokens.dtype())?;
        let layers = BlockStack::load("layers.", config.num_hidden_layers, holding, &vb.pp("layers"), |vb| {
            Gemma3Layer::new(config, vb)
        })?;
        Ok(Gemma3TextModel {
            config: config.clone(),
            embed_tokens,
            embed_deltas: Vec::new(),
            embed_scale,
            layers,
            norm: GemmaNorm::new(config.hidden_size, config.rms_norm_eps, &vb.pp("norm"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gemma3Config {
        &self.config
    }

    /// The dtype the weights are kept in.
    pub fn storage_dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    /// The device the model computes on.
    pub fn device(&self) -> &candle_core::Device {
        self.embed_tokens.device()
    }

    /// Runs `ids` `[B, T]` (u32) with `mask` `[B, T]` (1 = token, 0 = padding; `None`: no padding) and
    /// returns every hidden state: the scaled embeddings, the output of each layer but the last, and the
    /// final norm of the last layer's output (transformers' `output_hidden_states`), each `[B, T, D]` f32.
    pub fn hidden_states(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Vec<Tensor>> {
        let (batch, tokens) = ids.dims2()?;
        let device = ids.device();
        let mut hidden = self.embed(ids)?;
        let local = rope_table(&self.config.local_rope, self.config.head_dim, 0..tokens, device)?;
        let global = rope_table(&self.config.global_rope, self.config.head_dim, 0..tokens, device)?;
        let key_mask = match mask {
            Some(mask) => mask.to_dtype(DType::F32)?.to_vec2::<f32>()?,
            None => vec![vec![1.0; tokens]; batch],
        };
        let sliding_bias = attention_bias(&key_mask, Some(self.config.sliding_window), device)?;
        let full_bias = attention_bias(&key_mask, None, device)?;

        let mut states = Vec::with_capacity(self.config.num_hidden_layers + 1);
        states.push(hidden.clone());
        let layer_inputs = |index: usize| match self.config.layer_types.get(index) {
            Some(LayerType::Full) => (&global, &full_bias),
            _ => (&local, &sliding_bias),
        };
        let count = self.config.num_hidden_layers;
        self.each_layer(|index, layer| {
            let (rope, bias) = layer_inputs(index);
            hidden = layer.forward(&hidden, rope, bias)?;
            if index + 1 < count {
                states.push(hidden.clone());
            }
            Ok(())
        })?;
        states.push(self.norm.forward(&hidden)?);
        Ok(states)
    }

    /// Runs `ids` `[B, T]` (no padding) after the tokens already in `cache`, adding theirs to it, and returns
    /// the final norm's output `[B, T, D]` f32: row `i` is what [`Self::hidden_states`]' last state gives for
    /// that token when run over every token so far. The first call (an empty cache) is the prompt's prefill.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut Gemma3Cache) -> Result<Tensor> {
        self.forward_embeddings_cached(&self.embed(ids)?, cache, &[])
    }

    /// [`Self::forward_cached`] from input embeddings `[B, T, D]` (token embeddings from [`Self::embed`] with
    /// image embeddings spliced in). Each of `blocks` (absolute positions, for the image tokens) attends
    /// within itself in both directions, as transformers' Gemma 3 does given token types; with none, every
    /// token attends causally, as ComfyUI's does.
    pub fn forward_embeddings_cached(
        &self,
        embeddings: &Tensor,
        cache: &mut Gemma3Cache,
        blocks: &[Range<usize>],
    ) -> Result<Tensor> {
        let (_, tokens, _) = embeddings.dims3()?;
        let device = embeddings.device();
        let count = self.config.num_hidden_layers;
        if cache.layers.len() != count {
            *cache = Gemma3Cache { layers: vec![LayerCache::default(); count], tokens: 0 };
        }
        let mut hidden = embeddings.to_dtype(DType::F32)?;
        let positions = cache.tokens..cache.tokens + tokens;
        let local = rope_table(&self.config.local_rope, self.config.head_dim, positions.clone(), device)?;
        let global = rope_table(&self.config.global_rope, self.config.head_dim, positions, device)?;
        let layers = &mut cache.layers;
        self.each_layer(|index, layer| {
            let (rope, window) = match self.config.layer_types.get(index) {
                Some(LayerType::Full) => (&global, None),
                _ => (&local, Some(self.config.sliding_window)),
            };
            hidden = layer.forward_cached(&hidden, rope, &mut layers[index], window, blocks)?;
            Ok(())
        })?;
        cache.tokens += tokens;
        self.norm.forward(&hidden)
    }

    /// The scaled token embeddings of `ids` `[B, T]` (with any LoRA updates of the table): `[B, T, D]` f32,
    /// what the first layer takes.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let mut embedded = self.embed_tokens.index_select(&flat, 0)?.to_dtype(DType::F32)?;
        for delta in &self.embed_deltas {
            embedded = (embedded + delta.rows(&flat)?)?;
        }
        (embedded * self.embed_scale)?.reshape((batch, tokens, self.config.hidden_size))
    }

    /// Calls `visit` with each layer in order: resident layers as they are, streamed ones read from the
    /// mapped file, layer i + 1 on another thread while layer i computes.
    fn each_layer(&self, visit: impl FnMut(usize, &Gemma3Layer) -> Result<()>) -> Result<()> {
        self.layers.each("a Gemma layer", |vb| Gemma3Layer::new(&self.config, vb), visit)
    }

    /// How the layers are held.
    pub fn layer_holding(&self) -> BlockHolding {
        self.layers.holding()
    }

    /// The next-token logits of hidden states `[B, T, D]` (the final norm's output), through the embedding
    /// table (tied output weights): `[B, T, vocab]`.
    pub fn logits(&self, last_hidden: &Tensor) -> Result<Tensor> {
        let (b, t, d) = last_hidden.dims3()?;
        let mut table = StoredLinear::from_weight(self.embed_tokens.clone(), None);
        for delta in &self.embed_deltas {
            table = table.patched(&LayerPatch { weight: Some(delta.clone()), ..LayerPatch::default() })?;
        }
        table.forward(&last_hidden.reshape((b * t, d))?)?.reshape((b, t, ()))
    }
}

/// `√width` rounded to `dtype`, the embedding scale transformers applies.
fn rounded_scale(width: usize, dtype: DType) -> Result<f64> {
    let scale = Tensor::new(&[(width as f64).sqrt() as f32], &Device::Cpu)?;
    scale.to_dtype(dtype)?.to_dtype(DType::F32)?.to_vec1::<f32>().map(|v| f64::from(v[0]))
}

/// (cos, sin) `[T, head_dim/2]` for `positions`: frequencies `1/θ^(2i/d)` in f32, divided by the linear
/// scaling factor, angles `position·frequency` rounded to f32 as transformers rounds them.
fn rope_table(
    rope: &RopeParameters,
    head_dim: usize,
    positions: std::ops::Range<usize>,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let tokens = positions.len();
    let frequencies: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            let inverse = 1.0 / (rope.theta.powf(f64::from(exponent)) as f32);
            inverse / rope.factor as f32
        })
        .collect();
    let mut cos = Vec::with_capacity(tokens * half);
    let mut sin = Vec::with_capacity(tokens * half);
    for position in positions {
        for &frequency in &frequencies {
            let angle = f64::from(position as f32 * frequency);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((Tensor::from_vec(cos, (tokens, half), device)?, Tensor::from_vec(sin, (tokens, half), device)?))
}

/// The additive mask `[B, 1, T, T]`: query `q` sees key `k` when `k ≤ q`, `k` is a token, and (sliding)
/// `k > q − window`.
fn attention_bias(key_mask: &[Vec<f32>], window: Option<usize>, device: &Device) -> Result<Tensor> {
    let batch = key_mask.len();
    let tokens = key_mask.first().map_or(0, Vec::len);
    let mut values = vec![MASKED; batch * tokens * tokens];
    for (b, keys) in key_mask.iter().enumerate() {
        for q in 0..tokens {
            let first = window.map_or(0, |w| (q + 1).saturating_sub(w));
            for k in first..=q {
                if keys[k] >= 0.5 {
                    values[(b * tokens + q) * tokens + k] = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(values, (batch, 1, tokens, tokens), device)
}

/// The additive mask `[1, 1, T, S]` of `T` new queries at positions `position..` over the `S` keys at
/// `first..position + T`: a query sees a key at or before it, or any key of its own block among `blocks`,
/// and on a sliding layer only keys after `query − window` (transformers' `and(sliding, or(causal, block))`).
fn cached_bias(
    position: usize,
    tokens: usize,
    first: usize,
    window: Option<usize>,
    blocks: &[Range<usize>],
    device: &Device,
) -> Result<Tensor> {
    let keys = position + tokens - first;
    let mut values = vec![MASKED; tokens * keys];
    for q in 0..tokens {
        let query = position + q;
        let earliest = window.map_or(0, |w| (query + 1).saturating_sub(w)).max(first);
        let last = blocks.iter().find(|block| block.contains(&query)).map_or(query, |block| block.end - 1);
        for key in earliest..=last.min(position + tokens - 1) {
            values[q * keys + key - first] = 0.0;
        }
    }
    Tensor::from_vec(values, (1, 1, tokens, keys), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_mask_keeps_the_last_window_keys_and_skips_padding() {
        let bias = attention_bias(&[vec![0.0, 1.0, 1.0, 1.0, 1.0]], Some(2), &Device::Cpu).unwrap();
        let rows: Vec<Vec<f32>> = bias.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        let seen: Vec<Vec<usize>> = rows
            .iter()
            .map(|row| row.iter().enumerate().filter(|(_, v)| **v == 0.0).map(|(k, _)| k).collect())
            .collect();
        assert_eq!(seen, vec![vec![], vec![1], vec![1, 2], vec![2, 3], vec![3, 4]]);
        assert_eq!(rounded_scale(3840, DType::BF16).unwrap(), 62.0);
        assert!((rounded_scale(3840, DType::F32).unwrap() - 61.967_733).abs() < 1e-4);
    }
}
