//! The built-in nodes, one folder per ComfyUI category: each file holds a few nodes with their schema and
//! `execute`, and each folder's `register` adds them to a registry.

pub mod audio;
pub mod conditioning;
pub mod image;
pub mod latent;
pub mod loaders;
pub mod mask;
pub mod primitives;
pub mod sampling;
pub mod video;
