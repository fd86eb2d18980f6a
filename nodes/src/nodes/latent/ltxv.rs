//! `EmptyLTXVLatentVideo` and `LTXVImgToVideo`: the starting latents of text- and image-to-video.

use super::resize::{Fit, resize_rgb_frames};
use super::vae::encode_frames;
use crate::values::VideoVae;
use crate::values::{Conditioning, Image, Latent, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

const MAX_RESOLUTION: i64 = 16384;
/// LTX-Video latent channels.
pub const LATENT_CHANNELS: usize = 128;

fn size_input(name: &str, default: i64) -> InputSpec {
    InputSpec::int(name, default).min(64).max(MAX_RESOLUTION).step(32)
}

/// Errors for sizes the model cannot produce: width and height multiples of 32, length 8k + 1.
fn check_sizes(inputs: &NodeInputs) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for name in ["width", "height"] {
        if let Ok(Some(value)) = inputs.optional_int(name)
            && value % 32 != 0
        {
            errors.push((
                name.to_string(),
                format!(
                    "{name} {value} is not a multiple of 32 (LTX-Video works on 32×32 pixel cells); try {}",
                    (value / 32).max(1) * 32
                ),
            ));
        }
    }
    if let Ok(Some(length)) = inputs.optional_int("length")
        && length % 8 != 1
    {
        let lower = (length - 1).max(0) / 8 * 8 + 1;
        errors.push((
            "length".to_string(),
            format!("length {length} is not 8k + 1 frames (LTX-Video compresses 8 frames after the first into one latent frame); try {lower} or {}", lower + 8),
        ));
    }
    errors
}

/// Latent shape `[B, 128, (length − 1)/8 + 1, height/32, width/32]`.
fn latent_shape(inputs: &NodeInputs) -> Result<[usize; 5], NodeError> {
    let positive = |name: &str| -> Result<usize, NodeError> {
        let value = inputs.int(name)?;
        usize::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| NodeError::input(name, format!("must be positive, got {value}")))
    };
    let (width, height, length, batch) =
        (positive("width")?, positive("height")?, positive("length")?, positive("batch_size")?);
    Ok([batch, LATENT_CHANNELS, (length - 1) / 8 + 1, height / 32, width / 32])
}

fn zeros(shape: [usize; 5]) -> Result<Tensor, NodeError> {
    let elements: usize = shape.iter().product();
    if elements > 1 << 32 {
        return Err(NodeError::msg(format!("a latent of shape {shape:?} ({elements} values) is too large")));
    }
    Tensor::zeros(shape.as_slice(), candle_core::DType::F32, &Device::Cpu).map_err(|e| tensor_error("latent", &e))
}

/// `EmptyLTXVLatentVideo`.
pub struct EmptyLtxvLatentVideo;

impl Node for EmptyLtxvLatentVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("EmptyLTXVLatentVideo")
            .category("latent/video/ltxv")
            .input(size_input("width", 768))
            .input(size_input("height", 512))
            .input(InputSpec::int("length", 97).min(1).max(MAX_RESOLUTION).step(8))
            .input(InputSpec::int("batch_size", 1).min(1).max(4096))
            .output("LATENT", "LATENT")
    }

    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        check_sizes(constants)
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let samples = zeros(latent_shape(inputs)?)?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Latent::new(samples)))]))
    }
}

/// `LTXVImgToVideo`: the image, resized and centre-cropped to the video size, encoded as the first latent
/// frame(s); a noise mask keeps those frames at `1 − strength` of the noise.
pub struct LtxvImgToVideo;

impl Node for LtxvImgToVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVImgToVideo")
            .category("conditioning/video_models")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::socket("image", "IMAGE"))
            .input(size_input("width", 768))
            .input(size_input("height", 512))
            .input(InputSpec::int("length", 97).min(9).max(MAX_RESOLUTION).step(8))
            .input(InputSpec::int("batch_size", 1).min(1).max(4096))
            .input(InputSpec::float("strength", 1.0).min(0.0).max(1.0))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
            .output("LATENT", "latent")
    }

    fn validate(&self, constants: &NodeInputs, _: &Environment) -> Vec<(String, String)> {
        check_sizes(constants)
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let positive = inputs.object::<Conditioning>("positive")?;
        let negative = inputs.object::<Conditioning>("negative")?;
        let vae = inputs.object::<VideoVae>("vae")?;
        let image = inputs.object::<Image>("image")?;
        let strength = inputs.float("strength")?;
        let shape = latent_shape(inputs)?;
        let (out_height, out_width) = (shape[3] * 32, shape[4] * 32);
        let (_, height, width, channels) = image.dims()?;
        if height == 0 || width == 0 || channels == 0 {
            return Err(NodeError::input("image", "the image is empty"));
        }
        let pixels = resize_rgb_frames(&image.pixels, Fit::CenterCrop, (out_height, out_width))
            .map_err(|e| tensor_error("resizing the image", &e))?;
        context.check_interrupted()?;
        let encoded = encode_frames(&vae.vae, &pixels).map_err(|e| match e {
            NodeError::Input { message, .. } => NodeError::input("image", message),
            other => other,
        })?;
        let image_frames = encoded.dim(2).map_err(|e| tensor_error("encoded image", &e))?;
        let [batch, _, frames, _, _] = shape;
        let build = || -> candle_core::Result<(Tensor, Tensor)> {
            let kept = image_frames.min(frames);
            let head = encoded.narrow(2, 0, kept)?.repeat((batch, 1, 1, 1, 1))?;
            let samples = if kept < frames {
                let tail = Tensor::zeros(
                    (batch, LATENT_CHANNELS, frames - kept, shape[3], shape[4]),
                    candle_core::DType::F32,
                    &Device::Cpu,
                )?;
                Tensor::cat(&[&head, &tail], 2)?
            } else {
                head
            };
            let mut mask = vec![1f32; batch * frames];
            for b in 0..batch {
                for f in 0..kept {
                    mask[b * frames + f] = (1.0 - strength) as f32;
                }
            }
            let mask = Tensor::from_vec(mask, (batch, 1, frames, 1, 1), &Device::Cpu)?;
            Ok((samples, mask))
        };
        let (samples, mask) = build().map_err(|e| tensor_error("building the latent", &e))?;
        let latent = Latent { samples, noise_mask: Some(mask), batch_index: None, audio: None };
        Ok(NodeOutput::new(vec![Value::from(positive), Value::from(negative), Value::from(Arc::new(latent))]))
    }
}
