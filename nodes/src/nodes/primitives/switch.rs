//! `ComfySwitchNode`: routes one of two inputs to its output by a boolean.

use kinograph_engine::prelude::*;

/// Passes `on_true` when `switch` is set, else `on_false`. An input left unconnected makes the other one
/// the output whatever the switch says, as in ComfyUI.
pub struct ComfySwitchNode;

impl Node for ComfySwitchNode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ComfySwitchNode")
            .display_name("Switch")
            .category("logic")
            .description("Routes one of two inputs to the output based on a boolean switch value.")
            .input(InputSpec::boolean("switch", false))
            .input(InputSpec::socket("on_false", "*").optional())
            .input(InputSpec::socket("on_true", "*").optional())
            .output("*", "output")
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
