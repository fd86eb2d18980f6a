//! ComfyUI's `PrimitiveNode`: a widget of its own that feeds a widget input of other nodes. It shows the
//! widget its output feeds (name, kind, range, a control after generate for numbers), edits its value, and
//! the prompt takes that value.

use crate::ui::{catalog, harness};
use eframe::egui::Key;
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Editor, SeedControl};
use kinograph_engine::InputValue;
use serde_json::json;

/// A primitive feeding the width of an empty latent, as ComfyUI's editor saves it.
fn workflow() -> String {
    json!({
        "last_node_id": 2, "last_link_id": 1,
        "nodes": [
            {"id": 1, "type": "PrimitiveNode", "pos": [0, 0], "size": [210, 82], "flags": {}, "order": 0, "mode": 0,
             "inputs": [], "title": "width",
             "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "width"}, "links": [1]}],
             "properties": {"Run widget replace on values": false}, "widgets_values": [640, "fixed"]},
            {"id": 2, "type": "EmptyLTXVLatentVideo", "pos": [400, 0], "size": [260, 130], "flags": {}, "order": 1,
             "mode": 0, "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}],
             "properties": {}, "widgets_values": [768, 512, 97, 1]}
        ],
        "links": [[1, 1, 0, 2, 0, "INT"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4
    })
    .to_string()
}

#[test]
fn a_primitive_shows_and_edits_the_widget_it_feeds() {
    let mut editor = Editor::new(catalog());
    editor.open_text(&workflow(), "primitive").unwrap();
    let node = editor.graph().node(1).unwrap().clone();
    let schema = editor.node_schema(&node).unwrap();
    assert_eq!(schema.inputs[0].name, "width");
    assert_eq!(schema.inputs[0].kind.type_name(), "INT");
    assert_eq!(editor.widget(1, "width"), Some(&json!(640)));
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    let field = harness.query_all_by_label("width").find(|n| n.value().as_deref() == Some("640")).unwrap();
    field.focus();
    harness.run();
    harness.key_press_modifiers(eframe::egui::Modifiers::COMMAND, Key::A);
    harness.query_all_by_label("width").find(|n| n.value().as_deref() == Some("640")).unwrap().type_text("1024");
    harness.key_press(Key::Enter);
    harness.run();
    let editor = &mut harness.state_mut().editor;
    assert_eq!(editor.widget(1, "width"), Some(&json!(1024)));
    editor.set_seed_control(1, "width", SeedControl::Increment).unwrap();
    assert_eq!(editor.graph().node(1).unwrap().widgets_values, Some(json!([1024, "increment"])));
    let prompt = editor.to_prompt().unwrap().prompt;
    assert_eq!(prompt.nodes["2"].inputs["width"], InputValue::Literal(json!(1024)));
    assert!(!prompt.nodes.contains_key("1"), "a primitive is not a node of the prompt");
}
