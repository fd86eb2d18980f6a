//! `SaveAnimatedWEBP`: the image batch as one animated WebP in the output folder.

use super::output_metadata;
use super::{check_prefix, media_error};
use crate::media::webp::{WebpSettings, add_exif, encode_animation, workflow_exif};
use crate::values::Image;
use kinograph_engine::prelude::*;
use serde_json::json;
use std::io::Write;

/// Saves the batch as `<prefix>_00001_.webp`, one frame per image, with the prompt and workflow in its
/// EXIF as ComfyUI stores them.
pub struct SaveAnimatedWEBP;

impl Node for SaveAnimatedWEBP {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveAnimatedWEBP")
            .display_name("SaveAnimatedWEBP")
            .category("image/animation")
            .input(InputSpec::socket("images", "IMAGE"))
            .input(InputSpec::string("filename_prefix", "ComfyUI"))
            .input(InputSpec::float("fps", 6.0).min(0.01).max(1000.0).step(0.01))
            .input(InputSpec::boolean("lossless", true))
            .input(InputSpec::int("quality", 80).min(0).max(100))
            .input(InputSpec::combo("method", ["default", "fastest", "slowest"]))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let images = inputs.object::<Image>("images")?;
        let prefix = inputs.string("filename_prefix")?;
        check_prefix(prefix)?;
        let fps = inputs.float("fps")?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(NodeError::input("fps", format!("{fps} must be positive")));
        }
        // Pillow's `method`: 0 fastest .. 6 slowest; ComfyUI maps `default` to 4.
        let method = match inputs.string("method")? {
            "default" => 4,
            "fastest" => 0,
            "slowest" => 6,
            other => {
                return Err(NodeError::input("method", format!("'{other}' is not one of default, fastest, slowest")));
            }
        };
        let settings =
            WebpSettings { fps, lossless: inputs.boolean("lossless")?, quality: inputs.int("quality")? as f32, method };
        let (batch, height, width, _) = images.dims()?;
        let frames = (0..batch).map(|index| {
            context.check_interrupted().map_err(|_| crate::media::MediaError::Format("interrupted".into()))?;
            images.frame_rgb8(index).map_err(|error| crate::media::MediaError::Format(error.to_string()))
        });
        let bytes = encode_animation(frames, width, height, settings).map_err(|error| {
            if context.is_interrupted() { NodeError::Interrupted } else { media_error("encoding the WebP", &error) }
        })?;
        let bytes = match workflow_exif(&output_metadata(context)) {
            Some(exif) => add_exif(&bytes, &exif, width, height)
                .map_err(|error| media_error("adding EXIF to the WebP", &error))?,
            None => bytes,
        };
        let mut file = context.create_numbered_output(prefix, "webp")?;
        file.write_all(&bytes)?;
        let written = file.commit()?;
        Ok(NodeOutput::new(Vec::new())
            .with_ui(json!({"images": [context.output_file_entry(&written)], "animated": [batch != 1]})))
    }
}
