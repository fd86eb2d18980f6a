//! The editor's model: the graph being edited and every edit on it, with no drawing. The window in
//! [`crate::app`] shows it and turns clicks into calls here; tests drive it directly.

#[cfg(all(feature = "sound", target_os = "linux"))]
mod alsa;
pub mod catalog;
pub mod document;
mod editor;
pub mod faults;
pub mod graph;
mod history;
pub mod media;
pub mod node;
pub mod recent;
pub mod remote;
pub mod run;
pub mod sound;
pub mod sound_output;
pub mod subgraph;
pub mod subgraph_edit;
pub mod templates;
pub mod widgets;

pub use catalog::Catalog;
pub use document::{Document, DocumentError};
pub use editor::{Editor, InputFileError, WidgetError};
pub use graph::{EditError, EditorGraph, Group, Link, LinkId, MIN_GROUP_SIZE, Pin};
pub use history::History;
pub use node::{NodeId, NodeInstance, NodeMode, Point, Socket};
pub use widgets::SeedControl;
