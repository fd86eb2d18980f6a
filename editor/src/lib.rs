//! # kinograph-editor
//!
//! Kinograph's node editor: a native window where LTX-Video graphs are built, saved in ComfyUI's UI
//! format and converted to the API prompts the engine runs. The [`model`] holds the graph and every edit
//! (undoable, testable without a window); the [`app`] draws it with egui.

pub mod model;
