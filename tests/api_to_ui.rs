//! API prompts laid out as UI workflows (`ui_from_prompt`, used to store a UI workflow in the outputs
//! of API runs and by `kinograph convert --ui`) convert back to the same prompt with the editor's rules.

use kinograph_engine::{ApiPrompt, ConvertOptions, Environment, WorkflowFile, ui_from_prompt};
use serde_json::Value as Json;
use std::path::Path;

/// Class types and inputs of every node, by id (titles aside).
fn essentials(prompt: &ApiPrompt) -> Json {
    let mut json = prompt.to_json();
    for node in json.as_object_mut().unwrap().values_mut() {
        node.as_object_mut().unwrap().remove("_meta");
    }
    json
}

#[test]
fn api_workflows_round_trip_through_the_ui_format() {
    let registry = kinograph_nodes::registry();
    let env = Environment::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "workflows/hello_kinograph.json",
        "workflows/ltxv_text_to_video.json",
        "workflows/ltxv_image_to_video.json",
        "tests/data/pipeline/ltxv_i2v_tiny.json",
    ] {
        let prompt = ApiPrompt::load(&root.join(file)).unwrap();
        let ui = ui_from_prompt(&prompt, &registry, &env).unwrap();
        let json = ui.to_json();
        let nodes = json["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), prompt.nodes.len(), "{file}");
        // Nodes do not overlap: each column's nodes are stacked.
        let boxes: Vec<(f64, f64, f64)> = nodes
            .iter()
            .map(|n| (n["pos"][0].as_f64().unwrap(), n["pos"][1].as_f64().unwrap(), n["size"][1].as_f64().unwrap()))
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(a.0 != b.0 || a.1 + a.2 <= b.1 || b.1 + b.2 <= a.1, "{file}: overlapping nodes");
            }
        }
        let reparsed = WorkflowFile::parse(&json.to_string(), file).unwrap();
        assert!(matches!(reparsed, WorkflowFile::Ui(_)), "{file} is written in the UI format");
        let conversion = reparsed.into_prompt(&registry, &env, &ConvertOptions::default()).unwrap();
        assert!(conversion.warnings.is_empty(), "{file}: {:?}", conversion.warnings);
        let mut expected = essentials(&prompt);
        // A prompt from ComfyUI 0.3.64 sets `SaveVideo`'s codec through the top-level `codec` it had then; the
        // editor now shows the codec under `format`, whose widget takes its default.
        for node in expected.as_object_mut().unwrap().values_mut() {
            let save_video = node["class_type"] == "SaveVideo";
            let inputs = node["inputs"].as_object_mut().unwrap();
            if save_video && inputs.contains_key("codec") && !inputs.contains_key("format.codec") {
                inputs.insert("format.codec".into(), Json::from("auto"));
            }
        }
        assert_eq!(essentials(&conversion.prompt), expected, "{file}");
    }
}

#[test]
fn unknown_node_types_cannot_be_laid_out() {
    let prompt = ApiPrompt::parse(r#"{"1": {"class_type": "NoSuchNode", "inputs": {}}}"#, "test").unwrap();
    let error = ui_from_prompt(&prompt, &kinograph_nodes::registry(), &Environment::default()).unwrap_err();
    assert!(error.to_string().contains("NoSuchNode"), "{error}");
}
