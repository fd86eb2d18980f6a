//! Mask nodes: `ImageToMask` (one channel of an image) and `SolidMask` (a constant mask), with ComfyUI's
//! class names and inputs.

use crate::values::{Image, Mask, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// ComfyUI's `MAX_RESOLUTION`.
const MAX_RESOLUTION: i64 = 16384;
/// The channels `ImageToMask` can pick, in ComfyUI's order.
const CHANNELS: [&str; 4] = ["red", "green", "blue", "alpha"];

/// The mask nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(ImageToMask), Arc::new(SolidMask)]
}

/// `ImageToMask`: one channel of an image as a mask.
pub struct ImageToMask;

impl Node for ImageToMask {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ImageToMask")
            .display_name("Convert Image to Mask")
            .category("mask")
            .description("Extracts a single color channel (red, green, blue, or alpha) from an image to create a mask.")
            .input(InputSpec::socket("image", "IMAGE").tooltip("The source image from which to extract a channel."))
            .input(
                InputSpec::combo("channel", CHANNELS)
                    .tooltip("The specific color or alpha channel to extract as a mask."),
            )
            .output("MASK", "MASK")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("image")?;
        let name = inputs.string("channel")?;
        let channel = CHANNELS.iter().position(|known| *known == name).ok_or_else(|| {
            NodeError::input("channel", format!("unknown channel '{name}'; expected one of {}", CHANNELS.join(", ")))
        })?;
        let (_, _, _, channels) = image.dims().map_err(|error| NodeError::input("image", error))?;
        if channel >= channels {
            return Err(NodeError::input(
                "channel",
                format!(
                    "the image has {channels} channel{}, so it has no {name} channel",
                    if channels == 1 { "" } else { "s" }
                ),
            ));
        }
        let values = image
            .pixels
            .narrow(3, channel, 1)
            .and_then(|plane| plane.squeeze(3))
            .and_then(|plane| plane.contiguous())
            .map_err(|error| tensor_error("extracting the channel", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Mask { values }))]))
    }
}

/// `SolidMask`: a `1 × height × width` mask of one value.
pub struct SolidMask;

impl Node for SolidMask {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SolidMask")
            .display_name("Solid Mask")
            .category("mask")
            .description("Creates a uniform, single-value mask of specified width and height.")
            .input(InputSpec::float("value", 1.0).min(0.0).max(1.0).step(0.01).tooltip("The uniform fill value."))
            .input(InputSpec::int("width", 512).min(1).max(MAX_RESOLUTION).step(1).tooltip("The width in pixels."))
            .input(InputSpec::int("height", 512).min(1).max(MAX_RESOLUTION).step(1).tooltip("The height in pixels."))
            .output("MASK", "MASK")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let value = inputs.float("value")?;
        let side = |name: &str| -> Result<usize, NodeError> {
            let side = inputs.int(name)?;
            if !(1..=MAX_RESOLUTION).contains(&side) {
                return Err(NodeError::input(name, format!("{side} is outside 1..{MAX_RESOLUTION}")));
            }
            Ok(side as usize)
        };
        let (width, height) = (side("width")?, side("height")?);
        let values = Tensor::full(value as f32, (1, height, width), &Device::Cpu)
            .map_err(|error| tensor_error("building the mask", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Mask { values }))]))
    }
}
