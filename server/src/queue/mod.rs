//! Where queued prompts run. The routes see one queue whichever backend runs it: the front end's own record
//! in the embedded database ([`crate::store`]) holds what waits, what runs and the history in both, so
//! `/queue`, `/history` and their edits read and write the same tables either way, and a restarted front
//! end finds everything it had. What differs is how a prompt gets to a worker and back:
//!
//! - [`Backend::Local`] (the default, one machine): the server's own worker takes the next prompt from the
//!   database in ComfyUI's order and runs it in this process ([`crate::worker`]).
//! - [`Backend::JetStream`] (many machines): an accepted prompt is also published on a NATS JetStream work
//!   queue that `kinograph worker` processes take prompts from; their websocket messages come back over
//!   NATS to this process's websockets, and their history entries over a durable stream into the database
//!   ([`jetstream`]).
//!
//! An enum rather than a trait object: there are two backends, both known here, and their operations are
//! async, which trait objects only take boxed.

pub mod jetstream;

use crate::state::Shared;
use kinograph_engine::queue::QueueItem;
use std::sync::Arc;

/// How a server's prompts get run.
#[derive(Debug, Clone, Default)]
pub enum QueueConfig {
    /// By the server's own worker, in this process.
    #[default]
    Local,
    /// By `kinograph worker` processes behind a NATS server with JetStream.
    JetStream(jetstream::JetStreamConfig),
}

/// The running backend of a server's queue.
pub enum Backend {
    /// The server's own worker runs prompts.
    Local,
    /// Remote workers run prompts, reached over NATS JetStream.
    JetStream(Box<jetstream::FrontEnd>),
}

/// Why a prompt could not be handed to the workers.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    JetStream(#[from] jetstream::JetStreamError),
}

impl Backend {
    /// Hands a prompt the database has just accepted, which reads the model files `models` (`folder/name`
    /// each), to whoever runs prompts. Locally that is waking the worker; with JetStream the prompt is
    /// published for the workers (those holding its models first), and only a prompt the stream has stored
    /// counts as queued. `front` says it was sent to the front of the queue.
    pub(crate) async fn submitted(
        &self,
        shared: &Shared,
        item: &QueueItem,
        models: &[String],
        front: bool,
    ) -> Result<(), QueueError> {
        match self {
            Backend::Local => {
                shared.wake.notify_one();
                Ok(())
            }
            Backend::JetStream(front_end) => Ok(front_end.publish_prompt(item, models, front).await?),
        }
    }

    /// Takes prompts removed from the database's pending list away from the workers too.
    pub(crate) async fn removed(&self, prompt_ids: &[String]) {
        if let Backend::JetStream(front_end) = self {
            front_end.withdraw(prompt_ids).await;
        }
    }

    /// Stops the running prompt `prompt_id`, or every running prompt with `None`; whether one was asked to
    /// stop. A remote worker stops at its next step, as a local interrupt does.
    pub(crate) async fn interrupt(&self, shared: &Arc<Shared>, prompt_id: Option<&str>) -> bool {
        match self {
            Backend::Local => shared.interrupt(prompt_id),
            Backend::JetStream(front_end) => {
                let running = if let Some(id) = prompt_id { vec![id.to_string()] } else { running_ids(shared).await };
                front_end.cancel(&running).await;
                !running.is_empty()
            }
        }
    }

    /// Passes a `/free` request on to the remote workers (the local worker reads it from the shared state).
    pub(crate) async fn free(&self, request: crate::state::FreeRequest) {
        if let Backend::JetStream(front_end) = self
            && (request.unload_models || request.free_memory)
        {
            front_end.free(request).await;
        }
    }

    /// How many prompts run now: the local worker's one, or the remote ones the database knows started.
    pub(crate) fn running_count(&self, shared: &Shared) -> usize {
        match self {
            Backend::Local => usize::from(shared.running_id().is_some()),
            Backend::JetStream(_) => shared.store.running_count().unwrap_or_else(|error| {
                tracing::error!("cannot count the running prompts: {error}");
                0
            }),
        }
    }

    /// Starts what runs prompts for the server: the local worker, or the relays that bring the remote
    /// workers' messages and history entries back.
    pub(crate) fn start(shared: &Arc<Shared>) -> tokio::task::JoinHandle<()> {
        match &shared.backend {
            Backend::Local => tokio::spawn(crate::worker::run(shared.clone())),
            Backend::JetStream(_) => tokio::spawn(jetstream::relay(shared.clone())),
        }
    }
}

/// The ids of the prompts the database has running (none when it cannot be read, which is logged).
async fn running_ids(shared: &Shared) -> Vec<String> {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.running()).await {
        Ok(Ok(items)) => items.into_iter().map(|item| item.prompt_id).collect(),
        Ok(Err(error)) => {
            tracing::error!("cannot list the running prompts to interrupt them: {error}");
            Vec::new()
        }
        Err(error) => {
            tracing::error!("listing the running prompts failed: {error}");
            Vec::new()
        }
    }
}
