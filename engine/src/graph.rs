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

/// A model file a node of a graph reads: a constant given to a COMBO of model files
/// ([`crate::InputSpec::model_file`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelUse {
    /// The index of the node in the graph.
    pub node: usize,
    /// The folder kind (`checkpoints`, `text_encoders`, ...).
    pub folder: String,
    /// The file's name as the prompt gives it.
    pub name: String,
}

impl ModelUse {
    /// `folder/name`: the file as a machine holding models names it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }
}

impl Graph {
    /// The index of node `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == id)
    }

    /// The model files the graph's nodes read, in node order: what a machine must hold to run it warm.
    pub fn model_files(&self) -> Vec<ModelUse> {
        let mut uses = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            for (input, given) in &node.inputs {
                let (GraphInput::Constant(crate::value::Value::String(name)), Some(spec)) =
                    (given, node.schema.input_spec(input))
                else {
                    continue;
                };
                if let crate::schema::InputKind::Combo(combo) = &spec.kind
                    && let Some(folder) = &combo.model_folder
                {
                    uses.push(ModelUse { node: index, folder: folder.kind.clone(), name: name.to_string() });
                }
            }
        }
        uses
    }
}
