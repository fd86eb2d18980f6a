//! One transformer block: diffusers' `LTXVideoTransformerBlock` (`BasicTransformerBlock` with
//! `adaptive_norm="single_scale_shift"` in the original code), and its `FeedForward`.

use super::attention::{Attention, GuideAttentionBias, LogitBias};
use super::config::LtxvTransformerConfig;
use super::embeddings::ones;
use super::rope::RopeTables;
use crate::ops::activations::gelu_tanh;
use crate::ops::linear::Linear;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `FeedForward` with `gelu-approximate`: `net.2(GELU_tanh(net.0.proj(x)))`, hidden width 4d.
#[derive(Debug, Clone)]
pub struct FeedForward {
    project_in: Linear,
    project_out: Linear,
}

impl FeedForward {
    /// Weights under `net.0.proj.*` and `net.2.*`.
    pub fn new(dim: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::with_bias(dim, true, vb)
    }

    /// As [`Self::new`]; without biases when `bias` is false (the video feed-forward of LTX-2.5).
    pub fn with_bias(dim: usize, bias: bool, vb: &VarBuilder<'_>) -> Result<Self> {
        let net = vb.pp("net");
        let linear = |inputs, outputs, vb: &VarBuilder<'_>| {
            if bias { Linear::new(inputs, outputs, vb) } else { Linear::without_bias(inputs, outputs, vb) }
        };
        Ok(FeedForward {
            project_in: linear(dim, 4 * dim, &net.pp("0").pp("proj"))?,
            project_out: linear(4 * dim, dim, &net.pp("2"))?,
        })
    }

    /// The linear layers by their checkpoint names under this feed-forward.
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 2] {
        [("net.0.proj", &mut self.project_in), ("net.2", &mut self.project_out)]
    }

    /// `[B, N, d]` → `[B, N, d]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.project_out.forward(&gelu_tanh(self.project_in.forward(x)?)?)
    }
}

/// `LTXVideoTransformerBlock`.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    scale_shift_table: Tensor,
    attn1: Attention,
    attn2: Attention,
    ff: FeedForward,
    norm_weight: Tensor,
    eps: f32,
}

impl TransformerBlock {
    /// The linear layers by their checkpoint names under this block.
    pub(crate) fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> = Vec::with_capacity(10);
        for (prefix, attention) in [("attn1", &mut self.attn1), ("attn2", &mut self.attn2)] {
            layers.extend(attention.linears_mut().into_iter().map(|(name, l)| (format!("{prefix}.{name}"), l)));
        }
        layers.extend(self.ff.linears_mut().into_iter().map(|(name, l)| (format!("ff.{name}"), l)));
        layers
    }

    /// Weights under `scale_shift_table`, `attn1.*`, `attn2.*` and `ff.*`.
    pub fn new(config: &LtxvTransformerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let dim = config.inner_dim();
        Ok(TransformerBlock {
            scale_shift_table: vb.get((6, dim), "scale_shift_table")?,
            attn1: Attention::new(config, dim, &vb.pp("attn1"))?,
            attn2: Attention::new(config, config.cross_attention_dim, &vb.pp("attn2"))?,
            ff: FeedForward::new(dim, &vb.pp("ff"))?,
            norm_weight: ones(dim, vb.device())?,
            eps: config.norm_eps as f32,
        })
    }

    /// `hidden` `[B, N, d]`, `context` the projected caption `[B, L, d]`, `temb` `[B, T, 6d]` with T = 1
    /// (one timestep per sample) or T = N (per token), `bias` the text padding bias `[B, 1, L]`, `guides`
    /// the guide weights of the self-attention.
    pub fn forward(
        &self,
        hidden: &Tensor,
        context: &Tensor,
        temb: &Tensor,
        rope: &RopeTables,
        bias: Option<&Tensor>,
        guides: Option<&GuideAttentionBias>,
    ) -> Result<Tensor> {
        let (b, t, _) = temb.dims3()?;
        let dim = self.scale_shift_table.dim(1)?;
        // (shift, scale, gate) for attention, then for the feed-forward; each [B, T, d].
        let ada = temb.reshape((b, t, 6, dim))?.broadcast_add(&self.scale_shift_table.reshape((1, 1, 6, dim))?)?;
        let chunk = |i: usize| ada.narrow(2, i, 1).and_then(|c| c.squeeze(2));
        let (shift_msa, scale_msa, gate_msa) = (chunk(0)?, chunk(1)?, chunk(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (chunk(3)?, chunk(4)?, chunk(5)?);

        let norm = self.modulate(hidden, &shift_msa, &scale_msa)?;
        let attended = self.attn1.forward(&norm, None, Some(rope), guides.map(LogitBias::Guides))?;
        let hidden = (hidden + attended.broadcast_mul(&gate_msa)?)?;

        let hidden = (&hidden + self.attn2.forward(&hidden, Some(context), None, bias.map(LogitBias::Keys))?)?;

        let norm = self.modulate(&hidden, &shift_mlp, &scale_mlp)?;
        let fed = self.ff.forward(&norm)?;
        hidden + fed.broadcast_mul(&gate_mlp)?
    }

    /// `RMS(x)·(1 + scale) + shift`.
    fn modulate(&self, x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.norm_weight, self.eps)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
    }
}
