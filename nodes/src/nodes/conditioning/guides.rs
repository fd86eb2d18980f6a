//! `LTXVAddGuide` and `LTXVCropGuides`: keyframe guides for LTX-Video, as ComfyUI's `comfy_extras/nodes_lt.py`
//! (a125cd84) computes them.
//!
//! A guide is an image or a short video encoded by the VAE. Its first one or two latent frames are appended
//! after the latent's own frames and kept (noise mask `1 − strength`); the conditioning records their pixel
//! coordinates (`keyframe_idxs`) so that the transformer places those tokens at the guide's frame index instead
//! of at the end of the video. Any further latent frames of a video guide are written over the latent in place.
//! `LTXVCropGuides` removes the appended frames after sampling and forgets the coordinates.

use super::super::latent::encode_frames;
use super::super::latent::resize::{Fit, resize_rgb_frames};
use crate::values::{Conditioning, IcLoraParameters, Image, Latent, VideoVae, tensor_error};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// Latent frames of each guide that are appended rather than written in place.
const NUM_PREFIX_FRAMES: usize = 2;

/// `LTXVAddGuide`.
pub struct LtxvAddGuide;

impl Node for LtxvAddGuide {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVAddGuide")
            .category("conditioning/video_models")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::socket("latent", "LATENT"))
            .input(InputSpec::socket("image", "IMAGE").tooltip(
                "Image or video to condition the latent video on. Must be 8*n + 1 frames. If the video is not \
                 8*n + 1 frames, it will be cropped to the nearest 8*n + 1 frames.",
            ))
            .input(InputSpec::int("frame_idx", 0).min(-9999).max(9999).tooltip(
                "Frame index to start the conditioning at. For single-frame images or videos with 1-8 frames, any \
                 frame_idx value is acceptable. For videos with 9+ frames, frame_idx must be divisible by 8, \
                 otherwise it will be rounded down to the nearest multiple of 8. Negative values are counted from \
                 the end of the video.",
            ))
            .input(InputSpec::float("strength", 1.0).min(0.0).max(1.0).step(0.01))
            .input(InputSpec::socket("iclora_parameters", "IC_LORA_PARAMETERS").optional().tooltip(
                "From GetICLoRAParameters, for IC-LoRAs whose guides need special handling. Only a \
                 reference_downscale_factor of 1 is supported so far.",
            ))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let positive = inputs.object::<Conditioning>("positive")?;
        let negative = inputs.object::<Conditioning>("negative")?;
        let vae = inputs.object::<VideoVae>("vae")?;
        let latent = inputs.object::<Latent>("latent")?;
        let image = inputs.object::<Image>("image")?;
        let frame_idx = inputs.int("frame_idx")?;
        let strength = inputs.float("strength")?;
        if let Some(parameters) = inputs.optional_object::<IcLoraParameters>("iclora_parameters")? {
            // ComfyUI dilates a guide that is this many times smaller onto the latent's grid; kinograph does
            // not yet, so such a guide is refused rather than placed wrongly.
            let factor = parameters.reference_downscale_factor;
            if factor > 1 {
                return Err(NodeError::input(
                    "iclora_parameters",
                    format!(
                        "this IC-LoRA's reference_downscale_factor is {factor}; kinograph's LTXVAddGuide supports only \
                         guides at the latent's size (factor 1) so far"
                    ),
                ));
            }
        }
        let (spatial, temporal) = vae.vae.compression();
        let scale = Scale { time: temporal as i64, space: spatial as i64 };
        let (batch, _, latent_length, height, width) =
            latent.samples.dims5().map_err(|_| latent_shape_error(&latent.samples))?;

        let pixels = stretched_frames(&image, temporal, (height * spatial, width * spatial))?;
        let guide_length = pixels.dim(0).map_err(|e| tensor_error("image", &e))?;
        context.check_interrupted()?;
        let encoded = encode_frames(&vae.vae, &pixels)
            .map_err(|e| match e {
                NodeError::Input { message, .. } => NodeError::input("image", message),
                other => other,
            })?
            .to_device(&Device::Cpu)
            .map_err(|e| tensor_error("encoded guide", &e))?;
        let guide_frames = encoded.dim(2).map_err(|e| tensor_error("encoded guide", &e))?;

        let (frame_idx, latent_idx) = latent_index(&positive, latent_length, guide_length, frame_idx, scale)?;
        if latent_idx + guide_frames > latent_length {
            return Err(NodeError::input(
                "frame_idx",
                format!(
                    "the guide's {guide_frames} latent frames placed at latent frame {latent_idx} (frame {frame_idx}) \
                     exceed the latent's {latent_length} frames"
                ),
            ));
        }
        let mask = noise_mask_or_ones(&latent)?;
        let prefix = guide_frames.min(NUM_PREFIX_FRAMES);
        let keep = 1.0 - strength as f32;
        let build = || -> candle_core::Result<(Conditioning, Conditioning, Latent)> {
            let head = encoded.narrow(2, 0, prefix)?;
            // `append_keyframe`: the guide's place in the video is generated freely, its appended copy is kept.
            let (_, at) = latent_index(&positive, latent_length, prefix, frame_idx, scale)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let end = (at + prefix).min(latent_length);
            let mut mask = fill_frames(&mask, at.min(end), end, 1.0)?;
            let positive = add_keyframe_index(&positive, frame_idx, &head, scale)?;
            let negative = add_keyframe_index(&negative, frame_idx, &head, scale)?;
            let (mask_batch, _, _, mask_height, mask_width) = mask.dims5()?;
            let appended = Tensor::full(keep, (mask_batch, 1, prefix, mask_height, mask_width), &Device::Cpu)?;
            mask = Tensor::cat(&[&mask, &appended], 2)?;
            let mut samples = Tensor::cat(&[&latent.samples, &with_batch(&head, batch)?], 2)?;
            // `replace_latent_frames`: the rest of a video guide overwrites the latent where it belongs.
            let rest = guide_frames - prefix;
            if rest > 0 {
                let start = latent_idx + prefix;
                let tail = with_batch(&encoded.narrow(2, prefix, rest)?, batch)?;
                samples = replace_frames(&samples, start, &tail)?;
                mask = fill_frames(&mask, start, start + rest, keep)?;
            }
            Ok((positive, negative, Latent { samples, noise_mask: Some(mask), batch_index: None, audio: None }))
        };
        let (positive, negative, latent) = build().map_err(|e| tensor_error("adding the guide", &e))?;
        Ok(NodeOutput::new(vec![
            Value::from(Arc::new(positive)),
            Value::from(Arc::new(negative)),
            Value::from(Arc::new(latent)),
        ]))
    }
}

/// `LTXVCropGuides`.
pub struct LtxvCropGuides;

impl Node for LtxvCropGuides {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVCropGuides")
            .category("conditioning/video_models")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("latent", "LATENT"))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let positive = inputs.object::<Conditioning>("positive")?;
        let negative = inputs.object::<Conditioning>("negative")?;
        let latent = inputs.object::<Latent>("latent")?;
        let frames = latent.samples.dims5().map_err(|_| latent_shape_error(&latent.samples))?.2;
        let mask = noise_mask_or_ones(&latent)?;
        let guides = keyframe_count(&positive)?;
        if guides == 0 {
            let latent =
                Latent { samples: latent.samples.clone(), noise_mask: Some(mask), batch_index: None, audio: None };
            return Ok(NodeOutput::new(vec![
                Value::from(positive),
                Value::from(negative),
                Value::from(Arc::new(latent)),
            ]));
        }
        if guides >= frames {
            return Err(NodeError::input(
                "latent",
                format!(
                    "the conditioning holds {guides} guide frames but the latent has only {frames} frames: crop the \
                     latent that LTXVAddGuide returned, with the conditioning it returned"
                ),
            ));
        }
        let crop = |tensor: &Tensor| -> Result<Tensor, NodeError> {
            let length = tensor.dim(2).map_err(|e| tensor_error("latent", &e))?;
            if length == 1 && frames > 1 {
                return Ok(tensor.clone());
            }
            tensor.narrow(2, 0, length.saturating_sub(guides)).map_err(|e| tensor_error("cropping the guides", &e))
        };
        let latent =
            Latent { samples: crop(&latent.samples)?, noise_mask: Some(crop(&mask)?), batch_index: None, audio: None };
        Ok(NodeOutput::new(vec![
            Value::from(Arc::new(positive.with_keyframe_idxs(None))),
            Value::from(Arc::new(negative.with_keyframe_idxs(None))),
            Value::from(Arc::new(latent)),
        ]))
    }
}

/// The VAE's compression: pixel frames per latent frame (after the first) and pixels per latent cell.
#[derive(Debug, Clone, Copy)]
struct Scale {
    time: i64,
    space: i64,
}

fn latent_shape_error(samples: &Tensor) -> NodeError {
    NodeError::input("latent", format!("expected a video latent [B, C, T, H, W], got {:?}", samples.dims()))
}

/// The guide frames, cut to `temporal·k + 1` and stretched to the latent's pixel size, RGB.
fn stretched_frames(image: &Image, temporal: usize, out_size: (usize, usize)) -> Result<Tensor, NodeError> {
    let (count, height, width, channels) = image.dims()?;
    if count == 0 || height == 0 || width == 0 || channels == 0 {
        return Err(NodeError::input("image", format!("the image is empty ({count}×{height}×{width}×{channels})")));
    }
    let count = (count - 1) / temporal * temporal + 1;
    let frames = image.pixels.narrow(0, 0, count).map_err(|e| tensor_error("image", &e))?;
    resize_rgb_frames(&frames, Fit::Stretch, out_size).map_err(|e| tensor_error("resizing the image", &e))
}

/// How many latent frames the conditioning's guides appended: the distinct guide times (`get_keyframe_idxs`).
fn keyframe_count(conditioning: &Conditioning) -> Result<usize, NodeError> {
    let Some(keyframes) = conditioning.keyframe_idxs() else { return Ok(0) };
    let times = keyframes
        .narrow(1, 0, 1)
        .and_then(|t| t.to_dtype(DType::I64))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<i64>())
        .map_err(|e| tensor_error("keyframe_idxs", &e))?;
    let mut times = times;
    times.sort_unstable();
    times.dedup();
    Ok(times.len())
}

/// `get_latent_index`: the guide's first pixel frame (negative counts from the end of the video without the
/// guides already appended; videos start on a frame `8k + 1`) and the latent frame it falls in.
fn latent_index(
    conditioning: &Conditioning,
    latent_length: usize,
    guide_length: usize,
    frame_idx: i64,
    scale: Scale,
) -> Result<(i64, usize), NodeError> {
    let latent_count = latent_length as i64 - keyframe_count(conditioning)? as i64;
    let mut frame_idx =
        if frame_idx >= 0 { frame_idx } else { ((latent_count - 1) * scale.time + 1 + frame_idx).max(0) };
    if guide_length > 1 && frame_idx != 0 {
        frame_idx = (frame_idx - 1).div_euclid(scale.time) * scale.time + 1;
    }
    let latent_idx = (frame_idx + scale.time - 1).div_euclid(scale.time);
    Ok((frame_idx, latent_idx as usize))
}

/// `add_keyframe_index`: the guide latent's token coordinates in pixels (`latent_to_pixel_coords`, with the
/// causal fix of the first frame only when the guide starts the video), shifted to `frame_idx`, appended to
/// the conditioning's.
fn add_keyframe_index(
    conditioning: &Conditioning,
    frame_idx: i64,
    guide: &Tensor,
    scale: Scale,
) -> candle_core::Result<Conditioning> {
    let (batch, _, frames, height, width) = guide.dims5()?;
    let tokens = frames * height * width;
    let mut coords = vec![0i64; batch * 3 * tokens];
    for b in 0..batch {
        let base = b * 3 * tokens;
        for f in 0..frames {
            let mut time = f as i64 * scale.time;
            if frame_idx == 0 {
                time = (time + 1 - scale.time).max(0);
            }
            for h in 0..height {
                for w in 0..width {
                    let n = (f * height + h) * width + w;
                    coords[base + n] = time + frame_idx;
                    coords[base + tokens + n] = h as i64 * scale.space;
                    coords[base + 2 * tokens + n] = w as i64 * scale.space;
                }
            }
        }
    }
    let coords = Tensor::from_vec(coords, (batch, 3, tokens), &Device::Cpu)?;
    let keyframes = match conditioning.keyframe_idxs() {
        None => coords,
        Some(existing) => Tensor::cat(&[existing, &coords], 2)?,
    };
    Ok(conditioning.with_keyframe_idxs(Some(&keyframes)))
}

/// The latent's noise mask, or ones `[B, 1, T, 1, 1]` (`get_noise_mask`).
fn noise_mask_or_ones(latent: &Latent) -> Result<Tensor, NodeError> {
    if let Some(mask) = &latent.noise_mask {
        let mask = mask.to_dtype(DType::F32).map_err(|e| tensor_error("noise mask", &e))?;
        return match mask.rank() {
            5 => Ok(mask),
            _ => Err(NodeError::input(
                "latent",
                format!("the latent's noise mask must be [B, 1, T, H, W], got {:?}", mask.dims()),
            )),
        };
    }
    let (batch, _, frames, _, _) = latent.samples.dims5().map_err(|_| latent_shape_error(&latent.samples))?;
    Tensor::ones((batch, 1, frames, 1, 1), DType::F32, &Device::Cpu).map_err(|e| tensor_error("noise mask", &e))
}

/// `tensor` with frames `start..end` (dimension 2) set to `value`.
fn fill_frames(tensor: &Tensor, start: usize, end: usize, value: f32) -> candle_core::Result<Tensor> {
    if start >= end {
        return Ok(tensor.clone());
    }
    let mut shape = tensor.dims().to_vec();
    shape[2] = end - start;
    replace_frames(tensor, start, &Tensor::full(value, shape, tensor.device())?)
}

/// `tensor` with frames from `start` (dimension 2) replaced by `frames`.
fn replace_frames(tensor: &Tensor, start: usize, frames: &Tensor) -> candle_core::Result<Tensor> {
    let length = tensor.dim(2)?;
    let count = frames.dim(2)?;
    let mut parts = vec![tensor.narrow(2, 0, start)?, frames.clone()];
    if start + count < length {
        parts.push(tensor.narrow(2, start + count, length - start - count)?);
    }
    Tensor::cat(&parts, 2)
}

/// `tensor` repeated to `batch` items when it has one.
fn with_batch(tensor: &Tensor, batch: usize) -> candle_core::Result<Tensor> {
    match tensor.dim(0)? {
        b if b == batch => return Ok(tensor.clone()),
        1 => {}
        other => candle_core::bail!("the guide has batch {other} but the latent has batch {batch}"),
    }
    let mut repeats = vec![1; tensor.rank()];
    repeats[0] = batch;
    tensor.repeat(repeats)
}
