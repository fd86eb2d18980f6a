//! `ComfySwitchNode`: routes one of two inputs to its output by a boolean; only the chosen branch runs.

use kinograph_engine::prelude::*;

/// Passes `on_true` when `switch` is set, else `on_false`. Both are lazy inputs, as in ComfyUI: only the
/// branch the switch selects is evaluated, so nodes that feed only the other one never run.
///
/// When the selected input is not connected, the other one is evaluated and passed on whatever the
/// switch says (ComfyUI passes `None` on instead, which kinograph has no value for).
pub struct ComfySwitchNode;

impl Node for ComfySwitchNode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ComfySwitchNode")
            .display_name("Switch")
            .category("logic")
            .description("Routes one of two inputs to the output based on a boolean switch value.")
            .input(InputSpec::boolean("switch", false))
            .input(InputSpec::socket("on_false", "*").optional().lazy())
            .input(InputSpec::socket("on_true", "*").optional().lazy())
            .output("*", "output")
    }

    fn check_lazy_status(&self, inputs: &NodeInputs, unevaluated: &[&str]) -> Result<Vec<String>, NodeError> {
        let (selected, other) =
            if inputs.boolean("switch")? { ("on_true", "on_false") } else { ("on_false", "on_true") };
        let connected = |name: &str| inputs.get(name).is_some() || unevaluated.contains(&name);
        let wanted = if connected(selected) { selected } else { other };
        Ok(if unevaluated.contains(&wanted) { vec![wanted.to_string()] } else { Vec::new() })
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let switch = inputs.boolean("switch")?;
        let chosen = match (inputs.get("on_false"), inputs.get("on_true")) {
            (Some(value), None) | (None, Some(value)) => value.clone(),
            (Some(on_false), Some(on_true)) => {
                if switch {
                    on_true.clone()
                } else {
                    on_false.clone()
                }
            }
            (None, None) => return Err(NodeError::input("on_true", "connect on_true or on_false (or both)")),
        };
        Ok(NodeOutput::new(vec![chosen]))
    }
}
