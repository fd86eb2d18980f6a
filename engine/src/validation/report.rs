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
    /// Every error type, in declaration order.
    pub const ALL: [ErrorType; 12] = [
        ErrorType::MissingNodeType,
        ErrorType::RequiredInputMissing,
        ErrorType::BadLinkedInput,
        ErrorType::ReturnTypeMismatch,
        ErrorType::InvalidInputType,
        ErrorType::ValueSmallerThanMin,
        ErrorType::ValueBiggerThanMax,
        ErrorType::ValueNotInList,
        ErrorType::CustomValidationFailed,
        ErrorType::DependencyCycle,
        ErrorType::PromptNoOutputs,
        ErrorType::PromptOutputsFailedValidation,
    ];

    /// The error type ComfyUI calls `name`, if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|error_type| error_type.as_str() == name)
    }

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
    /// Reads ComfyUI's JSON object back (`{type, message, details, extra_info}`), as a server answers a
    /// refused prompt; `None` when its type is not a validation error type. The input at fault comes
    /// from `extra_info.input_name`; the explanation is left empty, since the answer has none beyond
    /// the message and details.
    pub fn from_json(value: &Json) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Json::as_str).unwrap_or_default().to_string();
        let error_type = ErrorType::from_name(value.get("type")?.as_str()?)?;
        let extra_info = value.get("extra_info").and_then(Json::as_object).cloned().unwrap_or_default();
        let input = extra_info.get("input_name").and_then(Json::as_str).map(str::to_string);
        Some(ValidationError {
            error_type,
            message: text("message"),
            details: text("details"),
            extra_info,
            input,
            explanation: String::new(),
        })
    }

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

    /// Reads ComfyUI's response body back ([`ValidationReport::to_comfy_json`]'s shape, as kinograph's and
    /// ComfyUI's servers answer a refused prompt); `None` when it is not a validation report (another
    /// kind of refusal, or not that shape at all). Node errors of unknown types are left out.
    pub fn from_comfy_json(value: &Json) -> Option<Self> {
        let error = ValidationError::from_json(value.get("error")?)?;
        let mut node_errors = IndexMap::new();
        for (id, node) in value.get("node_errors")?.as_object()? {
            let strings = |key: &str| -> Vec<String> {
                let list = node.get(key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
                list.iter().filter_map(|item| item.as_str().map(str::to_string)).collect()
            };
            let errors = node.get("errors").and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
            node_errors.insert(
                id.clone(),
                NodeErrors {
                    class_type: node.get("class_type").and_then(Json::as_str).unwrap_or_default().to_string(),
                    title: None,
                    errors: errors.iter().filter_map(ValidationError::from_json).collect(),
                    dependent_outputs: strings("dependent_outputs"),
                },
            );
        }
        Some(ValidationReport { error, node_errors })
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
