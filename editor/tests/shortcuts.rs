//! The shortcuts ComfyUI users have: the help panel lists them, Ctrl+Shift+V pastes with the links that fed
//! the copied nodes, and Space held turns a drag on the canvas into a pan.

use crate::subgraphs::ltxv_template;
use crate::ui::{catalog, drag, harness};
use eframe::egui::{Key, Modifiers, Pos2};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::{EditorApp, SHORTCUTS};
use kinograph_editor::model::Editor;
use kinograph_editor::model::recent::RecentFiles;

#[test]
fn the_help_panel_lists_the_shortcuts() {
    let mut harness = harness(EditorApp::new(Editor::new(catalog()), RecentFiles::load(None)));
    assert!(harness.query_by_label("Keyboard shortcuts").is_none());
    harness.get_by_label("Shortcuts").click();
    harness.run();
    for (keys, what) in SHORTCUTS {
        let shown = |label: &str| harness.query_all_by_label(label).next().is_some();
        assert!(shown(keys) && shown(what), "{keys}");
    }
    harness.key_press(Key::F1);
    harness.run();
    assert!(!harness.state().shortcuts_shown, "F1 closes it again");
}

#[test]
fn paste_with_links_feeds_the_copies_from_the_same_nodes() {
    let mut editor = ltxv_template();
    // The positive prompt, fed by the text encoder loader (38).
    editor.select(6);
    assert_eq!(editor.copy(), 1);
    let plain = editor.paste();
    let copy = *plain.iter().next().unwrap();
    assert!(editor.graph().link_into(copy, 0).is_none(), "Ctrl+V: no links from outside");
    let linked = editor.paste_with_links();
    let copy = *linked.iter().next().unwrap();
    let link = editor.graph().link_into(copy, 0).expect("Ctrl+Shift+V keeps the input link");
    assert_eq!((link.from_node, link.from_slot), (38, 0));
    assert_eq!(editor.selection, linked);
}

#[test]
fn ctrl_shift_v_in_the_window_pastes_with_links() {
    let mut editor = ltxv_template();
    editor.select(6);
    editor.copy();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::V);
    harness.run();
    let editor = &harness.state().editor;
    let copy = *editor.selection.iter().next().expect("the copy is selected");
    assert_ne!(copy, 6);
    assert_eq!(editor.graph().link_into(copy, 0).map(|link| link.from_node), Some(38));
}

#[test]
fn space_and_a_drag_pan_the_canvas_instead_of_drawing_a_selection_box() {
    let mut harness = harness(EditorApp::new(Editor::new(catalog()), RecentFiles::load(None)));
    harness.run();
    let before = harness.state().view();
    harness.key_down(Key::Space);
    harness.step();
    drag(&mut harness, Pos2::new(600.0, 400.0), Pos2::new(800.0, 500.0));
    harness.key_up(Key::Space);
    harness.run();
    let after = harness.state().view();
    assert!(after.min.x < before.min.x && after.min.y < before.min.y, "{before:?} → {after:?}");
    assert!(harness.state().editor.selection.is_empty());
}
