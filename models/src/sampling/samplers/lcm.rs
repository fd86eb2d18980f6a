//! `lcm` (`sample_lcm`): every step jumps to the prediction, then re-noises it to the next sigma with
//! fresh noise, using the model's own noise scaling (for flow models `σ'·noise + (1 − σ')·x0`).

use candle_core::Tensor;

use super::ancestral_noise::AncestralNoise;
use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// The latent-consistency sampler.
pub struct Lcm;

impl Sampler for Lcm {
    fn name(&self) -> &'static str {
        "lcm"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        check_sigmas(sigmas)?;
        let mut noise = AncestralNoise::new(options.seed, &x);
        for step in 0..sigmas.len() - 1 {
            let sigma_next = sigmas[step + 1];
            let denoised = denoiser.denoise(&x, sigmas[step])?;
            options.report(step, sigmas, &x, &denoised)?;
            x = if sigma_next > 0.0 {
                combine(&noise.draw()?, sigma_next, &denoised, 1.0 - sigma_next)?
            } else {
                denoised
            };
        }
        Ok(x)
    }
}
