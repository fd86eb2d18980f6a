//! What every route and the worker share: the executor (with its warm cache), the store, the queue's
//! backend, the websockets, the prompt that runs and the limits.

use crate::hub::Hub;
use crate::queue::Backend;
use crate::store::Store;
use kinograph_engine::{CancelToken, Executor};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Bounds on what clients may send, each refused with a clear 413 or 429.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body outside the upload routes (a prompt), in bytes.
    pub max_body_bytes: usize,
    /// Largest upload (`/upload/image`, `/upload/mask`), in bytes (ComfyUI's `--max-upload-size`).
    pub max_upload_bytes: usize,
    /// Most nodes in one prompt.
    pub max_prompt_nodes: usize,
    /// Most websockets open at once.
    pub max_websockets: usize,
    /// Most prompts waiting at once.
    pub max_queue: usize,
    /// Most history entries kept (the oldest go first).
    pub max_history: usize,
    /// Oldest history entry kept.
    pub max_history_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_upload_bytes: 100 << 20,
            max_prompt_nodes: 10_000,
            max_websockets: 256,
            max_queue: 10_000,
            max_history: 10_000,
            max_history_age: Duration::from_hours(30 * 24),
        }
    }
}

/// The prompt the worker runs now.
pub struct Running {
    pub prompt_id: String,
    pub cancel: CancelToken,
}

/// What `POST /free` asked for, applied by the worker between prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreeRequest {
    pub unload_models: bool,
    pub free_memory: bool,
}

/// What the host reports under `/system_stats` (the binary knows the devices; the server does not).
pub type SystemStats = Arc<dyn Fn() -> Json + Send + Sync>;

/// The server's shared state.
pub struct Shared {
    pub executor: Executor,
    /// The front end's record of the queue and the history, whichever backend runs the prompts.
    pub store: Arc<Store>,
    /// Who runs the prompts: this process's worker or remote workers.
    pub backend: Backend,
    pub hub: Arc<Hub>,
    /// Woken when a prompt is queued or memory is to be freed.
    pub wake: Notify,
    pub limits: Limits,
    pub folders: crate::files::Folders,
    pub system_stats: SystemStats,
    running: Mutex<Option<Running>>,
    free: Mutex<FreeRequest>,
}

impl Shared {
    /// The state around `executor` and `store`, with prompts run by `backend`.
    pub fn new(
        executor: Executor,
        store: Arc<Store>,
        backend: Backend,
        limits: Limits,
        folders: crate::files::Folders,
        system_stats: SystemStats,
    ) -> Self {
        Shared {
            executor,
            store,
            backend,
            hub: Arc::new(Hub::default()),
            wake: Notify::new(),
            limits,
            folders,
            system_stats,
            running: Mutex::new(None),
            free: Mutex::new(FreeRequest::default()),
        }
    }

    pub(crate) fn set_running(&self, running: Option<Running>) {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = running;
    }

    /// The id of the prompt that runs now.
    pub fn running_id(&self) -> Option<String> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|r| r.prompt_id.clone())
    }

    /// Stops the running prompt if it is `prompt_id` (or whatever runs, with `None`); whether one was stopped.
    /// Another prompt is never touched.
    pub fn interrupt(&self, prompt_id: Option<&str>) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.as_ref() {
            Some(run) if prompt_id.is_none_or(|id| id == run.prompt_id) => {
                run.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Prompts waiting or running (ComfyUI's `queue_remaining`).
    pub fn queue_remaining(&self) -> usize {
        let pending = self.store.pending_count().unwrap_or_else(|error| {
            tracing::error!("cannot count the queued prompts: {error}");
            0
        });
        pending + self.backend.running_count(self)
    }

    /// Tells every websocket how many prompts remain.
    pub fn broadcast_status(&self) {
        self.hub.send_json(None, &crate::hub::Hub::status_message(self.queue_remaining(), None));
    }

    /// Records a `/free` request for the worker and wakes it.
    pub fn request_free(&self, request: FreeRequest) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.unload_models |= request.unload_models;
        free.free_memory |= request.free_memory;
        drop(free);
        self.wake.notify_one();
    }

    /// Applies a pending `/free` request: the cache's outputs and the models only it held are dropped.
    pub(crate) fn apply_free_request(&self) {
        let request = std::mem::take(&mut *self.free.lock().unwrap_or_else(PoisonError::into_inner));
        if request.unload_models || request.free_memory {
            self.executor.cache().clear_memory();
            tracing::info!(
                "freed the cache (unload_models {}, free_memory {})",
                request.unload_models,
                request.free_memory
            );
        }
    }
}
