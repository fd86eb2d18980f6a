//! The text connectors: `Embeddings1DConnector` (official code, ComfyUI), diffusers
//! `LTX2ConnectorTransformer1d`. A small 1-D transformer over the caption features of one stream.
//!
//! Padding never reaches the attention: the valid tokens move to the front (in order) and every position
//! after them holds the learnable register of that absolute position (`registers[i mod R]`), so the
//! whole sequence is attended to. Blocks are pre-norm (affine-free RMS): `h += attn1(RMS(h))`,
//! `h += ff(RMS(h))`; a final RMS norm. RoPE is the split 1-D table over positions `i / max_pos`.

use super::super::rope::SplitRope;
use super::super::transformer::attention::{AttentionShape, Ltx2Attention};
use crate::ltxv::transformer::block::FeedForward;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

/// The sizes of one connector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectorConfig {
    /// Heads (30 in 2.0, 32 in 2.3).
    pub heads: usize,
    /// Width of one head (128 for video, 64 for the 2.3 audio connector).
    pub head_dim: usize,
    /// Blocks (2 in 2.0, 8 in 2.3).
    pub layers: usize,
    /// Learnable registers (128).
    pub registers: usize,
    /// Gated attention (2.3).
    pub gated: bool,
    /// RoPE position normaliser (4096).
    pub max_position: f32,
    /// RoPE θ.
    pub theta: f64,
    /// Norm epsilon.
    pub eps: f64,
}

#[derive(Debug, Clone)]
struct ConnectorBlock {
    attn1: Ltx2Attention,
    ff: FeedForward,
}

/// One connector (video or audio).
#[derive(Debug, Clone)]
pub struct Connector {
    config: ConnectorConfig,
    registers: Tensor,
    blocks: Vec<ConnectorBlock>,
    ones: Tensor,
}

impl Connector {
    /// Weights under `vb` (`model.diffusion_model.video_embeddings_connector` in single files):
    /// `learnable_registers` and `transformer_1d_blocks.{i}.{attn1,ff}`.
    pub fn new(config: ConnectorConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let width = config.heads * config.head_dim;
        let registers = vb.get((config.registers, width), "learnable_registers")?.to_dtype(DType::F32)?;
        let shape = AttentionShape {
            query_dim: width,
            context_dim: width,
            heads: config.heads,
            head_dim: config.head_dim,
            gated: config.gated,
        };
        let blocks = (0..config.layers)
            .map(|i| {
                let vb = vb.pp("transformer_1d_blocks").pp(i);
                Ok(ConnectorBlock {
                    attn1: Ltx2Attention::new(shape, config.eps, &vb.pp("attn1"))?,
                    ff: FeedForward::new(width, &vb.pp("ff"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Connector { config, registers, blocks, ones: Tensor::ones(width, DType::F32, vb.device())? })
    }

    /// Number of learnable registers: sequence lengths are multiples of it.
    pub fn register_count(&self) -> usize {
        self.registers.dim(0).unwrap_or(1)
    }

    /// `features` `[B, T, width]` with `mask` `[B, T]` (1 = token; `None`: all tokens) → `[B, length, width]`,
    /// `length` a multiple of the register count and at least the largest number of valid tokens.
    pub fn forward(&self, features: &Tensor, mask: Option<&Tensor>, length: usize) -> Result<Tensor> {
        let (batch, tokens, width) = features.dims3()?;
        let registers = self.register_count();
        if registers == 0 || !length.is_multiple_of(registers) {
            candle_core::bail!("connector sequence length {length} is not a multiple of its {registers} registers");
        }
        let device = features.device();
        let valid: Vec<Vec<f32>> = match mask {
            Some(mask) => mask.to_dtype(DType::F32)?.to_vec2()?,
            None => vec![vec![1.0; tokens]; batch],
        };
        let features = features.to_dtype(DType::F32)?;
        let mut rows = Vec::with_capacity(batch);
        for (b, valid) in valid.iter().enumerate() {
            let kept: Vec<u32> = (0..tokens).filter(|&t| valid[t] >= 0.5).map(|t| t as u32).collect();
            if kept.len() > length {
                candle_core::bail!("{} text tokens do not fit a connector sequence of {length}", kept.len());
            }
            let mut parts = Vec::with_capacity(2);
            if !kept.is_empty() {
                let index = Tensor::from_vec(kept.clone(), kept.len(), device)?;
                parts.push(features.get(b)?.index_select(&index, 0)?);
            }
            if kept.len() < length {
                let fill: Vec<u32> = (kept.len()..length).map(|i| (i % registers) as u32).collect();
                let index = Tensor::from_vec(fill, length - kept.len(), device)?;
                parts.push(self.registers.index_select(&index, 0)?);
            }
            rows.push(Tensor::cat(&parts, 0)?);
        }
        let mut hidden = Tensor::stack(&rows, 0)?;
        debug_assert_eq!(hidden.dims(), [batch, length, width]);

        let rope = self.rope(batch, length, device)?;
        let eps = self.config.eps as f32;
        for block in &self.blocks {
            let normed = candle_nn::ops::rms_norm(&hidden, &self.ones, eps)?;
            hidden = (&hidden + block.attn1.forward(&normed, None, Some(&rope), None, None)?)?;
            let normed = candle_nn::ops::rms_norm(&hidden, &self.ones, eps)?;
            hidden = (&hidden + block.ff.forward(&normed)?)?;
        }
        candle_nn::ops::rms_norm(&hidden, &self.ones, eps)
    }

    /// The 1-D table for positions `0..length`.
    fn rope(&self, batch: usize, length: usize, device: &Device) -> Result<SplitRope> {
        let positions: Vec<f32> = (0..length).map(|i| i as f32 / self.config.max_position).collect();
        let fractions = positions.repeat(batch);
        let width = self.config.heads * self.config.head_dim;
        SplitRope::from_fractions(&fractions, batch, 1, width, self.config.heads, self.config.theta, device)
    }
}
