//! `LTXVPreprocess`: gives a conditioning image the compression artefacts of a video frame, as
//! LTX-Video was trained on compressed video.
//!
//! Per image: crop to even height and width, quantise to bytes by truncation, encode as one H.264
//! frame and decode it back. ComfyUI encodes with libx264 at `crf = img_compression` (preset veryfast);
//! here openh264 codes the frame at a fixed quantiser `qp = min(img_compression + 10, 51)`, so the
//! artefacts are of the same kind but the pixels differ from ComfyUI's. The offset comes from one
//! 320×240 frame of ffmpeg's `testsrc2`, PSNR after the round trip: crf 23 → 33.2 dB against
//! QP 33 → 34.5 dB; crf 35 → 27.3 dB against QP 45 → 27.4 dB. Below crf ≈ 15 openh264 stays cleaner
//! than x264 (crf 10: 38.9 dB, QP 20: 43.2 dB), and x264 at crf 51 (20.0 dB) is rougher than QP 51
//! (24.6 dB). 0 returns the image unchanged, uncropped.

use super::media_error;
use crate::media::crop_rgb;
use crate::media::h264::compress_frame;
use crate::values::{Image, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// Compresses each image as an H.264 frame and decodes it back.
pub struct LTXVPreprocess;

impl Node for LTXVPreprocess {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVPreprocess")
            .category("image")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(
                InputSpec::int("img_compression", 35)
                    .min(0)
                    .max(100)
                    .tooltip("Amount of compression to apply on image."),
            )
            .output("IMAGE", "output_image")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let compression = inputs.int("img_compression")?;
        if !(0..=100).contains(&compression) {
            return Err(NodeError::input("img_compression", format!("{compression} is outside 0..100")));
        }
        if compression == 0 {
            return Ok(NodeOutput::new(vec![Value::Object(image)]));
        }
        let (batch, height, width, _) = image.dims()?;
        let (even_height, even_width) = (height / 2 * 2, width / 2 * 2);
        if even_height == 0 || even_width == 0 {
            return Err(NodeError::input(
                "image",
                format!("a {width}x{height} image is too small to compress (2x2 at least)"),
            ));
        }
        let mut pixels = Vec::with_capacity(batch * even_height * even_width * 3);
        for index in 0..batch {
            context.check_interrupted()?;
            let rgb = crop_rgb(&image.frame_rgb8(index)?, width, even_width, even_height);
            let decoded = compress_frame(&rgb, even_width, even_height, quantiser(compression))
                .map_err(|error| media_error("compressing the image", &error))?;
            pixels.extend(decoded.iter().map(|&value| f32::from(value) / 255.0));
        }
        let output = Tensor::from_vec(pixels, (batch, even_height, even_width, 3), &Device::Cpu)
            .map_err(|error| tensor_error("building the output image", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Image::new(output)))]))
    }
}

/// The openh264 quantiser giving about the artefacts of libx264 at `crf = img_compression`.
fn quantiser(img_compression: i64) -> u8 {
    (img_compression + 10).clamp(0, 51) as u8
}
