//! ComfyUI's backend primitive nodes (`comfy_extras/nodes_primitive.py`): a widget whose value is
//! passed on, so one value can feed several inputs.

use kinograph_engine::prelude::*;

/// ComfyUI's bounds for primitive numbers: ±`sys.maxsize`.
const MAX_SIZE: i64 = i64::MAX;

fn pass_through(inputs: &NodeInputs) -> Result<NodeOutput, NodeError> {
    let value = inputs.get("value").cloned().ok_or_else(|| NodeError::input("value", "is missing"))?;
    Ok(NodeOutput::new(vec![value]))
}

/// `PrimitiveInt`: an integer.
pub struct PrimitiveInt;

impl Node for PrimitiveInt {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PrimitiveInt")
            .display_name("Int")
            .category("utils/primitive")
            .input(InputSpec::int("value", 0).min(-MAX_SIZE).max(MAX_SIZE).control_after_generate())
            .output("INT", "INT")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        pass_through(inputs)
    }
}

/// `PrimitiveFloat`: a number.
pub struct PrimitiveFloat;

impl Node for PrimitiveFloat {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PrimitiveFloat")
            .display_name("Float")
            .category("utils/primitive")
            .input(InputSpec::float("value", 0.0).min(-MAX_SIZE).max(MAX_SIZE))
            .output("FLOAT", "FLOAT")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        pass_through(inputs)
    }
}

/// `PrimitiveString`: a single-line string.
pub struct PrimitiveString;

impl Node for PrimitiveString {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PrimitiveString")
            .display_name("String")
            .category("utils/primitive")
            .input(InputSpec::string("value", ""))
            .output("STRING", "STRING")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        pass_through(inputs)
    }
}

/// `PrimitiveStringMultiline`: a multiline string.
pub struct PrimitiveStringMultiline;

impl Node for PrimitiveStringMultiline {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PrimitiveStringMultiline")
            .display_name("String (Multiline)")
            .category("utils/primitive")
            .input(InputSpec::multiline("value", ""))
            .output("STRING", "STRING")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        pass_through(inputs)
    }
}

/// `PrimitiveBoolean`: true or false.
pub struct PrimitiveBoolean;

impl Node for PrimitiveBoolean {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PrimitiveBoolean")
            .display_name("Boolean")
            .category("utils/primitive")
            .input(InputSpec::boolean("value", false))
            .output("BOOLEAN", "BOOLEAN")
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        pass_through(inputs)
    }
}
