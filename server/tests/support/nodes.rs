//! The nodes the tests' server runs: a saver that writes a file through the output helpers, a slow
//! counter that reports progress with previews and stops when interrupted, and a node that fails.

use kinograph_engine::{
    Environment, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, Preview, Registry,
    Value,
};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// Writes `text` to `<filename_prefix>_NNNNN_.txt` in the output folder and lists it as ComfyUI's
/// savers list their files: `{"images": [{"filename", "subfolder", "type": "output"}]}`.
struct SaveText;

impl Node for SaveText {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveText")
            .input(InputSpec::string("text", ""))
            .input(InputSpec::string("filename_prefix", "kinograph"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let mut file = context.create_numbered_output(inputs.string("filename_prefix")?, "txt")?;
        file.write_all(inputs.string("text")?.as_bytes())?;
        let path = file.commit()?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"images": [context.output_file_entry(&path)]})))
    }
}

/// Counts to `steps`, sleeping `step_ms` before each step and reporting it with an 8×8 preview; an
/// interrupt stops it at the next step. Its text output names the `label`, which keeps prompts that
/// should run apart from sharing a cache entry.
struct SlowCount;

impl Node for SlowCount {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SlowCount")
            .input(InputSpec::int("steps", 3).min(1).max(100_000))
            .input(InputSpec::int("step_ms", 10).min(0).max(10_000))
            .input(InputSpec::string("label", ""))
            .output("STRING", "text")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let steps = inputs.int("steps")? as u64;
        let pause = Duration::from_millis(inputs.int("step_ms")? as u64);
        for step in 1..=steps {
            std::thread::sleep(pause);
            let preview = Preview { width: 8, height: 8, rgb: vec![(step * 10 % 256) as u8; 8 * 8 * 3] };
            context.progress_with_preview(step, steps, preview)?;
        }
        let text = format!("{} counted to {steps}", inputs.string("label")?);
        Ok(NodeOutput::new(vec![Value::String(text.into())]))
    }
}

/// Fails with its `message`.
struct Fail;

impl Node for Fail {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Fail").input(InputSpec::string("message", "failed on purpose")).output_node()
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Err(NodeError::msg(inputs.string("message")?))
    }
}

/// The registry of the tests' server.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(SaveText).expect("one SaveText");
    registry.register(SlowCount).expect("one SlowCount");
    registry.register(Fail).expect("one Fail");
    registry
}
