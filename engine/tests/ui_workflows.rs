//! UI workflows: every official template parses, converts and round-trips; the LTX-Video templates
//! convert to exactly ComfyUI's API prompts; subgraphs, bypass, mute, reroutes and edits.

mod comfy_schemas;

use comfy_schemas::ltxv_registry;
use kinograph_engine::workflow::{UiGraph, UiNode};
use kinograph_engine::{
    ApiPrompt, Conversion, ConvertOptions, Environment, InputValue, Link, Registry, UiWorkflow, convert,
};
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/comfy-templates");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn templates() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(TEMPLATES)
        .unwrap_or_else(|e| panic!("{TEMPLATES}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn template(name: &str) -> (Json, UiWorkflow) {
    let path = Path::new(TEMPLATES).join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let json: Json = serde_json::from_str(&text).unwrap();
    let workflow = UiWorkflow::parse(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (json, workflow)
}

fn convert_with(workflow: &UiWorkflow, registry: &Registry) -> Conversion {
    convert(workflow, registry, &Environment::default(), &ConvertOptions::default()).unwrap()
}

fn link(node: &str, slot: usize) -> InputValue {
    InputValue::Link(Link { node: node.into(), slot })
}

fn is_virtual(type_name: &str, definitions: &BTreeSet<String>) -> bool {
    matches!(type_name, "Note" | "MarkdownNote" | "Reroute" | "PrimitiveNode") || definitions.contains(type_name)
}

/// The prompt ids the conversion must produce, found by walking the file independently of the converter.
fn expected_ids(workflow: &UiWorkflow) -> BTreeSet<String> {
    fn walk(workflow: &UiWorkflow, graph: &UiGraph, prefix: &str, defs: &BTreeSet<String>, out: &mut BTreeSet<String>) {
        for node in &graph.nodes {
            if let Some(definition) = workflow.all_subgraphs().into_iter().find(|d| d.id == node.type_name) {
                if node.mode == 2 || node.mode == 4 {
                    continue; // a muted or bypassed instance runs none of its inner nodes
                }
                walk(workflow, &definition.graph, &format!("{prefix}{}:", node.id), defs, out);
            } else if !is_virtual(&node.type_name, defs) && node.mode != 2 && node.mode != 4 {
                out.insert(format!("{prefix}{}", node.id));
            }
        }
    }
    let definitions: BTreeSet<String> = workflow.all_subgraphs().iter().map(|d| d.id.clone()).collect();
    let mut out = BTreeSet::new();
    walk(workflow, &workflow.root, "", &definitions, &mut out);
    out
}

/// The file's node behind a prompt id such as `92:89`.
fn node_at<'a>(workflow: &'a UiWorkflow, id: &str) -> &'a UiNode {
    let mut graph = &workflow.root;
    let parts: Vec<&str> = id.split(':').collect();
    for instance in &parts[..parts.len() - 1] {
        let node = graph.node(instance).unwrap();
        graph = &workflow.all_subgraphs().into_iter().find(|d| d.id == node.type_name).unwrap().graph;
    }
    graph.node(parts[parts.len() - 1]).unwrap()
}

#[test]
fn every_template_parses_converts_and_round_trips() {
    let files = templates();
    assert!(files.len() >= 35, "expected the 35 official templates in {TEMPLATES}, found {}", files.len());
    let registry = ltxv_registry();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (original, workflow) = template(&name);
        assert_eq!(workflow.to_json(), original, "{name}: saving without edits changes the file");

        let conversion = convert_with(&workflow, &registry);
        let prompt = &conversion.prompt;
        let definitions: BTreeSet<String> = workflow.all_subgraphs().iter().map(|d| d.id.clone()).collect();
        let ids: BTreeSet<String> = prompt.nodes.keys().cloned().collect();
        assert_eq!(ids, expected_ids(&workflow), "{name}: prompt node ids");
        for (id, node) in &prompt.nodes {
            let class = node.class_type.as_deref().unwrap();
            assert!(!is_virtual(class, &definitions), "{name}: virtual node {id} ({class}) left in the prompt");
            let source = node_at(&workflow, id);
            assert!(source.mode != 2 && source.mode != 4, "{name}: muted or bypassed node {id} in the prompt");
            assert!(node.title().is_some(), "{name}: node {id} has no _meta.title");
            for (input, value) in &node.inputs {
                match value {
                    InputValue::Link(link) => assert!(
                        prompt.nodes.contains_key(&link.node),
                        "{name}: {id}.{input} links to {link}, which is not in the prompt"
                    ),
                    InputValue::BadLink(bad) => panic!("{name}: {id}.{input} holds a malformed link {bad}"),
                    InputValue::Literal(_) => {}
                }
            }
        }
        // The API form reads back as the same prompt.
        assert_eq!(ApiPrompt::from_json(prompt.to_json(), &name).unwrap(), *prompt, "{name}");
    }
}

fn expected_prompt(name: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(Path::new(DATA).join(name)).unwrap()).unwrap()
}

#[test]
fn ltxv_text_to_video_converts_to_comfyuis_prompt() {
    let (_, workflow) = template("ltxv_text_to_video.json");
    let conversion = convert_with(&workflow, &ltxv_registry());
    assert_eq!(conversion.prompt.to_json(), expected_prompt("ltxv_text_to_video.api.json"));
    assert!(conversion.warnings.is_empty(), "{:?}", conversion.warnings);
    let graph = kinograph_engine::validate(&conversion.prompt, &ltxv_registry(), &Environment::default());
    assert!(graph.is_ok(), "{}", graph.err().map(|report| report.to_text()).unwrap_or_default());
}

#[test]
fn ltxv_image_to_video_converts_to_comfyuis_prompt() {
    let (_, workflow) = template("ltxv_image_to_video.json");
    let conversion = convert_with(&workflow, &ltxv_registry());
    // Positional mapping as in ComfyUI: the stored 0.15 (once image_noise_scale) lands on `strength`.
    assert_eq!(conversion.prompt.to_json(), expected_prompt("ltxv_image_to_video.api.json"));
    assert!(conversion.warnings.is_empty(), "{:?}", conversion.warnings);
    let graph = kinograph_engine::validate(&conversion.prompt, &ltxv_registry(), &Environment::default());
    assert!(graph.is_ok(), "{}", graph.err().map(|report| report.to_text()).unwrap_or_default());
}

#[test]
fn ltx2_subgraph_is_flattened_with_bypass_and_reroutes_resolved() {
    let (_, workflow) = template("video_ltx2_t2v.json");
    let conversion = convert_with(&workflow, &ltxv_registry());
    // CreateVideo there was saved by a newer ComfyUI than the schemas mirrored here (0.3.64).
    let warnings: Vec<String> = conversion.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "node 92:97 \"Create Video\" (CreateVideo): widgets_values holds 2 values, the schema expects 1"
        )
    );
    let prompt = conversion.prompt;
    assert!(!prompt.nodes.contains_key("92"), "the instance itself is not a node");
    assert_eq!(prompt.nodes["75"].inputs["video"], link("92:97", 0), "SaveVideo reads the subgraph's output");
    let empty_image = &prompt.nodes["92:89"];
    assert_eq!(empty_image.class_type.as_deref(), Some("EmptyImage"));
    assert_eq!(empty_image.inputs["width"], InputValue::Literal(json!(1280)), "promoted widget value");
    assert_eq!(empty_image.inputs["height"], InputValue::Literal(json!(720)));
    assert_eq!(prompt.nodes["92:62"].inputs["value"], InputValue::Literal(json!(121)));
    assert_eq!(prompt.nodes["92:11"].inputs["noise_seed"], InputValue::Literal(json!(10)));
    // Bypassed LoRA loaders 105 and 106 are replaced by their model inputs.
    for bypassed in ["92:105", "92:106", "92:99"] {
        assert!(!prompt.nodes.contains_key(bypassed), "{bypassed} is bypassed");
    }
    assert_eq!(prompt.nodes["92:82"].inputs["model"], link("92:68", 0));
    assert_eq!(prompt.nodes["92:47"].inputs["model"], link("92:1", 0));
    // Reroute 77 is followed to the checkpoint's VAE.
    assert_eq!(prompt.nodes["92:84"].inputs["vae"], link("92:1", 2));
    assert!(!prompt.nodes.contains_key("92:77"));
    let inner = prompt.nodes.keys().filter(|id| id.starts_with("92:")).count();
    assert!(inner >= 30, "about 35 inner nodes, found {inner}");
}

#[test]
fn unknown_classes_keep_their_links_by_input_name() {
    let (_, workflow) = template("video_ltx2_t2v.json");
    let prompt = convert_with(&workflow, &Registry::new()).prompt;
    let sampler = &prompt.nodes["92:41"];
    assert_eq!(sampler.class_type.as_deref(), Some("SamplerCustomAdvanced"));
    for input in ["noise", "guider", "sampler", "sigmas", "latent_image"] {
        assert!(matches!(sampler.inputs[input], InputValue::Link(_)), "{input}");
    }
}

#[test]
fn muted_nodes_are_pruned_and_inputs_linked_to_them_deleted() {
    let (_, workflow) = template("hunyuan_video_text_to_video.json");
    let muted: Vec<&UiNode> = workflow.root.nodes.iter().filter(|node| node.mode == 2).collect();
    assert_eq!(muted.len(), 1);
    let prompt = convert_with(&workflow, &ltxv_registry()).prompt;
    assert!(!prompt.nodes.contains_key(&muted[0].id));
    for node in prompt.nodes.values() {
        for value in node.inputs.values() {
            assert_ne!(*value, link(&muted[0].id, 0));
        }
    }
}

#[test]
fn widget_count_mismatch_is_a_warning_naming_the_node() {
    let (_, mut workflow) = template("ltxv_text_to_video.json");
    let node = workflow.root.node_mut("70").unwrap();
    node.widgets_values = Some(json!([768, 512, 97]));
    let conversion = convert_with(&workflow, &ltxv_registry());
    assert_eq!(conversion.warnings.len(), 1);
    let text = conversion.warnings[0].to_string();
    assert!(text.contains("node 70") && text.contains("EmptyLTXVLatentVideo"), "{text}");
    assert!(text.contains("holds 3 values") && text.contains("expects 4"), "{text}");
    assert!(!conversion.prompt.nodes["70"].inputs.contains_key("batch_size"));
}

#[test]
fn a_seed_without_its_control_value_is_mapped_and_reported() {
    let (_, mut workflow) = template("ltxv_text_to_video.json");
    workflow.root.node_mut("72").unwrap().widgets_values = Some(json!([true, 7, 3]));
    let conversion = convert_with(&workflow, &ltxv_registry());
    let sampler = &conversion.prompt.nodes["72"];
    assert_eq!(sampler.inputs["noise_seed"], InputValue::Literal(json!(7)));
    assert_eq!(sampler.inputs["cfg"], InputValue::Literal(json!(3)), "the 3 is not taken for a control keyword");
    assert_eq!(conversion.warnings.len(), 1, "{:?}", conversion.warnings);
}

#[test]
fn dynamic_prompts_are_resolved_deterministically() {
    let (_, mut workflow) = template("ltxv_text_to_video.json");
    workflow.root.node_mut("6").unwrap().widgets_values =
        Some(json!(["a {red|green} fox // not sent\n/* nor this */"]));
    let registry = ltxv_registry();
    let first = convert_with(&workflow, &registry).prompt;
    let again = convert_with(&workflow, &registry).prompt;
    assert_eq!(first, again);
    let InputValue::Literal(Json::String(text)) = &first.nodes["6"].inputs["text"] else { panic!() };
    assert!(text == "a red fox \n" || text == "a green fox \n", "{text:?}");
    let mut seen = BTreeSet::new();
    for seed in 0..32 {
        let options = ConvertOptions { dynamic_prompt_seed: Some(seed) };
        let prompt = convert(&workflow, &registry, &Environment::default(), &options).unwrap().prompt;
        seen.insert(prompt.nodes["6"].inputs["text"].to_json().to_string());
    }
    assert_eq!(seen.len(), 2, "both options are drawn for some seed");
    // Strings without dynamic prompts (a file name prefix) are left alone.
    assert_eq!(first.nodes["79"].inputs["filename_prefix"], InputValue::Literal(json!("video/ComfyUI")));
}

#[test]
fn an_edit_changes_one_widget_value_and_keeps_everything_else() {
    let registry = ltxv_registry();
    let env = Environment::default();
    let (original, mut workflow) = template("ltxv_text_to_video.json");
    workflow.set_widget_value("72", "cfg", json!(4.5), &registry, &env).unwrap();
    workflow.set_widget_value("70", "length", json!(121), &registry, &env).unwrap();
    let mut expected = original.clone();
    for node in expected["nodes"].as_array_mut().unwrap() {
        match node["id"].as_i64() {
            Some(72) => node["widgets_values"][3] = json!(4.5),
            Some(70) => node["widgets_values"][2] = json!(121),
            _ => {}
        }
    }
    assert_eq!(workflow.to_json(), expected);
    let prompt = convert_with(&workflow, &registry).prompt;
    assert_eq!(prompt.nodes["72"].inputs["cfg"], InputValue::Literal(json!(4.5)));
    assert_eq!(prompt.nodes["70"].inputs["length"], InputValue::Literal(json!(121)));

    let error = workflow.set_widget_value("72", "model", json!(1), &registry, &env).unwrap_err().to_string();
    assert!(error.contains("not a widget") && error.contains("noise_seed"), "{error}");
    assert!(workflow.set_widget_value("999", "cfg", json!(1), &registry, &env).is_err());
}

#[test]
fn edits_reach_promoted_and_inner_subgraph_widgets() {
    let registry = ltxv_registry();
    let env = Environment::default();
    let (original, mut workflow) = template("video_ltx2_t2v.json");
    workflow.set_widget_value("92", "width", json!(960), &registry, &env).unwrap();
    workflow.set_widget_value("92:9", "steps", json!(12), &registry, &env).unwrap();
    let saved = workflow.to_json();
    assert_ne!(saved, original);
    let instance = saved["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 92).unwrap();
    assert_eq!(instance["widgets_values"][0], 960);
    assert_eq!(instance["pos"], original["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 92).unwrap()["pos"]);
    let prompt = convert_with(&workflow, &registry).prompt;
    assert_eq!(prompt.nodes["92:89"].inputs["width"], InputValue::Literal(json!(960)));
    assert_eq!(prompt.nodes["92:9"].inputs["steps"], InputValue::Literal(json!(12)));
}

#[test]
fn version_1_files_with_object_links_convert() {
    let file = json!({
        "version": 1,
        "state": {"lastNodeId": 2, "lastLinkId": 1, "lastGroupId": 0, "lastRerouteId": 0},
        "nodes": [
            {"id": 1, "type": "KSamplerSelect", "mode": 0, "widgets_values": ["euler"], "pos": [0, 0],
             "outputs": [{"name": "SAMPLER", "type": "SAMPLER", "links": [1]}]},
            {"id": 2, "type": "Consumer", "mode": 0, "inputs": [{"name": "sampler", "type": "SAMPLER", "link": 1}],
             "custom": {"kept": true}}
        ],
        "links": [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "SAMPLER"}],
        "reroutes": [], "extra": {"anything": [1, 2, 3]}
    });
    let workflow = UiWorkflow::from_json(file.clone(), "v1").unwrap();
    assert_eq!(workflow.to_json(), file);
    let prompt = convert_with(&workflow, &ltxv_registry()).prompt;
    assert_eq!(prompt.nodes["2"].inputs["sampler"], link("1", 0));
    assert_eq!(prompt.nodes["2"].class_type.as_deref(), Some("Consumer"));
}

#[test]
fn malformed_files_are_errors_naming_the_node() {
    let no_type = json!({"nodes": [{"id": 5, "mode": 0}], "links": []});
    let error = UiWorkflow::from_json(no_type, "bad.json").unwrap_err().to_string();
    assert!(error.contains("bad.json") && error.contains("node 5 has no type"), "{error}");
    let bad_inputs = json!({"nodes": [{"id": 6, "type": "X", "inputs": 3}], "links": []});
    let error = UiWorkflow::from_json(bad_inputs, "bad.json").unwrap_err().to_string();
    assert!(error.contains("node 6 (X)"), "{error}");
    let bad_link = json!({"nodes": [], "links": [[1, 2]]});
    assert!(UiWorkflow::from_json(bad_link, "bad.json").unwrap_err().to_string().contains("link 0"));
}

#[test]
fn self_containing_subgraphs_are_an_error() {
    let file = json!({
        "nodes": [{"id": 1, "type": "loop-id"}], "links": [],
        "definitions": {"subgraphs": [{"id": "loop-id", "name": "Loop", "inputs": [], "outputs": [],
            "nodes": [{"id": 2, "type": "loop-id"}], "links": []}]}
    });
    let workflow = UiWorkflow::from_json(file, "loop.json").unwrap();
    let error = convert(&workflow, &Registry::new(), &Environment::default(), &ConvertOptions::default()).unwrap_err();
    assert!(error.to_string().contains("contains itself"), "{error}");
}

#[test]
fn a_bypassed_subgraph_instance_passes_its_input_through() {
    let definition = json!({
        "id": "blur-def", "name": "Blur",
        "inputs": [{"id": "a", "name": "pixels", "type": "IMAGE", "linkIds": [10]}],
        "outputs": [{"id": "b", "name": "IMAGE", "type": "IMAGE", "linkIds": [11]}],
        "nodes": [{"id": 5, "type": "Blur", "mode": 0,
                   "inputs": [{"name": "image", "type": "IMAGE", "link": 10}],
                   "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [11]}]}],
        "links": [{"id": 10, "origin_id": -10, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "IMAGE"},
                  {"id": 11, "origin_id": 5, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "IMAGE"}]
    });
    let mut file = json!({
        "nodes": [
            {"id": 1, "type": "Source", "mode": 0, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]},
            {"id": 2, "type": "blur-def", "mode": 0, "inputs": [{"name": "pixels", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
            {"id": 3, "type": "Sink", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}]}
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
        "definitions": {"subgraphs": [definition]}
    });
    let registry = Registry::new();
    let enabled = convert_with(&UiWorkflow::from_json(file.clone(), "t").unwrap(), &registry).prompt;
    assert_eq!(enabled.nodes["3"].inputs["images"], link("2:5", 0));
    assert_eq!(enabled.nodes["2:5"].inputs["image"], link("1", 0));

    file["nodes"][1]["mode"] = json!(4);
    let bypassed = convert_with(&UiWorkflow::from_json(file.clone(), "t").unwrap(), &registry).prompt;
    assert!(!bypassed.nodes.contains_key("2:5"), "a bypassed instance runs none of its nodes");
    assert_eq!(bypassed.nodes["3"].inputs["images"], link("1", 0));

    file["nodes"][1]["mode"] = json!(2);
    let muted = convert_with(&UiWorkflow::from_json(file, "t").unwrap(), &registry).prompt;
    assert!(!muted.nodes.contains_key("2:5"));
    assert!(!muted.nodes["3"].inputs.contains_key("images"), "an input linked to a muted node is deleted");
}

#[test]
fn edits_of_proxied_widgets_reach_the_inner_node() {
    let registry = ltxv_registry();
    let env = Environment::default();
    let (original, mut workflow) = template("image_qwen_image.json");
    let instance = workflow.root.nodes.iter().find(|node| node.field("properties").unwrap()["proxyWidgets"].is_array());
    let instance_id = instance.unwrap().id.clone();
    workflow.set_widget_value(&instance_id, "text", json!("a {cat|cat}"), &registry, &env).unwrap();
    let prompt = convert_with(&workflow, &registry).prompt;
    assert_eq!(prompt.nodes[&format!("{instance_id}:6")].inputs["text"], InputValue::Literal(json!("a cat")));
    let saved = workflow.to_json();
    assert_eq!(saved["nodes"], original["nodes"], "the instance itself is unchanged");
    assert_ne!(saved["definitions"], original["definitions"], "the inner node holds the value");
    let error = workflow.set_widget_value(&instance_id, "nothing", json!(1), &registry, &env).unwrap_err();
    assert!(error.to_string().contains("no promoted widget 'nothing'"), "{error}");
}

/// Damaged copies of every template (links to nowhere, every node bypassed or muted, widget lists cut
/// short, subgraph inputs at the root): conversion returns a prompt or an error, never panics, and never
/// leaves a link to a node that is not in the prompt.
#[test]
fn damaged_templates_never_panic() {
    let registry = ltxv_registry();
    let mut state = 0x2545_f491_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for path in templates() {
        let original: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for round in 0..6 {
            let mut file = original.clone();
            let nodes = file["nodes"].as_array_mut().unwrap();
            for node in nodes.iter_mut() {
                match (round, next() % 4) {
                    (0, 0) | (4, _) => node["mode"] = json!(4),
                    (1, 0) => node["mode"] = json!(2),
                    (2, _) => {
                        if let Some(values) = node["widgets_values"].as_array_mut() {
                            values.truncate((next() % 3) as usize);
                        }
                    }
                    (3, 0) => {
                        if let Some(inputs) = node["inputs"].as_array_mut() {
                            for input in inputs {
                                input["link"] = json!(next() % 50_000);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if round == 5
                && let Some(links) = file["links"].as_array_mut()
            {
                for link in links.iter_mut().step_by(3) {
                    link[1] = json!(-10);
                }
            }
            let name = format!("{} (round {round})", path.display());
            let Ok(workflow) = UiWorkflow::from_json(file, &name) else { continue };
            let Ok(conversion) = convert(&workflow, &registry, &Environment::default(), &ConvertOptions::default())
            else {
                continue;
            };
            for (id, node) in &conversion.prompt.nodes {
                for value in node.inputs.values() {
                    if let InputValue::Link(link) = value {
                        assert!(conversion.prompt.nodes.contains_key(&link.node), "{name}: {id} -> {link}");
                    }
                }
            }
        }
    }
}
