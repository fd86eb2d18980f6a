//! `SaveVideo`: a VIDEO as an H.264 MP4 in the output folder, encoded frame by frame.

use crate::media::mp4_writer::Mp4Writer;
use crate::nodes::image::{check_prefix, media_error, output_metadata};
use crate::values::Video;
use kinograph_engine::prelude::*;
use serde_json::json;

/// Saves `<prefix>_00001_.mp4` (H.264, yuv420p) with the prompt and workflow as container metadata.
/// Odd widths and heights lose their last column or row (yuv420p needs even sizes).
pub struct SaveVideo;

impl Node for SaveVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveVideo")
            .display_name("Save Video")
            .category("image/video")
            .description("Saves the input images to your ComfyUI output directory.")
            .input(InputSpec::socket("video", "VIDEO").tooltip("The video to save."))
            .input(
                InputSpec::string("filename_prefix", "video/ComfyUI")
                    .tooltip("The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."),
            )
            .input(InputSpec::combo("format", ["auto", "mp4"]).tooltip("The format to save the video as."))
            .input(InputSpec::combo("codec", ["auto", "h264"]).tooltip("The codec to use for the video."))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let video = inputs.object::<Video>("video")?;
        let prefix = inputs.string("filename_prefix")?;
        check_prefix(prefix)?;
        let format = inputs.string("format")?;
        if !matches!(format, "auto" | "mp4") {
            return Err(NodeError::input("format", format!("'{format}' is not supported; use auto or mp4")));
        }
        let codec = inputs.string("codec")?;
        if !matches!(codec, "auto" | "h264") {
            return Err(NodeError::input("codec", format!("'{codec}' is not supported; use auto or h264")));
        }
        let (frames, height, width, _) = video.frames.dims()?;
        if frames == 0 {
            return Err(NodeError::input("video", "the video has no frames"));
        }
        if width < 2 || height < 2 {
            return Err(NodeError::input(
                "video",
                format!("{width}x{height} frames are too small for H.264 (2x2 at least)"),
            ));
        }
        if video.audio.is_some() {
            context.warn("SaveVideo: this build writes the video track only; the sound track is left out");
        }
        let file = context.create_numbered_output(prefix, "mp4")?;
        let metadata = output_metadata(context);
        let mut writer = Mp4Writer::new(file, width, height, video.fps, &metadata)
            .map_err(|error| media_error("starting the MP4", &error))?;
        for index in 0..frames {
            context.progress(index as u64, frames as u64)?;
            let rgb = video.frames.frame_rgb8(index)?;
            writer.write_frame(&rgb).map_err(|error| media_error(&format!("encoding frame {index}"), &error))?;
        }
        let file = writer.finish().map_err(|error| media_error("finishing the MP4", &error))?;
        let written = file.commit()?;
        Ok(NodeOutput::new(Vec::new())
            .with_ui(json!({"images": [context.output_file_entry(&written)], "animated": [true]})))
    }
}
