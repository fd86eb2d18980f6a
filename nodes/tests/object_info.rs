//! The `/object_info` entries of the nodes of ComfyUI's `comfy_extras/nodes_lt.py` against ComfyUI's own
//! (`tests/data/nodes_lt_object_info.json`, made by `tools/fixtures/make_nodes_lt_object_info.py`): the
//! names, types, defaults, ranges and tooltips of the inputs, their order, the outputs and the category,
//! as a ComfyUI client reads them.

use kinograph_engine::Environment;
use serde_json::{Value as Json, json};

fn comfyui() -> serde_json::Map<String, Json> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nodes_lt_object_info.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An input without options as `[TYPE, {}]`: ComfyUI's newer nodes (all of `nodes_lt.py`) write the empty
/// options object, its older ones and kinograph leave it out; clients read both the same.
fn with_empty_options(mut info: Json) -> Json {
    for section in ["required", "optional"] {
        if let Some(inputs) =
            info.get_mut("input").and_then(|input| input.get_mut(section)).and_then(Json::as_object_mut)
        {
            for spec in inputs.values_mut() {
                if let Some(spec) = spec.as_array_mut().filter(|spec| spec.len() == 1) {
                    spec.push(json!({}));
                }
            }
        }
    }
    info
}

/// Optional inputs that later ComfyUI versions added to a class of the pinned commit and kinograph has
/// too (`LTXVAddGuide.attention_mask` and `iclora_parameters`), left out of the comparison, and inputs whose
/// bounds they changed, set back (`LTXVAddGuide.strength`, whose maximum went from 1 to 10).
fn without_newer_inputs(class: &str, mut info: Json) -> Json {
    let newer: &[&str] = match class {
        "LTXVAddGuide" => {
            assert_eq!(info["input"]["required"]["strength"][1]["max"], 10.0, "current ComfyUI's strength bound");
            info["input"]["required"]["strength"][1]["max"] = Json::from(1.0);
            &["attention_mask", "iclora_parameters"]
        }
        _ => &[],
    };
    for name in newer {
        if let Some(optional) = info["input"].get_mut("optional").and_then(Json::as_object_mut) {
            optional.remove(*name);
            if optional.is_empty() {
                info["input"].as_object_mut().unwrap().remove("optional");
            }
        }
        if let Some(order) = info["input_order"].get_mut("optional").and_then(Json::as_array_mut) {
            order.retain(|entry| entry != name);
            if order.is_empty() {
                info["input_order"].as_object_mut().unwrap().remove("optional");
            }
        }
    }
    info
}

#[test]
fn nodes_lt_classes_match_comfyui_object_info() {
    let ours = kinograph_nodes::registry().object_info(&Environment::default());
    let theirs = comfyui();
    assert_eq!(theirs.len(), 8, "the classes of nodes_lt.py at the pinned commit");
    let mut compared = 0;
    for (class, expected) in &theirs {
        let entry = ours.get(class).unwrap_or_else(|| panic!("{class} is missing from kinograph's registry"));
        let entry = without_newer_inputs(class, with_empty_options(entry.clone()));
        for key in
            ["input", "input_order", "output", "output_is_list", "output_name", "name", "category", "output_node"]
        {
            assert_eq!(entry[key], expected[key], "{class}: {key}");
        }
        compared += 1;
    }
    assert_eq!(compared, theirs.len());
}
