//! Video nodes: `CreateVideo` (frames + rate + audio → VIDEO), `SaveVideo` (VIDEO → H.264/AAC MP4),
//! `LoadVideo` (MP4 → VIDEO), `GetVideoComponents` (VIDEO → frames, audio, rate) and `Video Slice`
//! (a time window of a VIDEO), with ComfyUI's class names, inputs and UI results.

mod create_video;
mod load_video;
mod save_video;
mod video_components;

pub use create_video::CreateVideo;
pub use load_video::LoadVideo;
pub use save_video::SaveVideo;
pub use video_components::{GetVideoComponents, VideoSlice};

use kinograph_engine::Node;
use std::sync::Arc;

/// The video nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(CreateVideo),
        Arc::new(SaveVideo),
        Arc::new(LoadVideo),
        Arc::new(GetVideoComponents),
        Arc::new(VideoSlice),
    ]
}
