//! One sampling run as ComfyUI's `comfy.sample.sample_custom` makes it: starting noise, the guider as the
//! denoiser (with the noise mask's per-token timesteps), the sampler over the sigmas, a progress event with
//! a latent preview after every step, and cancellation between steps.

use crate::diffusion::latent_preview;
use crate::values::Guider;
use crate::values::{Latent, Noise, tensor_error};
use candle_core::Tensor;
use kinograph_engine::{ExecutionContext, NodeError};
use kinograph_models::sampling::samplers::{Denoiser, SampleOptions, Sampler, SamplingError, StepInfo, sample_flow};

/// The guider seen as a sampler's denoiser.
struct GuiderDenoiser<'a> {
    guider: &'a Guider,
    /// The noise mask, for per-token timesteps; the sampler applies the blend itself.
    mask: Option<&'a Tensor>,
}

impl Denoiser for GuiderDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        Ok(self.guider.predict(x, sigma, self.mask)?)
    }
}

/// The sampled latent and the model's last clean-latent estimate (`SamplerCustom`'s `denoised_output`).
pub struct Sampled {
    pub output: Latent,
    pub denoised: Latent,
}

/// ComfyUI's `fix_empty_latent_channels`: an all-zero latent whose channel count differs from the
/// model's becomes zeros with the model's channels; any other mismatch is an error.
fn fit_empty_latent(latent: &Latent, channels: usize) -> Result<Latent, NodeError> {
    let dims = latent.samples.dims().to_vec();
    if dims.len() != 5 {
        return Err(NodeError::input(
            "latent_image",
            format!(
                "LTX-Video samples latents of shape [B, {channels}, T, H, W]; got {dims:?} (use EmptyLTXVLatentVideo or LTXVImgToVideo)"
            ),
        ));
    }
    if dims[1] == channels {
        return Ok(latent.clone());
    }
    let empty = latent
        .samples
        .abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>())
        .map_err(|e| tensor_error("latent", &e))?
        == 0.0;
    if !empty {
        return Err(NodeError::input(
            "latent_image",
            format!("the latent has {} channels but the model works on {channels}", dims[1]),
        ));
    }
    let samples =
        Tensor::zeros((dims[0], channels, dims[2], dims[3], dims[4]), candle_core::DType::F32, latent.samples.device())
            .map_err(|e| tensor_error("latent", &e))?;
    Ok(latent.with_samples(samples))
}

/// Samples `latent` with `guider` and `sampler` down `sigmas`, from `noise`.
pub fn run_sampling(
    context: &ExecutionContext,
    guider: &Guider,
    sampler: &dyn Sampler,
    sigmas: &[f32],
    latent: &Latent,
    noise: &Noise,
) -> Result<Sampled, NodeError> {
    let latent = &fit_empty_latent(latent, guider.model.transformer.config().in_channels)?;
    if sigmas.len() < 2 {
        // Nothing to step through (e.g. denoise 0): the latent comes back as it was.
        return Ok(Sampled { output: latent.clone(), denoised: latent.clone() });
    }
    let sigmas: Vec<f64> = sigmas.iter().map(|s| f64::from(*s)).collect();
    let starting_noise = noise.generate(latent)?;
    let mask = latent.noise_mask.as_ref();
    let mut denoiser = GuiderDenoiser { guider, mask };
    let total = (sigmas.len() - 1) as u64;
    let mut last_denoised: Option<Tensor> = None;
    let mut callback = |info: &StepInfo<'_>| -> Result<(), SamplingError> {
        last_denoised = Some(info.denoised.clone());
        let step = info.step as u64 + 1;
        let reported = match latent_preview(info.denoised) {
            Ok(preview) => context.progress_with_preview(step, total, preview),
            Err(_) => context.progress(step, total),
        };
        reported.map_err(|_| SamplingError::Cancelled)
    };
    let mut options = SampleOptions {
        seed: noise.seed().rem_euclid(1 << 64) as u64,
        flow_shift: guider.model.shift,
        callback: &mut callback,
    };
    context.check_interrupted()?;
    let result = sample_flow(sampler, &mut denoiser, &starting_noise, &latent.samples, &sigmas, mask, &mut options);
    let samples = match result {
        Ok(samples) => samples,
        Err(SamplingError::Cancelled) => return Err(NodeError::Interrupted),
        Err(error) => return Err(NodeError::msg(format!("sampling with '{}' failed: {error}", sampler.name()))),
    };
    let denoised = last_denoised.unwrap_or_else(|| samples.clone());
    Ok(Sampled { output: latent.with_samples(samples), denoised: latent.with_samples(denoised) })
}
