//! The one worker: takes the next prompt in run order from the store, runs it with the engine's executor
//! (whose cache stays warm from prompt to prompt), turns its events into ComfyUI's websocket messages and
//! stores its history entry. The entry is on disk before the prompt's final `executing {node: null}`
//! goes out, so a client that saw a prompt finish always finds it in `/history`, even after a crash.

use crate::hub::{Outlet, PreviewFrame};
use crate::state::{Running, Shared};
use kinograph_engine::queue::{QueueItem, failed_entry, run_queued};
use kinograph_engine::validation::validate_targets;
use kinograph_engine::{ApiPrompt, CancelToken, Event, EventKind, EventSink, Executor, Preview};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long the worker sleeps when the queue is empty before it looks again (it is woken at once when a
/// prompt is queued; this only bounds the wait if a wake-up were missed).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Runs prompts until the process ends.
pub async fn run(shared: Arc<Shared>) {
    loop {
        shared.apply_free_request();
        let store = shared.store.clone();
        let next = tokio::task::spawn_blocking(move || store.take_next()).await;
        match next {
            Ok(Ok(Some(item))) => run_item(&shared, item).await,
            Ok(Ok(None)) => {
                let _ = tokio::time::timeout(IDLE_POLL, shared.wake.notified()).await;
            }
            Ok(Err(error)) => {
                tracing::error!("cannot take the next prompt from the queue: {error}");
                tokio::time::sleep(IDLE_POLL).await;
            }
            Err(error) => {
                tracing::error!("the queue's reader stopped: {error}");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// Where a prompt's messages go, by ComfyUI's rules, whichever process runs it.
struct Reporter {
    outlet: Arc<dyn Outlet>,
    client_id: Option<String>,
    prompt_id: String,
}

impl Reporter {
    /// Sends one engine event as ComfyUI does; the final `executing {node: null}` is held back until the
    /// history entry is stored.
    fn report(&self, event: &Event) {
        let client = self.client_id.as_deref();
        match &event.kind {
            EventKind::Finished => {}
            // Everyone hears of an interrupt; progress goes to everyone when the prompt named no client.
            EventKind::ExecutionInterrupted { .. } => self.outlet.send_json(None, &event.to_comfy_json()),
            EventKind::Progress { preview, node, .. } => {
                self.outlet.send_json(client, &event.to_comfy_json());
                if let Some(preview) = preview {
                    self.send_preview(node, preview);
                }
            }
            EventKind::NodeFinished { .. } => self.outlet.send_json(client, &event.to_comfy_json()),
            // The rest only to the prompt's client, as ComfyUI: without a client_id they are not sent.
            _ => {
                if client.is_some() {
                    self.outlet.send_json(client, &event.to_comfy_json());
                }
            }
        }
    }

    fn send_preview(&self, node: &str, preview: &Preview) {
        match encode_jpeg(preview) {
            Ok(jpeg) => {
                let frame =
                    PreviewFrame { node: node.to_string(), prompt_id: self.prompt_id.clone(), jpeg: jpeg.into() };
                self.outlet.send_preview(self.client_id.as_deref(), &frame);
            }
            Err(error) => tracing::debug!("a preview of node {node} could not be encoded: {error}"),
        }
    }
}

/// A preview as a JPEG of quality 90, as ComfyUI sends them.
fn encode_jpeg(preview: &Preview) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
    image::ImageEncoder::write_image(
        encoder,
        &preview.rgb,
        preview.width,
        preview.height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(bytes)
}

async fn run_item(shared: &Arc<Shared>, item: QueueItem) {
    let cancel = CancelToken::new();
    shared.set_running(Some(Running { prompt_id: item.prompt_id.clone(), cancel: cancel.clone() }));
    shared.broadcast_status();
    let (entry, _) = execute(&shared.executor, &item, shared.hub.clone(), cancel).await;
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.finish(&entry)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!("the history entry of prompt {} was not stored: {error}", item.prompt_id),
        Err(error) => tracing::error!("storing the history entry of prompt {} failed: {error}", item.prompt_id),
    }
    shared.set_running(None);
    announce_finished(shared, &item.prompt_id, item.client_id());
}

/// Runs `item` on `executor`, its messages going to `outlet` by ComfyUI's rules (all but the final
/// `executing {node: null}`, which waits until the entry is stored), and returns its history entry and
/// the graph that ran. A prompt that no longer validates (a file it names went away) leaves an
/// `execution_error` entry, and no graph.
pub(crate) async fn execute(
    executor: &Executor,
    item: &QueueItem,
    outlet: Arc<dyn Outlet>,
    cancel: CancelToken,
) -> (kinograph_engine::queue::HistoryEntry, Option<Arc<kinograph_engine::Graph>>) {
    let reporter = Arc::new(Reporter {
        outlet: outlet.clone(),
        client_id: item.client_id().map(str::to_string),
        prompt_id: item.prompt_id.clone(),
    });
    match prepare(executor, item).await {
        Ok(graph) => {
            let events: EventSink = Arc::new(move |event: &Event| reporter.report(event));
            let graph = Arc::new(graph);
            (run_queued(executor, graph.clone(), item, events, cancel).await.1, Some(graph))
        }
        Err(message) => {
            let entry = failed_entry(item, &message);
            if item.client_id().is_some() {
                for (kind, data) in &entry.status.messages {
                    outlet.send_json(item.client_id(), &json!({"type": kind, "data": data}));
                }
            }
            (entry, None)
        }
    }
}

/// What follows a stored history entry, in ComfyUI's order: the queue's new length to everyone, then the
/// prompt's final `executing {node: null}` to its client.
pub(crate) fn announce_finished(shared: &Shared, prompt_id: &str, client_id: Option<&str>) {
    shared.broadcast_status();
    if let Some(client) = client_id {
        let finished = Event::now(&Arc::from(prompt_id), EventKind::Finished).to_comfy_json();
        shared.hub.send_json(Some(client), &finished);
    }
}

/// The prompt's graph, validated again now (files may have changed since it was queued).
async fn prepare(executor: &Executor, item: &QueueItem) -> Result<kinograph_engine::Graph, String> {
    let (executor, item) = (executor.clone(), item.clone());
    tokio::task::spawn_blocking(move || validated_graph(&executor, &item))
        .await
        .map_err(|error| format!("validation stopped: {error}"))?
}

/// A queued prompt's graph for its outputs to run, validated against `executor`'s nodes and files now, or
/// why it is not valid (blocking: it reads the model folders).
pub(crate) fn validated_graph(executor: &Executor, item: &QueueItem) -> Result<kinograph_engine::Graph, String> {
    let prompt = ApiPrompt::from_json(item.prompt.clone(), "the queued prompt").map_err(|e| e.to_string())?;
    validate_targets(&prompt, executor.registry(), executor.env(), &item.outputs_to_execute)
        .map_err(|report| report.to_text())
}
