//! Any widget takes a link of its type, as in ComfyUI's current front end: a wire dragged from an output and
//! let go on a widget turns the widget into an input socket, linked, and the API prompt takes the linked
//! value; a wire of another type is refused and leaves the node as it was.

use crate::ui::{catalog, drag, harness};
use eframe::egui::Pos2;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::catalog::ROW_HEIGHT;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{EditError, Editor, Pin};
use kinograph_engine::InputValue;
use serde_json::json;

#[test]
fn a_wire_let_go_on_a_widget_turns_it_into_a_linked_input() {
    let mut editor = Editor::new(catalog());
    let number = editor.add_node("PrimitiveInt", [0.0, 0.0]).unwrap();
    let latent = editor.add_node("EmptyLTXVLatentVideo", [400.0, 0.0]).unwrap();
    editor.set_widget(number, "value", json!(640)).unwrap();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();

    let app = harness.state();
    let from = app.pin_on_screen(&harness.ctx, Pin { node: number, output: true, slot: 0 }).unwrap();
    // The `width` row: the node's first widget, under its one socket row.
    let node = app.editor.graph().node(latent).unwrap();
    let row = Pos2::new(node.pos[0] + node.size[0] / 2.0, node.pos[1] + 6.0 + ROW_HEIGHT * 1.5);
    let to = app.canvas_to_screen(&harness.ctx, row).unwrap();
    drag(&mut harness, from, to);
    harness.run();

    let editor = &harness.state().editor;
    let node = editor.graph().node(latent).unwrap();
    let socket = node.inputs.iter().position(|socket| socket.widget.as_deref() == Some("width"));
    let slot = socket.unwrap_or_else(|| panic!("width did not become an input: {}", harness.state().status));
    assert_eq!(node.inputs[slot].type_name, "INT");
    assert!(editor.graph().link_into(latent, slot).is_some_and(|link| link.from_node == number));
    assert_eq!(editor.widget(latent, "width"), Some(&json!(768)), "the stored value stays for when the link goes");
    let prompt = editor.to_prompt().unwrap().prompt;
    let width = &prompt.nodes[&latent.to_string()].inputs["width"];
    assert!(matches!(width, InputValue::Link(link) if link.node == number.to_string() && link.slot == 0), "{width:?}");
}

#[test]
fn a_widget_refuses_a_link_of_another_type() {
    let mut editor = Editor::new(catalog());
    let text = editor.add_node("PrimitiveString", [0.0, 0.0]).unwrap();
    let latent = editor.add_node("EmptyLTXVLatentVideo", [400.0, 0.0]).unwrap();
    let before = editor.graph().clone();
    let refused = editor.connect_to_widget(text, 0, latent, "width").unwrap_err();
    assert!(matches!(refused, EditError::Incompatible { .. }), "{refused}");
    assert_eq!(editor.graph(), &before, "a refused link adds no socket");
    let missing = editor.connect_to_widget(text, 0, latent, "no_such_widget").unwrap_err();
    assert!(matches!(missing, EditError::NoSuchWidget { .. }), "{missing}");
    // A string widget takes it; a second link replaces the first, on the same socket.
    let encoder = editor.add_node("CLIPTextEncode", [0.0, 300.0]).unwrap();
    editor.connect_to_widget(text, 0, encoder, "text").unwrap();
    let other = editor.add_node("PrimitiveString", [0.0, 600.0]).unwrap();
    editor.connect_to_widget(other, 0, encoder, "text").unwrap();
    let node = editor.graph().node(encoder).unwrap();
    assert_eq!(node.inputs.iter().filter(|socket| socket.widget.as_deref() == Some("text")).count(), 1);
    let slot = node.inputs.iter().position(|socket| socket.widget.as_deref() == Some("text")).unwrap();
    assert_eq!(editor.graph().link_into(encoder, slot).unwrap().from_node, other);
}
