//! Video nodes: `CreateVideo` (frames + rate → VIDEO) and `SaveVideo` (VIDEO → H.264 MP4), with
//! ComfyUI's class names, inputs and UI results.

mod create_video;
mod save_video;

pub use create_video::CreateVideo;
pub use save_video::SaveVideo;

use kinograph_engine::Node;
use std::sync::Arc;

/// The video nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(CreateVideo), Arc::new(SaveVideo)]
}
