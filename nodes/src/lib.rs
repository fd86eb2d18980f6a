//! # kinograph-nodes
//!
//! Kinograph's built-in node library. Class names, input names, defaults and ranges follow ComfyUI
//! wherever ComfyUI has the same node, so that its workflows load unchanged.

pub mod image;
pub mod media;
pub mod models;
pub mod sampling;
pub mod utils;
pub mod values;
pub mod video;

use kinograph_engine::Registry;

/// A registry holding every built-in node.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register_all(&mut registry);
    registry
}

/// Adds every built-in node to `registry`.
pub fn register_all(registry: &mut Registry) {
    utils::register(registry);
    image::register(registry);
    video::register(registry);
    values::register_decoders(registry);
}
