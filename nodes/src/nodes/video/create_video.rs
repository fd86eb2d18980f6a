//! `CreateVideo`: an IMAGE batch and a frame rate as a VIDEO.

use crate::values::{Audio, Image, Video};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// Makes a VIDEO from frames and, when connected, a sound track.
pub struct CreateVideo;

impl Node for CreateVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("CreateVideo")
            .display_name("Create Video")
            .category("image/video")
            .description("Create a video from images.")
            .input(InputSpec::socket("images", "IMAGE").tooltip("The images to create a video from."))
            .input(InputSpec::float("fps", 30.0).min(1.0).max(120.0).step(1.0))
            .input(InputSpec::socket("audio", "AUDIO").optional().tooltip("The audio to add to the video."))
            .output("VIDEO", "VIDEO")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let images = inputs.object::<Image>("images")?;
        images.dims()?;
        let fps = inputs.float("fps")?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(NodeError::input("fps", format!("{fps} must be a positive number of frames per second")));
        }
        let audio = inputs.optional_object::<Audio>("audio")?.map(|audio| Audio::clone(&audio));
        if let Some(audio) = &audio {
            audio.dims()?;
        }
        let video = Video { frames: Image::clone(&images), fps, audio };
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(video))]))
    }
}
