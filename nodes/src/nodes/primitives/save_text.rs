//! `SaveText`: writes a string to a numbered file in the output folder.

use kinograph_engine::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::{Component, Path};

/// Saves text as `<prefix>_00001_.txt`, never overwriting; the file appears only once fully written.
pub struct SaveText;

impl Node for SaveText {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveText")
            .display_name("Save Text")
            .category("utils")
            .description("Writes the text to <filename_prefix>_00001_.txt in the output folder.")
            .input(InputSpec::multiline("text", "").force_input())
            .input(
                InputSpec::string("filename_prefix", "kinograph").tooltip("File name prefix; may contain a subfolder."),
            )
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let text = inputs.string("text")?;
        let prefix = inputs.string("filename_prefix")?;
        if prefix.is_empty() || Path::new(prefix).components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(NodeError::input(
                "filename_prefix",
                format!("'{prefix}' must be a relative name inside the output folder"),
            ));
        }
        let mut file = context.create_numbered_output(prefix, "txt")?;
        file.write_all(text.as_bytes())?;
        context.check_interrupted()?;
        let written = file.commit()?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"text": [text], "files": [context.output_file_entry(&written)]})))
    }
}
