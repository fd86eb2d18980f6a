//! Events a run emits, for every front end: the CLI draws progress bars from them, the server sends them
//! as ComfyUI websocket messages, the editor paints them on nodes.

use serde_json::{Map, Value as Json, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A small RGB image a node shows while it works (a sampler's current latent).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

/// Why a run failed, with the node at fault and the inputs it had (ComfyUI's `execution_error`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionFailure {
    pub node_id: String,
    pub node_type: String,
    pub exception_message: String,
    pub exception_type: String,
    pub current_inputs: Map<String, Json>,
    /// Nodes that finished before the failure.
    pub executed: Vec<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The run started.
    ExecutionStart,
    /// These nodes will not run: their outputs came from the cache (or are not needed).
    ExecutionCached { nodes: Vec<String> },
    /// A node started.
    Executing { node: String },
    /// A node reports progress, with an optional preview.
    Progress { node: String, value: u64, max: u64, preview: Option<Arc<Preview>> },
    /// A node finished with a UI result (also sent for cached output nodes).
    Executed { node: String, output: Json },
    /// A node finished (with or without a UI result).
    NodeFinished { node: String },
    /// Every output node finished.
    ExecutionSuccess,
    /// A node failed; the run stopped.
    ExecutionError(ExecutionFailure),
    /// The run was cancelled.
    ExecutionInterrupted { node_id: Option<String>, node_type: Option<String>, executed: Vec<String> },
    /// The run is over, whatever the outcome (ComfyUI's `executing` with `node: null`).
    Finished,
}

/// An event of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub prompt_id: Arc<str>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub kind: EventKind,
}

/// Receives events; called from the scheduler and from nodes' blocking threads.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that drops everything.
pub fn ignore_events() -> EventSink {
    Arc::new(|_| {})
}

impl Event {
    /// An event stamped now.
    pub fn now(prompt_id: &Arc<str>, kind: EventKind) -> Self {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Event { prompt_id: prompt_id.clone(), timestamp, kind }
    }

    /// The ComfyUI websocket message type.
    pub fn comfy_type(&self) -> &'static str {
        match &self.kind {
            EventKind::ExecutionStart => "execution_start",
            EventKind::ExecutionCached { .. } => "execution_cached",
            EventKind::Executing { .. } | EventKind::Finished => "executing",
            EventKind::Progress { .. } => "progress",
            EventKind::Executed { .. } => "executed",
            EventKind::NodeFinished { .. } => "progress_state",
            EventKind::ExecutionSuccess => "execution_success",
            EventKind::ExecutionError(_) => "execution_error",
            EventKind::ExecutionInterrupted { .. } => "execution_interrupted",
        }
    }

    /// The event as a ComfyUI websocket message: `{"type": ..., "data": {...}}`. Previews travel in
    /// binary frames in ComfyUI and are not part of this JSON.
    pub fn to_comfy_json(&self) -> Json {
        let prompt_id = &*self.prompt_id;
        let timestamp = self.timestamp;
        let data = match &self.kind {
            EventKind::ExecutionStart | EventKind::ExecutionSuccess => {
                json!({"prompt_id": prompt_id, "timestamp": timestamp})
            }
            EventKind::ExecutionCached { nodes } => {
                json!({"nodes": nodes, "prompt_id": prompt_id, "timestamp": timestamp})
            }
            EventKind::Executing { node } => json!({"node": node, "display_node": node, "prompt_id": prompt_id}),
            EventKind::Finished => json!({"node": null, "prompt_id": prompt_id}),
            EventKind::Progress { node, value, max, .. } => {
                json!({"value": value, "max": max, "prompt_id": prompt_id, "node": node})
            }
            EventKind::Executed { node, output } => {
                json!({"node": node, "display_node": node, "output": output, "prompt_id": prompt_id})
            }
            EventKind::NodeFinished { node } => json!({
                "prompt_id": prompt_id,
                "nodes": {node: {
                    "value": 1, "max": 1, "state": "finished", "node_id": node, "prompt_id": prompt_id,
                    "display_node_id": node, "parent_node_id": null, "real_node_id": node,
                }},
            }),
            EventKind::ExecutionError(failure) => json!({
                "prompt_id": prompt_id,
                "node_id": failure.node_id,
                "node_type": failure.node_type,
                "executed": failure.executed,
                "exception_message": failure.exception_message,
                "exception_type": failure.exception_type,
                "traceback": [],
                "current_inputs": failure.current_inputs,
                "current_outputs": [],
                "timestamp": timestamp,
            }),
            EventKind::ExecutionInterrupted { node_id, node_type, executed } => json!({
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": node_type,
                "executed": executed,
                "timestamp": timestamp,
            }),
        };
        json!({"type": self.comfy_type(), "data": data})
    }
}
