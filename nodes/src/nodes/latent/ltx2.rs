//! LTX-2's latent plumbing: `LTXVEmptyLatentAudio`, `LTXVConcatAVLatent`, `LTXVSeparateAVLatent`, the audio
//! VAE (`LTXVAudioVAEDecode`, `LTXVAudioVAEEncode`), `LTXVLatentUpsampler` and `LTXVImgToVideoInplace`.

use super::resize::{Fit, resize_rgb_frames};
use super::vae::encode_frames;
use crate::values::{Audio, AudioLatent, AudioVaeModel, Image, Latent, LatentUpscaleModel, VideoVae, tensor_error};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// Audio latents per second: the mel front end's 16 kHz / hop 160 = 100 frames per second, four mel frames
/// per latent.
const AUDIO_LATENTS_PER_SECOND: f64 = 25.0;

fn audio_vae(inputs: &NodeInputs, name: &str) -> Result<Arc<AudioVaeModel>, NodeError> {
    let value = inputs.get(name).ok_or_else(|| NodeError::input(name, "is missing"))?;
    value.downcast::<AudioVaeModel>().ok_or_else(|| {
        NodeError::input(
            name,
            "this VAE is not LTX-2's audio VAE: connect the output of LTXVAudioVAELoader (a video VAE cannot \
             decode or size sound)",
        )
    })
}

fn video_vae(inputs: &NodeInputs, name: &str) -> Result<Arc<VideoVae>, NodeError> {
    let value = inputs.get(name).ok_or_else(|| NodeError::input(name, "is missing"))?;
    value.downcast::<VideoVae>().ok_or_else(|| {
        NodeError::input(name, "this VAE is the audio VAE: connect the video VAE (the checkpoint loader's VAE output)")
    })
}

/// ComfyUI's count of audio latents for `frames` video frames at `frame_rate`: frames / rate · 25 rounded,
/// halves to even (Python's `round` in `AudioVAE.num_of_latents_from_frames`,
/// `comfy/ldm/lightricks/vae/audio_vae.py`; ComfyUI took the ceiling before its audio VAE became a
/// `comfy.sd.VAE`). The official pipelines round too.
pub fn audio_latent_count(frames: usize, frame_rate: f64) -> usize {
    (frames as f64 / frame_rate * AUDIO_LATENTS_PER_SECOND).round_ties_even() as usize
}

/// `LTXVEmptyLatentAudio`: silence to denoise, as long as the video.
pub struct LtxvEmptyLatentAudio;

impl Node for LtxvEmptyLatentAudio {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVEmptyLatentAudio")
            .display_name("Empty LTXV Latent Audio")
            .category("model/latent/ltxv")
            .input(InputSpec::int("frames_number", 97).min(1).max(1000).step(1).tooltip("Number of frames."))
            .input(
                InputSpec::float("frame_rate", 25.0)
                    .min(1.0)
                    .max(1000.0)
                    .step(0.01)
                    .accepts("INT")
                    .tooltip("Number of frames per second."),
            )
            .input(
                InputSpec::int("batch_size", 1)
                    .min(1)
                    .max(4096)
                    .tooltip("The number of latent audio samples in the batch."),
            )
            .input(InputSpec::socket("audio_vae", "VAE").tooltip("The Audio VAE model to get configuration from."))
            .output("LATENT", "Latent")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let vae = audio_vae(inputs, "audio_vae")?;
        let frames = usize::try_from(inputs.int("frames_number")?)
            .map_err(|_| NodeError::input("frames_number", "must be positive"))?;
        let rate = inputs.float("frame_rate")?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(NodeError::input(
                "frame_rate",
                format!("{rate} must be a positive number of frames per second"),
            ));
        }
        let batch = usize::try_from(inputs.int("batch_size")?)
            .map_err(|_| NodeError::input("batch_size", "must be positive"))?;
        let config = vae.vae.config();
        let shape = (batch, config.latent_channels, audio_latent_count(frames, rate), config.latent_mel_bins());
        let samples = Tensor::zeros(shape, DType::F32, &Device::Cpu).map_err(|e| tensor_error("audio latent", &e))?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Latent::new(samples)))]))
    }
}

/// `LTXVConcatAVLatent`: a video latent and an audio latent as one audio-video latent. Given an
/// audio-video latent as the video, its sound is replaced, trimmed or padded with zeros (left to denoise)
/// to the length of the old one.
pub struct LtxvConcatAvLatent;

impl Node for LtxvConcatAvLatent {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVConcatAVLatent")
            .display_name("Concat AV Latent")
            .category("model/latent/ltxv")
            .description("Merge a video latent and an audio latent into a joint AV latent.")
            .input(InputSpec::socket("video_latent", "LATENT"))
            .input(InputSpec::socket("audio_latent", "LATENT"))
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let video = inputs.object::<Latent>("video_latent")?;
        let audio = inputs.object::<Latent>("audio_latent")?;
        if video.samples.rank() != 5 {
            return Err(NodeError::input(
                "video_latent",
                format!("expected a video latent [B, C, F, H, W], got {:?}", video.samples.dims()),
            ));
        }
        if audio.audio.is_some() || audio.samples.rank() != 4 {
            return Err(NodeError::input(
                "audio_latent",
                format!(
                    "expected an audio latent [B, C, T, F] (LTXVEmptyLatentAudio, LTXVAudioVAEEncode), got {:?}",
                    audio.samples.dims()
                ),
            ));
        }
        let (mut samples, mut mask) = (audio.samples.clone(), audio.noise_mask.clone());
        if let Some(previous) = &video.audio {
            (samples, mask) =
                fit_audio(&previous.samples, &samples, mask).map_err(|e| NodeError::input("audio_latent", e))?;
        }
        if video.samples.dim(0).ok() != samples.dim(0).ok() {
            return Err(NodeError::input(
                "audio_latent",
                format!(
                    "the audio latent has batch {:?} but the video latent {:?}",
                    samples.dims(),
                    video.samples.dims()
                ),
            ));
        }
        let mut joined = Latent::new(video.samples.clone());
        joined.batch_index = audio.batch_index.clone().or_else(|| video.batch_index.clone());
        joined.noise_mask.clone_from(&video.noise_mask);
        joined.audio = Some(AudioLatent { samples, noise_mask: mask });
        Ok(NodeOutput::new(vec![Value::from(Arc::new(joined))]))
    }
}

/// Trims or zero-pads `audio` along its one differing dimension (time) to `reference`'s length; the padded
/// tail's mask is 1 (generated).
fn fit_audio(reference: &Tensor, audio: &Tensor, mask: Option<Tensor>) -> Result<(Tensor, Option<Tensor>), String> {
    let differing: Vec<usize> =
        (0..reference.rank()).filter(|&d| reference.dims()[d] != audio.dims().get(d).copied().unwrap_or(0)).collect();
    let cannot = || format!("audio latent {:?} cannot be fitted to {:?}", audio.dims(), reference.dims());
    match differing.as_slice() {
        [] => Ok((audio.clone(), mask)),
        [dim] if *dim >= 2 && audio.rank() == reference.rank() => {
            let (dim, length) = (*dim, reference.dims()[*dim]);
            let fit = |t: &Tensor, fill: f64| -> candle_core::Result<Tensor> {
                let have = t.dim(dim)?;
                if have >= length {
                    return t.narrow(dim, 0, length);
                }
                let mut pad_shape = t.dims().to_vec();
                pad_shape[dim] = length - have;
                let pad = (Tensor::ones(pad_shape, t.dtype(), t.device())? * fill)?;
                Tensor::cat(&[t, &pad], dim)
            };
            let audio = fit(audio, 0.0).map_err(|e| e.to_string())?;
            let mask = mask
                .map(|m| {
                    m.broadcast_as(
                        audio
                            .dims()
                            .iter()
                            .enumerate()
                            .map(|(d, &n)| if d == dim { m.dims()[d] } else { n })
                            .collect::<Vec<_>>(),
                    )
                    .and_then(|m| fit(&m.contiguous()?, 1.0))
                })
                .transpose()
                .map_err(|_| cannot())?;
            Ok((audio, mask))
        }
        _ => Err(cannot()),
    }
}

/// `LTXVSeparateAVLatent`: an audio-video latent back into its video and audio latents.
pub struct LtxvSeparateAvLatent;

impl Node for LtxvSeparateAvLatent {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVSeparateAVLatent")
            .display_name("Separate AV Latent")
            .category("model/latent/ltxv")
            .description("Split a joint AV latent into its video and audio latents.")
            .input(InputSpec::socket("av_latent", "LATENT"))
            .output("LATENT", "video_latent")
            .output("LATENT", "audio_latent")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let joined = inputs.object::<Latent>("av_latent")?;
        let Some(audio) = &joined.audio else {
            return Err(NodeError::input(
                "av_latent",
                format!("{:?} is not an audio-video latent (make one with LTXVConcatAVLatent)", joined.samples.dims()),
            ));
        };
        let mut video = Latent::clone(&joined);
        video.audio = None;
        let sound = Latent {
            samples: audio.samples.clone(),
            noise_mask: audio.noise_mask.clone(),
            batch_index: joined.batch_index.clone(),
            audio: None,
        };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(video)), Value::from(Arc::new(sound))]))
    }
}

/// The audio latent of `latent`: its sound when it is an audio-video latent.
fn audio_samples(latent: &Latent) -> &Tensor {
    latent.audio.as_ref().map_or(&latent.samples, |audio| &audio.samples)
}

/// `LTXVAudioVAEDecode`: audio latents through the audio VAE's decoder and the vocoder to a stereo waveform.
pub struct LtxvAudioVaeDecode;

impl Node for LtxvAudioVaeDecode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVAudioVAEDecode")
            .display_name("LTXV Audio VAE Decode")
            .category("model/latent/ltxv")
            .input(InputSpec::socket("samples", "LATENT").tooltip("The latent to be decoded."))
            .input(InputSpec::socket("audio_vae", "VAE").tooltip("The Audio VAE model used for decoding the latent."))
            .output("AUDIO", "Audio")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let vae = audio_vae(inputs, "audio_vae")?;
        let samples = audio_samples(&latent);
        let expected = (vae.vae.config().latent_channels, vae.vae.config().latent_mel_bins());
        match samples.dims() {
            [_, channels, _, bins] if (*channels, *bins) == expected => {}
            other => {
                return Err(NodeError::input(
                    "samples",
                    format!(
                        "expected an audio latent [B, {}, T, {}] (from LTXVSeparateAVLatent's audio output), got {other:?}",
                        expected.0, expected.1
                    ),
                ));
            }
        }
        context.check_interrupted()?;
        let failed = |e: candle_core::Error| tensor_error("decoding the audio", &e);
        let device = vae.vae_device();
        let latent = vae.vae.denormalize(&samples.to_device(&device).map_err(failed)?).map_err(failed)?;
        let mel = vae.vae.decode(&latent).map_err(failed)?;
        context.check_interrupted()?;
        let waveform = vae.vocoder.forward(&mel).map_err(failed)?.to_device(&Device::Cpu).map_err(failed)?;
        let audio = Audio::new(waveform, vae.vocoder.sample_rate());
        Ok(NodeOutput::new(vec![Value::from(Arc::new(audio))]))
    }
}

/// `LTXVAudioVAEEncode`: a waveform (any rate; resampled to the VAE's 16 kHz) to a normalised audio latent.
pub struct LtxvAudioVaeEncode;

impl Node for LtxvAudioVaeEncode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVAudioVAEEncode")
            .display_name("LTXV Audio VAE Encode")
            .category("model/latent/ltxv")
            .input(InputSpec::socket("audio", "AUDIO").tooltip("The audio to be encoded."))
            .input(InputSpec::socket("audio_vae", "VAE").tooltip("The Audio VAE model to use for encoding."))
            .output("LATENT", "Audio Latent")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let audio = inputs.object::<Audio>("audio")?;
        let vae = audio_vae(inputs, "audio_vae")?;
        let (_, channels, samples) = audio.dims()?;
        if samples == 0 {
            return Err(NodeError::input("audio", "the audio has no samples"));
        }
        if channels == 0 || channels > 2 {
            return Err(NodeError::input(
                "audio",
                format!("the audio VAE takes mono or stereo sound, got {channels} channels"),
            ));
        }
        context.check_interrupted()?;
        let failed = |e: candle_core::Error| tensor_error("encoding the audio", &e);
        let device = vae.vae_device();
        let waveform = audio.waveform.to_device(&device).map_err(failed)?;
        let latent = vae.vae.encode_waveform(&waveform, audio.sample_rate).map_err(failed)?;
        let latent = vae.vae.normalize(&latent).map_err(failed)?.to_device(&Device::Cpu).map_err(failed)?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Latent::new(latent)))]))
    }
}

/// `LTXVLatentUpsampler`: a video latent through the latent upsampler, between the VAE's latent statistics;
/// the noise mask is dropped.
pub struct LtxvLatentUpsampler;

impl Node for LtxvLatentUpsampler {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVLatentUpsampler")
            .category("model/latent/ltxv")
            .input(InputSpec::socket("samples", "LATENT"))
            .input(InputSpec::socket("upscale_model", "LATENT_UPSCALE_MODEL"))
            .input(InputSpec::socket("vae", "VAE"))
            .output("LATENT", "LATENT")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let model = inputs.object::<LatentUpscaleModel>("upscale_model")?;
        let vae = video_vae(inputs, "vae")?;
        if latent.samples.rank() != 5 || latent.audio.is_some() {
            return Err(NodeError::input(
                "samples",
                format!(
                    "expected a video latent [B, C, F, H, W] (separate the sound first with LTXVSeparateAVLatent), got {}",
                    latent.describe()
                ),
            ));
        }
        let channels = model.upsampler.config().in_channels;
        if latent.samples.dim(1).ok() != Some(channels) {
            return Err(NodeError::input(
                "samples",
                format!("the upsampler takes {channels}-channel latents, got {:?}", latent.samples.dims()),
            ));
        }
        context.check_interrupted()?;
        let failed = |e: candle_core::Error| tensor_error("upsampling the latent", &e);
        let device = vae.vae.device().clone();
        let samples = latent.samples.to_device(&device).map_err(failed)?;
        let upsampled = model
            .upsampler
            .forward_normalized(&samples, vae.vae.statistics())
            .map_err(failed)?
            .to_device(&Device::Cpu)
            .map_err(failed)?;
        let mut out = latent.with_samples(upsampled);
        out.noise_mask = None;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(out))]))
    }
}

/// `LTXVImgToVideoInplace`: an image encoded into the first frame(s) of an existing video latent, whose
/// noise mask there becomes `1 − strength`.
pub struct LtxvImgToVideoInplace;

impl Node for LtxvImgToVideoInplace {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVImgToVideoInplace")
            .category("model/conditioning/ltxv")
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::socket("latent", "LATENT"))
            .input(InputSpec::float("strength", 1.0).min(0.0).max(1.0))
            .input(InputSpec::boolean("bypass", false).tooltip("Bypass the conditioning."))
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("latent")?;
        if inputs.optional_boolean("bypass")?.unwrap_or(false) {
            return Ok(NodeOutput::new(vec![Value::from(latent)]));
        }
        let vae = video_vae(inputs, "vae")?;
        let image = inputs.object::<Image>("image")?;
        let strength = inputs.float("strength")?;
        let (batch, _, frames, latent_height, latent_width) = latent.samples.dims5().map_err(|_| {
            NodeError::input("latent", format!("expected a video latent [B, C, F, H, W], got {}", latent.describe()))
        })?;
        let (_, height, width, _) = image.dims()?;
        if height == 0 || width == 0 {
            return Err(NodeError::input("image", "the image is empty"));
        }
        let (out_height, out_width) = (latent_height * 32, latent_width * 32);
        let pixels = if (height, width) == (out_height, out_width) {
            image.pixels.clone()
        } else {
            resize_rgb_frames(&image.pixels, Fit::CenterCrop, (out_height, out_width))
                .map_err(|e| tensor_error("resizing the image", &e))?
        };
        context.check_interrupted()?;
        let encoded = encode_frames(&vae.vae, &pixels).map_err(|e| match e {
            NodeError::Input { message, .. } => NodeError::input("image", message),
            other => other,
        })?;
        let failed = |e: candle_core::Error| tensor_error("writing the image into the latent", &e);
        let kept = encoded.dim(2).map_err(failed)?.min(frames);
        let encoded = encoded.narrow(2, 0, kept).map_err(failed)?;
        let encoded = if encoded.dim(0).map_err(failed)? == batch {
            encoded
        } else {
            encoded.narrow(0, 0, 1).and_then(|e| e.repeat((batch, 1, 1, 1, 1))).map_err(failed)?
        };
        let samples = if kept < frames {
            let rest = latent.samples.narrow(2, kept, frames - kept).map_err(failed)?;
            Tensor::cat(&[&encoded.to_dtype(DType::F32).map_err(failed)?, &rest], 2).map_err(failed)?
        } else {
            encoded
        };
        let mask = match &latent.noise_mask {
            Some(mask) => mask.clone(),
            None => Tensor::ones((batch, 1, frames, 1, 1), DType::F32, &Device::Cpu).map_err(failed)?,
        };
        let mask_frames = mask.dim(2).map_err(failed)?;
        let head = (mask.narrow(2, 0, kept).map_err(failed)?.ones_like().map_err(failed)? * (1.0 - strength))
            .map_err(failed)?;
        let mask = if kept < mask_frames {
            Tensor::cat(&[&head, &mask.narrow(2, kept, mask_frames - kept).map_err(failed)?], 2).map_err(failed)?
        } else {
            head
        };
        let mut out = latent.with_samples(samples);
        out.noise_mask = Some(mask);
        Ok(NodeOutput::new(vec![Value::from(Arc::new(out))]))
    }
}

#[cfg(test)]
mod tests {
    use super::audio_latent_count;

    #[test]
    fn the_audio_latent_count_is_rounded_as_comfyui_rounds_it() {
        assert_eq!(audio_latent_count(121, 24.0), 126, "the 2.0 template: 126.04");
        assert_eq!(audio_latent_count(97, 24.0), 101, "101.04");
        assert_eq!(audio_latent_count(23, 24.0), 24, "23.96");
        assert_eq!(audio_latent_count(17, 25.0), 17);
        assert_eq!(audio_latent_count(5, 10.0), 12, "12.5: ties to even, as Python's round");
    }
}
