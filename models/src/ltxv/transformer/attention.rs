//! Attention: diffusers' `LTXAttention` with `LTXVideoAttnProcessor` (`Attention` with RMS q/k norm in
//! the original code), used for self-attention (`attn1`, with `RoPE`) and text cross-attention (`attn2`,
//! with a padding mask).
//!
//! q and k are RMS-normalised over the whole inner width (all heads together), the rotary embedding is
//! applied to that full width, and only then are heads split. Scores are computed a few heads (or, for
//! long videos, a block of query rows of one head) at a time, so that at most 16 MB of them exist at once.

use super::config::LtxvTransformerConfig;
use super::rope::RopeTables;
use crate::ops::activations::softmax_last_dim;
use crate::ops::linear::Linear;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Upper bound, in bytes, of one block of attention scores (f32).
const SCORE_BLOCK_BYTES: usize = 16 << 20;

/// `LTXAttention` (`attn1` or `attn2` of a block).
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    heads: usize,
    eps: f32,
}

impl Attention {
    /// The linear layers by their checkpoint names under this attention.
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        [("to_q", &mut self.to_q), ("to_k", &mut self.to_k), ("to_v", &mut self.to_v), ("to_out.0", &mut self.to_out)]
    }

    /// Query width = inner width; key/value input width `context_dim` (the inner width for both
    /// attentions of the released models). Weights under `to_q`, `to_k`, `to_v`, `to_out.0`, `q_norm` and
    /// `k_norm`.
    pub fn new(config: &LtxvTransformerConfig, context_dim: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let inner = config.inner_dim();
        Ok(Attention {
            to_q: Linear::new(inner, inner, &vb.pp("to_q"))?,
            to_k: Linear::new(context_dim, inner, &vb.pp("to_k"))?,
            to_v: Linear::new(context_dim, inner, &vb.pp("to_v"))?,
            to_out: Linear::new(inner, inner, &vb.pp("to_out").pp("0"))?,
            q_norm: vb.pp("q_norm").get(inner, "weight")?,
            k_norm: vb.pp("k_norm").get(inner, "weight")?,
            heads: config.num_attention_heads,
            eps: config.qk_norm_eps as f32,
        })
    }

    /// `x` `[B, N, d]` attends to `context` `[B, L, c]` (to itself when `None`). `rope` rotates q and k
    /// (self-attention); `bias` is added to the logits (the text padding of a cross-attention, the guide
    /// weights of a self-attention).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        rope: Option<&RopeTables>,
        bias: Option<LogitBias<'_>>,
    ) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let mut q = candle_nn::ops::rms_norm(&self.to_q.forward(x)?, &self.q_norm, self.eps)?;
        let mut k = candle_nn::ops::rms_norm(&self.to_k.forward(context)?, &self.k_norm, self.eps)?;
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
        let out = match bias {
            Some(LogitBias::Keys(bias)) => attention(&q, &k, &v, Some(&bias.unsqueeze(1)?))?,
            Some(LogitBias::Guides(guides)) => attention_with_guides(&q, &k, &v, guides)?,
            None => attention(&q, &k, &v, None)?,
        };
        let out = out.transpose(1, 2)?.reshape((b, n, d))?;
        self.to_out.forward(&out)
    }
}

/// `[B, N, heads·head_dim]` → `[B, heads, N, head_dim]`, contiguous.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    x.reshape((b, n, heads, d / heads))?.transpose(1, 2)?.contiguous()
}

/// What an attention adds to its logits.
#[derive(Debug, Clone, Copy)]
pub enum LogitBias<'a> {
    /// One value per key, `[B, 1, L]`: the text padding bias of a cross-attention.
    Keys(&'a Tensor),
    /// The attenuation between the generated tokens and the guide tokens of a self-attention.
    Guides(&'a GuideAttentionBias),
}

/// How much the tokens of the guides that `LTXVAddGuide` appended and the tokens being generated attend to
/// each other, as ComfyUI's `GuideAttentionMask`: guide token `i` (at sequence position `guide_start + i`)
/// has weight `wᵢ` (its guide's strength, times its attention mask where one was given); a generated token's
/// logit towards guide token `i`, and guide token `i`'s logits towards every generated token, get `ln wᵢ`
/// added (a weight of 0 masks the pair out). Guide tokens see each other unchanged, as do generated tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GuideAttentionBias {
    /// Where the tracked guide tokens start in the sequence (after the generated tokens).
    pub guide_start: usize,
    /// `ln wᵢ` of each tracked guide token (`f32::MIN` for a weight of 0).
    pub log_weights: Vec<f32>,
}

impl GuideAttentionBias {
    /// The bias for the weights `weights` of the guide tokens from `guide_start` on; `None` when every
    /// weight is 1 (nothing to add).
    pub fn from_weights(guide_start: usize, weights: &[f32]) -> Option<Self> {
        if weights.is_empty() || weights.iter().all(|&w| w == 1.0) {
            return None;
        }
        let log_weights =
            weights.iter().map(|&w| if w > 0.0 { w.max(f32::MIN_POSITIVE).ln() } else { f32::MIN }).collect();
        Some(GuideAttentionBias { guide_start, log_weights })
    }
}

/// [`attention`] of a self-attention with guide weights: the queries in three groups (generated tokens, tracked
/// guide tokens, anything after them), each with its own bias, so that no `N × N` bias is ever built.
pub fn attention_with_guides(q: &Tensor, k: &Tensor, v: &Tensor, guides: &GuideAttentionBias) -> Result<Tensor> {
    let (batch, _, n, _) = q.dims4()?;
    let l = k.dim(2)?;
    let start = guides.guide_start.min(n);
    let tracked = guides.log_weights.len().min(n - start);
    if start + tracked > l {
        candle_core::bail!("guide tokens {start}..{} lie past the {l} keys", start + tracked);
    }
    let device = q.device();
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        // Generated tokens: the guide weights over the guide keys.
        let mut row = vec![0f32; l];
        row[start..start + tracked].copy_from_slice(&guides.log_weights[..tracked]);
        let bias = Tensor::from_vec(row, (1, 1, 1, l), device)?.repeat((batch, 1, 1, 1))?;
        parts.push(attention(&q.narrow(2, 0, start)?, k, v, Some(&bias))?);
    }
    // Tracked guide tokens: each row's own weight over the generated keys, a band of rows at a time.
    let rows_per_band = (SCORE_BLOCK_BYTES / (l * 4).max(1)).clamp(1, tracked.max(1));
    let generated = Tensor::from_vec((0..l).map(|j| if j < start { 1f32 } else { 0.0 }).collect(), (1, l), device)?;
    for band in (0..tracked).step_by(rows_per_band) {
        let rows = rows_per_band.min(tracked - band);
        let weights = Tensor::from_slice(&guides.log_weights[band..band + rows], (rows, 1), device)?;
        let bias = weights.broadcast_mul(&generated)?.reshape((1, 1, rows, l))?.repeat((batch, 1, 1, 1))?;
        parts.push(attention(&q.narrow(2, start + band, rows)?, k, v, Some(&bias))?);
    }
    if start + tracked < n {
        parts.push(attention(&q.narrow(2, start + tracked, n - start - tracked)?, k, v, None)?);
    }
    Tensor::cat(&parts, 2)
}

/// `softmax(q kᵀ + bias) v` for `q` `[B, H, N, D]` (already scaled), `k`, `v` `[B, H, L, D]`, `bias`
/// `[B, 1, 1, L]` (or `[B, 1, N, L]`, one row per query), computed block by block so that at most `SCORE_BLOCK_BYTES` of scores exist at
/// once: several heads at a time when a head's `N × L` scores are small, else row blocks of one head.
/// Plain matmul + softmax: on CPU at batch 1 this beats candle's flash-attention kernel. Small blocks
/// also keep the allocator reusing memory instead of mapping fresh pages for every score tensor.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    attention_in_blocks(q, k, v, bias, SCORE_BLOCK_BYTES)
}

/// [`attention`] with at most `block_bytes` of scores at once.
fn attention_in_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    block_bytes: usize,
) -> Result<Tensor> {
    let (batch, heads, n, _) = q.dims4()?;
    let l = k.dim(2)?;
    let head_bytes = n * l * 4;
    let mut per_batch = Vec::with_capacity(batch);
    for b in 0..batch {
        let (q, k, v) = (q.get(b)?, k.get(b)?, v.get(b)?);
        let bias = bias.map(|bias| bias.get(b)).transpose()?;
        // `rows`: the query rows of this block, for a bias with one row per query.
        let block = |q: &Tensor, k: &Tensor, v: &Tensor, rows: (usize, usize)| -> Result<Tensor> {
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(bias) = &bias {
                let bias = if bias.dim(1)? > 1 { bias.narrow(1, rows.0, rows.1)? } else { bias.clone() };
                scores = scores.broadcast_add(&bias)?;
            }
            softmax_last_dim(scores)?.matmul(v)
        };
        let mut blocks = Vec::new();
        if head_bytes <= block_bytes {
            let group = (block_bytes / head_bytes.max(1)).clamp(1, heads);
            for start in (0..heads).step_by(group) {
                let len = group.min(heads - start);
                blocks.push(block(
                    &q.narrow(0, start, len)?,
                    &k.narrow(0, start, len)?,
                    &v.narrow(0, start, len)?,
                    (0, n),
                )?);
            }
        } else {
            let rows = (block_bytes / (l * 4)).clamp(1, n);
            for head in 0..heads {
                let (q, k, v) = (q.narrow(0, head, 1)?, k.narrow(0, head, 1)?, v.narrow(0, head, 1)?);
                let mut row_blocks = Vec::with_capacity(n.div_ceil(rows));
                for start in (0..n).step_by(rows) {
                    let len = rows.min(n - start);
                    row_blocks.push(block(&q.narrow(1, start, len)?, &k, &v, (start, len))?);
                }
                blocks.push(Tensor::cat(&row_blocks, 1)?);
            }
        }
        per_batch.push(Tensor::cat(&blocks, 0)?);
    }
    Tensor::stack(&per_batch, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn every_blocking_gives_the_same_result() {
        let device = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 3, 37, 8), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 3, 29, 8), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 3, 29, 8), &device).unwrap();
        let mask = Tensor::randn(0f32, 1.0, (2, 1, 1, 29), &device).unwrap().ge(0.0).unwrap();
        let bias = ((mask.to_dtype(candle_core::DType::F32).unwrap() - 1.0).unwrap() * 10_000.0).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let expected = candle_nn::ops::softmax_last_dim(&scores).unwrap().matmul(&v).unwrap();
        // All heads at once, two heads per block, and row blocks of 5 and of 1 row.
        for bytes in [1 << 20, 2 * 37 * 29 * 4, 5 * 29 * 4, 1] {
            let found = attention_in_blocks(&q, &k, &v, Some(&bias), bytes).unwrap();
            let error: f32 =
                (found - &expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(error < 1e-5, "block budget {bytes}: error {error}");
        }
    }

    #[test]
    fn guide_weights_match_a_dense_bias() {
        let device = Device::Cpu;
        let (n, guide_start) = (23, 15);
        let q = Tensor::randn(0f32, 1.0, (2, 3, n, 8), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 3, n, 8), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 3, n, 8), &device).unwrap();
        // Six tracked guide tokens (one masked out entirely), then two untracked ones.
        let weights = [0.5f32, 2.0, 0.0, 1.0, 0.25, 3.0];
        let guides = GuideAttentionBias::from_weights(guide_start, &weights).unwrap();
        let mut dense = vec![0f32; n * n];
        for (i, &w) in weights.iter().enumerate() {
            let log = if w > 0.0 { w.ln() } else { f32::MIN };
            let guide = guide_start + i;
            for other in 0..guide_start {
                dense[other * n + guide] = log;
                dense[guide * n + other] = log;
            }
        }
        let bias = Tensor::from_vec(dense, (1, 1, n, n), &device).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let expected = candle_nn::ops::softmax_last_dim(&scores).unwrap().matmul(&v).unwrap();
        let found = attention_with_guides(&q, &k, &v, &guides).unwrap();
        let error: f32 =
            (found - &expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(error < 1e-5, "error {error}");
        assert_eq!(GuideAttentionBias::from_weights(3, &[1.0, 1.0]), None, "all weights 1: no bias");
    }

    #[test]
    fn a_bias_per_query_row_follows_row_blocks() {
        let device = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 9, 4), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, 7, 4), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, 7, 4), &device).unwrap();
        let bias = Tensor::randn(0f32, 1.0, (1, 1, 9, 7), &device).unwrap();
        let expected = attention_in_blocks(&q, &k, &v, Some(&bias), 1 << 20).unwrap();
        let found = attention_in_blocks(&q, &k, &v, Some(&bias), 2 * 7 * 4).unwrap();
        let error: f32 =
            (found - &expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(error < 1e-6, "error {error}");
    }
}
