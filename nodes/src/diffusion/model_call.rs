//! One LTX-Video model evaluation as ComfyUI makes it for flow (CONST) sampling: the denoised latent
//! `x − v·σ`, where `v` is the transformer's output for the latent tokens at timestep `σ·1000` (per token
//! `mask·σ·1000` when a noise mask marks conditioning frames), with the positions of the latent grid in pixel
//! units and time in seconds at the conditioning's frame rate; the tokens of guides that `LTXVAddGuide`
//! appended take the positions it recorded in the conditioning.

use super::guides::GuidePlan;
use crate::values::CondEntry;
use crate::values::DiffusionModel;
use candle_core::{DType, Result, Tensor};
use kinograph_models::ltxv::transformer::{RopePositions, pack_latents, pixel_video_coords, unpack_latents};

/// The frame rate ComfyUI assumes when no `LTXVConditioning` set one.
pub const DEFAULT_FRAME_RATE: f64 = 25.0;

/// The model's prediction of the clean latent from `x` (`[B, C, T, H, W]`) at noise level `sigma`.
///
/// `denoise_mask`, when given, is `[B, 1, T, 1, 1]` or `[B, 1 or C, T, H, W]`: the per-token timestep
/// is `mask·σ`, as ComfyUI's `LTXV.process_timestep` does.
pub fn predict_denoised(
    model: &DiffusionModel,
    x: &Tensor,
    sigma: f64,
    cond: &CondEntry,
    denoise_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let transformer = model.ltxv("model").map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let device = transformer.device().clone();
    let (batch, _, frames, height, width) = x.dims5()?;
    let sigma32 = sigma as f32;
    let config = transformer.config();
    let multiplier = config.timestep_scale_multiplier as f32;
    let timestep = match denoise_mask {
        None => Tensor::full(sigma32 * multiplier, batch, &device)?,
        Some(mask) => {
            let mask = mask.narrow(1, 0, 1)?.to_dtype(DType::F32)?;
            let mask = mask.broadcast_as((mask.dim(0)?, 1, frames, height, width))?.contiguous()?;
            let per_token = (mask * f64::from(sigma32))?.affine(f64::from(multiplier), 0.0)?;
            let per_token = per_token.reshape((per_token.dim(0)?, frames * height * width))?;
            let per_token = if per_token.dim(0)? == batch {
                per_token
            } else {
                per_token.broadcast_as((batch, frames * height * width))?.contiguous()?
            };
            per_token.to_device(&device)?
        }
    };
    let frame_rate = cond.frame_rate.unwrap_or(DEFAULT_FRAME_RATE) as f32;
    let causal_fix = config.causal_temporal_positioning;
    let coords = pixel_video_coords(batch, frames, height, width, frame_rate, causal_fix, &device)?;
    let context = repeat_batch(&cond.context, batch)?.to_device(&device)?;
    let mask =
        cond.attention_mask.as_ref().map(|m| repeat_batch(m, batch).and_then(|m| m.to_device(&device))).transpose()?;
    let tokens = pack_latents(&x.to_device(&device)?.to_dtype(DType::F32)?)?;
    let velocity = match GuidePlan::new(cond, x.dims(), denoise_mask)? {
        None => transformer.forward(&tokens, &context, mask.as_ref(), &timestep, &RopePositions::Coords(coords))?,
        Some(plan) => {
            // Guides: only the tokens the plan keeps, the guides' own positions and attention weights.
            let coords = plan.place(&plan.select(&coords.transpose(1, 2)?)?.transpose(1, 2)?, frame_rate, true)?;
            let timestep =
                if timestep.rank() == 2 { plan.select(&timestep.unsqueeze(2)?)?.squeeze(2)? } else { timestep };
            let velocity = transformer.forward_guided(
                &plan.select(&tokens)?,
                &context,
                mask.as_ref(),
                &timestep,
                &RopePositions::Coords(coords.contiguous()?),
                plan.bias.as_ref(),
            )?;
            plan.scatter(&velocity)?
        }
    };
    let velocity = unpack_latents(&velocity, frames, height, width)?.to_device(x.device())?;
    x.to_dtype(DType::F32)? - (velocity * f64::from(sigma32))?
}

/// `tensor` with batch `batch`: as it is, or its single item repeated.
pub(crate) fn repeat_batch(tensor: &Tensor, batch: usize) -> Result<Tensor> {
    match tensor.dim(0)? {
        b if b == batch => Ok(tensor.clone()),
        1 => {
            let mut repeats = vec![1; tensor.rank()];
            repeats[0] = batch;
            tensor.repeat(repeats)
        }
        other => candle_core::bail!("conditioning has batch {other} but the latent has batch {batch}"),
    }
}
