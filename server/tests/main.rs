//! Integration tests of `kinograph serve`: a real server on a free loopback port, with its own folders
//! and a few test nodes, driven over real sockets by an HTTP client and a websocket client, the way
//! ComfyUI's clients drive ComfyUI.
//!
//! One test binary: each file below is a module, so the crate and its dependencies are linked once.
//! Run one file's tests with `cargo nextest run -p kinograph-server -E 'test(/^MODULE::/)'`.

mod api;
mod attacks_access;
mod attacks_files;
mod attacks_limits;
mod durability;
mod many_machines;
mod queue;
mod support;
mod uploads;
mod websocket;
