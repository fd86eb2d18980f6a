//! `heun` (`sample_heun` with ComfyUI's defaults, no churn): an Euler step, then a second model call at
//! the next sigma and the average of both slopes; the last step to sigma 0 stays a plain Euler step.

use candle_core::Tensor;

use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// Heun's second-order method.
pub struct Heun;

impl Sampler for Heun {
    fn name(&self) -> &'static str {
        "heun"
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
            let slope = combine(&x, 1.0 / sigma, &denoised, -1.0 / sigma)?;
            options.report(step, sigmas, &x, &denoised)?;
            let dt = sigma_next - sigma;
            let euler = (&x + slope.affine(dt, 0.0)?)?;
            if sigma_next == 0.0 {
                x = euler;
            } else {
                let denoised_next = denoiser.denoise(&euler, sigma_next)?;
                let slope_next = combine(&euler, 1.0 / sigma_next, &denoised_next, -1.0 / sigma_next)?;
                let average = ((slope + slope_next)? * 0.5)?;
                x = (&x + average.affine(dt, 0.0)?)?;
            }
        }
        Ok(x)
    }
}
