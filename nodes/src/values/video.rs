//! VIDEO: decoded frames and their rate.

use super::audio::Audio;
use super::image::Image;
use kinograph_engine::NodeValue;

/// VIDEO: frames, their rate and an optional sound track (ComfyUI's `VideoFromComponents`).
#[derive(Debug, Clone)]
pub struct Video {
    pub frames: Image,
    /// Frames per second.
    pub fps: f64,
    /// The sound track, if any.
    pub audio: Option<Audio>,
}

impl NodeValue for Video {
    fn type_name(&self) -> &'static str {
        "VIDEO"
    }
    fn byte_size(&self) -> usize {
        self.frames.byte_size() + self.audio.as_ref().map_or(0, NodeValue::byte_size)
    }
    fn describe(&self) -> String {
        format!("VIDEO {:?} at {} fps", self.frames.pixels.dims(), self.fps)
    }
}
