//! Cache signatures: a stable hash of what a node computes.
//!
//! `signature(n) = blake3(class, node version, fingerprint, [node id if not idempotent],
//! inputs sorted by name: constant value | (signature of source, slot))`. Node ids of idempotent nodes
//! are not part of it, so identical sub-graphs share signatures whatever their ids, and a changed
//! constant changes the signature of its node and of everything downstream, nothing else.

use crate::content_hash::{self, Hasher};
use crate::executor::panic_message;
use crate::graph::{Graph, GraphInput};
use crate::node::{Environment, NodeInputs};
use crate::value::Value;
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::fmt;

/// A node's cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature(pub [u8; 32]);

impl Signature {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        content_hash::to_hex(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", &self.to_hex()[..16])
    }
}

/// A node whose `version` or `fingerprint` panicked while its signature was computed: that node fails.
#[derive(Debug)]
pub struct SignaturePanic {
    /// The node's index in the graph.
    pub index: usize,
    /// The panic's message.
    pub message: String,
    /// The node's constant inputs, as an error reports them.
    pub inputs: serde_json::Map<String, Json>,
}

/// Signatures of every node of `graph`, by index (the graph is in dependency order). A node's
/// `version` and `fingerprint` are its own code (custom nodes' included): a panic there is caught and
/// returned, naming the node, instead of unwinding through the executor.
pub fn compute_signatures(graph: &Graph, env: &Environment) -> Result<Vec<Signature>, SignaturePanic> {
    let mut signatures: Vec<Signature> = Vec::with_capacity(graph.nodes.len());
    for (index, node) in graph.nodes.iter().enumerate() {
        let mut hasher = Hasher::new();
        hasher.update(b"kinograph-node-v1\0");
        write_str(&mut hasher, &node.class_type);
        let constants: IndexMap<String, Value> = node
            .inputs
            .iter()
            .filter_map(|(name, input)| match input {
                GraphInput::Constant(value) => Some((name.clone(), value.clone())),
                GraphInput::Link { .. } => None,
            })
            .collect();
        let constants = NodeInputs::new(constants);
        let (version, fingerprint) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (node.node.version(), node.node.fingerprint(&constants, env))
        }))
        .map_err(|panic| SignaturePanic {
            index,
            message: panic_message(&*panic),
            inputs: constants.describe(),
        })?;
        hasher.update(&version.to_le_bytes());
        match fingerprint {
            Some(fingerprint) => {
                hasher.update(&[1]);
                write_bytes(&mut hasher, &fingerprint);
            }
            None => {
                hasher.update(&[0]);
            }
        }
        if node.schema.not_idempotent {
            hasher.update(&[1]);
            write_str(&mut hasher, &node.id);
        } else {
            hasher.update(&[0]);
        }
        let mut inputs: Vec<&(String, GraphInput)> = node.inputs.iter().collect();
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        hasher.update(&(inputs.len() as u64).to_le_bytes());
        for (name, input) in inputs {
            write_str(&mut hasher, name);
            match input {
                GraphInput::Constant(value) => {
                    hasher.update(b"C");
                    hash_value(&mut hasher, value);
                }
                GraphInput::Link { node: source, slot } => {
                    hasher.update(b"L");
                    hasher.update(&signatures[*source].0);
                    hasher.update(&(*slot as u64).to_le_bytes());
                }
            }
        }
        signatures.push(Signature(hasher.finalize()));
    }
    Ok(signatures)
}

fn write_str(hasher: &mut Hasher, text: &str) {
    write_bytes(hasher, text.as_bytes());
}

fn write_bytes(hasher: &mut Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn hash_value(hasher: &mut Hasher, value: &Value) {
    match value {
        Value::Int(int) => {
            hasher.update(b"i");
            hasher.update(&int.to_le_bytes());
        }
        Value::Float(float) => {
            hasher.update(b"f");
            hasher.update(&float.to_bits().to_le_bytes());
        }
        Value::String(text) => {
            hasher.update(b"s");
            write_str(hasher, text);
        }
        Value::Bool(flag) => {
            hasher.update(if *flag { b"T" } else { b"F" });
        }
        Value::Json(json) => {
            hasher.update(b"j");
            hash_json(hasher, json);
        }
        Value::Object(object) => {
            // Constants are never objects; hash the description so the key is at least stable.
            hasher.update(b"o");
            write_str(hasher, &object.describe());
        }
    }
}

/// Hashes JSON canonically: object keys sorted, numbers by their text.
fn hash_json(hasher: &mut Hasher, json: &Json) {
    match json {
        Json::Null => {
            hasher.update(b"n");
        }
        Json::Bool(flag) => {
            hasher.update(if *flag { b"T" } else { b"F" });
        }
        Json::Number(number) => {
            hasher.update(b"#");
            write_str(hasher, &number.to_string());
        }
        Json::String(text) => {
            hasher.update(b"s");
            write_str(hasher, text);
        }
        Json::Array(items) => {
            hasher.update(b"[");
            hasher.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_json(hasher, item);
            }
        }
        Json::Object(fields) => {
            hasher.update(b"{");
            hasher.update(&(fields.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            for key in keys {
                write_str(hasher, key);
                hash_json(hasher, &fields[key]);
            }
        }
    }
}
