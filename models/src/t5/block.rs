//! One T5 v1.1 encoder layer, mirroring transformers' `T5Block` of an encoder (`modeling_t5.py`): a
//! self-attention layer and a gated-GELU feed-forward layer, each behind a pre-norm residual, and the relative
//! position bias that block 0 owns and every block adds.
//!
//! Projections stay in the dtype of the builder they were read from ([`StoredLinear`]); the norms and the
//! relative attention bias are small and read as f32.

use super::config::{Activation, T5Config};
use crate::ops::stored_linear::StoredLinear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

/// Where block 0 keeps the relative attention bias table, under the encoder's `block.0.`.
pub(super) const RELATIVE_ATTENTION_BIAS: &str = "layer.0.SelfAttention.relative_attention_bias.weight";

/// transformers' `T5LayerNorm`: RMS normalisation without mean subtraction and without bias.
#[derive(Debug, Clone)]
pub(super) struct T5LayerNorm {
    weight: Tensor,
    epsilon: f32,
}

impl T5LayerNorm {
    pub(super) fn new(vb: &VarBuilder<'_>, width: usize, epsilon: f64) -> Result<Self> {
        let weight = vb.get_with_hints_dtype(width, "weight", candle_nn::Init::Const(1.0), DType::F32)?;
        Ok(T5LayerNorm { weight, epsilon: epsilon as f32 })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.epsilon)
    }
}

/// The relative position bias of transformers' `T5Attention` (`relative_attention_bias` and
/// `compute_bias`): a `[num_buckets, num_heads]` table that only the first block owns. It is kept apart from
/// the blocks so that it stays in memory when the blocks are read from the file as they are used.
#[derive(Debug, Clone)]
pub(super) struct RelativePositionBias {
    table: Tensor,
    num_heads: usize,
    num_buckets: usize,
    max_distance: usize,
}

impl RelativePositionBias {
    /// Reads the table under `vb`, the encoder's `block.0`.
    pub(super) fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        let table = vb.pp("layer.0.SelfAttention.relative_attention_bias").get_with_hints_dtype(
            (config.relative_attention_num_buckets, config.num_heads),
            "weight",
            candle_nn::Init::Randn { mean: 0.0, stdev: 0.5 },
            DType::F32,
        )?;
        Ok(RelativePositionBias {
            table,
            num_heads: config.num_heads,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
        })
    }

    /// The bias `[1, heads, length, length]` (transformers' `compute_bias`).
    pub(super) fn compute(&self, length: usize, device: &Device) -> Result<Tensor> {
        let mut buckets = Vec::with_capacity(length * length);
        for query in 0..length {
            for key in 0..length {
                let relative = key as i64 - query as i64;
                buckets.push(relative_position_bucket(relative, self.num_buckets, self.max_distance));
            }
        }
        let buckets = Tensor::from_vec(buckets, length * length, device)?;
        self.table
            .index_select(&buckets, 0)?
            .reshape((length, length, self.num_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)
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

/// transformers' `T5Attention` in an encoder: no scaling of the scores and no biases; the relative
/// position bias comes in with the mask ([`RelativePositionBias`]).
#[derive(Debug, Clone)]
struct T5Attention {
    q: StoredLinear,
    k: StoredLinear,
    v: StoredLinear,
    o: StoredLinear,
    num_heads: usize,
    d_kv: usize,
}

impl T5Attention {
    fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        let inner = config.num_heads * config.d_kv;
        Ok(T5Attention {
            q: StoredLinear::new(&vb.pp("q"), config.d_model, inner)?,
            k: StoredLinear::new(&vb.pp("k"), config.d_model, inner)?,
            v: StoredLinear::new(&vb.pp("v"), config.d_model, inner)?,
            o: StoredLinear::new(&vb.pp("o"), inner, config.d_model)?,
            num_heads: config.num_heads,
            d_kv: config.d_kv,
        })
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
pub(super) struct T5Block {
    self_attention: T5Attention,
    self_attention_norm: T5LayerNorm,
    feed_forward: T5DenseGatedActDense,
    feed_forward_norm: T5LayerNorm,
}

impl T5Block {
    /// Reads the block under `vb` (`encoder.block.{i}`), all but block 0's relative attention bias.
    pub(super) fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        let attention = vb.pp("layer.0");
        let feed_forward = vb.pp("layer.1");
        Ok(T5Block {
            self_attention: T5Attention::new(&attention.pp("SelfAttention"), config)?,
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

    /// The projections by their checkpoint names under the block (`layer.0.SelfAttention.q`, ...).
    pub(super) fn linears_mut(&mut self) -> [(&'static str, &mut StoredLinear); 7] {
        let attention = &mut self.self_attention;
        let feed_forward = &mut self.feed_forward;
        [
            ("layer.0.SelfAttention.q", &mut attention.q),
            ("layer.0.SelfAttention.k", &mut attention.k),
            ("layer.0.SelfAttention.v", &mut attention.v),
            ("layer.0.SelfAttention.o", &mut attention.o),
            ("layer.1.DenseReluDense.wi_0", &mut feed_forward.wi_0),
            ("layer.1.DenseReluDense.wi_1", &mut feed_forward.wi_1),
            ("layer.1.DenseReluDense.wo", &mut feed_forward.wo),
        ]
    }

    /// The projections' names under the block with their weights' `(out, in)`, from the configuration.
    pub(super) fn projection_shapes(config: &T5Config) -> [(&'static str, (usize, usize)); 7] {
        let (model, inner, hidden) = (config.d_model, config.num_heads * config.d_kv, config.d_ff);
        [
            ("layer.0.SelfAttention.q", (inner, model)),
            ("layer.0.SelfAttention.k", (inner, model)),
            ("layer.0.SelfAttention.v", (inner, model)),
            ("layer.0.SelfAttention.o", (model, inner)),
            ("layer.1.DenseReluDense.wi_0", (hidden, model)),
            ("layer.1.DenseReluDense.wi_1", (hidden, model)),
            ("layer.1.DenseReluDense.wo", (model, hidden)),
        ]
    }

    pub(super) fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attention.forward(&self.self_attention_norm.forward(x)?, bias)?)?;
        &x + self.feed_forward.forward(&self.feed_forward_norm.forward(&x)?)?
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
