//! `PreviewAny` (ComfyUI's `comfy_extras/nodes_preview_any.py`): shows any value as text.

use kinograph_engine::prelude::*;
use serde_json::json;

/// Shows its input as text in the UI result.
pub struct PreviewAny;

impl Node for PreviewAny {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PreviewAny")
            .display_name("Preview Any")
            .category("utils")
            .description("Shows any value as text.")
            .input(InputSpec::socket("source", "*"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let text = inputs.get("source").ok_or_else(|| NodeError::input("source", "is missing"))?.display_text();
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"text": [text]})))
    }
}
