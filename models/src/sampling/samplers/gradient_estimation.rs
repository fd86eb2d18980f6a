//! `gradient_estimation` (ComfyUI's `sample_gradient_estimation`, γ = 2): an Euler step along
//! `d = (x − denoised)/σ`, corrected from the second step on by `(γ − 1)·(d − d_prev)·dt`; the step to
//! σ = 0 lands on the model's estimate itself.

use candle_core::Tensor;

use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas};

/// ComfyUI's default `ge_gamma`.
const GAMMA: f64 = 2.0;

/// The gradient-estimation sampler.
pub struct GradientEstimation;

impl Sampler for GradientEstimation {
    fn name(&self) -> &'static str {
        "gradient_estimation"
    }

    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        mut x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError> {
        check_sigmas(sigmas)?;
        let mut previous: Option<Tensor> = None;
        for step in 0..sigmas.len() - 1 {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let denoised = denoiser.denoise(&x, sigma)?;
            options.report(step, sigmas, &x, &denoised)?;
            let d = ((&x - &denoised)? / sigma)?;
            let dt = sigma_next - sigma;
            if sigma_next == 0.0 {
                x = denoised;
            } else {
                x = (&x + (&d * dt)?)?;
                if let Some(previous) = &previous {
                    x = (&x + ((&d - previous)? * ((GAMMA - 1.0) * dt))?)?;
                }
            }
            previous = Some(d);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A denoiser whose estimate is a fixed fraction of its input: the steps can be worked out by hand.
    struct Shrink(f64);

    impl Denoiser for Shrink {
        fn denoise(&mut self, x: &Tensor, _: f64) -> Result<Tensor, SamplingError> {
            Ok((x * self.0)?)
        }
    }

    #[test]
    fn corrects_euler_with_the_change_in_slope_and_lands_on_the_estimate() {
        let sigmas = [1.0, 0.5, 0.25, 0.0];
        let x = Tensor::new(&[2.0f32], &Device::Cpu).unwrap();
        let mut callback = |_: &super::super::StepInfo<'_>| Ok(());
        let mut options = SampleOptions { seed: 0, flow_shift: 1.0, callback: &mut callback };
        let out = GradientEstimation.sample(&mut Shrink(0.5), x, &sigmas, &mut options).unwrap();
        // Step 0: d = (2 − 1)/1 = 1, x = 2 − 0.5 = 1.5. Step 1: d = 0.75/0.5 = 1.5,
        // x = 1.5 − 0.375 − 0.5·0.25 = 1.0. Step 2 (to 0): x = 0.5·1.0.
        let value = out.to_vec1::<f32>().unwrap()[0];
        assert!((value - 0.5).abs() < 1e-6, "{value}");
    }
}
