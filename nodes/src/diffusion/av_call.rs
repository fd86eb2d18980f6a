//! One LTX-2 model evaluation as ComfyUI makes it: the video and audio latents travel packed in one flat
//! tensor `[B, 1, Nv·C + Na·C']` (`comfy.utils.pack_latents`), which samplers step through like any latent;
//! the model call unpacks them, gives each stream its timesteps (`σ·1000`, per token `mask·σ·1000` where a
//! noise mask marks conditioned frames), positions (video in seconds at the conditioning's frame rate,
//! audio in seconds of mel frames) and text context, and returns the packed clean-latent estimates
//! `x − v·σ` of both streams.

use super::guides::GuidePlan;
use super::model_call::{DEFAULT_FRAME_RATE, repeat_batch};
use crate::values::CondEntry;
use candle_core::{DType, Result, Tensor};
use kinograph_models::ltx2::transformer::{
    AvInputs, Ltx2Transformer, Perturbation, pack_audio_latents, unpack_audio_latents,
};
use kinograph_models::ltxv::transformer::{pack_latents, unpack_latents};

/// The shapes of the two streams of a packed audio-video latent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvShapes {
    /// `[B, C, F, H, W]`.
    pub video: Vec<usize>,
    /// `[B, C', T, F']`.
    pub audio: Vec<usize>,
}

impl AvShapes {
    /// The shapes of `video` and `audio`, which must share their batch size.
    pub fn of(video: &Tensor, audio: &Tensor) -> Result<Self> {
        let (video, audio) = (video.dims().to_vec(), audio.dims().to_vec());
        if video.len() != 5 || audio.len() != 4 || video[0] != audio[0] {
            candle_core::bail!(
                "an audio-video latent needs video [B, C, F, H, W] and audio [B, C, T, F] of one batch size, got {video:?} and {audio:?}"
            );
        }
        Ok(AvShapes { video, audio })
    }

    /// The elements of one batch item's video stream: where its audio starts in the packed last axis.
    pub fn video_len(&self) -> usize {
        self.video[1..].iter().product()
    }

    fn audio_len(&self) -> usize {
        self.audio[1..].iter().product()
    }

    /// `[B, 1, Nv + Na]`: each stream flattened per batch item, video first.
    pub fn pack(&self, video: &Tensor, audio: &Tensor) -> Result<Tensor> {
        let batch = self.video[0];
        let video = video.reshape((batch, 1, self.video_len()))?;
        let audio = audio.reshape((batch, 1, self.audio_len()))?;
        Tensor::cat(&[&video, &audio], 2)
    }

    /// The inverse of [`Self::pack`].
    pub fn unpack(&self, packed: &Tensor) -> Result<(Tensor, Tensor)> {
        let video = packed.narrow(2, 0, self.video_len())?.reshape(self.video.as_slice())?;
        let audio = packed.narrow(2, self.video_len(), self.audio_len())?.reshape(self.audio.as_slice())?;
        Ok((video, audio))
    }
}

/// The per-token timesteps `mask·σ·1000` of a stream whose noise mask is `mask` (the latent's shape or
/// broadcastable to it), from its first channel (`[:, :1]`) and, for audio, its first frequency bin.
fn token_timesteps(mask: &Tensor, shape: &[usize], sigma_t: f32) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.broadcast_as(shape)?.narrow(1, 0, 1)?;
    let mask = if shape.len() == 4 { mask.narrow(3, 0, 1)? } else { mask };
    let tokens: usize = mask.dims()[2..].iter().product();
    (mask.contiguous()?.reshape((shape[0], tokens))? * f64::from(sigma_t))?.contiguous()
}

/// A reference clip's tokens ready to go before the target audio: the tokens `[B, N, C·F]`, the audio
/// timesteps of reference and target together (0 for the reference), and the reference's positions.
struct ReferenceAudio {
    length: usize,
    tokens: Tensor,
    timesteps: Tensor,
    positions: Tensor,
}

/// ComfyUI's ID-LoRA reference audio (`LTXAV._process_input` and `_prepare_timestep`): `tokens` `[1 or B,
/// N, C·F]` repeated to the batch, timestep 0 for them ahead of the target's per-token `audio_t` `[B, Na]`,
/// positions from [`Ltx2Transformer::reference_audio_positions`].
fn reference_audio(
    transformer: &Ltx2Transformer,
    tokens: &Tensor,
    batch: usize,
    audio_t: &Tensor,
) -> Result<ReferenceAudio> {
    let device = transformer.device();
    let tokens = repeat_batch(&tokens.to_dtype(DType::F32)?, batch)?.to_device(device)?;
    let length = tokens.dim(1)?;
    if audio_t.rank() != 2 {
        candle_core::bail!("the audio timesteps must be per token when a reference clip is present");
    }
    let zeros = Tensor::zeros((batch, length), DType::F32, device)?;
    let timesteps = Tensor::cat(&[&zeros, &audio_t.to_dtype(DType::F32)?], 1)?;
    let positions = transformer.reference_audio_positions(batch, length)?;
    Ok(ReferenceAudio { length, tokens, timesteps, positions })
}

/// The clean-latent estimates `(video, audio)` of the LTX-2 transformer for `video` `[B, C, F, H, W]` and
/// `audio` `[B, 8, T, 16]` at noise level `sigma`, following `cond`.
pub fn predict_denoised_av(
    transformer: &Ltx2Transformer,
    (video, audio): (&Tensor, &Tensor),
    sigma: f64,
    cond: &CondEntry,
    (video_mask, audio_mask): (Option<&Tensor>, Option<&Tensor>),
    perturbation: &Perturbation,
) -> Result<(Tensor, Tensor)> {
    let device = transformer.device().clone();
    let (batch, _, frames, height, width) = video.dims5()?;
    let audio_frames = audio.dim(2)?;
    let audio_channels = audio.dim(1)?;
    let sigma32 = sigma as f32;
    let t = sigma32 * transformer.config().timestep_scale_multiplier as f32;
    let uniform = Tensor::full(t, batch, &device)?;
    let video_t = match video_mask {
        Some(mask) => token_timesteps(mask, video.dims(), t)?.to_device(&device)?,
        None => uniform.clone(),
    };
    let audio_t = match audio_mask {
        Some(mask) => token_timesteps(mask, audio.dims(), t)?.to_device(&device)?,
        // A reference clip needs a timestep per target token beside its own zeros.
        None if cond.ref_audio.is_some() => Tensor::full(t, (batch, audio_frames), &device)?,
        None => uniform.clone(),
    };
    let frame_rate = cond.frame_rate.unwrap_or(DEFAULT_FRAME_RATE) as f32;
    let video_positions = transformer.video_positions(batch, frames, height, width, frame_rate)?;
    // Guides: only the tokens the plan keeps, at the guides' own positions, with their attention weights.
    let plan = GuidePlan::new(cond, video.dims(), video_mask)?;
    let (video_t, video_positions) = match &plan {
        None => (video_t, video_positions),
        Some(plan) => {
            let video_t = if video_t.rank() == 2 { plan.select(&video_t.unsqueeze(2)?)?.squeeze(2)? } else { video_t };
            let positions = plan.select(&video_positions.permute((0, 2, 1, 3))?)?.permute((0, 2, 1, 3))?;
            (video_t, plan.place(&positions, frame_rate, false)?.contiguous()?)
        }
    };
    let keyframe_mask = first_frame_tokens(&video_positions, plan.as_ref())?;
    let audio_positions = transformer.audio_positions(batch, audio_frames)?;
    let reference =
        cond.ref_audio.as_ref().map(|tokens| reference_audio(transformer, tokens, batch, &audio_t)).transpose()?;
    let video_context = repeat_batch(&cond.context, batch)?.to_device(&device)?;
    let audio_context = match &cond.audio_context {
        Some(context) => repeat_batch(context, batch)?.to_device(&device)?,
        None => candle_core::bail!(
            "this conditioning has no audio context: LTX-2 needs a prompt encoded with the CLIP from LTXAVTextEncoderLoader"
        ),
    };
    let mask = cond.attention_mask.as_ref().map(|m| repeat_batch(m, batch)?.to_device(&device)).transpose()?;
    let video_tokens = pack_latents(&video.to_device(&device)?.to_dtype(DType::F32)?)?;
    let video_tokens = match &plan {
        Some(plan) => plan.select(&video_tokens)?,
        None => video_tokens,
    };
    let audio_tokens = pack_audio_latents(&audio.to_device(&device)?.to_dtype(DType::F32)?)?;
    // With a reference clip (LTXVReferenceAudio), its tokens go first, at timestep 0 and before time 0.
    let (audio_tokens, audio_t, audio_positions) = match &reference {
        Some(reference) => (
            Tensor::cat(&[&reference.tokens, &audio_tokens], 1)?,
            reference.timesteps.clone(),
            Tensor::cat(&[&reference.positions, &audio_positions], 2)?,
        ),
        None => (audio_tokens, audio_t, audio_positions),
    };
    let inputs = AvInputs {
        video: &video_tokens,
        audio: &audio_tokens,
        video_context: &video_context,
        audio_context: &audio_context,
        context_mask: mask.as_ref(),
        video_timestep: &video_t,
        audio_timestep: &audio_t,
        video_sigma: &uniform,
        audio_sigma: &uniform,
        video_positions: &video_positions,
        audio_positions: &audio_positions,
        keyframe_mask: Some(&keyframe_mask),
        video_guides: plan.as_ref().and_then(|plan| plan.bias.as_ref()),
    };
    let (video_velocity, audio_velocity) = transformer.forward(&inputs, perturbation)?;
    let audio_velocity = match &reference {
        Some(reference) => audio_velocity.narrow(1, reference.length, audio_velocity.dim(1)? - reference.length)?,
        None => audio_velocity,
    };
    let video_velocity = match &plan {
        Some(plan) => plan.scatter(&video_velocity)?,
        None => video_velocity,
    };
    let video_velocity = unpack_latents(&video_velocity, frames, height, width)?.to_device(video.device())?;
    let audio_velocity = unpack_audio_latents(&audio_velocity, audio_channels)?.to_device(audio.device())?;
    let scale = f64::from(sigma32);
    Ok((
        (video.to_dtype(DType::F32)? - (video_velocity * scale)?)?,
        (audio.to_dtype(DType::F32)? - (audio_velocity * scale)?)?,
    ))
}

/// `[B, N]`, 1 on the video tokens given to the model whose interval starts at time 0 (a latent frame that
/// stands for one pixel frame) and that are not guide tokens: where 2.5 models add their keyframe embedding
/// (ComfyUI's `keyframes_abs_pos_mask`).
fn first_frame_tokens(positions: &Tensor, plan: Option<&GuidePlan>) -> Result<Tensor> {
    let starts = positions.narrow(1, 0, 1)?.narrow(3, 0, 1)?.squeeze(3)?.squeeze(1)?;
    let mask = starts.eq(0.0)?.to_dtype(DType::F32)?;
    let guides = match plan {
        Some(plan) => plan.guide_tokens()?,
        None => 0,
    };
    if guides == 0 {
        return Ok(mask);
    }
    let (batch, tokens) = mask.dims2()?;
    let zeros = Tensor::zeros((batch, guides), DType::F32, mask.device())?;
    Tensor::cat(&[&mask.narrow(1, 0, tokens - guides)?, &zeros], 1)
}
