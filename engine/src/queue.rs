//! The queue's vocabulary, shared by every front end that queues prompts (`kinograph serve`, its workers,
//! the editor, `kinograph run`): a queued prompt as ComfyUI's 5-tuple, the order prompts run in, and the
//! history entry a finished prompt leaves. Where the queue lives (in memory, an embedded database, a
//! distributed stream) is the front end's business; what an item and an entry are is the same everywhere.

use crate::context::CancelToken;
use crate::events::{Event, EventKind, EventSink};
use crate::executor::{Executor, RunOptions, RunOutcome, RunStatus};
use crate::graph::Graph;
use serde_json::{Map, Value as Json, json};
use std::cmp::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// Keys of `extra_data` that are never stored or shown (ComfyUI's `SENSITIVE_EXTRA_DATA_KEYS`).
pub const SENSITIVE_EXTRA_DATA_KEYS: [&str; 2] = ["auth_token_comfy_org", "api_key_comfy_org"];

/// A prompt waiting or running: ComfyUI's `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// The priority: smallest runs first (the server's counter, negated for `front`, or the client's).
    pub number: f64,
    pub prompt_id: String,
    /// The API prompt as it runs (`{id: {class_type, inputs}}`).
    pub prompt: Json,
    /// The client's `extra_data` (`client_id`, `extra_pnginfo`, ...), an object.
    pub extra_data: Json,
    /// The output nodes to run, in order.
    pub outputs_to_execute: Vec<String>,
}

impl QueueItem {
    /// The websocket client the prompt's messages go to (`extra_data.client_id`), if any.
    pub fn client_id(&self) -> Option<&str> {
        self.extra_data.get("client_id").and_then(Json::as_str)
    }

    /// ComfyUI's 5-tuple.
    pub fn to_comfy_json(&self) -> Json {
        json!([self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute])
    }

    /// Reads ComfyUI's 5-tuple back; `None` when it is not one.
    pub fn from_comfy_json(value: &Json) -> Option<Self> {
        let [number, prompt_id, prompt, extra_data, outputs] = value.as_array()?.as_slice() else { return None };
        Some(QueueItem {
            number: number.as_f64()?,
            prompt_id: prompt_id.as_str()?.to_string(),
            prompt: prompt.clone(),
            extra_data: extra_data.clone(),
            outputs_to_execute: outputs
                .as_array()?
                .iter()
                .map(|o| o.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
        })
    }

    /// The item as history keeps it: `extra_data` without the sensitive keys.
    pub fn sanitized(&self) -> Self {
        let mut item = self.clone();
        if let Some(extra) = item.extra_data.as_object_mut() {
            for key in SENSITIVE_EXTRA_DATA_KEYS {
                extra.remove(key);
            }
        }
        item
    }
}

/// The order prompts run in: smallest `number` first, ties by prompt id (ComfyUI's heap on the tuple).
pub fn run_order(a: &QueueItem, b: &QueueItem) -> Ordering {
    a.number.total_cmp(&b.number).then_with(|| a.prompt_id.cmp(&b.prompt_id))
}

/// How a finished prompt ended, as ComfyUI's history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStatus {
    /// `"success"` or `"error"` (an interrupted prompt is an error).
    pub status_str: String,
    pub completed: bool,
    /// `[event, data]` pairs: `execution_start`, `execution_cached`, and the one that ended it
    /// (`execution_success`, `execution_error` or `execution_interrupted`).
    pub messages: Vec<(String, Json)>,
}

impl HistoryStatus {
    /// ComfyUI's `{"status_str", "completed", "messages"}`.
    pub fn to_comfy_json(&self) -> Json {
        let messages: Vec<Json> = self.messages.iter().map(|(event, data)| json!([event, data])).collect();
        json!({"status_str": self.status_str, "completed": self.completed, "messages": messages})
    }

    /// Reads the JSON [`Self::to_comfy_json`] writes; `None` when it is not that shape.
    pub fn from_comfy_json(value: &Json) -> Option<Self> {
        let messages = value
            .get("messages")?
            .as_array()?
            .iter()
            .map(|pair| match pair.as_array()?.as_slice() {
                [event, data] => Some((event.as_str()?.to_string(), data.clone())),
                _ => None,
            })
            .collect::<Option<_>>()?;
        Some(HistoryStatus {
            status_str: value.get("status_str")?.as_str()?.to_string(),
            completed: value.get("completed")?.as_bool()?,
            messages,
        })
    }
}

/// What a finished prompt leaves: ComfyUI's history entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The prompt as it was queued, without sensitive `extra_data`.
    pub item: QueueItem,
    /// The UI results by node id (`{"images": [{filename, subfolder, type}], ...}`).
    pub outputs: Map<String, Json>,
    pub status: HistoryStatus,
    /// `{node_id: {node_id, display_node, parent_node, real_node_id}}` for the nodes with outputs.
    pub meta: Map<String, Json>,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_at: u64,
}

impl HistoryEntry {
    /// ComfyUI's `{"prompt": [...], "outputs": {...}, "status": {...}, "meta": {...}}`.
    pub fn to_comfy_json(&self) -> Json {
        json!({
            "prompt": self.item.to_comfy_json(),
            "outputs": self.outputs,
            "status": self.status.to_comfy_json(),
            "meta": self.meta,
        })
    }

    /// The `meta` ComfyUI gives each node with an output: its own id everywhere (no subgraph parents once
    /// a workflow is flattened).
    pub fn meta_for(outputs: &Map<String, Json>) -> Map<String, Json> {
        outputs
            .keys()
            .map(|node| {
                let meta = json!({"node_id": node, "display_node": node, "parent_node": null, "real_node_id": node});
                (node.clone(), meta)
            })
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs a queued prompt, already validated into `graph`, the way every front end runs one: its events go to
/// `events` as they happen, and the history entry it leaves comes back beside the run's outcome (the UI
/// results, and the `execution_start`, `execution_cached` and final messages ComfyUI keeps).
pub async fn run_queued(
    executor: &Executor,
    graph: Arc<Graph>,
    item: &QueueItem,
    events: EventSink,
    cancel: CancelToken,
) -> (RunOutcome, HistoryEntry) {
    let messages: Arc<Mutex<Vec<(String, Json)>>> = Arc::default();
    let recorder = {
        let messages = messages.clone();
        Arc::new(move |event: &Event| {
            if matches!(
                event.kind,
                EventKind::ExecutionStart
                    | EventKind::ExecutionCached { .. }
                    | EventKind::ExecutionSuccess
                    | EventKind::ExecutionError(_)
                    | EventKind::ExecutionInterrupted { .. }
            ) {
                let pair = (event.comfy_type().to_string(), event.to_comfy_json()["data"].clone());
                messages.lock().unwrap_or_else(PoisonError::into_inner).push(pair);
            }
            events(event);
        })
    };
    let options = RunOptions {
        prompt_id: item.prompt_id.clone(),
        events: recorder,
        cancel,
        extra_pnginfo: item.extra_data.get("extra_pnginfo").cloned().unwrap_or(Json::Null),
    };
    let outcome = executor.run(graph, options).await;
    let outputs: Map<String, Json> = outcome.outputs.iter().map(|(node, ui)| (node.clone(), ui.clone())).collect();
    let success = outcome.status == RunStatus::Success;
    let messages = std::mem::take(&mut *messages.lock().unwrap_or_else(PoisonError::into_inner));
    let entry = HistoryEntry {
        item: item.sanitized(),
        meta: HistoryEntry::meta_for(&outputs),
        outputs,
        status: HistoryStatus {
            status_str: if success { "success" } else { "error" }.to_string(),
            completed: success,
            messages,
        },
        finished_at: now_millis(),
    };
    (outcome, entry)
}

/// The history entry of a queued prompt that could not run at all (a model file it names was removed
/// after it was queued): an `execution_error` with `message` and no node.
pub fn failed_entry(item: &QueueItem, message: &str) -> HistoryEntry {
    failed_entry_of(item, "invalid_prompt", message)
}

/// [`failed_entry`] with the error's `exception_type` (`invalid_prompt`, `undelivered`, ...).
pub fn failed_entry_of(item: &QueueItem, exception_type: &str, message: &str) -> HistoryEntry {
    let timestamp = now_millis();
    let error = json!({
        "prompt_id": item.prompt_id, "node_id": null, "node_type": null, "executed": [],
        "exception_message": message, "exception_type": exception_type, "traceback": [],
        "current_inputs": {}, "current_outputs": [], "timestamp": timestamp,
    });
    let start = json!({"prompt_id": item.prompt_id, "timestamp": timestamp});
    HistoryEntry {
        item: item.sanitized(),
        outputs: Map::new(),
        meta: Map::new(),
        status: HistoryStatus {
            status_str: "error".into(),
            completed: false,
            messages: vec![("execution_start".into(), start), ("execution_error".into(), error)],
        },
        finished_at: timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(number: f64, id: &str) -> QueueItem {
        QueueItem {
            number,
            prompt_id: id.to_string(),
            prompt: json!({"1": {"class_type": "Note", "inputs": {}}}),
            extra_data: json!({"client_id": "c1", "api_key_comfy_org": "secret"}),
            outputs_to_execute: vec!["1".to_string()],
        }
    }

    #[test]
    fn items_run_smallest_number_first_then_by_id() {
        let mut items = [item(3.0, "a"), item(-1.0, "z"), item(1.0, "b"), item(1.0, "a")];
        items.sort_by(run_order);
        let order: Vec<(f64, &str)> = items.iter().map(|i| (i.number, i.prompt_id.as_str())).collect();
        assert_eq!(order, [(-1.0, "z"), (1.0, "a"), (1.0, "b"), (3.0, "a")]);
    }

    #[test]
    fn items_and_statuses_round_trip_through_comfyuis_json() {
        let original = item(2.5, "p");
        assert_eq!(original.client_id(), Some("c1"));
        assert_eq!(QueueItem::from_comfy_json(&original.to_comfy_json()).unwrap(), original);
        assert!(QueueItem::from_comfy_json(&json!([1, "p", {}])).is_none());
        let clean = original.sanitized();
        assert!(clean.extra_data.get("api_key_comfy_org").is_none());
        assert_eq!(clean.client_id(), Some("c1"));

        let status = HistoryStatus {
            status_str: "success".into(),
            completed: true,
            messages: vec![("execution_start".into(), json!({"prompt_id": "p", "timestamp": 1}))],
        };
        assert_eq!(HistoryStatus::from_comfy_json(&status.to_comfy_json()).unwrap(), status);
        let outputs: Map<String, Json> = [("9".to_string(), json!({"images": []}))].into_iter().collect();
        let entry =
            HistoryEntry { item: clean, meta: HistoryEntry::meta_for(&outputs), outputs, status, finished_at: 5 };
        let shown = entry.to_comfy_json();
        assert_eq!(shown["prompt"][1], "p");
        assert_eq!(shown["meta"]["9"]["real_node_id"], "9");
        assert_eq!(shown["status"]["messages"][0][0], "execution_start");
    }
}
