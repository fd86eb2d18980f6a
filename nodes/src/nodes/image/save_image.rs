//! `SaveImage` and `PreviewImage`: each image of the batch as a numbered PNG carrying the workflow.

use super::{check_prefix, media_error, output_metadata, temp_dir};
use crate::media::png::write_png;
use crate::values::Image;
use kinograph_engine::prelude::*;
use serde_json::{Value as Json, json};
use std::path::Path;

/// Saves every image of the batch as `<prefix>_00001_.png` in the output folder.
pub struct SaveImage;

impl Node for SaveImage {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveImage")
            .display_name("Save Image")
            .category("image")
            .description("Saves the input images to your ComfyUI output directory.")
            .input(InputSpec::socket("images", "IMAGE").tooltip("The images to save."))
            .input(InputSpec::string("filename_prefix", "ComfyUI").tooltip(
                "The prefix for the file to save. This may include formatting information such as \
                 %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
            ))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let images = inputs.object::<Image>("images")?;
        let prefix = inputs.string("filename_prefix")?;
        check_prefix(prefix)?;
        let output_dir = context.env().output_dir.clone();
        let entries = save_pngs(&images, &output_dir, prefix, context, "output")?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"images": entries})))
    }
}

/// Saves the images as numbered PNGs in the temporary folder, for viewing only.
pub struct PreviewImage;

impl Node for PreviewImage {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PreviewImage")
            .display_name("Preview Image")
            .category("image")
            .description("Saves the input images to your ComfyUI output directory.")
            .input(InputSpec::socket("images", "IMAGE"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let images = inputs.object::<Image>("images")?;
        let folder = temp_dir(context.env());
        let entries = save_pngs(&images, &folder, "ComfyUI_temp", context, "temp")?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"images": entries})))
    }
}

/// Writes each image as `<folder>/<prefix>_NNNNN_.png`; returns the UI entries.
fn save_pngs(
    images: &Image,
    folder: &Path,
    prefix: &str,
    context: &ExecutionContext,
    kind: &str,
) -> Result<Vec<Json>, NodeError> {
    let (batch, height, width, _) = images.dims()?;
    let metadata = output_metadata(context);
    let mut entries = Vec::with_capacity(batch);
    for index in 0..batch {
        context.check_interrupted()?;
        let rgb = images.frame_rgb8(index)?;
        let mut file = OutputFile::numbered(folder, prefix, "png")?;
        write_png(&mut file, &rgb, width, height, &metadata).map_err(|error| media_error("writing a PNG", &error))?;
        let written = file.commit()?;
        let relative = written.strip_prefix(folder).unwrap_or(&written);
        let filename = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let subfolder = relative.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        entries.push(json!({"filename": filename, "subfolder": subfolder, "type": kind}));
    }
    Ok(entries)
}
