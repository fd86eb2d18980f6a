//! `LTXVAddGuide`, `LTXVAddLatentGuide` and `LTXVCropGuides`: keyframe guides for LTX-Video and LTX-2, as
//! ComfyUI's `comfy_extras/nodes_lt.py` computes them.
//!
//! A guide is an image or a short video encoded by the VAE. All its latent frames are appended after the
//! latent's own frames and kept (noise mask `max(0, 1 − strength)`); the conditioning records their pixel
//! intervals (`keyframe_idxs`) so that the model places those tokens at the guide's frame index instead of at
//! the end of the video, and one `guide_attention_entries` item per guide, through which a strength above 1
//! or an attention mask weights the attention between the guide and the video. An IC-LoRA reference that is
//! `reference_downscale_factor` times smaller is encoded at that size and dilated onto the latent's grid:
//! the empty cells get a noise mask below 0 (`−1 − min(strength, 1)`), which the model leaves out, and the
//! kept cells' intervals stretch over the area they stand for. `LTXVCropGuides` removes the appended frames after sampling.

use super::super::latent::encode_frames;
use super::super::latent::resize::{Fit, resize_rgb_frames};
use crate::values::{Conditioning, GuideAttentionEntry, IcLoraParameters, Image, Latent, Mask, VideoVae, tensor_error};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

const ATTENTION_MASK_TOOLTIP: &str = "Optional pixel-space spatial mask. Controls per-region conditioning influence via self-attention, multiplied by strength.";

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
            .input(InputSpec::float("strength", 1.0).min(0.0).max(10.0).step(0.01))
            .input(InputSpec::socket("attention_mask", "MASK").optional().tooltip(ATTENTION_MASK_TOOLTIP))
            .input(InputSpec::socket("iclora_parameters", "IC_LORA_PARAMETERS").optional().tooltip(
                "Optional IC-LoRA parameters from a Get IC-LoRA Parameters node. Used for adjusting guide \
                 processing as required by certain IC-LoRAs (eg. those with a reference_downscale_factor > 1). \
                 When chained, each LTXVAddGuide uses only the parameters connected to it.",
            ))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let Shared { positive, negative, vae, latent, strength, attention_mask } = Shared::read(inputs)?;
        let image = inputs.object::<Image>("image")?;
        let frame_idx = inputs.int("frame_idx")?;
        let factor = inputs
            .optional_object::<IcLoraParameters>("iclora_parameters")?
            .map_or(1, |parameters| parameters.reference_downscale_factor.max(1)) as usize;
        let (spatial, temporal) = vae.vae.compression();
        let scale = Scale { time: temporal as i64, space: spatial as i64 };
        let (_, _, latent_length, height, width) =
            latent.samples.dims5().map_err(|_| latent_shape_error(&latent.samples))?;
        if factor > 1 && (height % factor != 0 || width % factor != 0) {
            return Err(NodeError::input(
                "iclora_parameters",
                format!(
                    "the latent's size {width}x{height} (in latent cells) must be divisible by the IC-LoRA's \
                     reference_downscale_factor {factor}"
                ),
            ));
        }
        let (count, image_height, image_width, channels) = image.dims()?;
        if count == 0 || image_height == 0 || image_width == 0 || channels == 0 {
            return Err(NodeError::input(
                "image",
                format!("the image is empty ({count}×{image_height}×{image_width}×{channels})"),
            ));
        }
        // A multi-frame guide placed after the start gets a throwaway copy of its first frame in front, so that
        // the VAE's single-frame first latent falls on the copy, which is then dropped.
        let kept_frames = (count - 1) / temporal * temporal + 1;
        let resolved = if frame_idx >= 0 {
            frame_idx
        } else {
            let guides = keyframe_count(&positive, Some((height, width)))? as i64;
            ((latent_length as i64 - guides - 1) * scale.time + 1 + frame_idx).max(0)
        };
        let causal_fix = resolved == 0 || kept_frames == 1;
        let frames = if causal_fix {
            image.pixels.clone()
        } else {
            image
                .pixels
                .narrow(0, 0, 1)
                .and_then(|first| Tensor::cat(&[&first, &image.pixels], 0))
                .map_err(|e| tensor_error("image", &e))?
        };
        let usable = (frames.dim(0).map_err(|e| tensor_error("image", &e))? - 1) / temporal * temporal + 1;
        let frames = frames.narrow(0, 0, usable).map_err(|e| tensor_error("image", &e))?;
        let target = (height * spatial / factor, width * spatial / factor);
        let pixels =
            resize_rgb_frames(&frames, Fit::CenterCrop, target).map_err(|e| tensor_error("resizing the image", &e))?;
        context.check_interrupted()?;
        let mut encoded = encode_frames(&vae.vae, &pixels)
            .map_err(|e| match e {
                NodeError::Input { message, .. } => NodeError::input("image", message),
                other => other,
            })?
            .to_device(&Device::Cpu)
            .map_err(|e| tensor_error("encoded guide", &e))?;
        let mut guide_length = usable;
        if !causal_fix {
            let frames = encoded.dim(2).map_err(|e| tensor_error("encoded guide", &e))?;
            encoded = encoded.narrow(2, 1, frames - 1).map_err(|e| tensor_error("encoded guide", &e))?;
            guide_length -= 1;
        }
        let guide_frames = encoded.dim(2).map_err(|e| tensor_error("encoded guide", &e))?;
        let (frame_idx, latent_idx) =
            latent_index(&positive, (latent_length, height, width), guide_length, frame_idx, scale)?;
        if latent_idx + guide_frames > latent_length {
            return Err(NodeError::input(
                "frame_idx",
                format!(
                    "the guide's {guide_frames} latent frames placed at latent frame {latent_idx} (frame {frame_idx}) \
                     exceed the latent's {latent_length} frames"
                ),
            ));
        }
        let guide = Guide { latent: encoded, frame_idx, strength, factor, causal_fix, attention_mask };
        guide.attach(&positive, &negative, &latent, scale)
    }
}

/// `LTXVAddLatentGuide`.
pub struct LtxvAddLatentGuide;

impl Node for LtxvAddLatentGuide {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVAddLatentGuide")
            .display_name("LTXV Add Latent Guide")
            .category("conditioning/video_models")
            .description(
                "Pins an already-encoded latent as a guide, for when the guide comes out of an earlier stage rather \
                 than an image. Same effect as LTXV Add Guide without the VAE decode/encode round trip. A guide that \
                 is spatially smaller than the target (an IC-LoRA or detailing reference) is dilated onto a sparse \
                 grid, and its RoPE end positions are expanded by the same ratio so it covers the target canvas \
                 instead of addressing only the top-left corner of it.",
            )
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::socket("latent", "LATENT").tooltip("Target video latent the guide is pinned onto."))
            .input(InputSpec::socket("guiding_latent", "LATENT").tooltip(
                "Guide latent. Its spatial size must divide the target's by the same whole number on both axes; \
                 equal size pins it as-is, half size is treated as an x2 IC-LoRA reference.",
            ))
            .input(InputSpec::int("latent_idx", 0).min(-9999).max(9999).tooltip(
                "Latent frame index to start the guide at, counted in latent frames rather than pixel frames. \
                 Negative values place the guide on frames before the start of the latent, not counted back from \
                 its end.",
            ))
            .input(
                InputSpec::float("strength", 1.0)
                    .min(0.0)
                    .max(10.0)
                    .step(0.01)
                    .tooltip("Guide strength. 1.0 is a hard pin; lower values relax it."),
            )
            .input(InputSpec::socket("attention_mask", "MASK").optional().tooltip(ATTENTION_MASK_TOOLTIP))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let Shared { positive, negative, vae, latent, strength, attention_mask } = Shared::read(inputs)?;
        let guiding = inputs.object::<Latent>("guiding_latent")?;
        let latent_idx = inputs.int("latent_idx")?;
        let five_d = |name: &str, samples: &Tensor| {
            samples.dims5().map_err(|_| {
                NodeError::input(
                    name,
                    format!(
                        "{name} must be a 5D video latent (batch, channels, frames, height, width), got shape {:?}",
                        samples.dims()
                    ),
                )
            })
        };
        let (_, _, latent_frames, height, width) = five_d("latent", &latent.samples)?;
        let (_, _, guide_frames, guide_height, guide_width) = five_d("guiding_latent", &guiding.samples)?;
        if latent_idx + guide_frames as i64 > latent_frames as i64 {
            return Err(NodeError::input(
                "latent_idx",
                format!(
                    "a guide of {guide_frames} latent frame(s) at latent_idx {latent_idx} runs past the end of the \
                     {latent_frames}-frame latent; negative values are allowed and place the guide before the start \
                     of the latent"
                ),
            ));
        }
        if height % guide_height != 0 || width % guide_width != 0 {
            return Err(NodeError::input(
                "guiding_latent",
                format!(
                    "the guiding latent's spatial size {guide_height}x{guide_width} must divide the target size \
                     {height}x{width} by a whole number"
                ),
            ));
        }
        let (height_scale, width_scale) = (height / guide_height, width / guide_width);
        if height_scale != width_scale {
            return Err(NodeError::input(
                "guiding_latent",
                format!(
                    "the guiding latent's spatial ratio must be square, got height x{height_scale} and width \
                     x{width_scale} ({guide_height}x{guide_width} -> {height}x{width})"
                ),
            ));
        }
        let (_, temporal) = vae.vae.compression();
        let (spatial, _) = vae.vae.compression();
        let scale = Scale { time: temporal as i64, space: spatial as i64 };
        let frame_idx = if latent_idx <= 0 { latent_idx * scale.time } else { 1 + (latent_idx - 1) * scale.time };
        let guide_latent = guiding.samples.to_device(&Device::Cpu).map_err(|e| tensor_error("guiding_latent", &e))?;
        let causal_fix = frame_idx == 0 || guide_frames == 1;
        let guide =
            Guide { latent: guide_latent, frame_idx, strength, factor: width_scale, causal_fix, attention_mask };
        guide.attach(&positive, &negative, &latent, scale)
    }
}

/// The inputs both guide nodes have.
struct Shared {
    positive: Arc<Conditioning>,
    negative: Arc<Conditioning>,
    vae: Arc<VideoVae>,
    latent: Arc<Latent>,
    strength: f64,
    attention_mask: Option<Arc<Mask>>,
}

impl Shared {
    fn read(inputs: &NodeInputs) -> Result<Self, NodeError> {
        Ok(Shared {
            positive: inputs.object::<Conditioning>("positive")?,
            negative: inputs.object::<Conditioning>("negative")?,
            vae: inputs.object::<VideoVae>("vae")?,
            latent: inputs.object::<Latent>("latent")?,
            strength: inputs.float("strength")?,
            attention_mask: inputs.optional_object::<Mask>("attention_mask")?,
        })
    }
}

/// One guide on its way into a latent (ComfyUI's `attach_guide_latent`).
struct Guide {
    /// `[1 or B, C, F, h, w]`, before dilation.
    latent: Tensor,
    /// Its first pixel frame in the video.
    frame_idx: i64,
    strength: f64,
    /// How many times smaller than the latent it is (1: the same size).
    factor: usize,
    /// Whether its first latent frame stands for a single pixel frame.
    causal_fix: bool,
    attention_mask: Option<Arc<Mask>>,
}

impl Guide {
    /// Dilates the guide onto the latent's grid, appends it to the latent and its noise mask, and records its
    /// intervals and attention entry in both conditionings.
    fn attach(
        self,
        positive: &Conditioning,
        negative: &Conditioning,
        latent: &Latent,
        scale: Scale,
    ) -> Result<NodeOutput, NodeError> {
        let batch = latent.samples.dim(0).map_err(|_| latent_shape_error(&latent.samples))?;
        let noise_mask = noise_mask_or_ones(latent)?;
        let (_, _, frames, height, width) = self.latent.dims5().map_err(|e| tensor_error("guide latent", &e))?;
        let pixel_mask = self
            .attention_mask
            .as_ref()
            .map(|mask| mask.values.to_dtype(DType::F32).and_then(|m| m.unsqueeze(0)?.unsqueeze(0)))
            .transpose()
            .map_err(|e| tensor_error("attention_mask", &e))?;
        if let Some(mask) = &pixel_mask
            && mask.rank() != 5
        {
            return Err(NodeError::input(
                "attention_mask",
                format!("expected a MASK [F, H, W], got {:?}", mask.dims()),
            ));
        }
        let build = || -> candle_core::Result<(Conditioning, Conditioning, Latent)> {
            let (guide, guide_mask) = dilate(&self.latent, self.factor)?;
            let positive = add_keyframe_index(positive, &guide, &self, scale)?;
            let negative = add_keyframe_index(negative, &guide, &self, scale)?;
            let appended_mask = if let Some(guide_mask) = &guide_mask {
                let (_, _, _, target_h, target_w) = guide_mask.dims5()?;
                // Capped at 1: above it, only the attention weights amplify the guide.
                (guide_mask - self.strength.min(1.0))?.broadcast_as((
                    noise_mask.dim(0)?,
                    1,
                    frames,
                    target_h,
                    target_w,
                ))?
            } else {
                let (mask_batch, _, _, mask_h, mask_w) = noise_mask.dims5()?;
                let keep = (1.0 - self.strength).max(0.0) as f32;
                Tensor::full(keep, (mask_batch, 1, frames, mask_h, mask_w), &Device::Cpu)?
            };
            let (_, _, _, mask_h, mask_w) = appended_mask.dims5()?;
            let (noise_batch, _, noise_frames, _, _) = noise_mask.dims5()?;
            let noise_mask = noise_mask.broadcast_as((noise_batch, 1, noise_frames, mask_h, mask_w))?;
            let mask = Tensor::cat(&[&noise_mask, &appended_mask.contiguous()?], 2)?;
            let samples = Tensor::cat(&[&latent.samples, &with_batch(&guide, batch)?], 2)?;
            let (_, _, dilated_frames, dilated_h, dilated_w) = guide.dims5()?;
            let entry = GuideAttentionEntry {
                pre_filter_count: dilated_frames * dilated_h * dilated_w,
                strength: self.strength,
                pixel_mask: pixel_mask.clone(),
                latent_shape: [frames, height, width],
            };
            let with_entry = |conditioning: &Conditioning| {
                let mut entries = conditioning.guide_attention_entries().map(<[_]>::to_vec).unwrap_or_default();
                entries.push(entry.clone());
                conditioning.with_guides(conditioning.keyframe_idxs(), Some(&entries))
            };
            Ok((
                with_entry(&positive),
                with_entry(&negative),
                Latent { samples, noise_mask: Some(mask), batch_index: None, audio: None },
            ))
        };
        let (positive, negative, latent) = build().map_err(|e| tensor_error("adding the guide", &e))?;
        Ok(NodeOutput::new(vec![
            Value::from(Arc::new(positive)),
            Value::from(Arc::new(negative)),
            Value::from(Arc::new(latent)),
        ]))
    }
}

/// `dilate_latent`: a guide `factor` times smaller spread onto a grid `factor` times larger, every
/// `factor`-th row and column, zeros between; and its noise mask, 1 on the guide's cells and −1 between.
fn dilate(guide: &Tensor, factor: usize) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    if factor <= 1 {
        return Ok((guide.clone(), None));
    }
    let (batch, channels, frames, height, width) = guide.dims5()?;
    let values: Vec<f32> = guide.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (big_h, big_w) = (height * factor, width * factor);
    let mut dilated = vec![0f32; batch * channels * frames * big_h * big_w];
    for plane in 0..batch * channels * frames {
        for h in 0..height {
            for w in 0..width {
                dilated[(plane * big_h + h * factor) * big_w + w * factor] = values[(plane * height + h) * width + w];
            }
        }
    }
    let mut mask = vec![-1f32; batch * frames * big_h * big_w];
    for plane in 0..batch * frames {
        for h in 0..height {
            for w in 0..width {
                mask[(plane * big_h + h * factor) * big_w + w * factor] = 1.0;
            }
        }
    }
    Ok((
        Tensor::from_vec(dilated, (batch, channels, frames, big_h, big_w), &Device::Cpu)?.to_dtype(guide.dtype())?,
        Some(Tensor::from_vec(mask, (batch, 1, frames, big_h, big_w), &Device::Cpu)?),
    ))
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
        let (_, _, frames, height, width) = latent.samples.dims5().map_err(|_| latent_shape_error(&latent.samples))?;
        let mask = noise_mask_or_ones(&latent)?;
        let guides = keyframe_count(&positive, Some((height, width)))?;
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
            Value::from(Arc::new(positive.with_guides(None, None))),
            Value::from(Arc::new(negative.with_guides(None, None))),
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

/// How many latent frames the conditioning's guides appended (`get_keyframe_idxs`): with the latent's
/// `(height, width)`, the guide tokens over the tokens of a frame; else the frames its guide entries
/// recorded, or the distinct start times of the guide tokens.
fn keyframe_count(conditioning: &Conditioning, frame_size: Option<(usize, usize)>) -> Result<usize, NodeError> {
    let Some(keyframes) = conditioning.keyframe_idxs() else { return Ok(0) };
    let tokens = keyframes.dim(2).map_err(|e| tensor_error("keyframe_idxs", &e))?;
    if let Some((height, width)) = frame_size {
        return Ok(tokens / (height * width).max(1));
    }
    if let Some(entries) = conditioning.guide_attention_entries()
        && !entries.is_empty()
    {
        return Ok(entries.iter().map(|entry| entry.latent_shape[0]).sum());
    }
    let starts = keyframes
        .narrow(1, 0, 1)
        .and_then(|t| if t.rank() == 4 { t.narrow(3, 0, 1) } else { Ok(t) })
        .and_then(|t| t.to_dtype(DType::I64))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<i64>())
        .map_err(|e| tensor_error("keyframe_idxs", &e))?;
    let mut times = starts;
    times.sort_unstable();
    times.dedup();
    Ok(times.len())
}

/// `get_latent_index`: the guide's first pixel frame (negative counts from the end of the video without the
/// guides already appended; videos start on a frame `8k + 1`) and the latent frame it falls in.
fn latent_index(
    conditioning: &Conditioning,
    (latent_length, height, width): (usize, usize, usize),
    guide_length: usize,
    frame_idx: i64,
    scale: Scale,
) -> Result<(i64, usize), NodeError> {
    let latent_count = latent_length as i64 - keyframe_count(conditioning, Some((height, width)))? as i64;
    let mut frame_idx =
        if frame_idx >= 0 { frame_idx } else { ((latent_count - 1) * scale.time + 1 + frame_idx).max(0) };
    if guide_length > 1 && frame_idx != 0 {
        frame_idx = (frame_idx - 1).div_euclid(scale.time) * scale.time + 1;
    }
    let latent_idx = (frame_idx + scale.time - 1).div_euclid(scale.time);
    Ok((frame_idx, latent_idx.max(0) as usize))
}

/// `add_keyframe_index`: the (dilated) guide latent's token intervals `[start, end)` in pixels
/// (`latent_to_pixel_coords`, time with the causal fix when `guide.causal_fix`), shifted to the guide's
/// frame index, the row and column ends stretched over the `factor × factor` cells a dilated token stands
/// for, appended to the conditioning's.
fn add_keyframe_index(
    conditioning: &Conditioning,
    dilated: &Tensor,
    guide: &Guide,
    scale: Scale,
) -> candle_core::Result<Conditioning> {
    let (batch, _, frames, height, width) = dilated.dims5()?;
    let tokens = frames * height * width;
    let stretch = (guide.factor as i64 - 1) * scale.space;
    let time = |index: usize| {
        let time = index as i64 * scale.time;
        let time = if guide.causal_fix { (time + 1 - scale.time).max(0) } else { time };
        time + guide.frame_idx
    };
    let mut coords = vec![0i64; batch * 3 * tokens * 2];
    for b in 0..batch {
        for f in 0..frames {
            for h in 0..height {
                for w in 0..width {
                    let n = (f * height + h) * width + w;
                    let intervals = [
                        (time(f), time(f + 1)),
                        (h as i64 * scale.space, (h as i64 + 1) * scale.space + stretch),
                        (w as i64 * scale.space, (w as i64 + 1) * scale.space + stretch),
                    ];
                    for (axis, (start, end)) in intervals.into_iter().enumerate() {
                        let at = ((b * 3 + axis) * tokens + n) * 2;
                        coords[at] = start;
                        coords[at + 1] = end;
                    }
                }
            }
        }
    }
    let coords = Tensor::from_vec(coords, (batch, 3, tokens, 2), &Device::Cpu)?;
    let keyframes = match conditioning.keyframe_idxs() {
        None => coords,
        Some(existing) if existing.rank() == 4 => Tensor::cat(&[existing, &coords], 2)?,
        Some(existing) => candle_core::bail!("keyframe_idxs must be [B, 3, N, 2], got {:?}", existing.dims()),
    };
    Ok(conditioning.with_guides(Some(&keyframes), conditioning.guide_attention_entries()))
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
