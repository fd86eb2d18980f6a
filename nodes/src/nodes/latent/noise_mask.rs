//! `SetLatentNoiseMask`: attaches a MASK to a latent as its noise mask (where 1 is denoised, 0 kept).

use crate::values::{Latent, Mask, tensor_error};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// The latent with `mask` reshaped to `[B, 1, H, W]` as its noise mask, as ComfyUI stores it; the sampler
/// resizes it to the latent.
pub struct SetLatentNoiseMask;

impl Node for SetLatentNoiseMask {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SetLatentNoiseMask")
            .display_name("Set Latent Noise Mask")
            .category("latent/inpaint")
            .input(InputSpec::socket("samples", "LATENT"))
            .input(InputSpec::socket("mask", "MASK"))
            .output("LATENT", "LATENT")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let mask = inputs.object::<Mask>("mask")?;
        let dims = mask.values.dims();
        if dims.len() < 2 || dims.contains(&0) {
            return Err(NodeError::input("mask", format!("expected a non-empty [B, H, W] mask, got {dims:?}")));
        }
        let (height, width) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let count = mask.values.elem_count() / (height * width);
        let noise_mask = mask
            .values
            .reshape((count, 1, height, width))
            .map_err(|error| tensor_error("reshaping the mask", &error))?;
        let mut masked = (*latent).clone();
        masked.noise_mask = Some(noise_mask);
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(masked))]))
    }
}
