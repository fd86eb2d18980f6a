//! The native file dialogs: where the desktop has no file chooser (no session bus to reach the portal,
//! as on a headless machine) the dialog comes back empty and the window says to type a path, and nothing
//! else changes.

use crate::ui::{catalog, harness};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::app::dialogs::FileDialogs;
use kinograph_editor::model::Editor;
use kinograph_editor::model::recent::RecentFiles;
use std::time::{Duration, Instant};

#[test]
fn without_a_file_chooser_the_dialog_comes_back_empty_and_says_so() {
    let mut app = EditorApp::new(Editor::new(catalog()), RecentFiles::load(None));
    app.set_file_dialogs(FileDialogs::without_chooser());
    let mut harness = harness(app);
    harness.get_by_label("Open…").click();
    harness.step();
    let started = Instant::now();
    while !harness.state().status.starts_with("No file chosen") {
        assert!(started.elapsed() < Duration::from_secs(20), "the dialog never came back: {}", harness.state().status);
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
    assert!(harness.state().status.contains("type a path"));
    assert!(harness.state().editor.graph().nodes.is_empty());
    assert!(harness.query_by_label("Save as…").is_some(), "the dialog buttons are back");
}
