//! `Delay`: passes a value on after a pause, reporting progress; paces pipelines and shows how a
//! long-running node stays cancellable.

use kinograph_engine::prelude::*;
use std::time::{Duration, Instant};

/// Progress ticks per second; also how often cancellation is checked.
const TICKS_PER_SECOND: f64 = 20.0;

/// Waits `seconds`, then outputs its input unchanged.
pub struct Delay;

impl Node for Delay {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Delay")
            .display_name("Delay")
            .category("utils")
            .description("Passes its input on after waiting the given number of seconds; cancellable at any time.")
            .input(InputSpec::socket("value", "*"))
            .input(InputSpec::float("seconds", 1.0).min(0.0).max(3600.0).step(0.1))
            .output("*", "value")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let value = inputs.get("value").cloned().ok_or_else(|| NodeError::input("value", "is missing"))?;
        let total = Duration::from_secs_f64(inputs.float("seconds")?);
        let ticks = (total.as_secs_f64() * TICKS_PER_SECOND).ceil().max(1.0) as u64;
        let started = Instant::now();
        for tick in 1..=ticks {
            let due = total.mul_f64(tick as f64 / ticks as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            context.progress(tick, ticks)?;
        }
        Ok(NodeOutput::new(vec![value]))
    }
}
