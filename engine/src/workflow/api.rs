//! The ComfyUI API prompt format: `{id: {class_type, inputs, _meta}}`, the form the engine executes.
//!
//! Links are `[source_id, output_slot]`; a literal list is wrapped as `{"__value__": [...]}`.
//! Parsing is lenient about the *content* of nodes (a node without `class_type` or a malformed link
//! becomes a validation error later, reported together with every other error) and strict about the
//! *shape* of the file (invalid JSON, or a top level that is not an object of nodes).

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use std::fmt;
use std::path::Path;

/// Why a file could not be read as a workflow at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The file could not be read.
    #[error("cannot read workflow {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid JSON.
    #[error("{origin} is not valid JSON: {message} at line {line}, column {column}")]
    Json { origin: String, message: String, line: usize, column: usize },
    /// Valid JSON, but not a prompt.
    #[error("{origin} is not a workflow: {message}")]
    Shape { origin: String, message: String },
    /// `--set` or an API edit named something that is not there.
    #[error("{0}")]
    Edit(String),
    /// A UI workflow whose structure is broken (a node without a type, a malformed link, ...).
    #[error("{origin}: {message}")]
    Ui { origin: String, message: String },
    /// An image or video whose embedded workflow cannot be read.
    #[error("{origin}: {message}")]
    Embedded { origin: String, message: String },
}

/// A link from an input to output `slot` of node `node`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub node: String,
    pub slot: usize,
}

/// One input of a prompt node, as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// `[node_id, slot]`.
    Link(Link),
    /// Any literal; a `{"__value__": [...]}` wrapper has been removed.
    Literal(Json),
    /// A list that is not a valid link (wrong length or element types); reported by validation.
    BadLink(Json),
}

impl InputValue {
    /// Reads an input the way ComfyUI does: any list is a link.
    pub fn from_json(value: Json) -> Self {
        match value {
            Json::Array(items) => match items.as_slice() {
                [node, Json::Number(slot)] => {
                    let node = match node {
                        Json::String(id) => Some(id.clone()),
                        Json::Number(id) if id.is_u64() => Some(id.to_string()),
                        _ => None,
                    };
                    let slot = slot
                        .as_u64()
                        .or_else(|| slot.as_f64().filter(|s| s.fract() == 0.0 && *s >= 0.0).map(|s| s as u64));
                    match (node, slot) {
                        (Some(node), Some(slot)) => InputValue::Link(Link { node, slot: slot as usize }),
                        _ => InputValue::BadLink(Json::Array(items)),
                    }
                }
                _ => InputValue::BadLink(Json::Array(items)),
            },
            Json::Object(mut object) if object.len() == 1 && object.contains_key("__value__") => {
                InputValue::Literal(object.remove("__value__").unwrap_or(Json::Null))
            }
            other => InputValue::Literal(other),
        }
    }

    /// Writes the input back in the API format.
    pub fn to_json(&self) -> Json {
        match self {
            InputValue::Link(link) => Json::Array(vec![Json::String(link.node.clone()), Json::from(link.slot)]),
            InputValue::Literal(Json::Array(items)) => {
                let mut wrapper = Map::new();
                wrapper.insert("__value__".into(), Json::Array(items.clone()));
                Json::Object(wrapper)
            }
            InputValue::Literal(value) | InputValue::BadLink(value) => value.clone(),
        }
    }
}

/// One node of an API prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptNode {
    /// `None` when the file's node has no `class_type` string.
    pub class_type: Option<String>,
    pub inputs: IndexMap<String, InputValue>,
    /// Every other field of the node (`_meta`, `is_changed`, ...), kept as written.
    pub extra: Map<String, Json>,
}

impl PromptNode {
    /// The title a user gave the node (`_meta.title`), if any.
    pub fn title(&self) -> Option<&str> {
        self.extra.get("_meta")?.get("title")?.as_str()
    }
}

/// An API prompt: nodes by id, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiPrompt {
    pub nodes: IndexMap<String, PromptNode>,
}

impl ApiPrompt {
    /// Reads a prompt file.
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        let (text, origin) = read_text(path)?;
        Self::parse(&text, &origin)
    }

    /// Parses prompt text; `origin` names it in errors (a file name, or "request body").
    pub fn parse(text: &str, origin: &str) -> Result<Self, WorkflowError> {
        Self::from_json(parse_json(text, origin)?, origin)
    }

    /// Builds a prompt from parsed JSON. Accepts a bare prompt or a POST /prompt body (`{"prompt": {...}}`).
    pub fn from_json(json: Json, origin: &str) -> Result<Self, WorkflowError> {
        let shape = |message: String| WorkflowError::Shape { origin: origin.to_string(), message };
        let Json::Object(mut top) = json else {
            return Err(shape(format!("expected a JSON object of nodes, found {}", json_kind(&json))));
        };
        if let Some(Json::Object(_)) = top.get("prompt")
            && let Some(Json::Object(prompt)) = top.remove("prompt")
        {
            top = prompt;
        }
        let mut nodes = IndexMap::with_capacity(top.len());
        for (id, node) in top {
            let Json::Object(mut fields) = node else {
                return Err(shape(format!(
                    "node '{id}' must be an object with class_type and inputs, found {}",
                    json_kind(&node)
                )));
            };
            let class_type = match fields.remove("class_type") {
                Some(Json::String(class)) => Some(class),
                _ => None,
            };
            let inputs = match fields.remove("inputs") {
                Some(Json::Object(inputs)) => {
                    inputs.into_iter().map(|(name, value)| (name, InputValue::from_json(value))).collect()
                }
                None => IndexMap::new(),
                Some(other) => {
                    return Err(shape(format!("node '{id}': inputs must be an object, found {}", json_kind(&other))));
                }
            };
            nodes.insert(id, PromptNode { class_type, inputs, extra: fields });
        }
        Ok(ApiPrompt { nodes })
    }

    /// The prompt as API-format JSON.
    pub fn to_json(&self) -> Json {
        let mut top = Map::with_capacity(self.nodes.len());
        for (id, node) in &self.nodes {
            let mut fields = Map::new();
            let inputs: Map<String, Json> =
                node.inputs.iter().map(|(name, value)| (name.clone(), value.to_json())).collect();
            fields.insert("inputs".into(), Json::Object(inputs));
            if let Some(class) = &node.class_type {
                fields.insert("class_type".into(), Json::String(class.clone()));
            }
            for (key, value) in &node.extra {
                fields.insert(key.clone(), value.clone());
            }
            top.insert(id.clone(), Json::Object(fields));
        }
        Json::Object(top)
    }

    /// Applies a `NODE_ID.INPUT=VALUE` override; the value is read as JSON when it parses, else as a string.
    pub fn apply_override(&mut self, assignment: &str) -> Result<(), WorkflowError> {
        let (target, raw_value) = assignment
            .split_once('=')
            .ok_or_else(|| WorkflowError::Edit(format!("--set '{assignment}': expected NODE_ID.INPUT=VALUE")))?;
        // Inputs may hold dots themselves (`resize_type.width`): split at the first dot that ends a node id.
        let splits = target.match_indices('.').map(|(at, _)| (&target[..at], &target[at + 1..]));
        let (node_id, input) = splits
            .clone()
            .find(|(node_id, _)| self.nodes.contains_key(*node_id))
            .or_else(|| target.rsplit_once('.'))
            .ok_or_else(|| WorkflowError::Edit(format!("--set '{assignment}': expected NODE_ID.INPUT before '='")))?;
        if !self.nodes.contains_key(node_id) {
            let ids: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
            return Err(WorkflowError::Edit(format!(
                "--set '{assignment}': the workflow has no node '{node_id}' (its nodes are {})",
                ids.join(", ")
            )));
        }
        let node = self.nodes.get_mut(node_id).expect("checked above");
        let value = serde_json::from_str::<Json>(raw_value).unwrap_or_else(|_| Json::String(raw_value.to_string()));
        node.inputs.insert(input.to_string(), InputValue::from_json(value));
        Ok(())
    }
}

/// Names a JSON value's kind for error messages.
pub fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Reads a text file, naming it in the error; returns the text and the name to use as `origin`.
pub fn read_text(path: &Path) -> Result<(String, String), WorkflowError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WorkflowError::Io { path: origin.clone(), source })?;
    Ok((text, origin))
}

/// Parses JSON text; a syntax error names `origin`, the line and the column.
pub fn parse_json(text: &str, origin: &str) -> Result<Json, WorkflowError> {
    serde_json::from_str(text).map_err(|error| json_error(&error, origin))
}

/// Converts a `serde_json` error into one that names the line and column.
pub fn json_error(error: &serde_json::Error, origin: &str) -> WorkflowError {
    let message = error.to_string();
    // serde_json appends " at line L column C"; keep only the cause.
    let message = message.split(" at line ").next().unwrap_or(&message).to_string();
    WorkflowError::Json { origin: origin.to_string(), message, line: error.line(), column: error.column() }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[\"{}\", {}]", self.node, self.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_literals_and_wrapped_lists() {
        let prompt = ApiPrompt::parse(
            r#"{"1": {"class_type": "A", "inputs": {"x": ["2", 0], "y": 3, "z": {"__value__": [1, 2]}, "w": [1, 2, 3]},
                "_meta": {"title": "My A"}}}"#,
            "test",
        )
        .unwrap();
        let node = &prompt.nodes["1"];
        assert_eq!(node.title(), Some("My A"));
        assert_eq!(node.inputs["x"], InputValue::Link(Link { node: "2".into(), slot: 0 }));
        assert_eq!(node.inputs["y"], InputValue::Literal(serde_json::json!(3)));
        assert_eq!(node.inputs["z"], InputValue::Literal(serde_json::json!([1, 2])));
        assert!(matches!(node.inputs["w"], InputValue::BadLink(_)));
        let round_trip = ApiPrompt::from_json(prompt.to_json(), "again").unwrap();
        assert_eq!(round_trip, prompt);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let error = ApiPrompt::parse("{\n  \"1\": {\"class_type\": \"A\",,}\n}", "bad.json").unwrap_err();
        match error {
            WorkflowError::Json { line, column, .. } => assert_eq!((line, column), (2, 27)),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn overrides_parse_json_or_fall_back_to_string() {
        let mut prompt = ApiPrompt::parse(r#"{"5": {"class_type": "A", "inputs": {}}}"#, "t").unwrap();
        prompt.apply_override("5.steps=30").unwrap();
        prompt.apply_override("5.text=a cat").unwrap();
        assert_eq!(prompt.nodes["5"].inputs["steps"], InputValue::Literal(serde_json::json!(30)));
        assert_eq!(prompt.nodes["5"].inputs["text"], InputValue::Literal(serde_json::json!("a cat")));
        assert!(prompt.apply_override("9.steps=1").unwrap_err().to_string().contains("no node '9'"));
    }

    #[test]
    fn an_override_reaches_a_dotted_input() {
        let json = r#"{"92:102": {"class_type": "A", "inputs": {}}, "3": {"class_type": "B", "inputs": {}}}"#;
        let mut prompt = ApiPrompt::parse(json, "t").unwrap();
        prompt.apply_override("92:102.resize_type.width=256").unwrap();
        assert_eq!(prompt.nodes["92:102"].inputs["resize_type.width"], InputValue::Literal(serde_json::json!(256)));
        let error = prompt.apply_override("4.resize_type.width=1").unwrap_err().to_string();
        assert!(error.contains("no node '4.resize_type'"), "{error}");
    }
}
