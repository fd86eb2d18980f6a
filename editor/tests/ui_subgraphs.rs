//! Subgraphs in the window, driven as a user would on ComfyUI's LTX-2 text-to-video template: double-click
//! the subgraph node to enter it, change the frame count inside, go back out through the top bar, change
//! the promoted prompt on the subgraph node, save: the saved file differs from the template in exactly
//! those two values.

use crate::subgraphs::comfy_template;
use crate::ui::{catalog, click_at, harness};
use eframe::egui::{Event, Key, Modifiers, PointerButton, Pos2, Rect, Vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::Editor;
use kinograph_editor::model::recent::RecentFiles;
use serde_json::{Value as Json, json};
use std::path::PathBuf;

const INSTANCE: i64 = 92;
const FRAME_COUNT: i64 = 62;

fn template_path() -> PathBuf {
    comfy_template("video_ltx2_t2v.json")
}

fn template_app() -> EditorApp {
    let mut editor = Editor::new(catalog());
    editor.open(&template_path()).unwrap();
    EditorApp::new(editor, RecentFiles::load(None))
}

/// Shows only node `id` (and what lies beside it within a margin), at a readable zoom.
fn look_at(harness: &mut Harness<'_, EditorApp>, id: i64) {
    let node = harness.state().editor.graph().node(id).unwrap().clone();
    let top_left = Pos2::new(node.pos[0] - 20.0, node.pos[1] - 50.0);
    harness.state_mut().set_view(Rect::from_min_size(top_left, Vec2::new(node.size[0] + 40.0, node.size[1] + 80.0)));
    harness.run();
}

/// Types `text` into the widget labelled `label` that shows `shown`, replacing its value.
/// A single-line field ends with Enter; a multiline one by a click elsewhere (here: the Check button).
fn type_into(harness: &mut Harness<'_, EditorApp>, label: &str, shown: &str, text: &str, multiline: bool) {
    let missing = || format!("no '{label}' widget showing {shown}");
    harness
        .query_all_by_label(label)
        .find(|node| node.value().as_deref() == Some(shown))
        .unwrap_or_else(|| panic!("{}", missing()))
        .focus();
    harness.run();
    harness.key_press_modifiers(eframe::egui::Modifiers::COMMAND, Key::A);
    let widget = harness.query_all_by_label(label).find(|node| node.value().as_deref() == Some(shown));
    widget.unwrap_or_else(|| panic!("{}", missing())).type_text(text);
    if multiline {
        harness.get_by_label("Check").click();
    } else {
        harness.key_press(Key::Enter);
    }
    harness.run();
}

#[test]
fn a_user_edits_inside_the_ltx2_subgraph_and_its_promoted_prompt_and_saves_only_those() {
    let mut harness = harness(template_app());
    // Double-click the subgraph node's title bar to enter it.
    look_at(&mut harness, INSTANCE);
    let title = {
        let node = harness.state().editor.graph().node(INSTANCE).unwrap();
        Pos2::new(node.pos[0] + 60.0, node.pos[1] - 15.0)
    };
    let spot = harness.state().canvas_to_screen(&harness.ctx, title).unwrap();
    harness.hover_at(spot);
    harness.step();
    click_at(&mut harness, spot, PointerButton::Primary, 2);
    assert_eq!(harness.state().editor.breadcrumb(), ["Text to Video (LTX 2.0)"], "{}", harness.state().status);
    assert!(harness.query_by_label("Workflow").is_some(), "the top bar leads back out");

    // Inside: the frame count primitive.
    look_at(&mut harness, FRAME_COUNT);
    type_into(&mut harness, "value", "121", "97", false);
    assert_eq!(harness.state().editor.widget(FRAME_COUNT, "value"), Some(&json!(97)));

    // Back out, then the prompt promoted onto the subgraph node.
    harness.get_by_label("Workflow").click();
    harness.run();
    assert!(harness.state().editor.breadcrumb().is_empty());
    look_at(&mut harness, INSTANCE);
    let prompt = "A red fox runs through fresh snow at dusk.";
    let shown = harness.state().editor.widget(INSTANCE, "text").and_then(Json::as_str).unwrap().to_string();
    type_into(&mut harness, "text", &shown, prompt, true);
    assert_eq!(harness.state().editor.widget(INSTANCE, "text"), Some(&json!(prompt)));

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("edited.json");
    harness.state_mut().path_text = saved.display().to_string();
    harness.get_by_label("Save").click();
    harness.run();
    let saved: Json = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let original: Json = serde_json::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap();
    let mut found = Vec::new();
    crate::subgraphs::differences(&original, &saved, "", &mut found);
    let changed: Vec<(&str, &Json)> = found.iter().map(|(path, _, new)| (path.as_str(), new)).collect();
    assert_eq!(changed, [(".nodes[3].widgets_values[2]", &json!(97)), (".nodes[3].widgets_values[3]", &json!(prompt))]);
}

/// Clicks `spot` with `modifiers` held.
fn click_with(harness: &mut Harness<'_, EditorApp>, spot: Pos2, button: PointerButton, modifiers: Modifiers) {
    harness.hover_at(spot);
    harness.step();
    // Held keys are the input's state, which the node reads, besides the event's own.
    harness.event(Event::ModifiersChanged(modifiers));
    for pressed in [true, false] {
        harness.event(Event::PointerButton { pos: spot, button, pressed, modifiers });
        harness.step();
    }
    harness.event(Event::ModifiersChanged(Modifiers::NONE));
    harness.run();
}

/// Where node `id`'s title bar is on screen.
fn title_of(harness: &Harness<'_, EditorApp>, id: i64) -> Pos2 {
    let node = harness.state().editor.graph().node(id).unwrap();
    harness.state().canvas_to_screen(&harness.ctx, Pos2::new(node.pos[0] + 40.0, node.pos[1] - 15.0)).unwrap()
}

#[test]
fn a_user_makes_a_subgraph_of_three_nodes_and_unpacks_it_and_the_prompt_is_the_same() {
    let editor = crate::subgraphs::ltxv_template();
    let before = editor.to_prompt().unwrap().prompt.to_json();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    // Click one prompt, shift-click the other and the conditioning.
    let spot = title_of(&harness, 6);
    click_with(&mut harness, spot, PointerButton::Primary, Modifiers::NONE);
    for id in [7, 69] {
        let spot = title_of(&harness, id);
        click_with(&mut harness, spot, PointerButton::Primary, Modifiers::SHIFT);
    }
    assert_eq!(harness.state().editor.selection, [6, 7, 69].into_iter().collect());
    let spot = title_of(&harness, 69);
    click_with(&mut harness, spot, PointerButton::Secondary, Modifiers::NONE);
    harness.get_by_label("Convert to subgraph").click();
    harness.run();
    let instance = *harness.state().editor.selection.iter().next().unwrap();
    assert!(harness.state().editor.is_subgraph_instance(instance));
    assert_eq!(harness.state().editor.graph().nodes.len(), 14 - 3 + 1);

    let spot = title_of(&harness, instance);
    click_with(&mut harness, spot, PointerButton::Secondary, Modifiers::NONE);
    harness.get_by_label("Unpack subgraph").click();
    harness.run();
    let editor = &harness.state().editor;
    assert!(editor.graph().node(instance).is_none());
    assert_eq!(editor.to_prompt().unwrap().prompt.to_json(), before);
}

#[test]
fn a_subgraph_nodes_own_button_enters_it() {
    let mut harness = harness(template_app());
    look_at(&mut harness, INSTANCE);
    harness.get_by_label("Enter").click_accesskit();
    harness.run();
    assert_eq!(harness.state().editor.breadcrumb(), ["Text to Video (LTX 2.0)"]);
    harness.get_by_label("Workflow").click();
    harness.run();
    assert!(harness.state().editor.breadcrumb().is_empty());
}
