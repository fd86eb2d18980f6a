//! A validated, executable graph: node indices instead of ids, constants coerced, links checked,
//! nodes in dependency order.

use crate::node::Node;
use crate::schema::NodeSchema;
use crate::value::Value;
use serde_json::Value as Json;
use std::sync::Arc;

/// An input of a graph node.
#[derive(Debug, Clone)]
pub enum GraphInput {
    /// A constant, coerced to the input's type.
    Constant(Value),
    /// Output `slot` of the node at index `node`.
    Link { node: usize, slot: usize },
}

/// A node ready to run.
#[derive(Clone)]
pub struct GraphNode {
    pub id: String,
    pub class_type: String,
    pub title: Option<String>,
    pub node: Arc<dyn Node>,
    pub schema: Arc<NodeSchema>,
    /// Given inputs in schema order (absent optional inputs are left out).
    pub inputs: Vec<(String, GraphInput)>,
}

impl std::fmt::Debug for GraphNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphNode")
            .field("id", &self.id)
            .field("class_type", &self.class_type)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// The part of a prompt that its output nodes need, in an order where producers come before consumers.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    /// Indices of the output nodes to run.
    pub outputs: Vec<usize>,
    /// The API prompt the graph came from (given to nodes as ComfyUI's hidden `PROMPT`).
    pub prompt: Arc<Json>,
}

impl Graph {
    /// The index of node `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == id)
    }
}
