//! Validation reports every error at once, in ComfyUI's shape and in readable text.

mod common;

use common::{Log, registry};
use kinograph_engine::{ApiPrompt, Environment, ErrorType, ValidationReport, validate};
use serde_json::json;

fn report(json: serde_json::Value) -> ValidationReport {
    let prompt = ApiPrompt::from_json(json, "test").unwrap();
    validate(&prompt, &registry(&Log::default()), &Environment::default()).expect_err("workflow should be invalid")
}

fn only_error(
    report: &ValidationReport,
    error_type: ErrorType,
) -> (String, kinograph_engine::validation::ValidationError) {
    let found = report.errors_of(error_type);
    assert_eq!(found.len(), 1, "expected one {error_type:?}, got {}", report.to_text());
    (found[0].0.to_string(), found[0].1.clone())
}

#[test]
fn missing_node_type_names_the_class_and_suggests_similar_ones() {
    let report = report(json!({
        "1": {"class_type": "Numbr", "inputs": {}, "_meta": {"title": "Seed"}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    }));
    let (node, error) = only_error(&report, ErrorType::MissingNodeType);
    assert_eq!(node, "1");
    assert_eq!(error.extra_info["class_type"], "Numbr");
    assert_eq!(error.extra_info["node_title"], "Seed");
    assert!(report.to_text().contains("'Number'"), "{}", report.to_text());
    assert_eq!(report.to_comfy_json()["node_errors"]["1"]["dependent_outputs"], json!(["2"]));
}

#[test]
fn required_input_missing() {
    let report = report(json!({
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0]}},
        "2": {"class_type": "Number", "inputs": {"value": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    }));
    let (node, error) = only_error(&report, ErrorType::RequiredInputMissing);
    assert_eq!((node.as_str(), error.input.as_deref()), ("1", Some("b")));
    assert_eq!(error.details, "b");
}

#[test]
fn bad_linked_input_and_links_to_missing_nodes() {
    let report = report(json!({
        "1": {"class_type": "Add", "inputs": {"a": ["9", 0], "b": ["2", 0, 1]}},
        "2": {"class_type": "Number", "inputs": {"value": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["2", 3]}}
    }));
    let errors = report.errors_of(ErrorType::BadLinkedInput);
    assert_eq!(errors.len(), 3, "{}", report.to_text());
    let text = report.to_text();
    assert!(text.contains("node 1 (Add), input 'a': is linked to node '9', which is not in the workflow"), "{text}");
    assert!(text.contains("node 1 (Add), input 'b'"), "{text}");
    assert!(
        text.contains("node 4 (Show), input 'value': is linked to output 3 of node 2 (Number), which has 1 output"),
        "{text}"
    );
}

#[test]
fn return_type_mismatch() {
    let report = report(json!({
        "1": {"class_type": "MakeSamples", "inputs": {"value": 1.0, "count": 2}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["3", 0]}},
        "3": {"class_type": "Number", "inputs": {"value": 1}},
        "4": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    }));
    let (node, error) = only_error(&report, ErrorType::ReturnTypeMismatch);
    assert_eq!(node, "2");
    assert_eq!(error.extra_info["received_type"], "SAMPLES");
    assert!(error.details.contains("received_type(SAMPLES) mismatch input_type(INT)"));
}

#[test]
fn invalid_input_type() {
    let report = report(json!({
        "1": {"class_type": "Number", "inputs": {"value": "twelve"}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "SumSamples", "inputs": {"samples": 5}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}
    }));
    let errors = report.errors_of(ErrorType::InvalidInputType);
    assert_eq!(errors.len(), 2, "{}", report.to_text());
    let text = report.to_text();
    assert!(text.contains("node 1 (Number), input 'value': expected an integer (INT), got \"twelve\""), "{text}");
    assert!(text.contains("this input takes a link from a node's SAMPLES output"), "{text}");
}

#[test]
fn values_out_of_range() {
    let report = report(json!({
        "1": {"class_type": "Number", "inputs": {"value": -1}},
        "2": {"class_type": "Number", "inputs": {"value": 101}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}
    }));
    let (node, small) = only_error(&report, ErrorType::ValueSmallerThanMin);
    assert_eq!(node, "1");
    assert_eq!(small.message, "Value -1 smaller than min of 0");
    let (node, big) = only_error(&report, ErrorType::ValueBiggerThanMax);
    assert_eq!(node, "2");
    assert_eq!(big.message, "Value 101 bigger than max of 100");
    assert!(report.to_text().contains("value 101 is above the maximum 100 (valid: 0 ≤ value ≤ 100)"));
}

#[test]
fn value_not_in_list_offers_the_closest_values() {
    let report = report(json!({
        "1": {"class_type": "Pick", "inputs": {"sampler": "eulr", "width": 64, "cfg": 3.0, "flag": false}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    }));
    let (_, error) = only_error(&report, ErrorType::ValueNotInList);
    assert_eq!(error.message, "Value not in list");
    assert_eq!(error.extra_info["closest_values"][0], "euler");
    assert!(error.details.starts_with("sampler: 'eulr' not in"));
    assert!(report.to_text().contains("closest: 'euler'"), "{}", report.to_text());
}

#[test]
fn custom_validation() {
    let report = report(json!({
        "1": {"class_type": "Pick", "inputs": {"sampler": "euler", "width": 65, "cfg": 3.0, "flag": false}},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    }));
    let (_, error) = only_error(&report, ErrorType::CustomValidationFailed);
    assert_eq!(error.input.as_deref(), Some("width"));
    assert!(error.explanation.contains("multiple of 8"));
}

#[test]
fn dependency_cycle() {
    let report = report(json!({
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["3", 0]}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["3", 0]}},
        "3": {"class_type": "Number", "inputs": {"value": 1}},
        "4": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["3", 0]}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    }));
    let cycle = report.errors_of(ErrorType::DependencyCycle);
    let nodes: Vec<&str> = cycle.iter().map(|(id, _)| *id).collect();
    assert_eq!(nodes, vec!["1", "2"], "only the nodes on the cycle are blamed: {}", report.to_text());
    assert_eq!(cycle[0].1.extra_info["cycle_nodes"], json!(["1", "2"]));
}

#[test]
fn prompt_without_outputs() {
    let report = report(json!({"1": {"class_type": "Number", "inputs": {"value": 1}}}));
    assert_eq!(report.error.error_type, ErrorType::PromptNoOutputs);
    assert_eq!(report.to_comfy_json()["error"]["type"], "prompt_no_outputs");
}

#[test]
fn every_error_is_reported_at_once() {
    let report = report(json!({
        "1": {"class_type": "Number", "inputs": {"value": 500}, "_meta": {"title": "Steps"}},
        "2": {"class_type": "Pick", "inputs": {"sampler": "heun", "width": "wide", "cfg": 3.0}},
        "3": {"class_type": "Mystery", "inputs": {}},
        "4": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["7", 0]}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
        "6": {"class_type": "Show", "inputs": {"value": ["2", 0]}}
    }));
    let json = report.to_comfy_json();
    assert_eq!(json["error"]["type"], "prompt_outputs_failed_validation");
    let node_errors = json["node_errors"].as_object().unwrap();
    assert_eq!(node_errors.keys().collect::<Vec<_>>(), vec!["1", "2", "3", "4"]);
    let types = |id: &str| -> Vec<String> {
        node_errors[id]["errors"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(types("1"), vec!["value_bigger_than_max"]);
    assert_eq!(types("2"), vec!["invalid_input_type", "required_input_missing"]);
    assert_eq!(types("3"), vec!["missing_node_type"]);
    assert_eq!(types("4"), vec!["bad_linked_input"]);
    assert_eq!(node_errors["1"]["dependent_outputs"], json!(["5"]));
    assert_eq!(node_errors["2"]["class_type"], "Pick");
    for error in node_errors.values().flat_map(|n| n["errors"].as_array().unwrap()) {
        for key in ["type", "message", "details", "extra_info"] {
            assert!(error.get(key).is_some(), "{error} lacks {key}");
        }
    }
    assert_eq!(report.error_count(), 5);
    let text = report.to_text();
    assert!(text.starts_with("the workflow is invalid (5 errors):"), "{text}");
    assert!(text.contains("node 1 \"Steps\" (Number), input 'value'"), "{text}");
    assert!(text.contains("node 2 (Pick), input 'flag': required input is missing"), "{text}");
}

#[test]
fn valid_graph_keeps_only_what_outputs_need_in_dependency_order() {
    let prompt = ApiPrompt::from_json(
        json!({
            "9": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
            "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
            "1": {"class_type": "Number", "inputs": {"value": 1}},
            "2": {"class_type": "Number", "inputs": {"value": "2"}},
            "7": {"class_type": "Number", "inputs": {"value": 1000}}
        }),
        "test",
    )
    .unwrap();
    let graph = validate(&prompt, &registry(&Log::default()), &Environment::default()).unwrap();
    let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    assert!(!ids.contains(&"7"), "unneeded nodes are neither validated nor kept");
    let position = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(position("1") < position("3") && position("2") < position("3") && position("3") < position("9"));
}

#[test]
fn a_report_reads_back_from_comfyuis_answer() {
    let report = report(json!({
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0]}},
        "2": {"class_type": "Number", "inputs": {"value": 1}},
        "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    }));
    let answer = report.to_comfy_json();
    let read = ValidationReport::from_comfy_json(&answer).expect("a validation report");
    assert_eq!(read.to_comfy_json(), answer);
    assert_eq!(read.error_count(), report.error_count());
    let (node, error) = only_error(&read, ErrorType::RequiredInputMissing);
    assert_eq!((node.as_str(), error.input.as_deref()), ("1", Some("b")));
    // Other refusals (the server's own error types) are not validation reports.
    let refusal = json!({"error": {"type": "invalid_prompt", "message": "m", "details": "d", "extra_info": {}},
                         "node_errors": {}});
    assert!(ValidationReport::from_comfy_json(&refusal).is_none());
    assert_eq!(ErrorType::from_name("value_not_in_list"), Some(ErrorType::ValueNotInList));
}
