//! Per-channel latent statistics (`per_channel_statistics` in the original code, `latents_mean` /
//! `latents_std` in diffusers): what the pipelines use to normalise latents after encoding and to
//! denormalise them before decoding. Covers every LTX-Video VAE.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// The latent mean and standard deviation per channel.
#[derive(Debug, Clone)]
pub struct PerChannelStatistics {
    mean: Tensor,
    std: Tensor,
}

impl PerChannelStatistics {
    /// Reads `mean-of-means` and `std-of-means` from `vb` (pointing at `per_channel_statistics`).
    pub fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Self { mean: vb.get(channels, "mean-of-means")?, std: vb.get(channels, "std-of-means")? })
    }

    /// The (C,) means.
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// The (C,) standard deviations.
    pub fn std(&self) -> &Tensor {
        &self.std
    }

    /// `(z − mean) / std` per channel of a (B, C, T, H, W) latent (scaling factor 1, as in every release).
    pub fn normalize(&self, latent: &Tensor) -> Result<Tensor> {
        let mean = self.mean.reshape((1, (), 1, 1, 1))?.to_dtype(latent.dtype())?;
        let std = self.std.reshape((1, (), 1, 1, 1))?.to_dtype(latent.dtype())?;
        latent.broadcast_sub(&mean)?.broadcast_div(&std)
    }

    /// `z · std + mean`, the inverse of [`Self::normalize`].
    pub fn denormalize(&self, latent: &Tensor) -> Result<Tensor> {
        let mean = self.mean.reshape((1, (), 1, 1, 1))?.to_dtype(latent.dtype())?;
        let std = self.std.reshape((1, (), 1, 1, 1))?.to_dtype(latent.dtype())?;
        latent.broadcast_mul(&std)?.broadcast_add(&mean)
    }
}
