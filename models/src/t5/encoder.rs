//! The T5 v1.1 encoder stack, mirroring transformers' `T5EncoderModel` (`modeling_t5.py`): the shared
//! token embedding, `encoder.block.{i}` with a self-attention layer and a gated-GELU feed-forward layer,
//! each behind a pre-norm residual, and `encoder.final_layer_norm`. It covers every T5 v1.1 checkpoint
//! (the LTX-Video text encoder is `google/t5-v1_1-xxl`); T5 v1.0's ungated `ReLU` feed-forward is not
//! handled.
//!
//! Big matrices (the embedding and every projection) stay in the dtype of the builder they were read
//! from, so a bf16, f16 or fp8 checkpoint keeps its size in memory; each is widened to f32 a band of
//! rows at a time, just before that band's matmul, and the f32 band is dropped right after. The norms and the relative attention bias are small and read as f32.
//! All arithmetic is f32.

use super::config::{Activation, T5Config};
use super::tokenizer::{END_TOKEN, PAD_TOKEN, Tokens};
use crate::lora::{LayerPatch, patch_layers};
use crate::ops::stored_linear::StoredLinear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;

/// transformers' `T5LayerNorm`: RMS normalisation without mean subtraction and without bias.
#[derive(Debug, Clone)]
struct T5LayerNorm {
    weight: Tensor,
    epsilon: f32,
}

impl T5LayerNorm {
    fn new(vb: &VarBuilder<'_>, width: usize, epsilon: f64) -> Result<Self> {
        let weight = vb.get_with_hints_dtype(width, "weight", candle_nn::Init::Const(1.0), DType::F32)?;
        Ok(T5LayerNorm { weight, epsilon: epsilon as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.epsilon)
    }
}

/// transformers' `T5Attention` in an encoder: no scaling of the scores, no biases, and a relative
/// position bias that only the first block owns and every block adds.
#[derive(Debug, Clone)]
struct T5Attention {
    q: StoredLinear,
    k: StoredLinear,
    v: StoredLinear,
    o: StoredLinear,
    num_heads: usize,
    d_kv: usize,
    /// `[num_buckets, num_heads]`, in block 0 only.
    relative_attention_bias: Option<Tensor>,
    num_buckets: usize,
    max_distance: usize,
}

impl T5Attention {
    fn new(vb: &VarBuilder<'_>, config: &T5Config, has_relative_attention_bias: bool) -> Result<Self> {
        let inner = config.num_heads * config.d_kv;
        let relative_attention_bias = if has_relative_attention_bias {
            Some(vb.pp("relative_attention_bias").get_with_hints_dtype(
                (config.relative_attention_num_buckets, config.num_heads),
                "weight",
                candle_nn::Init::Randn { mean: 0.0, stdev: 0.5 },
                DType::F32,
            )?)
        } else {
            None
        };
        Ok(T5Attention {
            q: StoredLinear::new(&vb.pp("q"), config.d_model, inner)?,
            k: StoredLinear::new(&vb.pp("k"), config.d_model, inner)?,
            v: StoredLinear::new(&vb.pp("v"), config.d_model, inner)?,
            o: StoredLinear::new(&vb.pp("o"), inner, config.d_model)?,
            num_heads: config.num_heads,
            d_kv: config.d_kv,
            relative_attention_bias,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
        })
    }

    /// The relative position bias `[1, heads, length, length]` (transformers' `compute_bias`).
    fn compute_bias(&self, length: usize, device: &Device) -> Result<Tensor> {
        let Some(table) = &self.relative_attention_bias else {
            candle_core::bail!("only the first T5 block has a relative attention bias")
        };
        let mut buckets = Vec::with_capacity(length * length);
        for query in 0..length {
            for key in 0..length {
                let relative = key as i64 - query as i64;
                buckets.push(relative_position_bucket(relative, self.num_buckets, self.max_distance));
            }
        }
        let buckets = Tensor::from_vec(buckets, length * length, device)?;
        table.index_select(&buckets, 0)?.reshape((length, length, self.num_heads))?.permute((2, 0, 1))?.unsqueeze(0)
    }

    /// `x`: `[batch, length, d_model]`; `bias`: position bias plus mask, broadcastable to
    /// `[batch, heads, length, length]`.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, length, _) = x.dims3()?;
        let heads = |projection: &StoredLinear| -> Result<Tensor> {
            projection.forward(x)?.reshape((batch, length, self.num_heads, self.d_kv))?.transpose(1, 2)?.contiguous()
        };
        let query = heads(&self.q)?;
        let key = heads(&self.k)?;
        let value = heads(&self.v)?;
        let scores = query.matmul(&key.t()?)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let mixed = weights.matmul(&value)?.transpose(1, 2)?.reshape((batch, length, self.num_heads * self.d_kv))?;
        self.o.forward(&mixed)
    }
}

/// Which bucket a key at `relative` = key − query positions falls in, for bidirectional attention
/// (transformers' `T5Attention._relative_position_bucket`). Half the buckets are for keys after the
/// query; in each half, distances below a quarter of the buckets get their own bucket and the rest share
/// logarithmically wider ones up to `max_distance`. The logarithm is taken in f32, as torch does, so that
/// distances on a bucket boundary land where transformers puts them.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = num_buckets / 2;
    let offset = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    if distance < max_exact {
        return (offset + distance) as u32;
    }
    let scale = ((max_distance as f64 / max_exact as f64).ln()) as f32;
    let position = (distance as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32;
    let large = (max_exact + position as usize).min(half.saturating_sub(1));
    (offset + large) as u32
}

/// transformers' `T5DenseGatedActDense`: `wo(act(wi_0 x) * wi_1 x)`.
#[derive(Debug, Clone)]
struct T5DenseGatedActDense {
    wi_0: StoredLinear,
    wi_1: StoredLinear,
    wo: StoredLinear,
    activation: Activation,
}

impl T5DenseGatedActDense {
    fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        Ok(T5DenseGatedActDense {
            wi_0: StoredLinear::new(&vb.pp("wi_0"), config.d_model, config.d_ff)?,
            wi_1: StoredLinear::new(&vb.pp("wi_1"), config.d_model, config.d_ff)?,
            wo: StoredLinear::new(&vb.pp("wo"), config.d_ff, config.d_model)?,
            activation: config.activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.wi_0.forward(x)?;
        let gate = match self.activation {
            Activation::GeluTanh => gate.gelu()?,
            Activation::GeluErf => gate.gelu_erf()?,
            Activation::Relu => gate.relu()?,
        };
        let linear = self.wi_1.forward(x)?;
        self.wo.forward(&(gate * linear)?)
    }
}

/// transformers' `T5Block` of an encoder: `layer.0` (self-attention) then `layer.1` (feed-forward), each
/// as `x + sublayer(layer_norm(x))`.
#[derive(Debug, Clone)]
struct T5Block {
    self_attention: T5Attention,
    self_attention_norm: T5LayerNorm,
    feed_forward: T5DenseGatedActDense,
    feed_forward_norm: T5LayerNorm,
}

impl T5Block {
    fn new(vb: &VarBuilder<'_>, config: &T5Config, first: bool) -> Result<Self> {
        let attention = vb.pp("layer.0");
        let feed_forward = vb.pp("layer.1");
        Ok(T5Block {
            self_attention: T5Attention::new(&attention.pp("SelfAttention"), config, first)?,
            self_attention_norm: T5LayerNorm::new(
                &attention.pp("layer_norm"),
                config.d_model,
                config.layer_norm_epsilon,
            )?,
            feed_forward: T5DenseGatedActDense::new(&feed_forward.pp("DenseReluDense"), config)?,
            feed_forward_norm: T5LayerNorm::new(
                &feed_forward.pp("layer_norm"),
                config.d_model,
                config.layer_norm_epsilon,
            )?,
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attention.forward(&self.self_attention_norm.forward(x)?, bias)?)?;
        &x + self.feed_forward.forward(&self.feed_forward_norm.forward(&x)?)?
    }
}

/// The T5 v1.1 encoder (transformers' `T5EncoderModel`), built from HF tensor names.
#[derive(Debug, Clone)]
pub struct T5Encoder {
    config: T5Config,
    /// `shared.weight`, `[vocab, d_model]`, in storage dtype.
    embedding: Tensor,
    blocks: Vec<T5Block>,
    final_layer_norm: T5LayerNorm,
    device: Device,
}

impl T5Encoder {
    /// Builds the encoder from `vb`, whose root holds `shared.weight` (or `encoder.embed_tokens.weight`)
    /// and `encoder.*`. Projections and the embedding are kept in `vb`'s dtype; norms and the relative
    /// attention bias are read as f32. Any `VarBuilder` works, including one that makes random weights
    /// in memory (see the T5 benchmark test).
    pub fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        let dimensions = [config.vocab_size, config.d_model, config.d_kv, config.d_ff, config.num_heads];
        if dimensions.contains(&0) || config.relative_attention_num_buckets < 2 {
            candle_core::bail!(
                "invalid T5 configuration (a size is zero or there are fewer than 2 buckets): {config:?}"
            );
        }
        let embedding_name =
            if !vb.contains_tensor("shared.weight") && vb.contains_tensor("encoder.embed_tokens.weight") {
                "encoder.embed_tokens.weight"
            } else {
                "shared.weight"
            };
        let embedding = vb.get_with_hints(
            (config.vocab_size, config.d_model),
            embedding_name,
            candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 },
        )?;
        let encoder = vb.pp("encoder");
        let blocks = (0..config.num_layers)
            .map(|index| T5Block::new(&encoder.pp(format!("block.{index}")), config, index == 0))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm =
            T5LayerNorm::new(&encoder.pp("final_layer_norm"), config.d_model, config.layer_norm_epsilon)?;
        Ok(T5Encoder { config: config.clone(), embedding, blocks, final_layer_norm, device: vb.device().clone() })
    }

    /// Every projection by its checkpoint name (`encoder.block.0.layer.0.SelfAttention.q`, ...), with its
    /// weight's `(out, in)`: the layers a LoRA can change.
    pub fn linear_layers(&self) -> Result<Vec<(String, (usize, usize))>> {
        let mut copy = self.clone();
        copy.linears_mut().into_iter().map(|(name, layer)| Ok((name, layer.shape()?))).collect()
    }

    /// The encoder with LoRA updates (`layer name → patch`), sharing every weight with `self`; the updates
    /// are applied on the fly. Fails on a name that is not a projection.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let mut patched = self.clone();
        patch_layers(patched.linears_mut(), patches, StoredLinear::patched)?;
        Ok(patched)
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut StoredLinear)> {
        let mut layers = Vec::with_capacity(self.blocks.len() * 7);
        for (index, block) in self.blocks.iter_mut().enumerate() {
            let attention = &mut block.self_attention;
            let feed_forward = &mut block.feed_forward;
            let named = [
                ("layer.0.SelfAttention.q", &mut attention.q),
                ("layer.0.SelfAttention.k", &mut attention.k),
                ("layer.0.SelfAttention.v", &mut attention.v),
                ("layer.0.SelfAttention.o", &mut attention.o),
                ("layer.1.DenseReluDense.wi_0", &mut feed_forward.wi_0),
                ("layer.1.DenseReluDense.wi_1", &mut feed_forward.wi_1),
                ("layer.1.DenseReluDense.wo", &mut feed_forward.wo),
            ];
            layers.extend(named.into_iter().map(|(name, layer)| (format!("encoder.block.{index}.{name}"), layer)));
        }
        layers
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The dtype the big matrices are stored in.
    pub fn storage_dtype(&self) -> DType {
        self.embedding.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes `input_ids` (`[batch, length]`, any integer dtype) into `last_hidden_state`
    /// (`[batch, length, d_model]`, f32), after the final layer norm.
    ///
    /// `attention_mask` (`[batch, length]`, 1 for tokens to attend to, 0 for padding, any dtype) hides
    /// padding keys in every self-attention, as transformers does when given `attention_mask`: that is
    /// what ComfyUI, the original LTX-Video code and diffusers' `LTXConditionPipeline` do. Without a mask
    /// every token attends to the padding too, as in diffusers' `LTXPipeline` and
    /// `LTXImageToVideoPipeline`. Outputs at padded positions are computed either way; callers mask
    /// them downstream.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, length) = input_ids.dims2().map_err(|_| {
            candle_core::Error::Msg(format!("T5 input ids must be [batch, tokens], got shape {:?}", input_ids.dims()))
        })?;
        if length == 0 {
            candle_core::bail!("T5 input ids are empty: the tokenizer always gives at least the end token");
        }
        let ids = input_ids.to_device(&self.device)?.to_dtype(DType::I64)?;
        let smallest = ids.min_all()?.to_scalar::<i64>()?;
        let largest = ids.max_all()?.to_scalar::<i64>()?;
        if smallest < 0 || largest >= self.config.vocab_size as i64 {
            candle_core::bail!(
                "T5 token ids must lie in 0..{} (the vocabulary), got ids from {smallest} to {largest}",
                self.config.vocab_size
            );
        }
        let mut x = self
            .embedding
            .index_select(&ids.flatten_all()?.to_dtype(DType::U32)?, 0)?
            .to_dtype(DType::F32)?
            .reshape((batch, length, self.config.d_model))?;

        let mut bias = match self.blocks.first() {
            Some(block) => block.self_attention.compute_bias(length, &self.device)?,
            None => Tensor::zeros((1, 1, length, length), DType::F32, &self.device)?,
        };
        if let Some(mask) = attention_mask {
            if mask.dims() != [batch, length] {
                candle_core::bail!(
                    "the T5 attention mask has shape {:?} but the input ids have [{batch}, {length}]",
                    mask.dims()
                );
            }
            // Padding keys get the most negative f32, as transformers' extended mask does, so that their
            // softmax weight is exactly zero.
            let keep = mask.to_device(&self.device)?.to_dtype(DType::F32)?.ne(0.0)?;
            let minimum = Tensor::full(f32::MIN, (batch, length), &self.device)?;
            let zeros = Tensor::zeros((batch, length), DType::F32, &self.device)?;
            let additive = keep.where_cond(&zeros, &minimum)?.reshape((batch, 1, 1, length))?;
            bias = bias.broadcast_add(&additive)?;
        }

        for block in &self.blocks {
            x = block.forward(&x, &bias)?;
        }
        self.final_layer_norm.forward(&x)
    }
}

impl T5Encoder {
    /// Encodes one tokenized prompt as ComfyUI's `CLIPTextEncode` does for LTX-Video: with its attention
    /// mask when `use_mask` (ComfyUI: yes), and, if any token carries a prompt weight other than 1, beside
    /// the empty prompt (`</s>` then padding, at the same length and with its own mask), moving each
    /// weighted token's output away from the empty prompt's at the same position:
    /// `z = (z − empty)·weight + empty`. Tokens of weight 1 keep their output unchanged.
    /// Returns `[1, length, d_model]`.
    pub fn encode_tokens(&self, tokens: &Tokens, use_mask: bool) -> Result<Tensor> {
        let length = tokens.len();
        if tokens.attention_mask.len() != length || tokens.weights.len() != length {
            candle_core::bail!(
                "T5 tokens disagree in length: {} ids, {} mask values, {} weights",
                length,
                tokens.attention_mask.len(),
                tokens.weights.len()
            );
        }
        let (ids, mask) = tokens.to_tensors(&self.device)?;
        if !tokens.has_weights() {
            return self.forward(&ids, use_mask.then_some(&mask));
        }
        let mut empty_ids = vec![PAD_TOKEN; length];
        let mut empty_mask = vec![0u32; length];
        if let (Some(id), Some(keep)) = (empty_ids.first_mut(), empty_mask.first_mut()) {
            *id = END_TOKEN;
            *keep = 1;
        }
        let empty_ids = Tensor::from_vec(empty_ids, (1, length), &self.device)?;
        let empty_mask = Tensor::from_vec(empty_mask, (1, length), &self.device)?.to_dtype(DType::F32)?;
        let both_ids = Tensor::cat(&[&ids, &empty_ids], 0)?;
        let both_masks = Tensor::cat(&[&mask, &empty_mask], 0)?;
        let hidden = self.forward(&both_ids, use_mask.then_some(&both_masks))?;
        let prompt = hidden.narrow(0, 0, 1)?;
        let empty = hidden.narrow(0, 1, 1)?;
        let weights = Tensor::from_slice(&tokens.weights, (1, length, 1), &self.device)?;
        let moved = (prompt.broadcast_sub(&empty)?.broadcast_mul(&weights)? + &empty)?;
        let weighted = weights.ne(1.0)?.broadcast_as(prompt.shape())?;
        weighted.where_cond(&moved, &prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_by_direction_and_grow_logarithmically() {
        // 32 buckets, max distance 128: 16 per direction, 8 exact.
        assert_eq!(relative_position_bucket(0, 32, 128), 0);
        assert_eq!(relative_position_bucket(-7, 32, 128), 7);
        assert_eq!(relative_position_bucket(7, 32, 128), 23);
        assert_eq!(relative_position_bucket(-8, 32, 128), 8);
        assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
        assert_eq!(relative_position_bucket(1000, 32, 128), 31);
    }
}
