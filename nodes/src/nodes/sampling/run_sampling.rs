//! One sampling run as ComfyUI's `comfy.sample.sample_custom` makes it: starting noise, the noise mask fitted
//! to the latent (`prepare_mask`), the guider as the denoiser (with the mask's per-token timesteps), the
//! sampler over the sigmas, a progress event with a latent preview after every step, and cancellation
//! between steps.

use crate::diffusion::av_call::AvShapes;
use crate::diffusion::guidance::AvMasks;
use crate::diffusion::latent_preview;
use crate::diffusion::noise_mask::reshape_mask;
use crate::values::Guider;
use crate::values::{AudioLatent, Latent, Noise, Transformer, tensor_error};
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

/// The guider seen as a sampler's denoiser for a packed audio-video latent.
struct AvDenoiser<'a> {
    guider: &'a Guider,
    shapes: AvShapes,
    video_mask: Option<Tensor>,
    audio_mask: Option<Tensor>,
}

impl Denoiser for AvDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        let masks = AvMasks { video: self.video_mask.as_ref(), audio: self.audio_mask.as_ref() };
        Ok(self.guider.predict_av(x, &self.shapes, sigma, masks)?)
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
    let is_ltx2 = matches!(guider.model.transformer, Transformer::Ltx2(_));
    if latent.audio.is_some() || is_ltx2 {
        return run_av_sampling(context, guider, sampler, sigmas, latent, noise);
    }
    let latent = &fit_empty_latent(latent, guider.model.transformer.in_channels())?;
    if sigmas.len() < 2 {
        // Nothing to step through (e.g. denoise 0): the latent comes back as it was.
        return Ok(Sampled { output: latent.clone(), denoised: latent.clone() });
    }
    let sigmas: Vec<f64> = sigmas.iter().map(|s| f64::from(*s)).collect();
    let starting_noise = noise.generate(latent)?;
    let fitted = latent.noise_mask.as_ref().map(|mask| full_mask(Some(mask), &latent.samples, "video")).transpose()?;
    let mask = fitted.as_ref();
    let mut denoiser = GuiderDenoiser { guider, mask };
    let total = (sigmas.len() - 1) as u64;
    let mut last_denoised: Option<Tensor> = None;
    let mut callback = |info: &StepInfo<'_>| -> Result<(), SamplingError> {
        last_denoised = Some(info.denoised.clone());
        let step = info.step as u64 + 1;
        report(context, step, total, latent_preview(info.denoised).ok())
    };
    let mut options = SampleOptions {
        seed: noise.seed().rem_euclid(1 << 64) as u64,
        flow_shift: guider.model.shift,
        callback: &mut callback,
    };
    context.check_interrupted()?;
    let result = sample_flow(sampler, &mut denoiser, &starting_noise, &latent.samples, &sigmas, mask, &mut options);
    let samples = sampled(result, sampler)?;
    let denoised = last_denoised.unwrap_or_else(|| samples.clone());
    Ok(Sampled { output: latent.with_samples(samples), denoised: latent.with_samples(denoised) })
}

/// A noise mask fitted to the full shape of its stream (ComfyUI's `prepare_mask`, per stream before
/// packing: see [`reshape_mask`]); ones when the stream has none.
fn full_mask(mask: Option<&Tensor>, like: &Tensor, what: &str) -> Result<Tensor, NodeError> {
    let failed = |reason: String| {
        NodeError::input(
            "latent_image",
            format!(
                "the {what} noise mask {:?} does not fit the latent {:?}: {reason}",
                mask.map(|m| m.dims().to_vec()),
                like.dims()
            ),
        )
    };
    match mask {
        Some(mask) => reshape_mask(mask, like.dims())
            .and_then(|fitted| fitted.to_device(like.device()).map_err(|e| e.to_string()))
            .map_err(failed),
        None => like.to_dtype(candle_core::DType::F32).and_then(|l| l.ones_like()).map_err(|e| failed(e.to_string())),
    }
}

/// LTX-2 sampling as ComfyUI's `CFGGuider.sample` does it for a nested latent: video and audio (and their
/// noise and masks) packed into one flat tensor that the sampler steps through.
fn run_av_sampling(
    context: &ExecutionContext,
    guider: &Guider,
    sampler: &dyn Sampler,
    sigmas: &[f32],
    latent: &Latent,
    noise: &Noise,
) -> Result<Sampled, NodeError> {
    if !matches!(guider.model.transformer, Transformer::Ltx2(_)) {
        return Err(NodeError::input(
            "latent_image",
            format!(
                "this is an audio-video latent, which only LTX-2 models sample; the guider's model is the LTX-Video \
                 0.9 checkpoint {} (load an LTX-2 checkpoint, such as ltx-2-19b-dev-fp8.safetensors)",
                guider.model.file.display()
            ),
        ));
    }
    let Some(audio) = &latent.audio else {
        return Err(NodeError::input(
            "latent_image",
            format!(
                "LTX-2 samples video and sound together: join the video latent {:?} with an audio latent \
                 (LTXVEmptyLatentAudio) in LTXVConcatAVLatent",
                latent.samples.dims()
            ),
        ));
    };
    let shapes = AvShapes::of(&latent.samples, &audio.samples).map_err(|e| NodeError::input("latent_image", e))?;
    if sigmas.len() < 2 {
        return Ok(Sampled { output: latent.clone(), denoised: latent.clone() });
    }
    let failed = |e: candle_core::Error| tensor_error("packing the audio-video latent", &e);
    let sigmas: Vec<f64> = sigmas.iter().map(|s| f64::from(*s)).collect();
    let [video_noise, audio_noise] =
        noise.generate_parts(&[&latent.samples, &audio.samples], latent.batch_index.as_deref())?;
    let packed_noise = shapes.pack(&video_noise, &audio_noise).map_err(failed)?;
    let packed_latent = shapes.pack(&latent.samples, &audio.samples).map_err(failed)?;
    let masked = latent.noise_mask.is_some() || audio.noise_mask.is_some();
    let (video_mask, audio_mask) = if masked {
        (
            Some(full_mask(latent.noise_mask.as_ref(), &latent.samples, "video")?),
            Some(full_mask(audio.noise_mask.as_ref(), &audio.samples, "audio")?),
        )
    } else {
        (None, None)
    };
    let packed_mask = match (&video_mask, &audio_mask) {
        (Some(video), Some(audio)) => Some(shapes.pack(video, audio).map_err(failed)?),
        _ => None,
    };
    let mut denoiser = AvDenoiser { guider, shapes: shapes.clone(), video_mask, audio_mask };
    let total = (sigmas.len() - 1) as u64;
    let mut last_denoised: Option<Tensor> = None;
    let mut callback = |info: &StepInfo<'_>| -> Result<(), SamplingError> {
        last_denoised = Some(info.denoised.clone());
        let step = info.step as u64 + 1;
        let preview = shapes.unpack(info.denoised).ok().and_then(|(video, _)| latent_preview(&video).ok());
        report(context, step, total, preview)
    };
    let mut options = SampleOptions {
        seed: noise.seed().rem_euclid(1 << 64) as u64,
        flow_shift: guider.model.shift,
        callback: &mut callback,
    };
    context.check_interrupted()?;
    let result =
        sample_flow(sampler, &mut denoiser, &packed_noise, &packed_latent, &sigmas, packed_mask.as_ref(), &mut options);
    let samples = sampled(result, sampler)?;
    let denoised = last_denoised.unwrap_or_else(|| samples.clone());
    let unpacked = |packed: &Tensor| -> Result<Latent, NodeError> {
        let (video, sound) = shapes.unpack(packed).map_err(failed)?;
        let mut out = latent.with_samples(video);
        out.audio = Some(AudioLatent { samples: sound, noise_mask: audio.noise_mask.clone() });
        Ok(out)
    };
    Ok(Sampled { output: unpacked(&samples)?, denoised: unpacked(&denoised)? })
}

/// A progress event for `step` of `total`, with the preview when there is one; an error stops sampling
/// when the run was cancelled.
fn report(
    context: &ExecutionContext,
    step: u64,
    total: u64,
    preview: Option<kinograph_engine::Preview>,
) -> Result<(), SamplingError> {
    let reported = match preview {
        Some(preview) => context.progress_with_preview(step, total, preview),
        None => context.progress(step, total),
    };
    reported.map_err(|_| SamplingError::Cancelled)
}

/// The sampler's result as a node's: cancellation is an interruption, any other failure names the sampler.
fn sampled(result: Result<Tensor, SamplingError>, sampler: &dyn Sampler) -> Result<Tensor, NodeError> {
    match result {
        Ok(samples) => Ok(samples),
        Err(SamplingError::Cancelled) => Err(NodeError::Interrupted),
        Err(error) => Err(NodeError::msg(format!("sampling with '{}' failed: {error}", sampler.name()))),
    }
}
