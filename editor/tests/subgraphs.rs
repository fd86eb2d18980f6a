//! Subgraphs in the editor's model, on ComfyUI's LTX-2 text-to-video template (its whole pipeline sits
//! inside one subgraph node with nine promoted widgets): entering and leaving, editing inside and on the
//! instance, and saving back in ComfyUI's format with nothing changed but the edits.

use crate::ui::catalog;
use kinograph_editor::model::Editor;
use kinograph_editor::model::subgraph::{INPUT_NODE, OUTPUT_NODE};
use serde_json::{Value as Json, json};
use std::path::PathBuf;

/// The instance node of the template's subgraph.
const INSTANCE: i64 = 92;
/// The `PrimitiveInt` inside it whose value is the frame count, fed by the promoted `frame_count`.
const FRAME_COUNT: i64 = 62;
/// The `PrimitiveInt` inside it with the audio's frame rate, its own value.
const FRAME_RATE: i64 = 103;

/// ComfyUI's template `name`, as the tests keep it.
pub(crate) fn comfy_template(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates").join(name)
}

fn template_path() -> PathBuf {
    comfy_template("video_ltx2_t2v.json")
}

fn template() -> Editor {
    let mut editor = Editor::new(catalog());
    editor.open(&template_path()).expect("the LTX-2 template opens");
    editor
}

fn original() -> Json {
    serde_json::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap()
}

/// Every JSON path where `a` and `b` differ, with both values.
pub(crate) fn differences(a: &Json, b: &Json, path: &str, found: &mut Vec<(String, Json, Json)>) {
    match (a, b) {
        (Json::Object(left), Json::Object(right)) => {
            for key in left.keys().chain(right.keys().filter(|key| !left.contains_key(*key))) {
                let (l, r) = (left.get(key).unwrap_or(&Json::Null), right.get(key).unwrap_or(&Json::Null));
                differences(l, r, &format!("{path}.{key}"), found);
            }
        }
        (Json::Array(left), Json::Array(right)) if left.len() == right.len() => {
            for (index, (l, r)) in left.iter().zip(right).enumerate() {
                differences(l, r, &format!("{path}[{index}]"), found);
            }
        }
        _ if a != b => found.push((path.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

fn assert_unchanged(json: &Json, what: &str) {
    let mut found = Vec::new();
    differences(&original(), json, "", &mut found);
    assert!(found.is_empty(), "{what}: {found:?}");
}

#[test]
fn entering_and_leaving_the_subgraph_changes_nothing() {
    let mut editor = template();
    assert!(editor.is_subgraph_instance(INSTANCE));
    editor.enter_subgraph(INSTANCE).unwrap();
    assert_eq!(editor.breadcrumb(), ["Text to Video (LTX 2.0)"]);
    // The definition's 41 nodes, and its input and output as nodes of their own.
    let graph = editor.graph();
    assert_eq!(graph.nodes.len(), 43);
    let inputs = graph.node(INPUT_NODE).unwrap();
    let names: Vec<&str> = inputs.outputs.iter().map(|socket| socket.name.as_str()).collect();
    assert_eq!(
        names,
        ["width", "height", "value", "text", "ckpt_name", "text_encoder", "model_name", "lora_name", "noise_seed"]
    );
    assert_eq!(graph.node(OUTPUT_NODE).unwrap().inputs[0].name, "VIDEO");
    assert!(graph.links.iter().any(|link| link.from_node == INPUT_NODE && link.to_node == FRAME_COUNT));
    assert_unchanged(&editor.to_json(), "inside, the file is unchanged");
    assert!(editor.leave_subgraph());
    assert!(editor.breadcrumb().is_empty());
    assert!(!editor.leave_subgraph(), "nothing left to leave");
    assert_unchanged(&editor.to_json(), "after leaving");
}

#[test]
fn the_instance_shows_the_promoted_widgets_with_the_inner_widgets_kinds() {
    let editor = template();
    let schema = editor.schema(&editor.graph().node(INSTANCE).unwrap().class_type).unwrap();
    assert_eq!(schema.display_name, "Text to Video (LTX 2.0)");
    assert_eq!(schema.inputs.len(), 9);
    assert!(schema.inputs.iter().all(|input| input.kind.is_widget()), "every input feeds an inner widget");
    assert_eq!(editor.widget(INSTANCE, "value"), Some(&json!(121)));
    assert_eq!(editor.widget(INSTANCE, "noise_seed"), Some(&json!(10)));
    assert!(
        editor.widget(INSTANCE, "text").and_then(Json::as_str).unwrap().starts_with("A close-up of a cheerful girl")
    );
    assert_eq!(schema.outputs[0].type_name, "VIDEO");
}

#[test]
fn an_edit_inside_and_one_outside_are_the_only_changes_saved() {
    let mut editor = template();
    editor.enter_subgraph(INSTANCE).unwrap();
    editor.set_widget(FRAME_COUNT, "value", json!(97)).unwrap();
    assert!(editor.leave_subgraph());
    editor.set_widget(INSTANCE, "text", json!("A red fox runs through fresh snow.")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.json");
    editor.save(&saved).unwrap();
    let saved: Json = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let mut found = Vec::new();
    differences(&original(), &saved, "", &mut found);
    let paths: Vec<&str> = found.iter().map(|(path, _, _)| path.as_str()).collect();
    assert_eq!(paths, [".nodes[3].widgets_values[2]", ".nodes[3].widgets_values[3]"], "{found:?}");
    assert_eq!(found[0].2, json!(97));
    assert_eq!(found[1].2, json!("A red fox runs through fresh snow."));
    // Written while still inside, the file is the same: the frame count is the instance's promoted value,
    // and the primitive inside keeps its own.
    let mut inside = template();
    inside.enter_subgraph(INSTANCE).unwrap();
    assert!(inside.is_promoted(FRAME_COUNT, "value"));
    inside.set_widget(FRAME_COUNT, "value", json!(97)).unwrap();
    assert_eq!(inside.widget(FRAME_COUNT, "value"), Some(&json!(97)));
    let json = inside.to_json();
    assert_eq!(json["nodes"][3]["widgets_values"][2], 97);
    assert_eq!(json["definitions"]["subgraphs"][0]["nodes"][14]["widgets_values"][0], 121);
}

#[test]
fn edits_inside_are_undone_inside_and_a_subgraphs_ports_cannot_be_deleted() {
    let mut editor = template();
    editor.enter_subgraph(INSTANCE).unwrap();
    // The frame-rate primitive is the definition's own (not promoted).
    assert!(!editor.is_promoted(FRAME_RATE, "value"));
    editor.set_widget(FRAME_RATE, "value", json!(30)).unwrap();
    assert!(editor.undo());
    assert_eq!(editor.widget(FRAME_RATE, "value"), Some(&json!(24)));
    editor.select(INPUT_NODE);
    assert_eq!(editor.delete_selection(), 0, "the subgraph's input node stays");
    assert!(editor.graph().node(INPUT_NODE).is_some());
    editor.leave_subgraph();
    assert!(!editor.can_undo(), "the root's history is its own");
    assert!(editor.enter_subgraph(75).is_err(), "a SaveVideo node is not a subgraph");
}

/// ComfyUI's LTX-Video text-to-video template, open.
pub(crate) fn ltxv_template() -> Editor {
    let mut editor = Editor::new(catalog());
    editor.open(&comfy_template("ltxv_text_to_video.json")).unwrap();
    editor
}

#[test]
fn three_nodes_made_into_a_subgraph_and_unpacked_give_the_same_prompt() {
    let mut editor = ltxv_template();
    let before = editor.to_prompt().unwrap().prompt.to_json();
    // The two prompts and the conditioning that takes them: CLIP in, positive and negative out.
    for id in [6, 7, 69] {
        editor.toggle_selected(id);
    }
    let instance = editor.convert_to_subgraph("Prompts").unwrap();
    assert!(editor.is_subgraph_instance(instance));
    assert!(editor.graph().node(6).is_none() && editor.graph().node(69).is_none());
    let schema = editor.schema(&editor.graph().node(instance).unwrap().class_type).unwrap();
    let inputs: Vec<&str> = schema.inputs.iter().map(|input| input.name.as_str()).collect();
    let outputs: Vec<&str> = schema.outputs.iter().map(|output| output.name.as_str()).collect();
    assert_eq!((inputs, outputs), (vec!["clip"], vec!["positive", "negative"]));
    // The subgraph runs the same nodes, under the instance's id.
    let inside = editor.to_prompt().unwrap().prompt;
    let classes = |prompt: &kinograph_engine::ApiPrompt| {
        let mut classes: Vec<String> = prompt.nodes.values().filter_map(|node| node.class_type.clone()).collect();
        classes.sort();
        classes
    };
    assert_eq!(classes(&inside), classes(&kinograph_engine::ApiPrompt::from_json(before.clone(), "before").unwrap()));
    assert!(inside.nodes.contains_key(&format!("{instance}:69")), "{:?}", inside.nodes.keys().collect::<Vec<_>>());
    // Saved and opened again, it is still a subgraph.
    let mut reopened = Editor::new(catalog());
    reopened.open_text(&editor.to_json().to_string(), "made").unwrap();
    assert!(reopened.is_subgraph_instance(instance));

    let nodes = editor.unpack_subgraph(instance).unwrap();
    assert_eq!(nodes, [6, 7, 69].into_iter().collect());
    assert_eq!(editor.to_prompt().unwrap().prompt.to_json(), before, "the same prompt after unpacking");
    assert!(editor.unpack_subgraph(6).is_err(), "a plain node is no subgraph");
}

#[test]
fn unpacking_the_ltx2_subgraph_keeps_its_promoted_values() {
    let mut editor = template();
    let before = editor.to_prompt().unwrap().prompt;
    editor.unpack_subgraph(INSTANCE).unwrap();
    assert!(editor.graph().node(INSTANCE).is_none());
    assert_eq!(editor.widget(FRAME_COUNT, "value"), Some(&json!(121)));
    let after = editor.to_prompt().unwrap().prompt;
    // The same nodes, with ids no longer prefixed by the instance's, and the same inputs.
    let unprefixed: Vec<String> = before.nodes.keys().map(|id| id.trim_start_matches("92:").to_string()).collect();
    let mut ids: Vec<String> = after.nodes.keys().cloned().collect();
    let mut expected = unprefixed.clone();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    for (id, node) in &before.nodes {
        let unpacked = &after.nodes[id.trim_start_matches("92:")];
        assert_eq!(unpacked.class_type, node.class_type, "{id}");
        for (name, value) in &node.inputs {
            let here = &unpacked.inputs[name];
            match (value, here) {
                (kinograph_engine::InputValue::Link(a), kinograph_engine::InputValue::Link(b)) => {
                    assert_eq!((a.node.trim_start_matches("92:"), a.slot), (b.node.as_str(), b.slot), "{id}.{name}");
                }
                _ => assert_eq!(value, here, "{id}.{name}"),
            }
        }
    }
}

#[test]
fn two_instances_of_one_subgraph_stay_in_step_and_keep_their_own_promoted_values() {
    let mut editor = template();
    editor.select(INSTANCE);
    let copy = *editor.duplicate().iter().next().unwrap();
    assert!(editor.is_subgraph_instance(copy));
    editor.set_widget(copy, "value", json!(49)).unwrap();
    // An edit inside one instance is an edit of the definition both run.
    editor.enter_subgraph(copy).unwrap();
    editor.set_widget(FRAME_RATE, "value", json!(30)).unwrap();
    editor.leave_subgraph();
    let prompt = editor.to_prompt().unwrap().prompt;
    for instance in [INSTANCE, copy] {
        let rate = &prompt.nodes[&format!("{instance}:{FRAME_RATE}")].inputs["value"];
        assert_eq!(rate, &kinograph_engine::InputValue::Literal(json!(30)), "instance {instance}");
    }
    // Each keeps its own promoted frame count.
    let count = |instance: i64| prompt.nodes[&format!("{instance}:{FRAME_COUNT}")].inputs["value"].clone();
    assert_eq!(count(INSTANCE), kinograph_engine::InputValue::Literal(json!(121)));
    assert_eq!(count(copy), kinograph_engine::InputValue::Literal(json!(49)));
}
