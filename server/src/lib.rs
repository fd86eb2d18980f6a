//! # kinograph-server
//!
//! `kinograph serve`: ComfyUI's HTTP and websocket API (routes, JSON shapes, binary preview frames) in
//! front of one worker that runs prompts in queue order, with the queue and history in an embedded
//! database that survives a crash.
