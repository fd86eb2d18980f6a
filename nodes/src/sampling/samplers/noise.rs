//! The extra noise of ComfyUI's ancestral samplers (`default_noise_sampler`): a torch CPU generator
//! seeded with the sampler seed plus one (ComfyUI offsets the seed when the latent is on the CPU, so that
//! this noise differs from the starting noise), one `torch.randn(x.shape)` per draw, the stream continuing
//! from draw to draw.
//!
//! Where ComfyUI samples on a GPU it draws this noise from the GPU's generator instead, which gives other
//! numbers for the same seed; kinograph always follows the CPU path. For the largest seed, 2^64 − 1,
//! ComfyUI's `manual_seed(seed + 1)` fails with an overflow; kinograph wraps it to 0.

use candle_core::{Shape, Tensor};

use super::SamplingError;
use crate::sampling::noise::TorchGenerator;

/// Draws noise shaped like the latent from a torch-compatible CPU generator.
pub struct AncestralNoise {
    generator: TorchGenerator,
    like: Tensor,
}

impl AncestralNoise {
    /// The noise source ComfyUI's ancestral samplers create for `seed`, for latents shaped like `like`.
    pub fn new(seed: u64, like: &Tensor) -> Self {
        AncestralNoise { generator: TorchGenerator::from_seed(i128::from(seed) + 1), like: like.clone() }
    }

    /// The next `torch.randn(x.shape)` draw, on the latent's device and in its dtype.
    pub fn draw(&mut self) -> Result<Tensor, SamplingError> {
        let shape: Shape = self.like.shape().clone();
        let values = self.generator.randn(shape.elem_count());
        let noise = Tensor::from_vec(values, shape, self.like.device())?;
        Ok(noise.to_dtype(self.like.dtype())?)
    }
}
