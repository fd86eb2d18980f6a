//! String nodes (ComfyUI's `comfy_extras/nodes_string.py`).

use kinograph_engine::prelude::*;

/// `StringConcatenate`: `string_a + delimiter + string_b`.
pub struct StringConcatenate;

impl Node for StringConcatenate {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("StringConcatenate")
            .display_name("Concatenate")
            .category("utils/string")
            .input(InputSpec::multiline("string_a", ""))
            .input(InputSpec::multiline("string_b", ""))
            .input(InputSpec::string("delimiter", ""))
            .output("STRING", "STRING")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let joined = [inputs.string("string_a")?, inputs.string("string_b")?].join(inputs.string("delimiter")?);
        Ok(NodeOutput::new(vec![joined.into()]))
    }
}
