//! What a file of nodes needs, in one line: `use kinograph_engine::prelude::*;`.
//!
//! The `Node` trait and its schema builders, what `execute` receives and returns, the errors it
//! reports, the values on links (and their stored form for the disk cache), output files, and the
//! registry nodes are added to.

pub use crate::{
    Environment, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, NodeValue,
    OutputFile, Registry, StoredObject, StoredTensor, Value,
};
