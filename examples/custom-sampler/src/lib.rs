//! A custom sampler for kinograph: the explicit midpoint method (second-order Runge–Kutta) on the
//! flow ODE `dx/dσ = (x − denoised(x, σ))/σ`. Each step takes a half step with Euler, asks the model
//! again at the midpoint, and takes the full step with the midpoint's slope: two model calls per step
//! (one on the last step, which lands on σ = 0 exactly like Euler), about Heun's cost.
//!
//! What makes it a kinograph sampler is one trait, [`Sampler`], and one registration:
//! [`registry`] builds the node registry with the built-in samplers plus this one, so `KSamplerSelect`
//! and `KSampler` list `euler_midpoint` and workflows can select it by name.

use candle_core::Tensor;
use kinograph_engine::Registry;
use kinograph_models::sampling::samplers::{
    Denoiser, SampleOptions, Sampler, SamplerRegistry, SamplingError, StepInfo,
};
use std::sync::Arc;

/// The explicit midpoint method in σ.
pub struct EulerMidpoint;

impl Sampler for EulerMidpoint {
    fn name(&self) -> &'static str {
        "euler_midpoint"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        kinograph_models::sampling::samplers::check_sigmas(sigmas)?;
        let total = sigmas.len() - 1;
        for step in 0..total {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            // Progress, previews and cancellation: report after the step's first model call.
            (options.callback)(&StepInfo { step, total, x: &x, denoised: &denoised, sigma })?;
            if sigma_next == 0.0 {
                // The last step goes straight to the clean estimate, as Euler's does.
                x = denoised;
                continue;
            }
            let slope = ((&x - &denoised)? / sigma)?;
            let sigma_mid = 0.5 * (sigma + sigma_next);
            let x_mid = (&x + (&slope * (sigma_mid - sigma))?)?;
            let denoised_mid = denoiser.denoise(&x_mid, sigma_mid)?;
            let slope_mid = ((&x_mid - &denoised_mid)? / sigma_mid)?;
            x = (&x + (slope_mid * (sigma_next - sigma))?)?;
        }
        Ok(x)
    }
}

/// kinograph's built-in nodes, with `euler_midpoint` among the samplers they offer.
pub fn registry() -> Registry {
    let mut samplers = SamplerRegistry::builtin();
    samplers.register(Arc::new(EulerMidpoint));
    kinograph_nodes::registry_with_samplers(samplers)
}
