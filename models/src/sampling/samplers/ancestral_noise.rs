//! The extra noise of ComfyUI's ancestral samplers (`default_noise_sampler`): a torch generator seeded
//! with the sampler seed, one `torch.randn(x.shape)` per draw, the stream continuing from draw to draw.
//!
//! This is ComfyUI 0.3.64 on the CPU. Where ComfyUI samples on a GPU it draws this noise from the GPU's
//! generator, which gives other numbers for the same seed; later ComfyUI versions seed a CPU generator with
//! `seed + 1` (so that this noise differs from the starting noise). kinograph follows the CPU path of 0.3.64.

use candle_core::{Shape, Tensor};

use super::SamplingError;
use crate::sampling::torch_noise::TorchGenerator;

/// Draws noise shaped like the latent from a torch-compatible CPU generator.
pub struct AncestralNoise {
    generator: TorchGenerator,
    like: Tensor,
}

impl AncestralNoise {
    /// The noise source ComfyUI's ancestral samplers create for `seed`, for latents shaped like `like`.
    pub fn new(seed: u64, like: &Tensor) -> Self {
        AncestralNoise { generator: TorchGenerator::new(seed), like: like.clone() }
    }

    /// The next `torch.randn(x.shape)` draw, on the latent's device and in its dtype.
    pub fn draw(&mut self) -> Result<Tensor, SamplingError> {
        let shape: Shape = self.like.shape().clone();
        let values = self.generator.randn(shape.elem_count());
        let noise = Tensor::from_vec(values, shape, self.like.device())?;
        Ok(noise.to_dtype(self.like.dtype())?)
    }
}
