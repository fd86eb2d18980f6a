//! `euler` (`sample_euler` with ComfyUI's defaults, no churn): one model call per step, then a straight
//! step along `d = (x − denoised)/σ`.

use candle_core::Tensor;

use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// The Euler method.
pub struct Euler;

impl Sampler for Euler {
    fn name(&self) -> &'static str {
        "euler"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        check_sigmas(sigmas)?;
        for step in 0..sigmas.len() - 1 {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            options.report(step, sigmas, &x, &denoised)?;
            // x + (x − denoised)/σ·(σ' − σ), gathered per tensor.
            let ratio = (sigma_next - sigma) / sigma;
            x = combine(&x, 1.0 + ratio, &denoised, -ratio)?;
        }
        Ok(x)
    }
}
