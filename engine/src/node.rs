//! The [`Node`] trait: what a custom node implements, and the types its `execute` sees.

use crate::context::ExecutionContext;
use crate::folders::ModelFolders;
use crate::schema::NodeSchema;
use crate::value::{NodeValue, Value};
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a run reads and writes files. Schemas may depend on it (a combo of the model files present).
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where output nodes write.
    pub output_dir: PathBuf,
    /// Where input files (images to load) are looked up.
    pub input_dir: PathBuf,
    /// Model folders in ComfyUI's layout (`checkpoints/`, `vae/`, ...), with any extra search paths.
    pub models: ModelFolders,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            output_dir: PathBuf::from("output"),
            input_dir: PathBuf::from("input"),
            models: ModelFolders::new("models"),
        }
    }
}

/// A node type. Implement this, register it in a [`crate::Registry`], and workflows can use it.
///
/// `execute` runs on a blocking thread: it may take seconds or minutes, and should call
/// [`ExecutionContext::progress`] or [`ExecutionContext::check_interrupted`] regularly so that a
/// cancelled run stops promptly.
pub trait Node: Send + Sync + 'static {
    /// The node's schema. Called when validating and when listing nodes; may look at `env`.
    fn schema(&self, env: &Environment) -> NodeSchema;

    /// Does the work: `inputs` are resolved and validated against the schema.
    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError>;

    /// Extra checks on constant inputs before anything runs (linked inputs are absent here).
    /// Each `(input, message)` becomes a `custom_validation_failed` error.
    fn validate(&self, constants: &NodeInputs, env: &Environment) -> Vec<(String, String)> {
        let _ = (constants, env);
        Vec::new()
    }

    /// A fingerprint of outside state the node reads (a file's contents, say), hashed into its cache
    /// signature so that a change outside the workflow re-runs it. Sees constant inputs only.
    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        let _ = (constants, env);
        None
    }

    /// Bumped by the node's author when its outputs for the same inputs change; part of the cache key.
    fn version(&self) -> u32 {
        0
    }

    /// Which lazy inputs ([`crate::InputSpec::lazy`]) the node needs, given what it has so far (ComfyUI's
    /// `check_lazy_status`).
    ///
    /// `inputs` holds the constants, the non-lazy links and the lazy links evaluated so far;
    /// `unevaluated` names the lazy inputs that are linked but not evaluated yet, which are absent from
    /// `inputs` (an unconnected input is in neither). Return the names to evaluate: the nodes upstream
    /// of them are scheduled, and once they are done this is called again with them present. When it
    /// returns nothing still unevaluated, `execute` runs with the lazy inputs that were evaluated and
    /// without the others, whose upstream nodes never run unless something else needs them. A name that
    /// is neither in `inputs` nor in `unevaluated` fails the node.
    ///
    /// Called on a worker thread before `execute`, only while some linked lazy input is unevaluated. It
    /// should be cheap and depend only on `inputs`: the node's cache key covers all of its inputs, so the
    /// same non-lazy inputs must lead to the same choice. Lazy inputs whose upstream nodes are cached are
    /// still absent until asked for. The default asks for every linked lazy input.
    fn check_lazy_status(&self, inputs: &NodeInputs, unevaluated: &[&str]) -> Result<Vec<String>, NodeError> {
        let _ = inputs;
        Ok(unevaluated.iter().map(|name| (*name).to_string()).collect())
    }
}

/// What a node returns: one value per declared output, and optionally a UI result (`{"images": [...]}`,
/// `{"text": [...]}`) that clients show and that `executed` events carry.
#[derive(Debug, Clone, Default)]
pub struct NodeOutput {
    pub values: Vec<Value>,
    pub ui: Option<Json>,
}

impl NodeOutput {
    /// Outputs without a UI result.
    pub fn new(values: Vec<Value>) -> Self {
        NodeOutput { values, ui: None }
    }

    /// Adds a UI result.
    pub fn with_ui(mut self, ui: Json) -> Self {
        self.ui = Some(ui);
        self
    }
}

/// Why a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The run was cancelled (returned by [`ExecutionContext::check_interrupted`]).
    #[error("interrupted")]
    Interrupted,
    /// An input had a value the node cannot use.
    #[error("input '{input}': {message}")]
    Input { input: String, message: String },
    /// Anything else, in words a user can act on.
    #[error("{0}")]
    Message(String),
    /// A lower-level error, kept with its type name.
    #[error("{message}")]
    Other {
        message: String,
        type_name: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl NodeError {
    /// A failure described in words.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        NodeError::Message(message.to_string())
    }

    /// A bad value on `input`.
    pub fn input(input: &str, message: impl std::fmt::Display) -> Self {
        NodeError::Input { input: input.to_string(), message: message.to_string() }
    }

    /// Wraps any error, keeping its type name for the report.
    pub fn other<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        NodeError::Other { message: error.to_string(), type_name: std::any::type_name::<E>(), source: Box::new(error) }
    }

    /// The error's type, as `execution_error.exception_type` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeError::Interrupted => "Interrupted",
            NodeError::Input { .. } => "InputError",
            NodeError::Message(_) => "NodeError",
            NodeError::Other { type_name, .. } => type_name,
        }
    }
}

impl From<std::io::Error> for NodeError {
    fn from(error: std::io::Error) -> Self {
        NodeError::other(error)
    }
}

/// A node's resolved inputs, by name. Typed getters name the input in their errors.
#[derive(Debug, Clone, Default)]
pub struct NodeInputs {
    values: IndexMap<String, Value>,
}

impl NodeInputs {
    /// Inputs from `(name, value)` pairs.
    pub fn new(values: IndexMap<String, Value>) -> Self {
        NodeInputs { values }
    }

    /// Sets an input (used by tests and by nodes that call other nodes).
    pub fn insert(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// All inputs in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(name, value)| (name.as_str(), value))
    }

    fn required(&self, name: &str) -> Result<&Value, NodeError> {
        self.values.get(name).ok_or_else(|| NodeError::input(name, "is missing"))
    }

    /// An INT input that must fit in `i64`.
    pub fn int(&self, name: &str) -> Result<i64, NodeError> {
        let wide = self.int_wide(name)?;
        i64::try_from(wide)
            .map_err(|_| NodeError::input(name, format!("{wide} does not fit in a 64-bit signed integer")))
    }

    /// An INT input at full width (seeds up to 2^64 − 1).
    pub fn int_wide(&self, name: &str) -> Result<i128, NodeError> {
        match self.required(name)? {
            Value::Int(int) => Ok(*int),
            other => Err(mismatch(name, "INT", other)),
        }
    }

    /// A FLOAT input (an INT is widened).
    pub fn float(&self, name: &str) -> Result<f64, NodeError> {
        match self.required(name)? {
            Value::Float(float) => Ok(*float),
            Value::Int(int) => Ok(*int as f64),
            other => Err(mismatch(name, "FLOAT", other)),
        }
    }

    /// A STRING or COMBO input.
    pub fn string(&self, name: &str) -> Result<&str, NodeError> {
        match self.required(name)? {
            Value::String(text) => Ok(text),
            other => Err(mismatch(name, "STRING", other)),
        }
    }

    /// A BOOLEAN input.
    pub fn boolean(&self, name: &str) -> Result<bool, NodeError> {
        match self.required(name)? {
            Value::Bool(flag) => Ok(*flag),
            other => Err(mismatch(name, "BOOLEAN", other)),
        }
    }

    /// A node value of type `T` (a model, a latent).
    pub fn object<T: NodeValue>(&self, name: &str) -> Result<Arc<T>, NodeError> {
        let value = self.required(name)?;
        value.downcast::<T>().ok_or_else(|| {
            NodeError::input(
                name,
                format!("expected a {} value, got {}", std::any::type_name::<T>(), value.type_name()),
            )
        })
    }

    /// An optional node value: `None` when the input is not connected.
    pub fn optional_object<T: NodeValue>(&self, name: &str) -> Result<Option<Arc<T>>, NodeError> {
        if self.values.contains_key(name) { self.object(name).map(Some) } else { Ok(None) }
    }

    /// An optional INT: `None` when not given.
    pub fn optional_int(&self, name: &str) -> Result<Option<i64>, NodeError> {
        if self.values.contains_key(name) { self.int(name).map(Some) } else { Ok(None) }
    }

    /// An optional FLOAT: `None` when not given.
    pub fn optional_float(&self, name: &str) -> Result<Option<f64>, NodeError> {
        if self.values.contains_key(name) { self.float(name).map(Some) } else { Ok(None) }
    }

    /// An optional STRING or COMBO: `None` when not given.
    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, NodeError> {
        if self.values.contains_key(name) { self.string(name).map(Some) } else { Ok(None) }
    }

    /// An optional BOOLEAN: `None` when not given.
    pub fn optional_boolean(&self, name: &str) -> Result<Option<bool>, NodeError> {
        if self.values.contains_key(name) { self.boolean(name).map(Some) } else { Ok(None) }
    }

    /// The inputs formatted for an error report (`current_inputs`).
    pub fn describe(&self) -> serde_json::Map<String, Json> {
        self.values.iter().map(|(name, value)| (name.clone(), Json::Array(vec![value.to_json()]))).collect()
    }
}

fn mismatch(name: &str, expected: &str, found: &Value) -> NodeError {
    NodeError::input(name, format!("expected {expected}, got {}", found.type_name()))
}
