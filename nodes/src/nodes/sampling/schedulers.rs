//! SIGMAS nodes: `LTXVScheduler`, `BasicScheduler`, `ManualSigmas` and `SetFirstSigma`.

use crate::values::DiffusionModel;
use crate::values::{Latent, Sigmas};
use kinograph_engine::prelude::*;
use kinograph_models::sampling::model_schedules::{FlowSampling, SCHEDULER_NAMES, schedule_with_denoise};
use kinograph_models::sampling::schedules::LtxvSchedule;
use std::sync::Arc;

fn sigmas_output(values: Vec<f32>) -> NodeOutput {
    NodeOutput::new(vec![Value::from(Arc::new(Sigmas { values }))])
}

/// `LTXVScheduler`: sigmas shifted for the latent's token count, stretched to end at `terminal`.
pub struct LtxvScheduler;

impl Node for LtxvScheduler {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVScheduler")
            .category("sampling/custom_sampling/schedulers")
            .input(InputSpec::int("steps", 20).min(1).max(10_000))
            .input(InputSpec::float("max_shift", 2.05).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::float("base_shift", 0.95).min(0.0).max(100.0).step(0.01))
            .input(InputSpec::boolean("stretch", true).tooltip("Stretch the sigmas to be in the range [terminal, 1]."))
            .input(
                InputSpec::float("terminal", 0.1)
                    .min(0.0)
                    .max(0.99)
                    .step(0.01)
                    .tooltip("The terminal value of the sigmas after stretching."),
            )
            .input(InputSpec::socket("latent", "LATENT").optional())
            .output("SIGMAS", "SIGMAS")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let schedule = LtxvSchedule {
            steps: inputs.int("steps")?.max(1) as usize,
            max_shift: inputs.float("max_shift")?,
            base_shift: inputs.float("base_shift")?,
            stretch: inputs.boolean("stretch")?,
            terminal: inputs.float("terminal")?,
        };
        let tokens =
            inputs.optional_object::<Latent>("latent")?.map(|latent| latent.samples.dims()[2..].iter().product());
        Ok(sigmas_output(schedule.sigmas(tokens)))
    }
}

/// `BasicScheduler`: a named schedule over the model's sigma table.
pub struct BasicScheduler;

impl Node for BasicScheduler {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("BasicScheduler")
            .category("sampling/custom_sampling/schedulers")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::combo("scheduler", SCHEDULER_NAMES))
            .input(InputSpec::int("steps", 20).min(1).max(10_000))
            .input(InputSpec::float("denoise", 1.0).min(0.0).max(1.0).step(0.01))
            .output("SIGMAS", "SIGMAS")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        let scheduler = inputs.string("scheduler")?;
        let steps = inputs.int("steps")?.max(1) as usize;
        let sampling = FlowSampling::new(model.shift);
        let sigmas = schedule_with_denoise(&sampling, scheduler, steps, inputs.float("denoise")?)
            .ok_or_else(|| NodeError::input("scheduler", format!("unknown scheduler '{scheduler}'")))?;
        Ok(sigmas_output(sigmas))
    }
}

/// Numbers in free text, as ComfyUI's `ManualSigmas` finds them: optional sign, digits, optional
/// fraction (`re.findall(r"[-+]?(?:\d*\.*\d+)")`).
pub fn parse_sigmas(text: &str) -> Vec<f32> {
    let bytes = text.as_bytes();
    let mut values = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let start = index;
        let mut cursor = index;
        if matches!(bytes[cursor], b'+' | b'-') {
            cursor += 1;
        }
        let digits_start = cursor;
        while cursor < bytes.len() && (bytes[cursor].is_ascii_digit() || bytes[cursor] == b'.') {
            cursor += 1;
        }
        // The match must end in a digit; back off trailing dots.
        let mut end = cursor;
        while end > digits_start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        if end > digits_start {
            let token = &text[start..end];
            let cleaned: String = {
                // `\d*\.*\d+` allows several dots in a row ("1..5"); Python's float() rejects those, and
                // ComfyUI fails on them. Kinograph reads the first dot as the decimal point.
                let mut seen_dot = false;
                token
                    .chars()
                    .filter(|c| if *c == '.' { !std::mem::replace(&mut seen_dot, true) } else { true })
                    .collect()
            };
            if let Ok(value) = cleaned.parse::<f64>() {
                values.push(value as f32);
            }
            index = end.max(start + 1);
        } else {
            index += 1;
        }
    }
    values
}

/// `ManualSigmas`: sigmas typed as text.
pub struct ManualSigmas;

impl Node for ManualSigmas {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ManualSigmas")
            .category("_for_testing/custom_sampling")
            .input(InputSpec::string("sigmas", "1, 0.5"))
            .output("SIGMAS", "SIGMAS")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(sigmas_output(parse_sigmas(inputs.string("sigmas")?)))
    }
}

/// `SetFirstSigma`: the sigmas with the first one replaced by `sigma` (e.g. to start a schedule at a
/// lower noise level); the others are kept.
pub struct SetFirstSigma;

impl Node for SetFirstSigma {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SetFirstSigma")
            .category("sampling/custom_sampling/sigmas")
            .input(InputSpec::socket("sigmas", "SIGMAS"))
            .input(InputSpec::float("sigma", 136.0).min(0.0).max(20000.0).step(0.001).no_round())
            .output("SIGMAS", "SIGMAS")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let sigmas = inputs.object::<Sigmas>("sigmas")?;
        let sigma = inputs.float("sigma")?;
        if !sigma.is_finite() || sigma < 0.0 {
            return Err(NodeError::input(
                "sigma",
                format!("{sigma} is not a noise level; expected a finite sigma ≥ 0"),
            ));
        }
        let mut values = sigmas.values.clone();
        let Some(first) = values.first_mut() else {
            return Err(NodeError::input(
                "sigmas",
                "the SIGMAS are empty; expected at least one sigma whose first value to replace",
            ));
        };
        // ComfyUI writes the value into its float32 sigma tensor.
        *first = sigma as f32;
        Ok(sigmas_output(values))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sigmas;

    #[test]
    fn manual_sigmas_read_numbers_like_comfyui() {
        assert_eq!(parse_sigmas("0.909375, 0.725, 0.421875, 0.0"), vec![0.909_375, 0.725, 0.421_875, 0.0]);
        assert_eq!(parse_sigmas("1 .5 -0.25,+2"), vec![1.0, 0.5, -0.25, 2.0]);
        assert_eq!(parse_sigmas("sigmas: [1.0; 0.3]"), vec![1.0, 0.3]);
        assert!(parse_sigmas("none").is_empty());
    }
}
