//! `dpmpp_2m` (`sample_dpmpp_2m`): DPM-Solver++(2M), a second-order multistep solver in `t = −ln σ` that
//! reuses the previous step's prediction. ComfyUI runs the same formulas for flow models.

use candle_core::Tensor;

use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// DPM-Solver++(2M).
pub struct DpmPp2m;

impl Sampler for DpmPp2m {
    fn name(&self) -> &'static str {
        "dpmpp_2m"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        check_sigmas(sigmas)?;
        let t_of = |sigma: f64| -sigma.ln();
        let mut previous: Option<Tensor> = None;
        for step in 0..sigmas.len() - 1 {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            options.report(step, sigmas, &x, &denoised)?;
            if sigma_next == 0.0 {
                // t' = ∞: the update reduces to the prediction itself.
                x = denoised.clone();
            } else {
                let h = t_of(sigma_next) - t_of(sigma);
                let keep = sigma_next / sigma;
                let weight = -(-h).exp_m1();
                let target = match &previous {
                    None => denoised.clone(),
                    Some(previous) => {
                        let h_last = t_of(sigma) - t_of(sigmas[step - 1]);
                        let half_inverse_ratio = 1.0 / (2.0 * (h_last / h));
                        combine(&denoised, 1.0 + half_inverse_ratio, previous, -half_inverse_ratio)?
                    }
                };
                x = combine(&x, keep, &target, weight)?;
            }
            previous = Some(denoised);
        }
        Ok(x)
    }
}
