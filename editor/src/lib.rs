//! # kinograph-editor
//!
//! Kinograph's node editor: a native window where LTX-Video graphs are built, saved in ComfyUI's UI
//! format and converted to the API prompts the engine runs. The [`model`] holds the graph and every edit
//! (undoable, testable without a window); the [`app`] draws it with egui.

pub mod app;
pub mod model;

use app::EditorApp;
use kinograph_engine::Environment;
use model::recent::RecentFiles;
use model::remote::ServerAddress;
use model::run::Runner;
use model::{Catalog, Editor};
use std::path::Path;
use std::sync::Arc;

/// Why the editor window could not run.
#[derive(Debug, thiserror::Error)]
pub enum EditorError {
    #[error(
        "no display to open the editor window on: set DISPLAY (X11) or WAYLAND_DISPLAY (Wayland), \
         or run it under a desktop session"
    )]
    NoDisplay,
    #[error("{path}: {source}")]
    Open { path: String, source: model::DocumentError },
    #[error("the editor window failed: {0}")]
    Window(String),
    /// The runner for `--server` could not start (its connection thread).
    #[error("cannot run on the server: {0}")]
    Server(model::run::QueueError),
}

/// Whether a window system is reachable, judged from the environment as winit does.
pub fn display_available() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    cfg!(any(target_os = "windows", target_os = "macos")) || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// Opens the editor window on `file` (UI or API JSON, or a PNG or MP4 carrying a workflow), inside its
/// subgraph node `subgraph` when one is given, or on an empty graph, with the built-in nodes and
/// `environment`'s model folders; returns when the window closes. With `server`, runs are queued on that kinograph server (its model lists in the combos, its
/// outputs copied under `environment`'s output folder) instead of in this process.
pub fn run(
    file: Option<&Path>,
    environment: Environment,
    server: Option<ServerAddress>,
    subgraph: Option<i64>,
) -> Result<(), EditorError> {
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment));
    let mut editor = Editor::new(catalog);
    if let Some(path) = file {
        editor.open_any(path).map_err(|source| EditorError::Open { path: path.display().to_string(), source })?;
    }
    if let Some(node) = subgraph {
        let place = file.map_or_else(String::new, |path| path.display().to_string());
        editor.enter_subgraph(node).map_err(|source| EditorError::Open { path: place, source })?;
    }
    // The file is read first, so that a wrong path is reported even where no window can open.
    if !display_available() {
        return Err(EditorError::NoDisplay);
    }
    let mut recent = RecentFiles::load(RecentFiles::default_store());
    if let Some(path) = file {
        let _ = recent.add(path);
    }
    let runner = match server {
        Some(server) => Runner::remote(&editor, server).map_err(EditorError::Server)?,
        None => Runner::new(&editor),
    };
    let app = EditorApp::with_runner(editor, recent, runner);
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default().with_title("Kinograph").with_inner_size([1400.0, 900.0]),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native("Kinograph", options, Box::new(|_| Ok(Box::new(app))))
        .map_err(|error| EditorError::Window(error.to_string()))
}
