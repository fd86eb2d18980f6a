//! SAMPLER and sampling nodes: `KSamplerSelect`, `SamplerEulerAncestral`, `SamplerCustom`,
//! `SamplerCustomAdvanced`, `KSampler`.

use super::noise_guiders::{cfg_input, seed_input};
use super::run_sampling::run_sampling;
use crate::values::DiffusionModel;
use crate::values::Guider;
use crate::values::{Conditioning, Latent, Noise, SamplerChoice, Sigmas};
use kinograph_engine::prelude::*;
use kinograph_models::sampling::model_schedules::{FlowSampling, SCHEDULER_NAMES};
use kinograph_models::sampling::samplers::{EulerAncestral, Sampler, SamplerRegistry};
use std::sync::Arc;

fn find_sampler(samplers: &SamplerRegistry, name: &str) -> Result<Arc<dyn Sampler>, NodeError> {
    samplers.get(name).ok_or_else(|| {
        NodeError::input("sampler_name", format!("unknown sampler '{name}'; known: {}", samplers.names().join(", ")))
    })
}

/// CFG guidance from the node's `positive`, `negative` and `cfg` inputs.
fn cfg_guider(inputs: &NodeInputs, model: Arc<DiffusionModel>) -> Result<Guider, NodeError> {
    Ok(Guider {
        model,
        positive: inputs.object::<Conditioning>("positive")?,
        negative: Some(inputs.object::<Conditioning>("negative")?),
        cfg: inputs.float("cfg")?,
        audio_cfg: None,
    })
}

fn latent_output(latent: Latent) -> Value {
    Value::from(Arc::new(latent))
}

/// `KSamplerSelect`: lists every registered sampler, custom ones included.
pub struct KSamplerSelect {
    pub samplers: Arc<SamplerRegistry>,
}

impl Node for KSamplerSelect {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("KSamplerSelect")
            .category("sampling/custom_sampling/samplers")
            .input(InputSpec::combo("sampler_name", self.samplers.names()))
            .output("SAMPLER", "SAMPLER")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let sampler = find_sampler(&self.samplers, inputs.string("sampler_name")?)?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(SamplerChoice { sampler }))]))
    }
}

/// `SamplerEulerAncestral`: `euler_ancestral` (its rectified-flow form for LTX models) with the node's
/// `eta` (how much of each step is re-noised; 0 is plain Euler) and `s_noise` (scale of that noise).
pub struct SamplerEulerAncestral;

impl Node for SamplerEulerAncestral {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SamplerEulerAncestral")
            .category("sampling/custom_sampling/samplers")
            .input(InputSpec::float("eta", 1.0).min(0.0).max(100.0).step(0.01).no_round())
            .input(InputSpec::float("s_noise", 1.0).min(0.0).max(100.0).step(0.01).no_round())
            .output("SAMPLER", "SAMPLER")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let option = |name: &str| -> Result<f64, NodeError> {
            let value = inputs.float(name)?;
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(NodeError::input(name, format!("{value} is out of range; expected a finite number from 0 to 100")))
            }
        };
        let sampler = EulerAncestral { eta: option("eta")?, s_noise: option("s_noise")? };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(SamplerChoice { sampler: Arc::new(sampler) }))]))
    }
}

/// `SamplerCustom`: CFG guidance, a seed, and a chosen sampler and sigmas.
pub struct SamplerCustom;

impl Node for SamplerCustom {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SamplerCustom")
            .category("sampling/custom_sampling")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::boolean("add_noise", true))
            .input(seed_input("noise_seed"))
            .input(cfg_input(8.0))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("sampler", "SAMPLER"))
            .input(InputSpec::socket("sigmas", "SIGMAS"))
            .input(InputSpec::socket("latent_image", "LATENT"))
            .output("LATENT", "output")
            .output("LATENT", "denoised_output")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let guider = cfg_guider(inputs, inputs.object::<DiffusionModel>("model")?)?;
        let noise = if inputs.boolean("add_noise")? {
            Noise::Random { seed: inputs.int_wide("noise_seed")? }
        } else {
            Noise::Disabled
        };
        let sampler = inputs.object::<SamplerChoice>("sampler")?;
        let sigmas = inputs.object::<Sigmas>("sigmas")?;
        let latent = inputs.object::<Latent>("latent_image")?;
        let sampled = run_sampling(context, &guider, sampler.sampler.as_ref(), &sigmas.values, &latent, &noise)?;
        Ok(NodeOutput::new(vec![latent_output(sampled.output), latent_output(sampled.denoised)]))
    }
}

/// `SamplerCustomAdvanced`: noise, guider, sampler and sigmas each from their own node.
pub struct SamplerCustomAdvanced;

impl Node for SamplerCustomAdvanced {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SamplerCustomAdvanced")
            .category("sampling/custom_sampling")
            .input(InputSpec::socket("noise", "NOISE"))
            .input(InputSpec::socket("guider", "GUIDER"))
            .input(InputSpec::socket("sampler", "SAMPLER"))
            .input(InputSpec::socket("sigmas", "SIGMAS"))
            .input(InputSpec::socket("latent_image", "LATENT"))
            .output("LATENT", "output")
            .output("LATENT", "denoised_output")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let noise = inputs.object::<Noise>("noise")?;
        let guider = inputs.object::<Guider>("guider")?;
        let sampler = inputs.object::<SamplerChoice>("sampler")?;
        let sigmas = inputs.object::<Sigmas>("sigmas")?;
        let latent = inputs.object::<Latent>("latent_image")?;
        let sampled = run_sampling(context, &guider, sampler.sampler.as_ref(), &sigmas.values, &latent, &noise)?;
        Ok(NodeOutput::new(vec![latent_output(sampled.output), latent_output(sampled.denoised)]))
    }
}

/// `KSampler`: everything in one node, sigmas from a named scheduler over the model's sigma table.
pub struct KSampler {
    pub samplers: Arc<SamplerRegistry>,
}

impl Node for KSampler {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("KSampler")
            .category("sampling")
            .description("Uses the provided model, positive and negative conditioning to denoise the latent image.")
            .input(InputSpec::socket("model", "MODEL"))
            .input(seed_input("seed"))
            .input(InputSpec::int("steps", 20).min(1).max(10_000))
            .input(cfg_input(8.0))
            .input(InputSpec::combo("sampler_name", self.samplers.names()))
            .input(InputSpec::combo("scheduler", SCHEDULER_NAMES))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::socket("latent_image", "LATENT"))
            .input(InputSpec::float("denoise", 1.0).min(0.0).max(1.0).step(0.01))
            .output("LATENT", "LATENT")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        let steps = inputs.int("steps")?.max(1) as usize;
        let scheduler = inputs.string("scheduler")?;
        let denoise = inputs.float("denoise")?;
        let sampling = FlowSampling::new(model.shift);
        // ComfyUI's KSampler: a longer schedule's tail when denoise is below 0.9999; no steps at 0.
        let sigmas = if denoise <= 0.0 {
            Vec::new()
        } else {
            let total = if denoise > 0.9999 { steps } else { (steps as f64 / denoise) as usize };
            let all = sampling
                .sigmas(scheduler, total)
                .ok_or_else(|| NodeError::input("scheduler", format!("unknown scheduler '{scheduler}'")))?;
            all[all.len().saturating_sub(steps + 1)..].to_vec()
        };
        let guider = cfg_guider(inputs, model)?;
        let sampler = find_sampler(&self.samplers, inputs.string("sampler_name")?)?;
        let latent = inputs.object::<Latent>("latent_image")?;
        let noise = Noise::Random { seed: inputs.int_wide("seed")? };
        let sampled = run_sampling(context, &guider, sampler.as_ref(), &sigmas, &latent, &noise)?;
        Ok(NodeOutput::new(vec![latent_output(sampled.output)]))
    }
}
