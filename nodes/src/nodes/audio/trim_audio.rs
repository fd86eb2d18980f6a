//! `TrimAudioDuration`: a time range of an AUDIO, in seconds.

use crate::values::{Audio, tensor_error};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// ComfyUI's bound on `start_index`, ±(2^64 − 1). ComfyUI writes that Python integer as a JSON number,
/// which the frontend reads as the nearest double; `serde_json` holds no integer that large, so the bound
/// is that double here.
const START_BOUND: f64 = u64::MAX as f64;

/// Keeps `duration` seconds from `start_index` (counted from the end when negative).
pub struct TrimAudioDuration;

impl Node for TrimAudioDuration {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("TrimAudioDuration")
            .display_name("Trim Audio Duration")
            .category("audio")
            .description("Trim audio tensor into chosen time range.")
            .input(InputSpec::socket("audio", "AUDIO"))
            .input(
                InputSpec::float("start_index", 0.0)
                    .min(-START_BOUND)
                    .max(START_BOUND)
                    .step(0.01)
                    .tooltip("Start time in seconds, can be negative to count from the end (supports sub-seconds)."),
            )
            .input(InputSpec::float("duration", 60.0).min(0.0).step(0.01).tooltip("Duration in seconds"))
            .output("AUDIO", "AUDIO")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let audio = inputs.object::<Audio>("audio")?;
        let start_index = inputs.float("start_index")?;
        let duration = inputs.float("duration")?;
        let (_, _, length) = audio.dims()?;
        let (start, end) = trim_range(length, audio.sample_rate, start_index, duration).ok_or_else(|| {
            NodeError::msg(format!(
                "Start time must be less than end time and be within the audio length \
                 (start_index {start_index} s, duration {duration} s, audio {:.3} s)",
                length as f64 / f64::from(audio.sample_rate.max(1))
            ))
        })?;
        let waveform =
            audio.waveform.narrow(2, start, end - start).map_err(|error| tensor_error("trimming the AUDIO", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Audio::new(waveform, audio.sample_rate)))]))
    }
}

/// The sample range ComfyUI keeps: each time rounded to a sample (half to even, as Python's `round`),
/// a negative start counted back from the end, the start clamped to `0..=length − 1` and the end to
/// `0..=length`. `None` when that leaves nothing.
pub fn trim_range(length: usize, sample_rate: u32, start_index: f64, duration: f64) -> Option<(usize, usize)> {
    let to_samples = |seconds: f64| (seconds * f64::from(sample_rate)).round_ties_even() as i128;
    let length = length as i128;
    let start = if start_index < 0.0 { length + to_samples(start_index) } else { to_samples(start_index) };
    let start = start.min(length - 1).max(0);
    let end = (start + to_samples(duration)).min(length).max(0);
    (start < end).then_some((start as usize, end as usize))
}

#[cfg(test)]
mod tests {
    use super::trim_range;

    #[test]
    fn ranges_follow_comfyui() {
        // 10 samples at 10 Hz.
        assert_eq!(trim_range(10, 10, 0.0, 60.0), Some((0, 10)));
        assert_eq!(trim_range(10, 10, 0.2, 0.5), Some((2, 7)));
        assert_eq!(trim_range(10, 10, -0.3, 60.0), Some((7, 10)));
        assert_eq!(trim_range(10, 10, -0.3, 0.1), Some((7, 8)));
        assert_eq!(trim_range(10, 10, -5.0, 0.3), Some((0, 3)), "a start before the beginning is the beginning");
        assert_eq!(trim_range(10, 10, 5.0, 1.0), Some((9, 10)), "a start past the end is the last sample");
        assert_eq!(trim_range(10, 10, 0.5, 0.0), None, "nothing left");
        assert_eq!(trim_range(0, 10, 0.0, 1.0), None, "empty audio");
        // Python rounds half to even: 0.25 s at 10 Hz is 2.5 samples, so 2; 0.35 s is 3.5, so 4.
        assert_eq!(trim_range(10, 10, 0.25, 0.35), Some((2, 6)));
        assert_eq!(trim_range(10, 10, -1.8e19, 1.0), Some((0, 10)));
    }
}
