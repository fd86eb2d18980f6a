//! The feature extractor between Gemma 3 and the connectors: every hidden state of the text encoder
//! (embeddings and 48 layers, 49 × 3840) normalised and projected to one feature vector per token.
//! diffusers `LTX2TextConnectors.forward` (`per_layer_masked_mean_norm`, `per_token_rms_norm`), ComfyUI
//! `comfy/text_encoders/lt.py`.
//!
//! - V1 (LTX-2.0): per sample and layer, `8·(x − mean)/(max − min + 1e-6)` over the valid tokens and all
//!   channels; one projection `aggregate_embed` (no bias) to 3840 shared by both streams.
//! - V2 (LTX-2.3, 2.5): per token and layer, an RMS norm over the channels; projections
//!   `video_aggregate_embed` and `audio_aggregate_embed` (with bias), each input scaled by
//!   `√(out_width / 3840)`.
//!
//! Features are flattened channel-major (index `d·L + l` for channel `d` of layer `l`) and padded
//! tokens are zero.

use crate::ops::stored_linear::StoredLinear;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Scale of the V1 normalisation.
const V1_SCALE: f64 = 8.0;
/// Epsilon of both normalisations.
const EPS: f64 = 1e-6;

/// The projection of the stacked hidden states to caption features.
#[derive(Debug, Clone)]
pub enum FeatureExtractor {
    /// LTX-2.0: `aggregate_embed` `[3840, 3840·49]`, shared by video and audio.
    V1 { aggregate_embed: StoredLinear },
    /// LTX-2.3+: per-stream projections with bias.
    V2 { video_aggregate_embed: StoredLinear, audio_aggregate_embed: StoredLinear },
}

impl FeatureExtractor {
    /// Reads the projection under `vb` (`text_embedding_projection` in single files): V2 when
    /// `video_aggregate_embed.weight` is there, V1 otherwise. `hidden` is the encoder's width, `layers`
    /// the number of hidden states (49).
    pub fn new(vb: &VarBuilder<'_>, hidden: usize, layers: usize) -> Result<Self> {
        if vb.contains_tensor("video_aggregate_embed.weight") {
            let width = |name: &str| vb.pp(name).get_unchecked("bias")?.dim(0);
            Self::v2(vb, hidden, layers, width("video_aggregate_embed")?, width("audio_aggregate_embed")?)
        } else {
            Self::v1(vb, hidden, layers)
        }
    }

    /// The 2.0 projection `aggregate_embed` `[hidden, hidden·layers]`.
    pub fn v1(vb: &VarBuilder<'_>, hidden: usize, layers: usize) -> Result<Self> {
        Ok(FeatureExtractor::V1 {
            aggregate_embed: StoredLinear::new(&vb.pp("aggregate_embed"), hidden * layers, hidden)?,
        })
    }

    /// The 2.3 projections to `video` and `audio` widths.
    pub fn v2(vb: &VarBuilder<'_>, hidden: usize, layers: usize, video: usize, audio: usize) -> Result<Self> {
        let inputs = hidden * layers;
        Ok(FeatureExtractor::V2 {
            video_aggregate_embed: StoredLinear::with_bias(&vb.pp("video_aggregate_embed"), inputs, video)?,
            audio_aggregate_embed: StoredLinear::with_bias(&vb.pp("audio_aggregate_embed"), inputs, audio)?,
        })
    }

    /// Widths of the video and audio features.
    pub fn output_widths(&self) -> Result<(usize, usize)> {
        Ok(match self {
            FeatureExtractor::V1 { aggregate_embed } => {
                let width = aggregate_embed.shape()?.0;
                (width, width)
            }
            FeatureExtractor::V2 { video_aggregate_embed, audio_aggregate_embed } => {
                (video_aggregate_embed.shape()?.0, audio_aggregate_embed.shape()?.0)
            }
        })
    }

    /// `hidden_states`: the encoder's hidden states, each `[B, T, D]`; `mask` `[B, T]` (1 = token,
    /// 0 = padding). Returns the video and audio features, `[B, T, ·]` each.
    pub fn forward(&self, hidden_states: &[Tensor], mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some(first) = hidden_states.first() else { candle_core::bail!("no hidden states to project") };
        let (batch, tokens, width) = first.dims3()?;
        let mask = mask.to_dtype(DType::F32)?.reshape((batch, tokens, 1))?;
        let normalised = hidden_states
            .iter()
            .map(|x| {
                let x = x.to_dtype(DType::F32)?;
                match self {
                    FeatureExtractor::V1 { .. } => masked_range_norm(&x, &mask, width),
                    FeatureExtractor::V2 { .. } => per_token_rms(&x),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // [B, T, D, L] → [B, T, D·L], channel-major; padded tokens zero.
        let stacked = Tensor::stack(&normalised, 3)?.reshape((batch, tokens, width * hidden_states.len()))?;
        let stacked = stacked.broadcast_mul(&mask)?;
        match self {
            FeatureExtractor::V1 { aggregate_embed } => {
                let features = aggregate_embed.forward(&stacked)?;
                Ok((features.clone(), features))
            }
            FeatureExtractor::V2 { video_aggregate_embed, audio_aggregate_embed } => {
                let scaled = |layer: &StoredLinear| -> Result<Tensor> {
                    let out = layer.shape()?.0;
                    layer.forward(&(&stacked * (out as f64 / width as f64).sqrt())?)
                };
                Ok((scaled(video_aggregate_embed)?, scaled(audio_aggregate_embed)?))
            }
        }
    }
}

/// V1: `8·(x − mean)/(max − min + 1e-6)` per sample, statistics over the valid tokens and all channels.
fn masked_range_norm(x: &Tensor, mask: &Tensor, width: usize) -> Result<Tensor> {
    let (batch, _, _) = x.dims3()?;
    let valid = mask.sum_keepdim(1)?; // [B, 1, 1]
    let sum = x.broadcast_mul(mask)?.sum_keepdim((1, 2))?;
    let mean = sum.broadcast_div(&((valid * width as f64)? + EPS)?)?;
    // Padded positions must not count towards min/max: push them past the valid range.
    let big = 3.0e38;
    let outside = mask.affine(-1.0, 1.0)?; // 1 on padding
    let min = x.broadcast_add(&(&outside * big)?)?.min_keepdim(2)?.min_keepdim(1)?;
    let max = x.broadcast_sub(&(&outside * big)?)?.max_keepdim(2)?.max_keepdim(1)?;
    let range = ((max - min)? + EPS)?;
    debug_assert_eq!(range.dims(), [batch, 1, 1]);
    (x.broadcast_sub(&mean)?.broadcast_div(&range)? * V1_SCALE)?.contiguous()
}

/// V2: `x / √(mean over channels of x² + 1e-6)`.
fn per_token_rms(x: &Tensor) -> Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(2)?;
    x.broadcast_div(&(mean_square + EPS)?.sqrt()?)
}
