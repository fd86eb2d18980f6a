//! The graph being edited: nodes, links between sockets, groups, and the edits on them.
//!
//! Connections follow the engine's type rule ([`types_compatible`]); a refused connection says why.

use super::node::{NodeId, NodeInstance, Point};
use kinograph_engine::schema::types_compatible;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeSet, HashSet};
use thiserror::Error;

/// A link id as files write it.
pub type LinkId = i64;

/// A link from an output socket to an input socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub id: LinkId,
    pub from_node: NodeId,
    pub from_slot: usize,
    pub to_node: NodeId,
    pub to_slot: usize,
    pub type_name: String,
    /// The link as read from a file, written back unchanged.
    pub stored: Option<Json>,
}

/// A titled rectangle drawn behind nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub title: String,
    /// Left, top, width, height (ComfyUI's `bounding`).
    pub bounding: [f32; 4],
    /// The group's object as read from a file (`color`, `font_size`, ...), written back.
    pub fields: Map<String, Json>,
}

/// The smallest width and height a group is resized to: room for its title.
pub const MIN_GROUP_SIZE: Point = [140.0, 80.0];

/// Why a connection or an edit was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EditError {
    #[error("there is no node {0}")]
    NoSuchNode(NodeId),
    #[error("node {node} has no output {slot}")]
    NoSuchOutput { node: NodeId, slot: usize },
    #[error("node {node} has no input {slot}")]
    NoSuchInput { node: NodeId, slot: usize },
    #[error("node {node} has no widget '{widget}' that can take a link")]
    NoSuchWidget { node: NodeId, widget: String },
    #[error("select the nodes to put in a subgraph first")]
    NothingSelected,
    #[error("node {0} is not a subgraph")]
    NotASubgraph(NodeId),
    #[error("a node cannot feed itself")]
    SameNode,
    #[error(
        "output '{output}' of node {from} gives {output_type}, but input '{input}' of node {to} takes {input_type}"
    )]
    Incompatible { from: NodeId, output: String, output_type: String, to: NodeId, input: String, input_type: String },
    #[error("linking node {from} to node {to} would make a cycle: node {to} already feeds node {from}")]
    Cycle { from: NodeId, to: NodeId },
    #[error("there is no group {0}")]
    NoSuchGroup(usize),
    #[error("there is no node class {0}")]
    NoSuchClass(String),
    #[error("node class {class_type} has no {side} of type {type_name}")]
    NoCompatibleSocket { class_type: String, side: &'static str, type_name: String },
}

/// One socket of a node on the canvas: an output or an input, by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub node: NodeId,
    pub output: bool,
    pub slot: usize,
}

/// Nodes, links and groups, in drawing order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EditorGraph {
    pub nodes: Vec<NodeInstance>,
    pub links: Vec<Link>,
    pub groups: Vec<Group>,
    /// The next free node id.
    pub next_node_id: NodeId,
    /// The next free link id.
    pub next_link_id: LinkId,
}

impl EditorGraph {
    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Option<&NodeInstance> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// The node with this id, for editing.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut NodeInstance> {
        self.nodes.iter_mut().find(|node| node.id == id)
    }

    fn require(&self, id: NodeId) -> Result<&NodeInstance, EditError> {
        self.node(id).ok_or(EditError::NoSuchNode(id))
    }

    /// The link feeding input `slot` of node `node`, if any.
    pub fn link_into(&self, node: NodeId, slot: usize) -> Option<&Link> {
        self.links.iter().find(|link| link.to_node == node && link.to_slot == slot)
    }

    /// Adds `node` with a fresh id (the one it carries is replaced) and returns that id.
    pub fn add_node(&mut self, mut node: NodeInstance) -> NodeId {
        node.id = self.next_node_id;
        self.next_node_id += 1;
        let id = node.id;
        self.nodes.push(node);
        id
    }

    /// Links output `from_slot` of `from` to input `to_slot` of `to`, replacing any link already into that
    /// input. Refuses links between incompatible types, onto the same node, or that would close a cycle.
    pub fn connect(&mut self, from: NodeId, from_slot: usize, to: NodeId, to_slot: usize) -> Result<LinkId, EditError> {
        let source = self.require(from)?;
        let target = self.require(to)?;
        let output = source.outputs.get(from_slot).ok_or(EditError::NoSuchOutput { node: from, slot: from_slot })?;
        let input = target.inputs.get(to_slot).ok_or(EditError::NoSuchInput { node: to, slot: to_slot })?;
        if from == to {
            return Err(EditError::SameNode);
        }
        if !types_compatible(&output.type_name, &input.type_name) {
            return Err(EditError::Incompatible {
                from,
                output: output.name.clone(),
                output_type: output.type_name.clone(),
                to,
                input: input.name.clone(),
                input_type: input.type_name.clone(),
            });
        }
        if self.downstream_of(to).contains(&from) {
            return Err(EditError::Cycle { from, to });
        }
        let type_name = output.type_name.clone();
        let reroute = target.is_reroute();
        self.links.retain(|link| !(link.to_node == to && link.to_slot == to_slot));
        // A reroute passes on the type that reaches it, as ComfyUI's does.
        if reroute
            && type_name != "*"
            && let Some(socket) = self.node_mut(to).and_then(|node| node.outputs.first_mut())
        {
            socket.type_name.clone_from(&type_name);
        }
        let id = self.next_link_id;
        self.next_link_id += 1;
        self.links.push(Link { id, from_node: from, from_slot, to_node: to, to_slot, type_name, stored: None });
        Ok(id)
    }

    /// Removes the link into input `slot` of `node`; returns whether there was one.
    pub fn disconnect(&mut self, node: NodeId, slot: usize) -> bool {
        let before = self.links.len();
        self.links.retain(|link| !(link.to_node == node && link.to_slot == slot));
        self.links.len() != before
    }

    /// Every node reachable by following links out of `start` (`start` included).
    pub fn downstream_of(&self, start: NodeId) -> HashSet<NodeId> {
        let mut seen = HashSet::from([start]);
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for link in self.links.iter().filter(|link| link.from_node == node) {
                if seen.insert(link.to_node) {
                    stack.push(link.to_node);
                }
            }
        }
        seen
    }

    /// Deletes the nodes and every link touching them; returns how many nodes were removed.
    pub fn delete(&mut self, ids: &BTreeSet<NodeId>) -> usize {
        let before = self.nodes.len();
        self.nodes.retain(|node| !ids.contains(&node.id));
        self.links.retain(|link| !ids.contains(&link.from_node) && !ids.contains(&link.to_node));
        before - self.nodes.len()
    }

    /// Moves the nodes by `delta` canvas units.
    pub fn move_by(&mut self, ids: &BTreeSet<NodeId>, delta: Point) {
        for node in self.nodes.iter_mut().filter(|node| ids.contains(&node.id)) {
            node.pos = [node.pos[0] + delta[0], node.pos[1] + delta[1]];
        }
    }

    /// Copies the nodes and the links among them, as a sub-graph with its own ids.
    pub fn extract(&self, ids: &BTreeSet<NodeId>) -> EditorGraph {
        let nodes: Vec<NodeInstance> = self.nodes.iter().filter(|node| ids.contains(&node.id)).cloned().collect();
        let links: Vec<Link> = self
            .links
            .iter()
            .filter(|link| ids.contains(&link.from_node) && ids.contains(&link.to_node))
            .cloned()
            .collect();
        EditorGraph { nodes, links, groups: Vec::new(), next_node_id: 0, next_link_id: 0 }
    }

    /// Inserts a sub-graph (from [`EditorGraph::extract`]) with fresh node and link ids, shifted by `offset`;
    /// returns the new node ids. Links into the sub-graph from outside were not extracted, so none are made.
    pub fn insert(&mut self, part: &EditorGraph, offset: Point) -> BTreeSet<NodeId> {
        let mut renamed = std::collections::HashMap::new();
        let mut added = BTreeSet::new();
        for node in &part.nodes {
            let mut copy = node.clone();
            copy.pos = [node.pos[0] + offset[0], node.pos[1] + offset[1]];
            // Stored link ids belong to the original; the copy's are rebuilt when saving.
            copy.fields.shift_remove("id");
            let id = self.add_node(copy);
            renamed.insert(node.id, id);
            added.insert(id);
        }
        for link in &part.links {
            let (Some(&from_node), Some(&to_node)) = (renamed.get(&link.from_node), renamed.get(&link.to_node)) else {
                continue;
            };
            let id = self.next_link_id;
            self.next_link_id += 1;
            self.links.push(Link { id, from_node, to_node, stored: None, ..link.clone() });
        }
        added
    }

    /// Sets the title of group `index`.
    pub fn rename_group(&mut self, index: usize, title: &str) -> Result<(), EditError> {
        let group = self.groups.get_mut(index).ok_or(EditError::NoSuchGroup(index))?;
        group.title = title.to_string();
        Ok(())
    }

    /// The nodes lying wholly inside group `index`: the ones that move with it.
    pub fn nodes_in_group(&self, index: usize) -> Result<BTreeSet<NodeId>, EditError> {
        let [left, top, width, height] = self.groups.get(index).ok_or(EditError::NoSuchGroup(index))?.bounding;
        Ok(self
            .nodes
            .iter()
            .filter(|node| {
                let (min, max) = node.bounds();
                min[0] >= left && min[1] >= top && max[0] <= left + width && max[1] <= top + height
            })
            .map(|node| node.id)
            .collect())
    }

    /// Moves group `index` by `delta`, and with it the nodes inside it.
    pub fn move_group(&mut self, index: usize, delta: Point) -> Result<(), EditError> {
        let inside = self.nodes_in_group(index)?;
        self.move_by(&inside, delta);
        let bounding = &mut self.groups[index].bounding;
        bounding[0] += delta[0];
        bounding[1] += delta[1];
        Ok(())
    }

    /// Sets the width and height of group `index`, no smaller than [`MIN_GROUP_SIZE`]; its corner stays.
    pub fn resize_group(&mut self, index: usize, size: Point) -> Result<(), EditError> {
        let group = self.groups.get_mut(index).ok_or(EditError::NoSuchGroup(index))?;
        group.bounding[2] = size[0].max(MIN_GROUP_SIZE[0]);
        group.bounding[3] = size[1].max(MIN_GROUP_SIZE[1]);
        Ok(())
    }

    /// Removes group `index`; its nodes stay where they are.
    pub fn delete_group(&mut self, index: usize) -> Result<(), EditError> {
        if index >= self.groups.len() {
            return Err(EditError::NoSuchGroup(index));
        }
        self.groups.remove(index);
        Ok(())
    }

    /// The nodes whose rectangles overlap the box spanned by two corners.
    pub fn nodes_in_box(&self, corner: Point, other: Point) -> BTreeSet<NodeId> {
        let (left, right) = (corner[0].min(other[0]), corner[0].max(other[0]));
        let (top, bottom) = (corner[1].min(other[1]), corner[1].max(other[1]));
        self.nodes
            .iter()
            .filter(|node| {
                let (min, max) = node.bounds();
                min[0] <= right && max[0] >= left && min[1] <= bottom && max[1] >= top
            })
            .map(|node| node.id)
            .collect()
    }

    /// The topmost node under a canvas point.
    pub fn node_at(&self, point: Point) -> Option<NodeId> {
        self.nodes.iter().rev().find(|node| node.contains(point)).map(|node| node.id)
    }
}
