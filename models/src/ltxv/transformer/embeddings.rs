//! Timestep and caption embeddings: diffusers' `AdaLayerNormSingle` (with its
//! `PixArtAlphaCombinedTimestepSizeEmbeddings` → `Timesteps` + `TimestepEmbedding`) and
//! `PixArtAlphaTextProjection`; `adaln_single` and `caption_projection` in the original code.

use crate::ops::linear::Linear;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

/// Width of the timestep sinusoid.
pub const TIMESTEP_SINUSOID_DIM: usize = 256;

/// The sinusoidal embedding of `timesteps` (any shape, flattened; in units of σ·1000), `[M, dim]` with
/// the cosines first: `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`.
///
/// The frequencies and angles are rounded to f32 exactly where torch rounds them, so that the angle
/// `t·f` (up to 1000 rad) carries no extra error; the exponential and the cos/sin are evaluated in f64
/// and rounded once.
pub fn timestep_sinusoid(timesteps: &Tensor, dim: usize) -> Result<Tensor> {
    let times = timesteps.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let half = dim / 2;
    let log_period = -(10_000_f64.ln() as f32);
    let frequencies: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (log_period * i as f32) / half as f32;
            (exponent as f64).exp() as f32
        })
        .collect();
    let mut values = Vec::with_capacity(times.len() * dim);
    for &t in &times {
        let angles = frequencies.iter().map(|&f| f64::from(t * f));
        values.extend(angles.clone().map(|a| a.cos() as f32));
        values.extend(angles.map(|a| a.sin() as f32));
        values.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Tensor::from_vec(values, (times.len(), dim), timesteps.device())
}

/// `TimestepEmbedding`: `linear_2(SiLU(linear_1(x)))`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 2] {
        [("linear_1", &mut self.linear_1), ("linear_2", &mut self.linear_2)]
    }

    /// `in_channels` → `out_channels` → `out_channels`.
    pub fn new(in_channels: usize, out_channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(TimestepEmbedding {
            linear_1: Linear::new(in_channels, out_channels, &vb.pp("linear_1"))?,
            linear_2: Linear::new(out_channels, out_channels, &vb.pp("linear_2"))?,
        })
    }

    /// `[M, in]` → `[M, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// `AdaLayerNormSingle` (adaLN-single of PixArt-α): from a timestep, the six modulation vectors of
/// every block (`temb`) and the embedded timestep that modulates the final norm.
#[derive(Debug, Clone)]
pub struct AdaLayerNormSingle {
    timestep_embedder: TimestepEmbedding,
    linear: Linear,
}

impl AdaLayerNormSingle {
    pub(crate) fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> = self
            .timestep_embedder
            .linears_mut()
            .into_iter()
            .map(|(name, l)| (format!("emb.timestep_embedder.{name}"), l))
            .collect();
        layers.push(("linear".into(), &mut self.linear));
        layers
    }

    /// Weights under `emb.timestep_embedder.*` and `linear.*`; six modulation vectors.
    pub fn new(inner_dim: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::with_outputs(inner_dim, 6, vb)
    }

    /// As [`Self::new`] with `outputs` modulation vectors of width `inner_dim` (LTX-2 uses 1, 2, 4, 6 and 9).
    pub fn with_outputs(inner_dim: usize, outputs: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(AdaLayerNormSingle {
            timestep_embedder: TimestepEmbedding::new(
                TIMESTEP_SINUSOID_DIM,
                inner_dim,
                &vb.pp("emb").pp("timestep_embedder"),
            )?,
            linear: Linear::new(inner_dim, outputs * inner_dim, &vb.pp("linear"))?,
        })
    }

    /// Timesteps of any shape (σ·1000), flattened to M values → (`temb` `[M, k·d]` for k outputs,
    /// `embedded_timestep` `[M, d]`).
    pub fn forward(&self, timesteps: &Tensor) -> Result<(Tensor, Tensor)> {
        let sinusoid = timestep_sinusoid(timesteps, TIMESTEP_SINUSOID_DIM)?;
        let embedded = self.timestep_embedder.forward(&sinusoid)?;
        let temb = self.linear.forward(&embedded.silu()?)?;
        Ok((temb, embedded))
    }
}

/// `PixArtAlphaTextProjection`: `linear_2(GELU_tanh(linear_1(caption)))`, text-encoder width → inner width.
#[derive(Debug, Clone)]
pub struct CaptionProjection {
    linear_1: Linear,
    linear_2: Linear,
}

impl CaptionProjection {
    pub(crate) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 2] {
        [("linear_1", &mut self.linear_1), ("linear_2", &mut self.linear_2)]
    }

    /// Weights under `linear_1.*` and `linear_2.*`.
    pub fn new(caption_channels: usize, inner_dim: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(CaptionProjection {
            linear_1: Linear::new(caption_channels, inner_dim, &vb.pp("linear_1"))?,
            linear_2: Linear::new(inner_dim, inner_dim, &vb.pp("linear_2"))?,
        })
    }

    /// `[B, L, caption_channels]` → `[B, L, inner_dim]`.
    pub fn forward(&self, caption: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(caption)?.gelu()?)
    }
}

/// A float tensor of ones, the weight of the affine-free norms (candle's fused norms take one).
pub(crate) fn ones(width: usize, device: &Device) -> Result<Tensor> {
    Tensor::ones(width, candle_core::DType::F32, device)
}
