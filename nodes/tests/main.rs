//! Integration tests of kinograph-nodes: the node library against reference fixtures.
//!
//! One test binary per crate: each file below is a module, so the crate's dependencies are linked once
//! rather than once per file (each link is over 100 MB of test binary). nextest still runs every test in
//! its own process. Run one file's tests with `cargo nextest run -p PACKAGE -E 'test(/^MODULE::/)'`.

mod audio;
mod fp8_loaders;
mod gemma_lora;
mod gguf_clip_loaders;
mod gguf_loaders;
mod image_ops;
mod ltx2_template_nodes;
mod ltxv_nodes;
mod media;
mod memory_budget;
mod model_sampling;
mod object_info;
mod support;
mod text_generate;
mod utils;
mod video_audio;
