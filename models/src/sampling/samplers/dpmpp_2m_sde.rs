//! `dpmpp_2m_sde` (`sample_dpmpp_2m_sde`, midpoint variant, `eta = 1`, `s_noise = 1`): DPM-Solver++(2M)
//! SDE in the half log-SNR `λ = ln((1 − σ)/σ)` of a flow model, with Brownian-tree noise.
//!
//! As in ComfyUI for CONST models: the signal scale is `α = 1 − σ`; a first sigma of 1 (λ = −∞) is replaced
//! by the model's `percent_to_sigma(1e-4)`; the Brownian tree spans the sigmas as given (smallest non-zero
//! to largest); the step to sigma 0 returns the prediction.

use candle_core::Tensor;

use super::brownian::BrownianNoise;
use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// DPM-Solver++(2M) SDE.
pub struct DpmPp2mSde {
    /// Stochasticity (ComfyUI's default 1).
    pub eta: f64,
    /// Scale of the added noise (ComfyUI's default 1).
    pub s_noise: f64,
}

impl Default for DpmPp2mSde {
    fn default() -> Self {
        DpmPp2mSde { eta: 1.0, s_noise: 1.0 }
    }
}

/// `ModelSamplingFlux.percent_to_sigma`: the sigma at `percent` of the way through a shifted schedule.
pub fn flux_percent_to_sigma(percent: f64, shift: f64) -> f64 {
    if percent <= 0.0 {
        return 1.0;
    }
    if percent >= 1.0 {
        return 0.0;
    }
    let t = 1.0 - percent;
    shift.exp() / (shift.exp() + (1.0 / t - 1.0))
}

fn half_log_snr(sigma: f64) -> f64 {
    ((1.0 - sigma) / sigma).ln()
}

impl Sampler for DpmPp2mSde {
    fn name(&self) -> &'static str {
        "dpmpp_2m_sde"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        check_sigmas(sigmas)?;
        if sigmas.len() <= 1 {
            return Ok(x);
        }
        let sigma_min = sigmas.iter().copied().filter(|sigma| *sigma > 0.0).fold(f64::INFINITY, f64::min);
        let sigma_max = sigmas.iter().copied().fold(0.0, f64::max);
        let noise = BrownianNoise::new(sigma_min, sigma_max, options.seed, &x);
        let mut sigmas = sigmas.to_vec();
        if sigmas[0] >= 1.0 {
            // Stored into ComfyUI's float32 sigma tensor.
            sigmas[0] = f64::from(flux_percent_to_sigma(1e-4, options.flow_shift) as f32);
        }

        let mut previous: Option<Tensor> = None;
        let mut h_last = 0.0;
        for step in 0..sigmas.len() - 1 {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            options.report(step, &sigmas, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = denoised.clone();
            } else {
                let lambda = half_log_snr(sigma);
                let lambda_next = half_log_snr(sigma_next);
                let h = lambda_next - lambda;
                let h_eta = h * (self.eta + 1.0);
                let alpha_next = sigma_next * lambda_next.exp();
                let weight = alpha_next * -(-h_eta).exp_m1();
                x = combine(&x, sigma_next / sigma * (-h * self.eta).exp(), &denoised, weight)?;
                if let Some(previous) = &previous {
                    let correction = 0.5 * weight / (h_last / h);
                    x = (x + (&denoised - previous)?.affine(correction, 0.0)?)?;
                }
                if self.eta > 0.0 && self.s_noise > 0.0 {
                    let scale = sigma_next * (-(-2.0 * h * self.eta).exp_m1()).sqrt() * self.s_noise;
                    x = (x + noise.draw(sigma, sigma_next)?.affine(scale, 0.0)?)?;
                }
                h_last = h;
            }
            previous = Some(denoised);
        }
        Ok(x)
    }
}
