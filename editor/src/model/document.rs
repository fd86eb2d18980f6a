//! Reading a UI workflow into the editor's graph and writing it back, through the engine's parser, so a
//! file opened and saved without edits is equal to the original as JSON (unknown fields and all).

use super::catalog::{Catalog, NODE_WIDTH};
use super::graph::{EditorGraph, Group, Link};
use super::node::{NodeId, NodeInstance, NodeMode, Point, Socket};
use kinograph_engine::workflow::UiGraph;
use kinograph_engine::{Conversion, ConvertOptions, UiWorkflow, WorkflowError, convert};
use serde_json::{Map, Value as Json, json};
use std::path::Path;
use thiserror::Error;

/// Why a workflow could not be opened, saved or converted.
#[derive(Debug, Error)]
pub enum DocumentError {
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error("{origin}: node id {id} is not a number; the editor edits graphs whose node ids are numbers")]
    NodeId { origin: String, id: String },
    #[error("the workflow has no subgraph definition {id}")]
    NoSubgraph { id: String },
    #[error("node {node} is not a subgraph: there is nothing to enter")]
    NotASubgraph { node: NodeId },
}

/// The fields of the workflow file around the graph (`extra`, `config`, `definitions`, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub fields: Map<String, Json>,
    /// Whether links are written as objects (format version 1) rather than arrays (0.4).
    pub link_objects: bool,
}

/// Opens UI workflow text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<(Document, EditorGraph), DocumentError> {
    let workflow = UiWorkflow::parse(text, origin)?;
    from_workflow(&workflow, origin)
}

/// Opens a UI workflow file.
pub fn load(path: &Path) -> Result<(Document, EditorGraph), DocumentError> {
    let workflow = UiWorkflow::load(path)?;
    from_workflow(&workflow, &path.display().to_string())
}

/// Builds the editor's graph from a parsed workflow (its root graph; subgraph definitions are kept as read,
/// and entered with [`super::subgraph::definition_graph`]).
pub fn from_workflow(workflow: &UiWorkflow, origin: &str) -> Result<(Document, EditorGraph), DocumentError> {
    let Json::Object(fields) = workflow.to_json() else { unreachable!("a workflow is written as an object") };
    let stored_links: Vec<Json> = fields.get("links").and_then(Json::as_array).cloned().unwrap_or_default();
    let link_objects =
        stored_links.first().map_or_else(|| fields.get("version").is_some_and(|v| v == 1), Json::is_object);
    let graph = graph_from_ui(&workflow.root, &fields, origin)?;
    Ok((Document { fields, link_objects }, graph))
}

/// The editor's graph of one UI graph (the root, or a subgraph definition's) whose object is `fields`:
/// its nodes, links (kept as read, to be written back unchanged), groups and next free ids.
pub(super) fn graph_from_ui(
    ui_graph: &UiGraph,
    fields: &Map<String, Json>,
    origin: &str,
) -> Result<EditorGraph, DocumentError> {
    let stored_links: Vec<Json> = fields.get("links").and_then(Json::as_array).cloned().unwrap_or_default();
    let mut graph = EditorGraph::default();
    for node in &ui_graph.nodes {
        let id: NodeId =
            node.id.parse().map_err(|_| DocumentError::NodeId { origin: origin.into(), id: node.id.clone() })?;
        let Json::Object(node_fields) = node.to_json() else { unreachable!("a node is written as an object") };
        let sockets = |key: &str, parsed: Vec<(String, String, Option<String>)>| -> Vec<Socket> {
            let stored = node_fields.get(key).and_then(Json::as_array);
            parsed
                .into_iter()
                .enumerate()
                .map(|(slot, (name, type_name, widget))| Socket {
                    name,
                    type_name,
                    widget,
                    fields: stored
                        .and_then(|list| list.get(slot))
                        .and_then(Json::as_object)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect()
        };
        let inputs = sockets(
            "inputs",
            node.inputs.iter().map(|i| (i.name.clone(), i.type_name.clone(), i.widget.clone())).collect(),
        );
        let outputs = sockets(
            "outputs",
            node.outputs.iter().map(|o| (o.name.clone(), o.type_name.clone(), o.widget.clone())).collect(),
        );
        graph.nodes.push(NodeInstance {
            id,
            class_type: node.type_name.clone(),
            title: node.title.clone(),
            pos: point(node_fields.get("pos")).unwrap_or([0.0, 0.0]),
            size: point(node_fields.get("size")).unwrap_or([NODE_WIDTH, 100.0]),
            mode: NodeMode::from_number(node.mode),
            inputs,
            outputs,
            widgets_values: node.widgets_values.clone(),
            fields: node_fields,
        });
    }
    for (index, link) in ui_graph.links.iter().enumerate() {
        let (Ok(from_node), Ok(to_node)) = (link.origin.parse(), link.target.parse()) else { continue };
        graph.links.push(Link {
            id: link.id,
            from_node,
            from_slot: link.origin_slot,
            to_node,
            to_slot: link.target_slot,
            type_name: link.type_name.clone(),
            stored: stored_links.get(index).cloned(),
        });
    }
    for group in fields.get("groups").and_then(Json::as_array).into_iter().flatten() {
        let Some(group_fields) = group.as_object() else { continue };
        let bounding = group_fields.get("bounding").and_then(Json::as_array);
        let number = |index: usize| bounding.and_then(|b| b.get(index)).and_then(Json::as_f64).unwrap_or(0.0) as f32;
        graph.groups.push(Group {
            title: group_fields.get("title").and_then(Json::as_str).unwrap_or_default().to_string(),
            bounding: [number(0), number(1), number(2), number(3)],
            fields: group_fields.clone(),
        });
    }
    let last = |key: &str, camel: &str| {
        fields.get(key).or_else(|| fields.get("state").and_then(|s| s.get(camel))).and_then(Json::as_i64).unwrap_or(0)
    };
    let max_node = graph.nodes.iter().map(|n| n.id).max().unwrap_or(0);
    let max_link = graph.links.iter().map(|l| l.id).max().unwrap_or(0);
    graph.next_node_id = last("last_node_id", "lastNodeId").max(max_node) + 1;
    graph.next_link_id = last("last_link_id", "lastLinkId").max(max_link) + 1;
    Ok(graph)
}

/// Reads `[x, y]` (or litegraph's old `{"0": x, "1": y}`).
pub(super) fn point(value: Option<&Json>) -> Option<Point> {
    let coordinate = |v: Option<&Json>| v.and_then(Json::as_f64).map(|f| f as f32);
    match value? {
        Json::Array(parts) => Some([coordinate(parts.first())?, coordinate(parts.get(1))?]),
        Json::Object(parts) => Some([coordinate(parts.get("0"))?, coordinate(parts.get("1"))?]),
        _ => None,
    }
}

pub(super) fn point_json(point: Point) -> Json {
    let number =
        |value: f32| if value.fract() == 0.0 { Json::from(value as i64) } else { Json::from(f64::from(value)) };
    Json::Array(vec![number(point[0]), number(point[1])])
}

/// Puts `value` at `key` unless the stored value already means the same.
pub(super) fn put(fields: &mut Map<String, Json>, key: &str, value: Json, same: impl Fn(Option<&Json>) -> bool) {
    if !same(fields.get(key)) {
        fields.insert(key.to_string(), value);
    }
}

/// The whole workflow as JSON: the stored fields with the edited graph written in.
pub fn to_json(document: &Document, graph: &EditorGraph) -> Json {
    let mut fields = document.fields.clone();
    let fresh = fields.is_empty();
    write_graph(&mut fields, graph, document.link_objects);
    if fresh {
        fields.insert("version".into(), json!(0.4));
    }
    Json::Object(fields)
}

/// Writes `graph` into the graph object `fields` (the workflow's root, or a subgraph definition): its nodes
/// (a subgraph's input and output nodes are not nodes of the file), links, groups and last ids; what an
/// edit did not change stays as read.
pub(super) fn write_graph(fields: &mut Map<String, Json>, graph: &EditorGraph, link_objects: bool) {
    let fresh = fields.is_empty();
    let nodes = graph.nodes.iter().filter(|node| !node.is_subgraph_io()).map(|node| node_json(node, graph)).collect();
    fields.insert("nodes".into(), Json::Array(nodes));
    if fresh || fields.contains_key("links") || !graph.links.is_empty() {
        let links = graph.links.iter().map(|link| link_json(link, link_objects)).collect();
        fields.insert("links".into(), Json::Array(links));
    }
    if fields.contains_key("groups") || !graph.groups.is_empty() {
        let groups = graph.groups.iter().enumerate().map(|(index, group)| group_json(index, group)).collect();
        fields.insert("groups".into(), Json::Array(groups));
    }
    let last_node = graph.nodes.iter().map(|n| n.id).max().unwrap_or(0);
    let last_link = graph.links.iter().map(|l| l.id).max().unwrap_or(0);
    if let Some(Json::Object(state)) = fields.get_mut("state") {
        raise(state, "lastNodeId", last_node, fresh);
        raise(state, "lastLinkId", last_link, fresh);
    } else {
        raise(fields, "last_node_id", last_node, fresh);
        raise(fields, "last_link_id", last_link, fresh);
    }
}

/// Raises a "last id" counter to `value` when it is lower; a file without the counter is left without
/// it (readers compute it from the ids), a new file gets it.
fn raise(fields: &mut Map<String, Json>, key: &str, value: i64, fresh: bool) {
    let stored = fields.get(key).and_then(Json::as_i64);
    if stored.is_some_and(|stored| stored < value) || (stored.is_none() && fresh) {
        fields.insert(key.to_string(), Json::from(value));
    }
}

fn node_json(node: &NodeInstance, graph: &EditorGraph) -> Json {
    let mut fields = node.fields.clone();
    let fresh = fields.is_empty();
    put(&mut fields, "id", Json::from(node.id), |v| v.and_then(Json::as_i64) == Some(node.id));
    put(&mut fields, "type", Json::from(node.class_type.clone()), |v| {
        v.and_then(Json::as_str) == Some(&node.class_type)
    });
    put(&mut fields, "pos", point_json(node.pos), |v| point(v) == Some(node.pos));
    put(&mut fields, "size", point_json(node.size), |v| point(v) == Some(node.size));
    if fresh {
        fields.insert("flags".into(), json!({}));
        fields.insert("order".into(), json!(0));
    }
    let mode = node.mode.number();
    put(&mut fields, "mode", Json::from(mode), |v| v.map_or(mode == 0 && !fresh, |v| v.as_i64() == Some(mode)));
    match &node.title {
        Some(title) => {
            put(&mut fields, "title", Json::from(title.clone()), |v| v.and_then(Json::as_str) == Some(title));
        }
        None => {
            fields.shift_remove("title");
        }
    }
    if fresh || fields.contains_key("inputs") || !node.inputs.is_empty() {
        let inputs = node.inputs.iter().enumerate().map(|(slot, socket)| {
            let link = graph.link_into(node.id, slot).map(|link| link.id);
            let mut input = socket_fields(socket);
            let same = |v: Option<&Json>| match v {
                Some(stored) => stored.as_i64() == link,
                None => link.is_none() && !socket.fields.is_empty(),
            };
            put(&mut input, "link", link.map_or(Json::Null, Json::from), same);
            Json::Object(input)
        });
        fields.insert("inputs".into(), Json::Array(inputs.collect()));
    }
    if fresh || fields.contains_key("outputs") || !node.outputs.is_empty() {
        let outputs = node.outputs.iter().enumerate().map(|(slot, socket)| {
            let links: Vec<i64> =
                graph.links.iter().filter(|l| l.from_node == node.id && l.from_slot == slot).map(|l| l.id).collect();
            let mut output = socket_fields(socket);
            // The same links in another order are the same: files list them in the order they were made.
            let stored_same = |v: Option<&Json>| match v {
                Some(Json::Array(ids)) => {
                    let mut stored: Vec<i64> = ids.iter().filter_map(Json::as_i64).collect();
                    let mut ours = links.clone();
                    stored.sort_unstable();
                    ours.sort_unstable();
                    stored == ours
                }
                Some(Json::Null) | None => links.is_empty() && !socket.fields.is_empty(),
                Some(_) => false,
            };
            put(&mut output, "links", json!(links), stored_same);
            if !output.contains_key("slot_index") && socket.fields.is_empty() {
                output.insert("slot_index".into(), json!(slot));
            }
            Json::Object(output)
        });
        fields.insert("outputs".into(), Json::Array(outputs.collect()));
    }
    if fresh {
        fields.insert("properties".into(), json!({"Node name for S&R": node.class_type}));
    }
    match &node.widgets_values {
        Some(values) => put(&mut fields, "widgets_values", values.clone(), |v| v == Some(values)),
        None => {
            if fields.get("widgets_values").is_some_and(|v| !v.is_null()) {
                fields.shift_remove("widgets_values");
            }
        }
    }
    Json::Object(fields)
}

fn socket_fields(socket: &Socket) -> Map<String, Json> {
    let mut fields = socket.fields.clone();
    put(&mut fields, "name", Json::from(socket.name.clone()), |v| v.and_then(Json::as_str) == Some(&socket.name));
    put(&mut fields, "type", Json::from(socket.type_name.clone()), |v| {
        v.and_then(Json::as_str) == Some(&socket.type_name)
            || (v.is_some_and(Json::is_number) && socket.type_name == "*")
    });
    if let Some(widget) = &socket.widget {
        put(&mut fields, "widget", json!({"name": widget}), |v| {
            v.and_then(|w| w.get("name")).and_then(Json::as_str) == Some(widget)
        });
    }
    fields
}

fn link_json(link: &Link, objects: bool) -> Json {
    if let Some(stored) = &link.stored {
        return stored.clone();
    }
    if objects {
        json!({"id": link.id, "origin_id": link.from_node, "origin_slot": link.from_slot,
               "target_id": link.to_node, "target_slot": link.to_slot, "type": link.type_name})
    } else {
        json!([link.id, link.from_node, link.from_slot, link.to_node, link.to_slot, link.type_name])
    }
}

fn group_json(index: usize, group: &Group) -> Json {
    let mut fields = group.fields.clone();
    if fields.is_empty() {
        fields.insert("id".into(), json!(index + 1));
    }
    put(&mut fields, "title", Json::from(group.title.clone()), |v| v.and_then(Json::as_str) == Some(&group.title));
    let bounding = group.bounding;
    let same = |v: Option<&Json>| {
        v.and_then(Json::as_array).is_some_and(|b| {
            b.len() == 4 && b.iter().zip(bounding).all(|(s, e)| s.as_f64().map(|f| f as f32) == Some(e))
        })
    };
    put(&mut fields, "bounding", json!(bounding.map(f64::from)), same);
    Json::Object(fields)
}

/// The workflow as the engine's model, checked by its parser.
pub fn to_workflow(document: &Document, graph: &EditorGraph, origin: &str) -> Result<UiWorkflow, DocumentError> {
    Ok(UiWorkflow::from_json(to_json(document, graph), origin)?)
}

/// Writes the workflow to `path` through the engine.
pub fn save(document: &Document, graph: &EditorGraph, path: &Path) -> Result<(), DocumentError> {
    to_workflow(document, graph, &path.display().to_string())?.save(path)?;
    Ok(())
}

/// The API prompt the engine would run for this graph, with the conversion's warnings.
pub fn to_prompt(document: &Document, graph: &EditorGraph, catalog: &Catalog) -> Result<Conversion, DocumentError> {
    let workflow = to_workflow(document, graph, "the edited workflow")?;
    Ok(convert(&workflow, catalog.registry(), catalog.environment(), &ConvertOptions::default())?)
}
