//! Validation errors, in ComfyUI's shape (`{error, node_errors}`) and as readable text.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};
use std::fmt::Write as _;

/// The error types validation reports; the names are ComfyUI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    MissingNodeType,
    RequiredInputMissing,
    BadLinkedInput,
    ReturnTypeMismatch,
    InvalidInputType,
    ValueSmallerThanMin,
    ValueBiggerThanMax,
    ValueNotInList,
    CustomValidationFailed,
    DependencyCycle,
    PromptNoOutputs,
    PromptOutputsFailedValidation,
}

impl ErrorType {
    /// The `type` string ComfyUI uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::MissingNodeType => "missing_node_type",
            ErrorType::RequiredInputMissing => "required_input_missing",
            ErrorType::BadLinkedInput => "bad_linked_input",
            ErrorType::ReturnTypeMismatch => "return_type_mismatch",
            ErrorType::InvalidInputType => "invalid_input_type",
            ErrorType::ValueSmallerThanMin => "value_smaller_than_min",
            ErrorType::ValueBiggerThanMax => "value_bigger_than_max",
            ErrorType::ValueNotInList => "value_not_in_list",
            ErrorType::CustomValidationFailed => "custom_validation_failed",
            ErrorType::DependencyCycle => "dependency_cycle",
            ErrorType::PromptNoOutputs => "prompt_no_outputs",
            ErrorType::PromptOutputsFailedValidation => "prompt_outputs_failed_validation",
        }
    }
}

/// One error.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    pub error_type: ErrorType,
    /// ComfyUI's short message ("Value not in list").
    pub message: String,
    /// ComfyUI's details string.
    pub details: String,
    pub extra_info: Map<String, Json>,
    /// The input at fault, if any.
    pub input: Option<String>,
    /// A full sentence for people: the value and what would be valid.
    pub explanation: String,
}

impl ValidationError {
    /// The error as ComfyUI's JSON object.
    pub fn to_json(&self) -> Json {
        json!({
            "type": self.error_type.as_str(),
            "message": self.message,
            "details": self.details,
            "extra_info": self.extra_info,
        })
    }
}

/// The errors of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeErrors {
    pub class_type: String,
    /// The title the user sees, when it differs from the class.
    pub title: Option<String>,
    pub errors: Vec<ValidationError>,
    /// Output nodes that depend on this node.
    pub dependent_outputs: Vec<String>,
}

/// Everything wrong with a workflow, found before anything ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// The prompt-level error (`prompt_no_outputs` or `prompt_outputs_failed_validation`).
    pub error: ValidationError,
    /// Errors by node id, in workflow order.
    pub node_errors: IndexMap<String, NodeErrors>,
}

impl ValidationReport {
    /// Number of errors, the prompt-level one included when it is not just a summary.
    pub fn error_count(&self) -> usize {
        let node_count: usize = self.node_errors.values().map(|n| n.errors.len()).sum();
        if self.error.error_type == ErrorType::PromptOutputsFailedValidation { node_count } else { node_count + 1 }
    }

    /// Every error of the given type, with its node id.
    pub fn errors_of(&self, error_type: ErrorType) -> Vec<(&str, &ValidationError)> {
        let mut found: Vec<(&str, &ValidationError)> = self
            .node_errors
            .iter()
            .flat_map(|(id, node)| node.errors.iter().map(move |e| (id.as_str(), e)))
            .filter(|(_, e)| e.error_type == error_type)
            .collect();
        if self.error.error_type == error_type {
            found.push(("", &self.error));
        }
        found
    }

    /// ComfyUI's response body: `{"error": {...}, "node_errors": {id: {errors, dependent_outputs, class_type}}}`.
    pub fn to_comfy_json(&self) -> Json {
        let node_errors: Map<String, Json> = self
            .node_errors
            .iter()
            .map(|(id, node)| {
                (
                    id.clone(),
                    json!({
                        "errors": node.errors.iter().map(ValidationError::to_json).collect::<Vec<_>>(),
                        "dependent_outputs": node.dependent_outputs,
                        "class_type": node.class_type,
                    }),
                )
            })
            .collect();
        json!({"error": self.error.to_json(), "node_errors": node_errors})
    }

    /// Readable text: one line per error, naming node id, title, class and input.
    pub fn to_text(&self) -> String {
        let count = self.error_count();
        let mut text = format!("the workflow is invalid ({count} error{}):\n", if count == 1 { "" } else { "s" });
        if self.error.error_type != ErrorType::PromptOutputsFailedValidation {
            let _ = writeln!(text, "  - {}", self.error.explanation);
        }
        // Unknown node types are listed once per type, with the nodes that use it.
        let mut missing: IndexMap<&str, MissingType<'_>> = IndexMap::new();
        for (id, node) in &self.node_errors {
            for error in &node.errors {
                if error.error_type == ErrorType::MissingNodeType {
                    let entry =
                        missing.entry(node.class_type.as_str()).or_insert_with(|| (Vec::new(), &error.explanation));
                    entry.0.push((id.as_str(), node));
                    continue;
                }
                let place = match &error.input {
                    Some(input) => format!("{}, input '{input}'", node_label(id, node)),
                    None => node_label(id, node),
                };
                let _ = writeln!(text, "  - {place}: {}", error.explanation);
            }
        }
        for (class, (nodes, explanation)) in missing {
            let place = if let [(id, node)] = nodes.as_slice() {
                node_label(id, node)
            } else {
                let names: Vec<String> = nodes
                    .iter()
                    .map(|(id, node)| match &node.title {
                        Some(title) if title != &node.class_type => format!("{id} \"{title}\""),
                        _ => (*id).to_string(),
                    })
                    .collect();
                format!("nodes {} ({class})", names.join(", "))
            };
            let _ = writeln!(text, "  - {place}: {explanation}");
        }
        text
    }
}

/// The nodes that use one unknown class, and the explanation to print once for all of them.
type MissingType<'a> = (Vec<(&'a str, &'a NodeErrors)>, &'a str);

fn node_label(id: &str, node: &NodeErrors) -> String {
    match &node.title {
        Some(title) if title != &node.class_type => format!("node {id} \"{title}\" ({})", node.class_type),
        _ => format!("node {id} ({})", node.class_type),
    }
}
