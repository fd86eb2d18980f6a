//! `LTX2Attention` (diffusers) / `CrossAttention` (ComfyUI, official code): the six attentions of a block and
//! the connectors' self-attention.
//!
//! Query, key and value widths may all differ (audio→video attention takes 4096-wide queries and 2048-wide
//! keys into 32 heads of 64). q and k are RMS-normalised over all heads together, then rotated with their
//! own tables ([`SplitRope`]); with gated attention (2.3+) each head's output is scaled by
//! `2·sigmoid(to_gate_logits(x))` before `to_out.0`.

use super::super::rope::SplitRope;
use crate::ltxv::transformer::attention::{LogitBias, attention, attention_with_guides};
use crate::ops::linear::Linear;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// The sizes of one attention.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Width of the queries' input (and of the output).
    pub query_dim: usize,
    /// Width of the keys' and values' input.
    pub context_dim: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Whether the checkpoint has `to_gate_logits`.
    pub gated: bool,
}

/// One attention.
#[derive(Debug, Clone)]
pub struct Ltx2Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    to_gate_logits: Option<Linear>,
    q_norm: Tensor,
    k_norm: Tensor,
    heads: usize,
    eps: f32,
}

impl Ltx2Attention {
    /// Weights under `to_q`, `to_k`, `to_v`, `to_out.0`, `q_norm`, `k_norm` (and `to_gate_logits`).
    pub fn new(shape: AttentionShape, eps: f64, vb: &VarBuilder<'_>) -> Result<Self> {
        let inner = shape.heads * shape.head_dim;
        Ok(Ltx2Attention {
            to_q: Linear::new(shape.query_dim, inner, &vb.pp("to_q"))?,
            to_k: Linear::new(shape.context_dim, inner, &vb.pp("to_k"))?,
            to_v: Linear::new(shape.context_dim, inner, &vb.pp("to_v"))?,
            to_out: Linear::new(inner, shape.query_dim, &vb.pp("to_out").pp("0"))?,
            to_gate_logits: if shape.gated {
                Some(Linear::new(shape.query_dim, shape.heads, &vb.pp("to_gate_logits"))?)
            } else {
                None
            },
            q_norm: vb.pp("q_norm").get(inner, "weight")?.to_dtype(DType::F32)?,
            k_norm: vb.pp("k_norm").get(inner, "weight")?.to_dtype(DType::F32)?,
            heads: shape.heads,
            eps: eps as f32,
        })
    }

    /// The linear layers by their checkpoint names under this attention.
    pub(crate) fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut layers: Vec<(&'static str, &mut Linear)> = vec![
            ("to_q", &mut self.to_q),
            ("to_k", &mut self.to_k),
            ("to_v", &mut self.to_v),
            ("to_out.0", &mut self.to_out),
        ];
        if let Some(gate) = &mut self.to_gate_logits {
            layers.push(("to_gate_logits", gate));
        }
        layers
    }

    /// `x` `[B, N, query_dim]` attends to `context` `[B, L, context_dim]` (to itself when `None`); q and k
    /// are rotated by `q_rope` and `k_rope` (`k_rope` defaults to `q_rope`); `bias` is added to the logits
    /// (text padding, guide weights).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        q_rope: Option<&SplitRope>,
        k_rope: Option<&SplitRope>,
        bias: Option<LogitBias<'_>>,
    ) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let mut q = candle_nn::ops::rms_norm(&self.to_q.forward(x)?, &self.q_norm, self.eps)?;
        let mut k = candle_nn::ops::rms_norm(&self.to_k.forward(context)?, &self.k_norm, self.eps)?;
        let v = self.to_v.forward(context)?;
        if let Some(rope) = q_rope {
            q = rope.apply(&q)?;
            k = k_rope.unwrap_or(rope).apply(&k)?;
        }
        let (b, n, d) = q.dims3()?;
        let head_dim = d / self.heads;
        let q = (split_heads(&q, self.heads)? * (1.0 / (head_dim as f64).sqrt()))?;
        let k = split_heads(&k, self.heads)?;
        let v = split_heads(&v, self.heads)?;
        let out = match bias {
            Some(LogitBias::Keys(bias)) => attention(&q, &k, &v, Some(&bias.unsqueeze(1)?))?,
            Some(LogitBias::Guides(guides)) => attention_with_guides(&q, &k, &v, guides)?,
            None => attention(&q, &k, &v, None)?,
        };
        let out = out.transpose(1, 2)?.reshape((b, n, d))?;
        self.finish(x, out)
    }

    /// The perturbed self-attention of spatio-temporal guidance: the softmax replaced by the identity, so
    /// the output is `to_out(gate · to_v(x))`.
    pub fn forward_values_only(&self, x: &Tensor) -> Result<Tensor> {
        let values = self.to_v.forward(x)?;
        self.finish(x, values)
    }

    /// Applies the per-head gates (computed from the query input `x`) and `to_out.0`.
    fn finish(&self, x: &Tensor, out: Tensor) -> Result<Tensor> {
        let out = match &self.to_gate_logits {
            Some(gate) => {
                let (b, n, d) = out.dims3()?;
                let gates = (candle_nn::ops::sigmoid(&gate.forward(x)?)? * 2.0)?.unsqueeze(3)?;
                out.reshape((b, n, self.heads, d / self.heads))?.broadcast_mul(&gates)?.reshape((b, n, d))?
            }
            None => out,
        };
        self.to_out.forward(&out)
    }
}

/// `[B, N, heads·head_dim]` → `[B, heads, N, head_dim]`, contiguous.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    x.reshape((b, n, heads, d / heads))?.transpose(1, 2)?.contiguous()
}
