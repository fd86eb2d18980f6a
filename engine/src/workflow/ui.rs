//! ComfyUI's UI workflow format (litegraph serialisation, versions 0.4 and 1): model, parsing and saving.
//!
//! Every JSON object keeps its complete original fields; the typed views below only read what the
//! converter needs. Saving writes the original fields back with the few values an edit may change
//! (`widgets_values`, `mode`, `title`) put in place, so a file loaded and saved without edits is equal to
//! the original as JSON, unknown fields and all.

use super::api::{WorkflowError, json_kind, parse_json, read_text};
use serde_json::{Map, Value as Json};
use std::path::Path;

/// The id of the virtual node that stands for a subgraph's inputs.
pub const SUBGRAPH_INPUT_NODE: &str = "-10";
/// The id of the virtual node that stands for a subgraph's outputs.
pub const SUBGRAPH_OUTPUT_NODE: &str = "-20";

/// A whole UI workflow: the root graph and, inside it, the subgraph definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct UiWorkflow {
    pub root: UiGraph,
}

/// One graph: the root, or the body of a subgraph definition.
#[derive(Debug, Clone, PartialEq)]
pub struct UiGraph {
    pub nodes: Vec<UiNode>,
    pub links: Vec<UiLink>,
    /// `definitions.subgraphs` of this graph (the root usually holds them all).
    pub subgraphs: Vec<SubgraphDefinition>,
    /// Every field of the graph object, as read.
    fields: Map<String, Json>,
}

/// A subgraph definition: a graph with typed inputs and outputs, instantiated by nodes whose `type` is
/// its `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgraphDefinition {
    pub id: String,
    pub name: String,
    pub inputs: Vec<SubgraphSlot>,
    pub outputs: Vec<SubgraphSlot>,
    pub graph: UiGraph,
}

/// One input or output of a subgraph definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgraphSlot {
    pub name: String,
    pub type_name: String,
    pub link_ids: Vec<i64>,
}

/// A node as the editor saved it.
#[derive(Debug, Clone, PartialEq)]
pub struct UiNode {
    /// The id as a string (`"38"`); files write numbers.
    pub id: String,
    /// The backend class, a frontend-only type (`Note`, `Reroute`, `PrimitiveNode`) or a subgraph id.
    pub type_name: String,
    /// 0 always, 2 never (muted), 4 bypass.
    pub mode: i64,
    pub title: Option<String>,
    pub inputs: Vec<UiInput>,
    pub outputs: Vec<UiOutput>,
    /// Usually a positional list; some custom nodes save an object.
    pub widgets_values: Option<Json>,
    fields: Map<String, Json>,
}

/// An input slot of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct UiInput {
    pub name: String,
    pub type_name: String,
    pub link: Option<i64>,
    /// The widget this socket stands for, when it is a widget input.
    pub widget: Option<String>,
}

/// An output slot of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct UiOutput {
    pub name: String,
    pub type_name: String,
    pub links: Vec<i64>,
    /// For a `PrimitiveNode`: the widget it feeds.
    pub widget: Option<String>,
}

/// A link between an output and an input; node ids as strings (`"-10"` and `"-20"` inside subgraphs).
#[derive(Debug, Clone, PartialEq)]
pub struct UiLink {
    pub id: i64,
    pub origin: String,
    pub origin_slot: usize,
    pub target: String,
    pub target_slot: usize,
    pub type_name: String,
}

impl UiWorkflow {
    /// Reads a UI workflow file.
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        let (text, origin) = read_text(path)?;
        Self::parse(&text, &origin)
    }

    /// Parses UI workflow text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, WorkflowError> {
        Self::from_json(parse_json(text, origin)?, origin)
    }

    /// Builds the model from parsed JSON.
    pub fn from_json(json: Json, origin: &str) -> Result<Self, WorkflowError> {
        let Json::Object(fields) = json else {
            return Err(ui_error(origin, format!("expected a JSON object, found {}", json_kind(&json))));
        };
        Ok(UiWorkflow { root: UiGraph::from_fields(fields, origin, "the workflow", 0)? })
    }

    /// Whether parsed JSON looks like a UI workflow (a `nodes` list) rather than an API prompt.
    pub fn is_ui_json(json: &Json) -> bool {
        json.get("nodes").is_some_and(Json::is_array)
    }

    /// The workflow as JSON, ready to save.
    pub fn to_json(&self) -> Json {
        self.root.to_json()
    }

    /// Writes the workflow, pretty-printed.
    pub fn save(&self, path: &Path) -> Result<(), WorkflowError> {
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        std::fs::write(path, text).map_err(|source| WorkflowError::Io { path: path.display().to_string(), source })
    }

    /// Every subgraph definition, nested ones included, in file order.
    pub fn all_subgraphs(&self) -> Vec<&SubgraphDefinition> {
        fn collect<'a>(graph: &'a UiGraph, into: &mut Vec<&'a SubgraphDefinition>) {
            for definition in &graph.subgraphs {
                into.push(definition);
                collect(&definition.graph, into);
            }
        }
        let mut all = Vec::new();
        collect(&self.root, &mut all);
        all
    }
}

/// Nesting deeper than this is refused rather than followed (it would only come from a broken file).
const MAX_NESTING: usize = 32;

impl UiGraph {
    fn from_fields(fields: Map<String, Json>, origin: &str, place: &str, depth: usize) -> Result<Self, WorkflowError> {
        if depth > MAX_NESTING {
            return Err(ui_error(origin, format!("{place}: subgraph definitions nested more than {MAX_NESTING} deep")));
        }
        let nodes = match fields.get("nodes") {
            Some(Json::Array(nodes)) => {
                nodes.iter().enumerate().map(|(index, node)| UiNode::parse(node, index, origin, place)).collect()
            }
            None => Ok(Vec::new()),
            Some(other) => Err(ui_error(origin, format!("{place}: nodes must be a list, found {}", json_kind(other)))),
        }?;
        let links = match fields.get("links") {
            Some(Json::Array(links)) => {
                links.iter().enumerate().map(|(index, link)| UiLink::parse(link, index, origin, place)).collect()
            }
            Some(Json::Null) | None => Ok(Vec::new()),
            Some(other) => Err(ui_error(origin, format!("{place}: links must be a list, found {}", json_kind(other)))),
        }?;
        let mut subgraphs = Vec::new();
        if let Some(Json::Array(definitions)) = fields.get("definitions").and_then(|d| d.get("subgraphs")) {
            for (index, definition) in definitions.iter().enumerate() {
                subgraphs.push(SubgraphDefinition::parse(definition, index, origin, depth + 1)?);
            }
        }
        Ok(UiGraph { nodes, links, subgraphs, fields })
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&UiNode> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// The node with this id, for editing.
    pub fn node_mut(&mut self, id: &str) -> Option<&mut UiNode> {
        self.nodes.iter_mut().find(|node| node.id == id)
    }

    /// The graph as JSON: the original fields, with nodes and subgraph definitions written back.
    pub fn to_json(&self) -> Json {
        let mut fields = self.fields.clone();
        if fields.contains_key("nodes") {
            fields.insert("nodes".into(), Json::Array(self.nodes.iter().map(UiNode::to_json).collect()));
        }
        if let Some(Json::Object(definitions)) = fields.get_mut("definitions")
            && definitions.get("subgraphs").is_some_and(Json::is_array)
        {
            let written = self.subgraphs.iter().map(|definition| definition.graph.to_json()).collect();
            definitions.insert("subgraphs".into(), Json::Array(written));
        }
        Json::Object(fields)
    }
}

impl SubgraphDefinition {
    fn parse(json: &Json, index: usize, origin: &str, depth: usize) -> Result<Self, WorkflowError> {
        let Json::Object(fields) = json else {
            return Err(ui_error(origin, format!("subgraph definition {index} is {}, not an object", json_kind(json))));
        };
        let id = string_field(fields, "id")
            .ok_or_else(|| ui_error(origin, format!("subgraph definition {index} has no id")))?;
        let name = string_field(fields, "name").unwrap_or_else(|| id.clone());
        let place = format!("subgraph '{name}' ({id})");
        let slots = |key: &str| -> Vec<SubgraphSlot> {
            let Some(Json::Array(slots)) = fields.get(key) else { return Vec::new() };
            slots
                .iter()
                .map(|slot| SubgraphSlot {
                    name: slot.get("name").and_then(Json::as_str).unwrap_or_default().to_string(),
                    type_name: slot.get("type").map(type_text).unwrap_or_default(),
                    link_ids: id_list(slot.get("linkIds")),
                })
                .collect()
        };
        let (inputs, outputs) = (slots("inputs"), slots("outputs"));
        let graph = UiGraph::from_fields(fields.clone(), origin, &place, depth)?;
        Ok(SubgraphDefinition { id, name, inputs, outputs, graph })
    }
}

impl UiNode {
    fn parse(json: &Json, index: usize, origin: &str, place: &str) -> Result<Self, WorkflowError> {
        let Json::Object(fields) = json else {
            return Err(ui_error(origin, format!("{place}: node {index} is {}, not an object", json_kind(json))));
        };
        let id = fields
            .get("id")
            .and_then(id_text)
            .ok_or_else(|| ui_error(origin, format!("{place}: node {index} has no id")))?;
        let type_name = string_field(fields, "type")
            .ok_or_else(|| ui_error(origin, format!("{place}: node {id} has no type (the node class)")))?;
        let bad = |what: &str| ui_error(origin, format!("{place}: node {id} ({type_name}): {what}"));
        let mode = match fields.get("mode") {
            None | Some(Json::Null) => 0,
            Some(mode) => mode.as_i64().ok_or_else(|| bad("mode must be a number"))?,
        };
        let inputs = match fields.get("inputs") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(inputs)) => inputs
                .iter()
                .enumerate()
                .map(|(slot, input)| {
                    let Json::Object(input) = input else {
                        return Err(bad(&format!("input {slot} is not an object")));
                    };
                    Ok(UiInput {
                        name: string_field(input, "name").unwrap_or_default(),
                        type_name: input.get("type").map(type_text).unwrap_or_default(),
                        link: input.get("link").and_then(link_id),
                        widget: input
                            .get("widget")
                            .and_then(|w| w.get("name"))
                            .and_then(Json::as_str)
                            .map(str::to_string),
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("inputs must be a list")),
        };
        let outputs = match fields.get("outputs") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(outputs)) => outputs
                .iter()
                .enumerate()
                .map(|(slot, output)| {
                    let Json::Object(output) = output else {
                        return Err(bad(&format!("output {slot} is not an object")));
                    };
                    Ok(UiOutput {
                        name: string_field(output, "name").unwrap_or_default(),
                        type_name: output.get("type").map(type_text).unwrap_or_default(),
                        links: id_list(output.get("links")),
                        widget: output
                            .get("widget")
                            .and_then(|w| w.get("name"))
                            .and_then(Json::as_str)
                            .map(str::to_string),
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("outputs must be a list")),
        };
        let widgets_values = match fields.get("widgets_values") {
            None | Some(Json::Null) => None,
            Some(values @ (Json::Array(_) | Json::Object(_))) => Some(values.clone()),
            Some(_) => return Err(bad("widgets_values must be a list")),
        };
        Ok(UiNode {
            id,
            type_name,
            mode,
            title: string_field(fields, "title"),
            inputs,
            outputs,
            widgets_values,
            fields: fields.clone(),
        })
    }

    /// The positional widget values (empty when the node has none or saved an object).
    pub fn widget_list(&self) -> &[Json] {
        match &self.widgets_values {
            Some(Json::Array(values)) => values,
            _ => &[],
        }
    }

    /// A field the model does not interpret (`pos`, `properties`, `color`, ...).
    pub fn field(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }

    /// The node as JSON: its original fields with `widgets_values`, `mode` and `title` written back.
    pub fn to_json(&self) -> Json {
        let mut fields = self.fields.clone();
        match &self.widgets_values {
            Some(values) => {
                fields.insert("widgets_values".into(), values.clone());
            }
            None => {
                if fields.get("widgets_values").is_some_and(|v| !v.is_null()) {
                    fields.shift_remove("widgets_values");
                }
            }
        }
        if fields.contains_key("mode") || self.mode != 0 {
            let unchanged = fields.get("mode").and_then(Json::as_i64) == Some(self.mode);
            if !unchanged {
                fields.insert("mode".into(), Json::from(self.mode));
            }
        }
        match &self.title {
            Some(title) => {
                if fields.get("title").and_then(Json::as_str) != Some(title) {
                    fields.insert("title".into(), Json::String(title.clone()));
                }
            }
            None => {
                if fields.get("title").is_some_and(Json::is_string) {
                    fields.shift_remove("title");
                }
            }
        }
        Json::Object(fields)
    }
}

impl UiLink {
    fn parse(json: &Json, index: usize, origin: &str, place: &str) -> Result<Self, WorkflowError> {
        let bad = || ui_error(origin, format!("{place}: link {index} is malformed ({})", short(json)));
        let slot = |value: Option<&Json>| value.and_then(Json::as_u64).map(|slot| slot as usize);
        match json {
            // 0.4: [id, origin_id, origin_slot, target_id, target_slot, type]
            Json::Array(parts) if parts.len() >= 5 => Ok(UiLink {
                id: link_id(&parts[0]).ok_or_else(bad)?,
                origin: id_text(&parts[1]).ok_or_else(bad)?,
                origin_slot: slot(parts.get(2)).ok_or_else(bad)?,
                target: id_text(&parts[3]).ok_or_else(bad)?,
                target_slot: slot(parts.get(4)).ok_or_else(bad)?,
                type_name: parts.get(5).map(type_text).unwrap_or_default(),
            }),
            Json::Object(fields) => Ok(UiLink {
                id: fields.get("id").and_then(link_id).ok_or_else(bad)?,
                origin: fields.get("origin_id").and_then(id_text).ok_or_else(bad)?,
                origin_slot: slot(fields.get("origin_slot")).ok_or_else(bad)?,
                target: fields.get("target_id").and_then(id_text).ok_or_else(bad)?,
                target_slot: slot(fields.get("target_slot")).ok_or_else(bad)?,
                type_name: fields.get("type").map(type_text).unwrap_or_default(),
            }),
            _ => Err(bad()),
        }
    }
}

fn ui_error(origin: &str, message: String) -> WorkflowError {
    WorkflowError::Ui { origin: origin.to_string(), message }
}

fn string_field(fields: &Map<String, Json>, key: &str) -> Option<String> {
    fields.get(key).and_then(Json::as_str).map(str::to_string)
}

/// A node id, written as a number or a string.
fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::Number(number) => Some(number.as_i64().map_or_else(|| number.to_string(), |int| int.to_string())),
        Json::String(text) => Some(text.clone()),
        _ => None,
    }
}

fn link_id(value: &Json) -> Option<i64> {
    match value {
        Json::Number(number) => {
            number.as_i64().or_else(|| number.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        }
        Json::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn id_list(value: Option<&Json>) -> Vec<i64> {
    match value {
        Some(Json::Array(ids)) => ids.iter().filter_map(link_id).collect(),
        _ => Vec::new(),
    }
}

/// A slot type: a string, or (old files) a number such as -1 for "any".
fn type_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Number(_) => "*".to_string(),
        _ => String::new(),
    }
}

fn short(json: &Json) -> String {
    let text = json.to_string();
    if text.chars().count() > 80 { format!("{}...", text.chars().take(80).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edited_title_mode_and_widgets_are_written_in_place() {
        let file = json!({"nodes": [{"id": 1, "type": "A", "mode": 0, "title": "Old", "widgets_values": [1], "z": 9}],
                          "links": [], "extra": {"ds": {"scale": 1}}});
        let mut workflow = UiWorkflow::from_json(file.clone(), "t").unwrap();
        assert_eq!(workflow.to_json(), file);
        let node = workflow.root.node_mut("1").unwrap();
        node.title = None;
        node.mode = 4;
        node.widgets_values = Some(json!([2]));
        let saved = workflow.to_json();
        assert_eq!(saved["nodes"][0], json!({"id": 1, "type": "A", "mode": 4, "widgets_values": [2], "z": 9}));
        let keys: Vec<&String> = saved["nodes"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "type", "mode", "widgets_values", "z"], "key order is kept");
    }

    #[test]
    fn string_ids_and_legacy_slot_types_are_read() {
        let file = json!({"nodes": [{"id": "a", "type": "A", "inputs": [{"name": "x", "type": -1, "link": 3}]}],
                          "links": [[3, "b", 0, "a", 0, "*"]]});
        let workflow = UiWorkflow::from_json(file, "t").unwrap();
        assert_eq!(workflow.root.nodes[0].inputs[0].type_name, "*");
        assert_eq!(workflow.root.links[0].origin, "b");
    }
}
