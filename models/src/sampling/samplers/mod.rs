//! Sampling algorithms for flow (CONST) models such as LTX-Video, following ComfyUI's k-diffusion
//! samplers (`comfy/k_diffusion/sampling.py`) and its `KSAMPLER.sample` wrapper (`comfy/samplers.py`).
//!
//! A [`Sampler`] walks a latent down a list of sigmas, asking a [`Denoiser`] for the clean latent at each
//! noise level. [`sample_flow`] adds what ComfyUI's `KSAMPLER` does around every sampler: scaling the
//! starting noise into the latent, the inpainting mask, and undoing the scaling at the end.
//!
//! The registered samplers use ComfyUI's defaults as its `KSamplerSelect` node gives them (no extra
//! options: `eta = 1`, `s_noise = 1`, the midpoint variant of DPM-Solver++(2M) SDE; [`EulerAncestral`]
//! takes other `eta` and `s_noise` from `SamplerEulerAncestral`), and the variants ComfyUI picks
//! for CONST models (`euler_ancestral` runs `sample_euler_ancestral_RF`; the SDE sampler works in
//! `log((1 − σ)/σ)`). Their extra noise is drawn the way ComfyUI draws it on the CPU, so that a seed gives
//! the same result: see [`ancestral_noise`] and [`brownian`].

pub mod ancestral_noise;
pub mod brownian;
mod dpmpp_2m;
mod dpmpp_2m_sde;
mod euler;
mod euler_ancestral;
mod flow;
mod gradient_estimation;
mod heun;
mod lcm;
mod registry;

use candle_core::Tensor;

pub use dpmpp_2m::DpmPp2m;
pub use dpmpp_2m_sde::{DpmPp2mSde, flux_percent_to_sigma};
pub use euler::Euler;
pub use euler_ancestral::EulerAncestral;
pub use flow::{MASK_SHAPES, sample_flow};
pub use gradient_estimation::GradientEstimation;
pub use heun::Heun;
pub use lcm::Lcm;
pub use registry::SamplerRegistry;

/// The shift of LTX-Video's model sampling (`ModelSamplingFlux`, `supported_models.LTXV`): the
/// [`SampleOptions::flow_shift`] for LTX-Video models.
pub const LTXV_FLOW_SHIFT: f64 = 2.37;

/// Why sampling stopped.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    /// A tensor operation failed.
    #[error("tensor operation failed while sampling: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The denoiser (the model call) failed.
    #[error("the model call failed: {0}")]
    Denoiser(Box<dyn std::error::Error + Send + Sync>),
    /// The step callback asked to stop.
    #[error("sampling was cancelled")]
    Cancelled,
    /// The sigma list cannot be sampled.
    #[error("invalid sigmas {sigmas:?}: {reason}")]
    InvalidSigmas { sigmas: Vec<f64>, reason: String },
    /// Two tensors that must agree in shape do not.
    #[error("{what} has shape {found:?}, expected {expected}")]
    Shape { what: &'static str, found: Vec<usize>, expected: String },
}

/// Predicts the clean latent (x0, "denoised") from `x` at noise level `sigma`. The node layer implements
/// it (model call, classifier-free guidance, per-token timesteps); tests implement toy ones.
pub trait Denoiser {
    /// The denoised prediction for `x` at `sigma`, same shape as `x`.
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError>;
}

/// What a sampler reports after each step's model call, as ComfyUI's k-diffusion callback does.
pub struct StepInfo<'a> {
    /// The step, from 0.
    pub step: usize,
    /// The number of steps (`sigmas.len() − 1`).
    pub total: usize,
    /// The latent the step started from.
    pub x: &'a Tensor,
    /// The model's clean-latent prediction at this step (used for previews).
    pub denoised: &'a Tensor,
    /// The sigma the model was called at.
    pub sigma: f64,
}

/// Settings every sampler receives.
pub struct SampleOptions<'a> {
    /// The noise seed (ComfyUI passes the `noise_seed`/`seed` widget here). Ancestral and SDE samplers
    /// seed their extra noise from it.
    pub seed: u64,
    /// The model's flow shift (`ModelSamplingFlux.shift`, [`LTXV_FLOW_SHIFT`] for LTX-Video). Only the
    /// SDE sampler uses it, to move a first sigma of 1 off the singular log-SNR (`percent_to_sigma(1e-4)`).
    pub flow_shift: f64,
    /// Called after every step's model call (progress, previews); returning an error stops sampling
    /// with that error (use [`SamplingError::Cancelled`] to cancel).
    pub callback: &'a mut dyn FnMut(&StepInfo<'_>) -> Result<(), SamplingError>,
}

impl SampleOptions<'_> {
    fn report(&mut self, step: usize, sigmas: &[f64], x: &Tensor, denoised: &Tensor) -> Result<(), SamplingError> {
        let info = StepInfo { step, total: sigmas.len().saturating_sub(1), x, denoised, sigma: sigmas[step] };
        (self.callback)(&info)
    }
}

/// A sampling algorithm. Public so that a custom sampler is one type: implement it and register it by
/// name in a [`SamplerRegistry`].
pub trait Sampler: Send + Sync {
    /// The name the `KSamplerSelect` combo shows (ComfyUI's name for the built-in ones).
    fn name(&self) -> &str;
    /// Runs the sampler from `x` (already noised to `sigmas[0]`) down the `sigmas`, one step per pair.
    fn sample(
        &self,
        denoiser: &mut dyn Denoiser,
        x: Tensor,
        sigmas: &[f64],
        options: &mut SampleOptions<'_>,
    ) -> Result<Tensor, SamplingError>;
}

/// Rejects sigma lists no sampler can step through: empty, not finite, negative, or a step that starts
/// at sigma 0 (the samplers divide by the current sigma).
pub fn check_sigmas(sigmas: &[f64]) -> Result<(), SamplingError> {
    let invalid = |reason: &str| Err(SamplingError::InvalidSigmas { sigmas: sigmas.to_vec(), reason: reason.into() });
    if sigmas.is_empty() {
        return invalid("at least one sigma is needed");
    }
    if sigmas.iter().any(|sigma| !sigma.is_finite() || *sigma < 0.0) {
        return invalid("sigmas must be finite and not negative");
    }
    if sigmas[..sigmas.len() - 1].contains(&0.0) {
        return invalid("only the last sigma may be 0 (a step cannot start from a clean latent)");
    }
    Ok(())
}

/// `a·x + b·y`, the update most samplers are made of.
fn combine(x: &Tensor, a: f64, y: &Tensor, b: f64) -> Result<Tensor, SamplingError> {
    Ok((x.affine(a, 0.0)? + y.affine(b, 0.0)?)?)
}
