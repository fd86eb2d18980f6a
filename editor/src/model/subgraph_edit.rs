//! Turning selected nodes into a subgraph and a subgraph instance back into its nodes, as ComfyUI's front
//! end does. A subgraph made from a selection takes one input per outside output that fed it and one
//! output per inside output that fed the rest of the graph; the nodes keep their widgets inside. Unpacking
//! puts the definition's nodes back where the instance was (under their own ids where those are free),
//! with the instance's links and promoted values in place of the subgraph's inputs, so that the graph runs
//! the same prompt before and after.

use super::catalog::NODE_WIDTH;
use super::document::write_graph;
use super::graph::{EditError, EditorGraph, Link};
use super::node::{NodeId, NodeInstance, NodeMode, Socket};
use super::subgraph::{INPUT_NODE, OUTPUT_NODE};
use serde_json::{Map, Value as Json, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a selection becomes: the definition's object and the instance that replaces the nodes.
pub struct Made {
    pub definition: Map<String, Json>,
    /// The instance (its id is given when it is added) and, per input, the outside output that feeds it.
    pub instance: NodeInstance,
    pub sources: Vec<(NodeId, usize)>,
    /// Per output of the subgraph, the outside inputs it feeds.
    pub targets: Vec<Vec<(NodeId, usize)>>,
}

/// A uuid4-shaped id from 128 random bits (the version and variant digits set as uuid4 sets them).
pub fn new_id(high: u64, low: u64) -> String {
    let mut hex: Vec<char> = format!("{high:016x}{low:016x}").chars().collect();
    hex[12] = '4';
    hex[16] = ['8', '9', 'a', 'b'][(low >> 60) as usize % 4];
    let hex: String = hex.into_iter().collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The subgraph `id` named `name` made of the `selected` nodes of `graph`.
pub fn make(graph: &EditorGraph, selected: &BTreeSet<NodeId>, id: &str, name: &str) -> Result<Made, EditError> {
    if selected.is_empty() {
        return Err(EditError::NothingSelected);
    }
    let mut inner = graph.extract(selected);
    inner.next_link_id = graph.next_link_id;
    let inside = |node: NodeId| selected.contains(&node);
    let incoming: Vec<&Link> = graph.links.iter().filter(|l| inside(l.to_node) && !inside(l.from_node)).collect();
    let outgoing: Vec<&Link> = graph.links.iter().filter(|l| inside(l.from_node) && !inside(l.to_node)).collect();

    // One input per outside output feeding the selection, named after the first input it feeds.
    let mut sources: Vec<(NodeId, usize)> = Vec::new();
    let mut input_sockets: Vec<Socket> = Vec::new();
    let mut input_links: Vec<Vec<i64>> = Vec::new();
    for link in &incoming {
        let source = (link.from_node, link.from_slot);
        let slot = sources.iter().position(|s| *s == source).unwrap_or_else(|| {
            sources.push(source);
            let target = graph.node(link.to_node).and_then(|node| node.inputs.get(link.to_slot));
            let name = unique_name(&input_sockets, target.map_or("input", |socket| socket.name.as_str()));
            input_sockets.push(Socket::new(&name, &link.type_name));
            input_links.push(Vec::new());
            sources.len() - 1
        });
        inner.links.push(Link { from_node: INPUT_NODE, from_slot: slot, stored: None, ..(*link).clone() });
        input_links[slot].push(link.id);
    }
    // One output per inside output feeding the rest of the graph.
    let mut outputs: Vec<(NodeId, usize)> = Vec::new();
    let mut output_sockets: Vec<Socket> = Vec::new();
    let mut targets: Vec<Vec<(NodeId, usize)>> = Vec::new();
    let mut output_links: Vec<Vec<i64>> = Vec::new();
    for link in &outgoing {
        let source = (link.from_node, link.from_slot);
        let slot = outputs.iter().position(|s| *s == source).unwrap_or_else(|| {
            outputs.push(source);
            let socket = graph.node(link.from_node).and_then(|node| node.outputs.get(link.from_slot));
            let name = unique_name(&output_sockets, socket.map_or("output", |socket| socket.name.as_str()));
            output_sockets.push(Socket::new(&name, &link.type_name));
            let id = inner.next_link_id;
            inner.next_link_id += 1;
            inner.links.push(Link {
                id,
                from_node: link.from_node,
                from_slot: link.from_slot,
                to_node: OUTPUT_NODE,
                to_slot: outputs.len() - 1,
                type_name: link.type_name.clone(),
                stored: None,
            });
            output_links.push(vec![id]);
            targets.push(Vec::new());
            outputs.len() - 1
        });
        targets[slot].push((link.to_node, link.to_slot));
    }

    let bounds: Vec<_> = inner.nodes.iter().map(NodeInstance::bounds).collect();
    let left = bounds.iter().map(|b| b.0[0]).fold(f32::INFINITY, f32::min);
    let top = bounds.iter().map(|b| b.0[1]).fold(f32::INFINITY, f32::min);
    let right = bounds.iter().map(|b| b.1[0]).fold(f32::NEG_INFINITY, f32::max);
    let slot_json = |socket: &Socket, links: &[i64], index: usize| json!({"id": format!("{id}-{index}"), "name": socket.name, "type": socket.type_name, "linkIds": links});
    let mut definition = Map::new();
    definition.insert("id".into(), json!(id));
    definition.insert("version".into(), json!(1));
    definition.insert("state".into(), json!({"lastGroupId": 0, "lastNodeId": 0, "lastLinkId": 0, "lastRerouteId": 0}));
    definition.insert("revision".into(), json!(0));
    definition.insert("config".into(), json!({}));
    definition.insert("name".into(), json!(name));
    let io_height = |count: usize| 40 + 20 * count.max(1);
    definition.insert(
        "inputNode".into(),
        json!({"id": INPUT_NODE, "bounding": [left - 200.0, top, 120, io_height(sources.len())]}),
    );
    definition.insert(
        "outputNode".into(),
        json!({"id": OUTPUT_NODE, "bounding": [right + 80.0, top, 120, io_height(outputs.len())]}),
    );
    let inputs: Vec<Json> = input_sockets.iter().enumerate().map(|(i, s)| slot_json(s, &input_links[i], i)).collect();
    let outputs_json: Vec<Json> =
        output_sockets.iter().enumerate().map(|(i, s)| slot_json(s, &output_links[i], i + inputs.len())).collect();
    definition.insert("inputs".into(), Json::Array(inputs));
    definition.insert("outputs".into(), Json::Array(outputs_json));
    definition.insert("widgets".into(), json!([]));
    definition.insert("nodes".into(), json!([]));
    definition.insert("groups".into(), json!([]));
    definition.insert("links".into(), json!([]));
    definition.insert("extra".into(), json!({}));
    write_graph(&mut definition, &inner, true);

    let instance = NodeInstance {
        id: 0,
        class_type: id.to_string(),
        title: None,
        pos: [left, top + super::node::TITLE_HEIGHT],
        size: [NODE_WIDTH, 40.0 + 24.0 * sources.len().max(outputs.len()) as f32],
        mode: NodeMode::Normal,
        inputs: input_sockets,
        outputs: output_sockets,
        widgets_values: None,
        fields: Map::new(),
    };
    Ok(Made { definition, instance, sources, targets })
}

/// `base`, or `base_2`, `base_3`, ... so that no two sockets share a name.
fn unique_name(sockets: &[Socket], base: &str) -> String {
    let taken = |name: &str| sockets.iter().any(|socket| socket.name == name);
    if !taken(base) {
        return base.to_string();
    }
    // One of the first len + 2 suffixes is free.
    (2..sockets.len() + 3).map(|n| format!("{base}_{n}")).find(|name| !taken(name)).unwrap_or_else(|| base.to_string())
}

/// Replaces the selection in `graph` by `made`'s instance, linked as the nodes were; returns its id.
pub fn replace_with_instance(
    graph: &mut EditorGraph,
    selected: &BTreeSet<NodeId>,
    made: &Made,
) -> Result<NodeId, EditError> {
    graph.delete(selected);
    let instance = graph.add_node(made.instance.clone());
    for (slot, (node, output)) in made.sources.iter().enumerate() {
        graph.connect(*node, *output, instance, slot)?;
    }
    for (slot, targets) in made.targets.iter().enumerate() {
        for (node, input) in targets {
            graph.connect(instance, slot, *node, *input)?;
        }
    }
    Ok(instance)
}

/// Puts the nodes of `inside` (a definition's graph, entered with its input and output nodes) in place of
/// `instance` in `graph`: the instance's incoming links, or its promoted `values` (by input slot) where an
/// input is not linked, take the place of the subgraph's inputs; its outgoing links start from the inner
/// outputs that fed the subgraph's outputs. Returns the ids of the nodes put back.
pub fn unpack(
    graph: &mut EditorGraph,
    instance: NodeId,
    inside: &EditorGraph,
    values: &BTreeMap<usize, Json>,
    set_value: impl Fn(&mut NodeInstance, &str, Json),
) -> Result<BTreeSet<NodeId>, EditError> {
    let node = graph.node(instance).cloned().ok_or(EditError::NoSuchNode(instance))?;
    let origin = inside
        .nodes
        .iter()
        .filter(|n| !n.is_subgraph_io())
        .map(|n| n.pos)
        .fold([f32::INFINITY; 2], |a, p| [a[0].min(p[0]), a[1].min(p[1])]);
    let offset = [node.pos[0] - origin[0], node.pos[1] - origin[1]];
    let incoming: HashMap<usize, (NodeId, usize)> = graph
        .links
        .iter()
        .filter(|link| link.to_node == instance)
        .map(|link| (link.to_slot, (link.from_node, link.from_slot)))
        .collect();
    let outgoing: Vec<(usize, NodeId, usize)> = graph
        .links
        .iter()
        .filter(|link| link.from_node == instance)
        .map(|link| (link.from_slot, link.to_node, link.to_slot))
        .collect();
    graph.delete(&BTreeSet::from([instance]));

    let mut renamed: HashMap<NodeId, NodeId> = HashMap::new();
    let mut added = BTreeSet::new();
    for inner in inside.nodes.iter().filter(|n| !n.is_subgraph_io()) {
        let mut copy = inner.clone();
        copy.pos = [inner.pos[0] + offset[0], inner.pos[1] + offset[1]];
        let id = if graph.node(inner.id).is_none() && inner.id > 0 {
            graph.nodes.push(copy);
            graph.next_node_id = graph.next_node_id.max(inner.id + 1);
            inner.id
        } else {
            copy.fields.shift_remove("id");
            graph.add_node(copy)
        };
        renamed.insert(inner.id, id);
        added.insert(id);
    }
    for link in &inside.links {
        match (renamed.get(&link.from_node), renamed.get(&link.to_node)) {
            (Some(&from), Some(&to)) => {
                graph.connect(from, link.from_slot, to, link.to_slot)?;
            }
            (None, Some(&to)) if link.from_node == INPUT_NODE => match incoming.get(&link.from_slot) {
                Some(&(source, output)) => {
                    graph.connect(source, output, to, link.to_slot)?;
                }
                None => {
                    // Not linked outside: the promoted value becomes the inner widget's own.
                    if let Some(value) = values.get(&link.from_slot)
                        && let Some(target) = graph.node_mut(to)
                        && let Some(widget) = target.inputs.get(link.to_slot).and_then(|s| s.widget.clone())
                    {
                        set_value(target, &widget, value.clone());
                    }
                }
            },
            (Some(&from), None) if link.to_node == OUTPUT_NODE => {
                for (_, node, input) in outgoing.iter().filter(|(slot, _, _)| *slot == link.to_slot) {
                    graph.connect(from, link.from_slot, *node, *input)?;
                }
            }
            _ => {}
        }
    }
    Ok(added)
}
