//! Batch nodes: `ImageFromBatch` (a run of frames) and `RepeatImageBatch` (the batch repeated).

use super::empty_image::positive;
use crate::values::{Image, tensor_error};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// ComfyUI's `MAX_RESOLUTION`, the bound of `batch_index`.
const MAX_INDEX: i64 = 16384;

/// `ImageFromBatch`: `length` frames from `batch_index` (negative counts from the end); both are clamped to
/// the batch, as in ComfyUI.
pub struct ImageFromBatch;

impl Node for ImageFromBatch {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ImageFromBatch")
            .display_name("Get Image from Batch")
            .category("image/batch")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::int("batch_index", 0).min(-MAX_INDEX).max(MAX_INDEX))
            .input(InputSpec::int("length", 1).min(1).max(4096))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let length = positive(inputs, "length", 4096)?;
        let mut index = inputs.int("batch_index")?;
        let (batch, ..) = image.dims().map_err(|error| NodeError::input("image", error))?;
        if batch == 0 {
            return Err(NodeError::input("image", "the batch is empty"));
        }
        if index < 0 {
            index += batch as i64;
        }
        let start = index.clamp(0, batch as i64 - 1) as usize;
        let length = length.min(batch - start);
        let frames = image.pixels.narrow(0, start, length).map_err(|error| tensor_error("selecting frames", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Image::new(frames)))]))
    }
}

/// `RepeatImageBatch`: the whole batch `amount` times.
pub struct RepeatImageBatch;

impl Node for RepeatImageBatch {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("RepeatImageBatch")
            .display_name("Repeat Image Batch")
            .category("image/batch")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::int("amount", 1).min(1).max(4096))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let amount = positive(inputs, "amount", 4096)?;
        image.dims().map_err(|error| NodeError::input("image", error))?;
        let repeated =
            image.pixels.repeat((amount, 1, 1, 1)).map_err(|error| tensor_error("repeating the batch", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Image::new(repeated)))]))
    }
}
