//! Subgraphs as ComfyUI's front end has them: a definition (`definitions.subgraphs[]`: nodes, links, typed
//! inputs and outputs) and the nodes that instantiate it (their `type` is the definition's id).
//!
//! Inside a definition the editor shows its input and output as two nodes of their own, with the ids the
//! file's links use for them ([`INPUT_NODE`], [`OUTPUT_NODE`]); they are written back as the definition's
//! `inputNode`/`outputNode` places and its inputs' and outputs' `linkIds`, never as nodes. Every instance
//! shares its definition, so an edit inside shows in all of them. On an instance, each definition input
//! that feeds an inner widget is a promoted widget, shown and edited on the instance with the inner
//! widget's kind, range and options ([`instance_schema`]); its value is the instance's own.

use super::catalog::Catalog;
use super::document::{DocumentError, graph_from_ui, point, point_json, put, write_graph};
use super::graph::EditorGraph;
use super::node::{NodeId, NodeInstance, NodeMode, Socket, TITLE_HEIGHT};
use kinograph_engine::workflow::{SubgraphDefinition, feeds_widget};
use kinograph_engine::{InputSpec, NodeSchema, UiWorkflow};
use serde_json::{Map, Value as Json, json};

/// The id of a subgraph's input node, as links inside the definition name it (the engine's
/// `SUBGRAPH_INPUT_NODE`).
pub const INPUT_NODE: NodeId = -10;
/// The id of a subgraph's output node (the engine's `SUBGRAPH_OUTPUT_NODE`).
pub const OUTPUT_NODE: NodeId = -20;

/// The frontend-only class of a subgraph's input node.
pub const INPUT_CLASS: &str = "SubgraphInput";
/// The frontend-only class of a subgraph's output node.
pub const OUTPUT_CLASS: &str = "SubgraphOutput";

/// The definition objects of `fields` (a workflow or a definition), nested ones included, for reading.
fn definitions(fields: &Map<String, Json>) -> Vec<&Map<String, Json>> {
    let mut found = Vec::new();
    let own = fields.get("definitions").and_then(|d| d.get("subgraphs")).and_then(Json::as_array);
    for definition in own.into_iter().flatten().filter_map(Json::as_object) {
        found.push(definition);
        found.extend(definitions(definition));
    }
    found
}

/// The definition object with `id` in `fields`, nested ones included, for writing.
fn definition_mut<'a>(fields: &'a mut Map<String, Json>, id: &str) -> Option<&'a mut Map<String, Json>> {
    let list = fields.get_mut("definitions")?.get_mut("subgraphs")?.as_array_mut()?;
    for definition in list.iter_mut().filter_map(Json::as_object_mut) {
        if definition.get("id").and_then(Json::as_str) == Some(id) {
            return Some(definition);
        }
        if let Some(found) = definition_mut(definition, id) {
            return Some(found);
        }
    }
    None
}

/// The name of definition `id` in the workflow `fields`, when there is one.
pub fn definition_name(fields: &Map<String, Json>, id: &str) -> Option<String> {
    definitions(fields)
        .into_iter()
        .find(|definition| definition.get("id").and_then(Json::as_str) == Some(id))
        .map(|definition| definition.get("name").and_then(Json::as_str).unwrap_or(id).to_string())
}

/// The parsed definition `id` of the workflow `fields`.
fn parsed_definition(fields: &Map<String, Json>, id: &str, origin: &str) -> Result<SubgraphDefinition, DocumentError> {
    let workflow = UiWorkflow::from_json(Json::Object(fields.clone()), origin)?;
    let found = workflow.all_subgraphs().into_iter().find(|definition| definition.id == id).cloned();
    found.ok_or_else(|| DocumentError::NoSubgraph { id: id.to_string() })
}

/// The graph inside definition `id` of the workflow `fields`, with its input and output nodes.
pub fn definition_graph(fields: &Map<String, Json>, id: &str, origin: &str) -> Result<EditorGraph, DocumentError> {
    let definition = parsed_definition(fields, id, origin)?;
    let Some(stored) = definitions(fields).into_iter().find(|d| d.get("id").and_then(Json::as_str) == Some(id)) else {
        return Err(DocumentError::NoSubgraph { id: id.to_string() });
    };
    let mut graph = graph_from_ui(&definition.graph, stored, origin)?;
    let io_node = |id: NodeId, class: &str, title: &str, key: &str| {
        let bounding = stored.get(key).and_then(|node| node.get("bounding")).and_then(Json::as_array);
        let number = |index: usize| bounding.and_then(|b| b.get(index)).and_then(Json::as_f64).map(|v| v as f32);
        let pos = [number(0).unwrap_or(0.0), number(1).unwrap_or(0.0) + TITLE_HEIGHT];
        let size = [number(2).unwrap_or(140.0).max(140.0), (number(3).unwrap_or(60.0) - TITLE_HEIGHT).max(30.0)];
        NodeInstance {
            id,
            class_type: class.to_string(),
            title: Some(title.to_string()),
            pos,
            size,
            mode: NodeMode::Normal,
            inputs: Vec::new(),
            outputs: Vec::new(),
            widgets_values: None,
            fields: Map::new(),
        }
    };
    let mut inputs = io_node(INPUT_NODE, INPUT_CLASS, "Inputs", "inputNode");
    inputs.outputs = definition.inputs.iter().map(|slot| Socket::new(&slot.name, &slot.type_name)).collect();
    let mut outputs = io_node(OUTPUT_NODE, OUTPUT_CLASS, "Outputs", "outputNode");
    outputs.inputs = definition.outputs.iter().map(|slot| Socket::new(&slot.name, &slot.type_name)).collect();
    graph.nodes.insert(0, inputs);
    graph.nodes.push(outputs);
    Ok(graph)
}

/// Writes `graph` (entered with [`definition_graph`]) back into definition `id` of the workflow `fields`:
/// its nodes, links and groups, the places of its input and output nodes and the links of each slot.
pub fn write_definition(fields: &mut Map<String, Json>, id: &str, graph: &EditorGraph) {
    let Some(definition) = definition_mut(fields, id) else { return };
    write_graph(definition, graph, true);
    for (key, node_id) in [("inputNode", INPUT_NODE), ("outputNode", OUTPUT_NODE)] {
        let Some(node) = graph.node(node_id) else { continue };
        let Some(Json::Object(io)) = definition.get_mut(key) else { continue };
        let corner = [node.pos[0], node.pos[1] - TITLE_HEIGHT];
        let stored = io.get("bounding").and_then(Json::as_array).cloned().unwrap_or_default();
        let same = point(Some(&Json::Array(stored.iter().take(2).cloned().collect()))) == Some(corner);
        if !same && let Json::Array(mut bounding) = point_json(corner) {
            bounding.extend(stored.iter().skip(2).cloned());
            io.insert("bounding".into(), Json::Array(bounding));
        }
    }
    let slot_links = |from_input_node: bool, slot: usize| -> Vec<i64> {
        graph
            .links
            .iter()
            .filter(|link| {
                if from_input_node {
                    link.from_node == INPUT_NODE && link.from_slot == slot
                } else {
                    link.to_node == OUTPUT_NODE && link.to_slot == slot
                }
            })
            .map(|link| link.id)
            .collect()
    };
    for (key, from_input_node) in [("inputs", true), ("outputs", false)] {
        let Some(Json::Array(slots)) = definition.get_mut(key) else { continue };
        for (slot, entry) in slots.iter_mut().enumerate() {
            let Some(entry) = entry.as_object_mut() else { continue };
            let links = slot_links(from_input_node, slot);
            put(entry, "linkIds", json!(links), |stored| {
                stored.and_then(Json::as_array).map(|ids| ids.iter().filter_map(Json::as_i64).collect::<Vec<_>>())
                    == Some(links.clone())
            });
        }
    }
}

/// The schema of an instance of definition `id`: an input per definition input (a widget, with the inner
/// widget's kind, range and options, where it feeds one; a socket otherwise) and an output per definition
/// output. `None` when the workflow has no such definition.
pub fn instance_schema(fields: &Map<String, Json>, id: &str, catalog: &Catalog) -> Option<NodeSchema> {
    let definition = parsed_definition(fields, id, "the workflow").ok()?;
    let mut schema = NodeSchema::new(&definition.id).display_name(&definition.name).category("subgraph");
    for input in &definition.inputs {
        let inner =
            feeds_widget(&definition, &input.link_ids).then(|| inner_widget(&definition, &input.link_ids, catalog));
        let spec = match inner.flatten() {
            Some(mut spec) => {
                spec.name.clone_from(&input.name);
                spec.optional = false;
                spec
            }
            None => InputSpec::socket(&input.name, &input.type_name),
        };
        schema = schema.input(spec);
    }
    for output in &definition.outputs {
        schema = schema.output(&output.type_name, &output.name);
    }
    Some(schema)
}

/// The spec of the first inner widget a subgraph input's links feed, from that node's schema.
fn inner_widget(definition: &SubgraphDefinition, link_ids: &[i64], catalog: &Catalog) -> Option<InputSpec> {
    link_ids.iter().find_map(|id| {
        let link = definition.graph.links.iter().find(|link| link.id == *id)?;
        let node = definition.graph.node(&link.target)?;
        let widget = node.inputs.get(link.target_slot)?.widget.clone()?;
        catalog.schema(&node.type_name)?.input_spec(&widget).cloned()
    })
}

/// The definition ids the workflow `fields` holds.
pub fn definition_ids(fields: &Map<String, Json>) -> Vec<String> {
    definitions(fields).into_iter().filter_map(|d| d.get("id").and_then(Json::as_str).map(str::to_string)).collect()
}
