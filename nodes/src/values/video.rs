//! VIDEO: decoded frames and their rate.

use super::image::Image;
use kinograph_engine::NodeValue;

/// VIDEO: frames and their rate (ComfyUI's `VideoFromComponents`).
#[derive(Debug, Clone)]
pub struct Video {
    pub frames: Image,
    /// Frames per second.
    pub fps: f64,
}

impl NodeValue for Video {
    fn type_name(&self) -> &'static str {
        "VIDEO"
    }
    fn byte_size(&self) -> usize {
        self.frames.byte_size()
    }
    fn describe(&self) -> String {
        format!("VIDEO {:?} at {} fps", self.frames.pixels.dims(), self.fps)
    }
}
