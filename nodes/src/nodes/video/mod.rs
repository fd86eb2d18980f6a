//! Video nodes: `CreateVideo` (frames + rate → VIDEO) and `SaveVideo` (VIDEO → H.264 MP4), with
//! ComfyUI's class names, inputs and UI results.

mod create_video;
mod save_video;

pub use create_video::CreateVideo;
pub use save_video::SaveVideo;

use kinograph_engine::Registry;
use std::sync::Arc;

/// Registers the video nodes.
pub fn register(registry: &mut Registry) {
    let nodes: [Arc<dyn kinograph_engine::Node>; 2] = [Arc::new(CreateVideo), Arc::new(SaveVideo)];
    for node in nodes {
        registry.register_arc(node).expect("built-in node names are unique");
    }
}
