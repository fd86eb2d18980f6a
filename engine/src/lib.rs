//! # kinograph-engine
//!
//! Kinograph's graph engine: it reads ComfyUI workflows (API prompts, and UI workflows converted to them), checks them against node schemas before
//! anything runs, plans what must run given the cache, runs nodes concurrently on blocking threads with
//! cooperative cancellation, and reports progress as events. It knows nothing about diffusion: values on
//! links are primitives or opaque [`NodeValue`]s defined by node libraries.
//!
//! ```
//! use kinograph_engine::{ApiPrompt, Environment, Executor, Registry, RunOptions, RunStatus};
//! use std::sync::Arc;
//! # use kinograph_engine::{ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, Value};
//! # struct Shout;
//! # impl Node for Shout {
//! #     fn schema(&self, _: &Environment) -> NodeSchema {
//! #         NodeSchema::new("Shout").input(InputSpec::string("text", "")).output_node()
//! #     }
//! #     fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
//! #         Ok(NodeOutput::new(vec![]).with_ui(serde_json::json!({"text": [inputs.string("text")?.to_uppercase()]})))
//! #     }
//! # }
//! let mut registry = Registry::new();
//! registry.register(Shout).unwrap();
//! let executor = Executor::new(Arc::new(registry), Environment::default());
//! let prompt = ApiPrompt::parse(r#"{"1": {"class_type": "Shout", "inputs": {"text": "hi"}}}"#, "example").unwrap();
//! let graph = Arc::new(executor.validate(&prompt).unwrap());
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! let outcome = runtime.block_on(executor.run(graph, RunOptions::default()));
//! assert_eq!(outcome.status, RunStatus::Success);
//! assert_eq!(outcome.outputs["1"]["text"][0], "HI");
//! ```

pub mod cache;
pub mod content_hash;
pub mod context;
pub mod events;
pub mod executor;
pub mod folders;
pub mod graph;
pub mod memory;
pub mod mp4;
pub mod node;
pub mod prelude;
pub mod queue;
pub mod registry;
pub mod schema;
pub mod signature;
pub mod size;
pub mod validation;
pub mod value;
pub mod workflow;

pub use cache::{Cache, CacheEntry, DiskCache};
pub use context::{CancelToken, ExecutionContext, OutputFile, next_numbered_path};
pub use events::{Event, EventKind, EventSink, ExecutionFailure, Preview};
pub use executor::{Executor, RunOptions, RunOutcome, RunStatus};
pub use folders::{FolderError, MissingModel, ModelFolders};
pub use graph::{Graph, GraphInput, GraphNode, ModelUse};
pub use memory::{MemoryBudget, MemoryPool};
pub use node::{Environment, Node, NodeError, NodeInputs, NodeOutput};
pub use queue::{HistoryEntry, HistoryStatus, QueueItem};
pub use registry::Registry;
pub use schema::{InputKind, InputSpec, NodeSchema, OutputSpec};
pub use signature::Signature;
pub use validation::{ErrorType, ValidationReport, validate};
pub use value::{NodeValue, StoredObject, StoredTensor, Value};
pub use workflow::{
    ApiPrompt, Conversion, ConversionWarning, ConvertOptions, InputValue, Link, UiWorkflow, WorkflowError,
    WorkflowFile, convert, ui_from_prompt,
};

/// The guide to writing nodes, compiled as a doc test so its code keeps working.
#[cfg(doctest)]
#[doc = include_str!("../../docs/writing-nodes.md")]
pub struct WritingNodesGuide;
