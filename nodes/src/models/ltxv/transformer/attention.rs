//! Attention: diffusers' `LTXAttention` with `LTXVideoAttnProcessor` (`Attention` with RMS q/k norm in
//! the original code), used for self-attention (`attn1`, with `RoPE`) and text cross-attention (`attn2`,
//! with a padding mask).
//!
//! q and k are RMS-normalised over the whole inner width (all heads together), the rotary embedding is applied to that
//! full width, and only then are heads split. The softmax runs over blocks of query rows so that the
//! score tensor stays bounded for long videos.

use super::config::LtxvTransformerConfig;
use super::loading::WeightLayout;
use super::rope::RopeTables;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

/// Upper bound, in bytes, of one block of attention scores (f32).
const SCORE_BLOCK_BYTES: usize = 512 << 20;

/// `LTXAttention` (`attn1` or `attn2` of a block).
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    heads: usize,
    eps: f32,
}

impl Attention {
    /// Query width = inner width; key/value input width `context_dim` (the inner width for both
    /// attentions of the released models).
    pub fn new(
        config: &LtxvTransformerConfig,
        context_dim: usize,
        layout: WeightLayout,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let inner = config.inner_dim();
        Ok(Attention {
            to_q: candle_nn::linear(inner, inner, vb.pp("to_q"))?,
            to_k: candle_nn::linear(context_dim, inner, vb.pp("to_k"))?,
            to_v: candle_nn::linear(context_dim, inner, vb.pp("to_v"))?,
            to_out: candle_nn::linear(inner, inner, vb.pp("to_out").pp("0"))?,
            norm_q: vb.pp(layout.q_norm()).get(inner, "weight")?,
            norm_k: vb.pp(layout.k_norm()).get(inner, "weight")?,
            heads: config.num_attention_heads,
            eps: config.qk_norm_eps as f32,
        })
    }

    /// `x` `[B, N, d]` attends to `context` `[B, L, c]` (to itself when `None`). `rope` rotates q and k
    /// (self-attention); `bias` `[B, 1, L]` is added to the logits (cross-attention padding).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        rope: Option<&RopeTables>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let mut q = candle_nn::ops::rms_norm(&self.to_q.forward(x)?, &self.norm_q, self.eps)?;
        let mut k = candle_nn::ops::rms_norm(&self.to_k.forward(context)?, &self.norm_k, self.eps)?;
        let v = self.to_v.forward(context)?;
        if let Some(rope) = rope {
            q = rope.apply(&q)?;
            k = rope.apply(&k)?;
        }
        let (b, n, d) = q.dims3()?;
        let head_dim = d / self.heads;
        // Fold the 1/sqrt(head_dim) scale into q: one pass over [B, N, d] instead of one over the scores.
        let q = (split_heads(&q, self.heads)? * (1.0 / (head_dim as f64).sqrt()))?;
        let k = split_heads(&k, self.heads)?;
        let v = split_heads(&v, self.heads)?;
        let bias = bias.map(|bias| bias.unsqueeze(1)).transpose()?;
        let out = attention(&q, &k, &v, bias.as_ref())?;
        let out = out.transpose(1, 2)?.reshape((b, n, d))?;
        self.to_out.forward(&out)
    }
}

/// `[B, N, heads·head_dim]` → `[B, heads, N, head_dim]`, contiguous.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    x.reshape((b, n, heads, d / heads))?.transpose(1, 2)?.contiguous()
}

/// `softmax(q kᵀ + bias) v` for `q` `[B, H, N, D]` (already scaled), `k`, `v` `[B, H, L, D]`, `bias`
/// broadcastable to `[B, H, N, L]`, computed over blocks of query rows so that at most
/// [`SCORE_BLOCK_BYTES`] of scores exist at once. Plain matmul + softmax: on CPU at batch 1 this beats
/// candle's flash-attention kernel.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, n, _) = q.dims4()?;
    let l = k.dim(2)?;
    let row_bytes = b * h * l * 4;
    let rows = (SCORE_BLOCK_BYTES / row_bytes.max(1)).clamp(1, n.max(1));
    let k_t = k.t()?;
    let block = |start: usize, len: usize| -> Result<Tensor> {
        let q = q.narrow(2, start, len)?;
        let mut scores = q.matmul(&k_t)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
    };
    if rows >= n {
        return block(0, n);
    }
    let mut blocks = Vec::with_capacity(n.div_ceil(rows));
    for start in (0..n).step_by(rows) {
        blocks.push(block(start, rows.min(n - start))?);
    }
    Tensor::cat(&blocks, 2)
}
