//! `ResolutionSelector`: width and height from an aspect ratio and a megapixel target, rounded to a multiple
//! and raised to a minimum side, as ComfyUI computes them.

use kinograph_engine::prelude::*;

/// The aspect ratios, in ComfyUI's order, with their width and height parts.
pub const ASPECT_RATIOS: [(&str, i64, i64); 8] = [
    ("1:1 (Square)", 1, 1),
    ("3:2 (Photo)", 3, 2),
    ("4:3 (Standard)", 4, 3),
    ("16:9 (Widescreen)", 16, 9),
    ("21:9 (Ultrawide)", 21, 9),
    ("2:3 (Portrait Photo)", 2, 3),
    ("3:4 (Portrait Standard)", 3, 4),
    ("9:16 (Portrait Widescreen)", 9, 16),
];

/// Computes a resolution.
pub struct ResolutionSelector;

impl Node for ResolutionSelector {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ResolutionSelector")
            .display_name("Resolution Selector")
            .category("utilities")
            .description(
                "Calculate width and height from aspect ratio and megapixel target. Useful for setting up Empty \
                 Latent Image dimensions.",
            )
            .input(
                InputSpec::combo("aspect_ratio", ASPECT_RATIOS.map(|(name, ..)| name))
                    .tooltip("The aspect ratio for the output dimensions."),
            )
            .input(
                InputSpec::float("megapixels", 1.0)
                    .min(0.1)
                    .max(16.0)
                    .step(0.1)
                    .tooltip("Target total megapixels. 1.0 MP is about 1024x1024 for square."),
            )
            .input(
                InputSpec::int("multiple", 8)
                    .min(8)
                    .max(128)
                    .step(4)
                    .tooltip("Nearest multiple of the result to set the selected resolution to."),
            )
            .input(
                InputSpec::int("minimum", 256)
                    .min(32)
                    .max(4096)
                    .step(32)
                    .tooltip("Set minimum resolution for any side to be used"),
            )
            .output("INT", "width")
            .output("INT", "height")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("aspect_ratio")?;
        let &(_, width_part, height_part) = ASPECT_RATIOS
            .iter()
            .find(|(known, ..)| *known == name)
            .ok_or_else(|| NodeError::input("aspect_ratio", format!("unknown aspect ratio '{name}'")))?;
        let megapixels = inputs.float("megapixels")?;
        if !(megapixels.is_finite() && megapixels > 0.0) {
            return Err(NodeError::input("megapixels", format!("{megapixels} is not a positive number")));
        }
        let multiple = inputs.int("multiple")?;
        if multiple < 1 {
            return Err(NodeError::input("multiple", format!("{multiple} must be at least 1")));
        }
        let minimum = inputs.int("minimum")?;
        let (width, height) = resolution((width_part, height_part), megapixels, multiple, minimum);
        Ok(NodeOutput::new(vec![Value::Int(width.into()), Value::Int(height.into())]))
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// ComfyUI's computation: sides rounded (halves to even) to `multiple`; if one is below `minimum`, the
/// smallest multiple of the ratio whose sides are multiples of `multiple` and at least `minimum`.
pub fn resolution((width_part, height_part): (i64, i64), megapixels: f64, multiple: i64, minimum: i64) -> (i64, i64) {
    let scale = (megapixels * 1024.0 * 1024.0 / (width_part * height_part) as f64).sqrt();
    let snap = |part: i64| (part as f64 * scale / multiple as f64).round_ties_even() as i64 * multiple;
    let (width, height) = (snap(width_part), snap(height_part));
    if width >= minimum && height >= minimum {
        return (width, height);
    }
    let step_width = multiple / gcd(width_part, multiple);
    let step_height = multiple / gcd(height_part, multiple);
    let k_step = step_width * step_height / gcd(step_width, step_height);
    let min_k = (minimum as f64 / width_part as f64).max(minimum as f64 / height_part as f64).ceil() as i64;
    let k = (min_k + k_step - 1) / k_step * k_step;
    (width_part * k, height_part * k)
}
