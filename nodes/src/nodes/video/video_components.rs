//! `GetVideoComponents` (a VIDEO's frames, audio and rate) and `Video Slice` (a time window of a VIDEO).

use crate::media::mp4_writer::track_timing;
use crate::nodes::image::media_error;
use crate::values::{Audio, Image, Video, tensor_error};
use kinograph_engine::prelude::*;
use serde_json::Value as Json;
use std::sync::Arc;

/// Splits a VIDEO into its frames, its audio (`None`, as in ComfyUI, when it has none), its rate, and
/// its bit depth and colour space (always 8 and sRGB: the only ones kinograph writes and reads).
pub struct GetVideoComponents;

impl Node for GetVideoComponents {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("GetVideoComponents")
            .display_name("Get Video Components")
            .category("video")
            .description("Extracts video frames, audio, frame rate, bit depth, and color space.")
            .input(InputSpec::socket("video", "VIDEO").tooltip("The video to extract components from."))
            .output("IMAGE", "images")
            .output("AUDIO", "audio")
            .output("FLOAT", "fps")
            .output("COMBO", "bit_depth")
            .output("COMBO", "color_space")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let video = inputs.object::<Video>("video")?;
        let audio = match &video.audio {
            Some(audio) => Value::Object(Arc::new(audio.clone())),
            None => Value::Json(Arc::new(Json::Null)),
        };
        Ok(NodeOutput::new(vec![
            Value::Object(Arc::new(video.frames.clone())),
            audio,
            Value::Float(video.fps),
            Value::Int(8),
            Value::String("sRGB".into()),
        ]))
    }
}

/// ComfyUI's "Trim Video": the frames whose timestamps fall in `[start, start + duration)` and the
/// audio from `start` for `duration` seconds. A negative start counts back from the end; a duration
/// of 0 runs to the end. Timestamps are ticks of the clock the MP4 writer (and ffmpeg) uses for the
/// rate, and the window's ends are truncated to ticks, as `PyAV` compares them.
pub struct VideoSlice;

impl Node for VideoSlice {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Video Slice")
            .display_name("Trim Video")
            .category("video")
            .input(InputSpec::socket("video", "VIDEO"))
            .input(InputSpec::float("start_time", 0.0).min(-1e5).max(1e5).step(0.001).tooltip("Start time in seconds"))
            .input(
                InputSpec::float("duration", 0.0)
                    .min(0.0)
                    .step(0.001)
                    .tooltip("Duration in seconds, or 0 for unlimited duration"),
            )
            .input(
                InputSpec::boolean("strict_duration", false)
                    .tooltip("If True, when the specified duration is not possible, an error will be raised."),
            )
            .output("VIDEO", "VIDEO")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let video = inputs.object::<Video>("video")?;
        let start_time = inputs.float("start_time")?;
        let duration = inputs.float("duration")?;
        let strict = inputs.boolean("strict_duration")?;
        if !start_time.is_finite() {
            return Err(NodeError::input("start_time", format!("{start_time} is not a number of seconds")));
        }
        if !(duration.is_finite() && duration >= 0.0) {
            return Err(NodeError::input("duration", format!("{duration} must be 0 (to the end) or more seconds")));
        }
        let (frames, ..) = video.frames.dims()?;
        let length = frames as f64 / video.fps;
        let start = if start_time < 0.0 { (length + start_time).max(0.0) } else { start_time };
        let available = if start_time < 0.0 { length.min(-start_time) } else { length - start };
        if strict && duration > 0.0 && available < duration {
            return Err(NodeError::input(
                "duration",
                format!(
                    "the video is {length:.3} s long: from {start:.3} s there are {:.3} s, less than {duration} s \
                     (turn strict_duration off to take what there is)",
                    available.max(0.0)
                ),
            ));
        }
        let (timescale, ticks) = track_timing(video.fps).map_err(|error| media_error("timing the frames", &error))?;
        let start_tick = (start * f64::from(timescale)).floor() as u64;
        let end_tick = (duration > 0.0).then(|| ((start + duration) * f64::from(timescale)).floor() as u64);
        let kept: Vec<usize> = (0..frames)
            .filter(|&index| {
                let tick = index as u64 * u64::from(ticks);
                tick >= start_tick && end_tick.is_none_or(|end| tick < end)
            })
            .collect();
        let (Some(&first), Some(&last)) = (kept.first(), kept.last()) else {
            return Err(NodeError::input(
                "start_time",
                format!("no frame of the {length:.3} s video lies in the window from {start:.3} s"),
            ));
        };
        let pixels = video
            .frames
            .pixels
            .narrow(0, first, last + 1 - first)
            .map_err(|error| tensor_error("slicing the frames", &error))?;
        let audio = match &video.audio {
            Some(audio) => Some(slice_audio(audio, start, duration)?),
            None => None,
        };
        let sliced = Video { frames: Image::new(pixels), fps: video.fps, audio };
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(sliced))]))
    }
}

/// The samples from `start` seconds on, `duration` seconds of them (all when 0), truncated to samples.
fn slice_audio(audio: &Audio, start: f64, duration: f64) -> Result<Audio, NodeError> {
    let (_, _, samples) = audio.dims()?;
    let rate = f64::from(audio.sample_rate);
    let skip = ((start * rate) as usize).min(samples);
    let mut length = samples - skip;
    if duration > 0.0 {
        length = length.min((duration * rate) as usize);
    }
    let waveform = audio.waveform.narrow(2, skip, length).map_err(|error| tensor_error("slicing the audio", &error))?;
    Ok(Audio::new(waveform, audio.sample_rate))
}
