//! `ImageInvert` (`1 - x`) and `GetImageSize` (width, height and batch size, also shown on the node).

use crate::values::{Image, tensor_error};
use kinograph_engine::prelude::*;
use serde_json::json;
use std::sync::Arc;

/// `ImageInvert`: every value `v` becomes `1 - v`.
pub struct ImageInvert;

impl Node for ImageInvert {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ImageInvert")
            .display_name("Invert Image")
            .category("image")
            .input(InputSpec::socket("image", "IMAGE"))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let inverted = image.pixels.affine(-1.0, 1.0).map_err(|error| tensor_error("inverting the image", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Image::new(inverted)))]))
    }
}

/// `GetImageSize`: the image's width, height and batch size. ComfyUI also shows them on the node (a
/// `progress_text` message); here they are the node's UI `text`.
pub struct GetImageSize;

impl Node for GetImageSize {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("GetImageSize")
            .display_name("Get Image Size")
            .category("image")
            .description("Returns the width, height, and batch size of the image.")
            .input(InputSpec::socket("image", "IMAGE"))
            .output("INT", "width")
            .output("INT", "height")
            .output("INT", "batch_size")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let (batch, height, width, _) = image.dims().map_err(|error| NodeError::input("image", error))?;
        let text = format!("width: {width}, height: {height}\n batch size: {batch}");
        let values = [width, height, batch].map(|value| Value::Int(value as i128));
        Ok(NodeOutput::new(values.to_vec()).with_ui(json!({ "text": [text] })))
    }
}
