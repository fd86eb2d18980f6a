//! `CreateVideo`: an IMAGE batch, a frame rate and an optional sound track as a VIDEO.

use crate::values::{Audio, Image, Video};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// Makes a VIDEO from frames and, when connected, audio (kept whole; `SaveVideo` cuts it to the
/// video's length). Only 8-bit sRGB is supported: the H.264 encoder is 8-bit 4:2:0 and colours are not
/// converted, so 10-bit and HDR are refused rather than silently written as 8-bit sRGB.
pub struct CreateVideo;

impl Node for CreateVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("CreateVideo")
            .display_name("Create Video")
            .category("video")
            .description("Create a video from images.")
            .input(InputSpec::socket("images", "IMAGE").tooltip("The images to create a video from."))
            .input(InputSpec::float("fps", 30.0).min(1.0).max(120.0).step(1.0))
            .input(InputSpec::socket("audio", "AUDIO").optional().tooltip("The audio to add to the video."))
            .input(
                InputSpec::combo("bit_depth", ["auto", "8", "10"])
                    .default_option("auto")
                    .optional()
                    .tooltip("Auto uses 8-bit for sRGB and 10-bit for HDR. Explicit 8-bit and 10-bit choices are independent of colorspace."),
            )
            .input(
                InputSpec::combo("color_space", ["sRGB", "HDR", "HDR PQ"])
                    .default_option("sRGB")
                    .optional()
                    .tooltip("Colorspace of the input images. HDR selects BT.2020/HLG and HDR PQ selects BT.2020/PQ."),
            )
            .output("VIDEO", "VIDEO")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let images = inputs.object::<Image>("images")?;
        images.dims()?;
        let fps = inputs.float("fps")?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(NodeError::input("fps", format!("{fps} must be a positive number of frames per second")));
        }
        let color_space = inputs.optional_string("color_space")?.unwrap_or("sRGB");
        if color_space != "sRGB" {
            return Err(NodeError::input(
                "color_space",
                format!("'{color_space}' is not supported: videos are written as 8-bit sRGB; use sRGB"),
            ));
        }
        // A COMBO link (GetVideoComponents' bit_depth) carries the number itself.
        let bit_depth = match inputs.get("bit_depth") {
            None => "auto".to_string(),
            Some(Value::String(text)) => text.to_string(),
            Some(Value::Int(depth)) => depth.to_string(),
            Some(other) => {
                return Err(NodeError::input(
                    "bit_depth",
                    format!("expected auto, 8 or 10, got {}", other.type_name()),
                ));
            }
        };
        if !matches!(bit_depth.as_str(), "auto" | "8") {
            return Err(NodeError::input(
                "bit_depth",
                format!("{bit_depth}-bit output is not supported: the H.264 encoder writes 8 bits; use auto or 8"),
            ));
        }
        let audio = inputs.optional_object::<Audio>("audio")?.map(|audio| Audio::clone(&audio));
        if let Some(audio) = &audio {
            audio.dims().map_err(|error| NodeError::input("audio", error.to_string()))?;
            if audio.sample_rate == 0 {
                return Err(NodeError::input("audio", "the audio has a sample rate of 0 Hz"));
            }
        }
        let video = Video { frames: Image::clone(&images), fps, audio };
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(video))]))
    }
}
