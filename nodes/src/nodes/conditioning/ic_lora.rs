//! `GetICLoRAParameters`: the guide settings an IC-LoRA's file carries in its metadata, for `LTXVAddGuide`.

use crate::values::{DiffusionModel, IcLoraParameters};
use kinograph_engine::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The metadata key (or key suffix: trainers prefix it) that holds the factor.
const FACTOR_KEY: &str = "reference_downscale_factor";

/// The `reference_downscale_factor` of a LoRA's metadata as ComfyUI reads it: the value of the first key
/// ending in `reference_downscale_factor`, as a number rounded half to even, at least 1; 1 when there is
/// no such key or its value is not a number. An infinite value is an error (ComfyUI fails on it too).
///
/// ComfyUI takes the first such key in the order its metadata dictionary has, which the safetensors
/// library does not fix; kinograph prefers the exact key, then the first in sorted order.
pub fn reference_downscale_factor(metadata: Option<&BTreeMap<String, String>>) -> Result<i64, String> {
    let Some(metadata) = metadata else { return Ok(1) };
    let value = metadata
        .get(FACTOR_KEY)
        .or_else(|| metadata.iter().find(|(key, _)| key.ends_with(FACTOR_KEY)).map(|(_, value)| value));
    let Some(text) = value else { return Ok(1) };
    let Some(number) = python_float(text) else { return Ok(1) };
    if number.is_nan() {
        return Ok(1);
    }
    if number.is_infinite() {
        return Err(format!("the LoRA's {FACTOR_KEY} is '{text}'; expected a finite whole number ≥ 1"));
    }
    // Python's round() on a float rounds half to even; the cast saturates past i64.
    Ok((number.round_ties_even() as i64).max(1))
}

/// Python's `float(text)` for the forms a metadata value takes: surrounding whitespace, a sign, digits
/// with `_` between them, a fraction, an exponent, `inf`/`infinity`/`nan`.
fn python_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let bytes = trimmed.as_bytes();
    let separators_ok = bytes.iter().enumerate().all(|(index, &byte)| {
        byte != b'_'
            || (index > 0 && bytes[index - 1].is_ascii_digit() && bytes.get(index + 1).is_some_and(u8::is_ascii_digit))
    });
    if !separators_ok {
        return None;
    }
    trimmed.replace('_', "").parse::<f64>().ok()
}

/// `GetICLoRAParameters`.
pub struct GetIcLoraParameters;

impl Node for GetIcLoraParameters {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("GetICLoRAParameters")
            .display_name("Get IC-LoRA Parameters")
            .category("model/conditioning/ltxv")
            .description("Reads the guide settings of an IC-LoRA (its reference_downscale_factor) from the metadata of the LoRA file applied to the model, for LTXVAddGuide.")
            .input(InputSpec::socket("iclora_model", "MODEL").tooltip("The MODEL output of the LoRA loader that applied the IC-LoRA."))
            .output("IC_LORA_PARAMETERS", "iclora_parameters")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("iclora_model")?;
        let factor = reference_downscale_factor(model.lora_metadata()).map_err(|message| {
            let file = model
                .loras
                .iter()
                .rev()
                .find(|lora| !lora.metadata().is_empty())
                .map(|lora| lora.path().display().to_string());
            NodeError::input("iclora_model", format!("{} ({})", message, file.unwrap_or_default()))
        })?;
        let parameters = IcLoraParameters { reference_downscale_factor: factor };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(parameters))]))
    }
}

#[cfg(test)]
mod tests {
    use super::reference_downscale_factor;
    use std::collections::BTreeMap;

    fn factor(entries: &[(&str, &str)]) -> Result<i64, String> {
        let metadata: BTreeMap<String, String> =
            entries.iter().map(|(key, value)| ((*key).to_string(), (*value).to_string())).collect();
        reference_downscale_factor(Some(&metadata))
    }

    /// ComfyUI's `max(1, round(float(value)))`, with Python's rounding and parsing.
    #[test]
    fn the_factor_is_read_as_comfyui_reads_it() {
        assert_eq!(reference_downscale_factor(None), Ok(1), "no LoRA metadata");
        assert_eq!(factor(&[("ss_network_dim", "32")]), Ok(1), "no factor key");
        assert_eq!(factor(&[("reference_downscale_factor", "2")]), Ok(2));
        assert_eq!(factor(&[("training.reference_downscale_factor", " 4.0 ")]), Ok(4), "a suffix, whitespace");
        assert_eq!(factor(&[("reference_downscale_factor", "2.5")]), Ok(2), "half to even");
        assert_eq!(factor(&[("reference_downscale_factor", "3.5")]), Ok(4), "half to even");
        assert_eq!(factor(&[("reference_downscale_factor", "1e1")]), Ok(10));
        assert_eq!(factor(&[("reference_downscale_factor", "1_6")]), Ok(16), "Python allows _ between digits");
        assert_eq!(factor(&[("reference_downscale_factor", "0")]), Ok(1), "at least 1");
        assert_eq!(factor(&[("reference_downscale_factor", "-3")]), Ok(1));
        assert_eq!(factor(&[("reference_downscale_factor", "two")]), Ok(1), "not a number");
        assert_eq!(factor(&[("reference_downscale_factor", "_2")]), Ok(1), "not a Python float");
        assert_eq!(factor(&[("reference_downscale_factor", "nan")]), Ok(1));
        let error = factor(&[("reference_downscale_factor", "inf")]).unwrap_err();
        assert!(error.contains("reference_downscale_factor") && error.contains("finite"), "{error}");
        // The exact key wins over a prefixed one.
        assert_eq!(factor(&[("a.reference_downscale_factor", "3"), ("reference_downscale_factor", "2")]), Ok(2));
    }
}
