//! `ModelSamplingLTXV`: the model with its flow shift set for a latent's size, as ComfyUI's node of that
//! name does (Comfy-Org/ComfyUI a125cd84, `comfy_extras/nodes_lt.py`): the schedulers that read the
//! model's sigma table (`BasicScheduler`, `KSampler`) and the samplers that read its shift then use it.

use crate::values::{DiffusionModel, Latent};
use kinograph_engine::prelude::*;
use kinograph_models::sampling::schedules::{LTXV_DEFAULT_TOKENS, ltxv_shift};
use std::sync::Arc;

/// `ModelSamplingLTXV`: `shift = tokens · m + b`, the line through (1024, `base_shift`) and
/// (4096, `max_shift`), `tokens` the latent's `T·H·W` (4096 without a latent).
pub struct ModelSamplingLtxv;

impl Node for ModelSamplingLtxv {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ModelSamplingLTXV")
            .category("advanced/model")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::float("max_shift", 2.05).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::float("base_shift", 0.95).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::socket("latent", "LATENT").optional())
            .output("MODEL", "MODEL")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        let tokens = inputs
            .optional_object::<Latent>("latent")?
            .map_or(LTXV_DEFAULT_TOKENS, |latent| latent.samples.dims()[2..].iter().product());
        let shift = ltxv_shift(tokens, inputs.float("max_shift")?, inputs.float("base_shift")?);
        let shifted = DiffusionModel { shift, ..(*model).clone() };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(shifted))]))
    }
}
