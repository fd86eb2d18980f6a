//! The registry of node types and of decoders for stored values.

use crate::node::{Environment, Node};
use crate::value::ValueDecoder;
use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;

/// Node types by class name, plus the decoders that read cached values back from disk.
#[derive(Default, Clone)]
pub struct Registry {
    nodes: IndexMap<String, Arc<dyn Node>>,
    decoders: HashMap<String, ValueDecoder>,
}

/// Registering two nodes under one class name is a programming error in a node library.
#[derive(Debug, thiserror::Error)]
#[error("node class '{0}' is registered twice")]
pub struct DuplicateNode(pub String);

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node type under the class name its schema declares.
    pub fn register(&mut self, node: impl Node) -> Result<(), DuplicateNode> {
        self.register_arc(Arc::new(node))
    }

    /// Adds a shared node type.
    pub fn register_arc(&mut self, node: Arc<dyn Node>) -> Result<(), DuplicateNode> {
        let class_type = node.schema(&Environment::default()).class_type;
        if self.nodes.contains_key(&class_type) {
            return Err(DuplicateNode(class_type));
        }
        self.nodes.insert(class_type, node);
        Ok(())
    }

    /// Adds every node of `nodes`, in order; stops at the first class name already registered (the
    /// nodes before it stay registered). A node library's `register` is one call:
    /// `registry.register_all([Arc::new(A) as Arc<dyn Node>, Arc::new(B)])`.
    pub fn register_all(&mut self, nodes: impl IntoIterator<Item = Arc<dyn Node>>) -> Result<(), DuplicateNode> {
        nodes.into_iter().try_for_each(|node| self.register_arc(node))
    }

    /// Adds the decoder for stored values of `kind` (see [`crate::NodeValue::to_stored`]).
    pub fn register_decoder(&mut self, kind: &str, decoder: ValueDecoder) {
        self.decoders.insert(kind.to_string(), decoder);
    }

    /// The node type registered as `class_type`.
    pub fn get(&self, class_type: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.get(class_type)
    }

    /// The decoder for `kind`.
    pub fn decoder(&self, kind: &str) -> Option<ValueDecoder> {
        self.decoders.get(kind).copied()
    }

    /// Class names, in registration order.
    pub fn class_types(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Number of node types.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node type is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every schema, keyed by class, in ComfyUI's `/object_info` shape.
    pub fn object_info(&self, env: &Environment) -> Json {
        let entries: Map<String, Json> =
            self.nodes.iter().map(|(class, node)| (class.clone(), node.schema(env).object_info())).collect();
        Json::Object(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecutionContext, NodeError, NodeInputs, NodeOutput, NodeSchema};

    struct Named(&'static str);
    impl Node for Named {
        fn schema(&self, _: &Environment) -> NodeSchema {
            NodeSchema::new(self.0)
        }
        fn execute(&self, _: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
            Ok(NodeOutput::new(Vec::new()))
        }
    }

    #[test]
    fn register_all_adds_every_node_and_names_a_duplicate() {
        let mut registry = Registry::new();
        registry.register_all([Arc::new(Named("A")) as Arc<dyn Node>, Arc::new(Named("B"))]).unwrap();
        assert_eq!(registry.len(), 2);
        let duplicate = registry.register_all([Arc::new(Named("C")) as Arc<dyn Node>, Arc::new(Named("A"))]);
        assert_eq!(duplicate.unwrap_err().to_string(), "node class 'A' is registered twice");
        assert!(registry.get("C").is_some(), "the nodes before the duplicate are registered");
    }
}
