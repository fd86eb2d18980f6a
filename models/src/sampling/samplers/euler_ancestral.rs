//! `euler_ancestral` for flow models (ComfyUI dispatches `sample_euler_ancestral` to
//! `sample_euler_ancestral_RF` when the model sampling is CONST). `KSamplerSelect` gives it ComfyUI's
//! defaults `eta = 1`, `s_noise = 1`; the `SamplerEulerAncestral` node sets both.
//!
//! Each step goes down to `σ_down = σ'·(1 + (σ'/σ − 1)·η)` along the flow, rescales the signal from
//! `1 − σ_down` to `1 − σ'` and adds fresh noise to bring the noise level back up to `σ'`. The step to
//! sigma 0 returns the prediction and draws no noise.

use candle_core::Tensor;

use super::ancestral_noise::AncestralNoise;
use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// Ancestral Euler for rectified-flow models.
pub struct EulerAncestral {
    /// How much of each step is re-noised (ComfyUI's default 1).
    pub eta: f64,
    /// Scale of the added noise (ComfyUI's default 1).
    pub s_noise: f64,
}

impl Default for EulerAncestral {
    fn default() -> Self {
        EulerAncestral { eta: 1.0, s_noise: 1.0 }
    }
}

impl Sampler for EulerAncestral {
    fn name(&self) -> &'static str {
        "euler_ancestral"
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
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            options.report(step, sigmas, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = denoised;
                continue;
            }
            let sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * self.eta);
            let alpha_next = 1.0 - sigma_next;
            let alpha_down = 1.0 - sigma_down;
            let renoise = (sigma_next.powi(2) - sigma_down.powi(2) * alpha_next.powi(2) / alpha_down.powi(2)).sqrt();
            let ratio = sigma_down / sigma;
            x = combine(&x, ratio, &denoised, 1.0 - ratio)?;
            if self.eta > 0.0 {
                x = combine(&x, alpha_next / alpha_down, &noise.draw()?, self.s_noise * renoise)?;
            }
        }
        Ok(x)
    }
}
