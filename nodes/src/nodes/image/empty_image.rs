//! `EmptyImage`: a batch of frames of one colour.

use super::resample::Frames;
use super::resize::{MAX_RESOLUTION, image_output};
use kinograph_engine::prelude::*;

/// A `batch_size × height × width` RGB image filled with `color` (`0xRRGGBB`).
pub struct EmptyImage;

impl Node for EmptyImage {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("EmptyImage")
            .category("image")
            .input(InputSpec::int("width", 512).min(1).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::int("height", 512).min(1).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::int("batch_size", 1).min(1).max(4096))
            .input(InputSpec::int("color", 0).min(0).max(0xFF_FFFF).step(1))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let width = positive(inputs, "width", MAX_RESOLUTION)?;
        let height = positive(inputs, "height", MAX_RESOLUTION)?;
        let count = positive(inputs, "batch_size", 4096)?;
        let color = inputs.int("color")?;
        if !(0..=0xFF_FFFF).contains(&color) {
            return Err(NodeError::input("color", format!("{color} is not a 0xRRGGBB colour (0 to 16777215)")));
        }
        // ComfyUI divides in float64 and stores float32.
        let rgb = [16, 8, 0].map(|shift| (((color >> shift) & 0xFF) as f64 / 255.0) as f32);
        let data = rgb.iter().copied().cycle().take(count * height * width * 3).collect();
        image_output(Frames { data, count, height, width, channels: 3 })
    }
}

/// An INT input in `1..=max`.
pub(crate) fn positive(inputs: &NodeInputs, name: &str, max: i64) -> Result<usize, NodeError> {
    let value = inputs.int(name)?;
    if !(1..=max).contains(&value) {
        return Err(NodeError::input(name, format!("{value} is outside 1..{max}")));
    }
    Ok(value as usize)
}
