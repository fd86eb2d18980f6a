//! `kinograph worker`: takes prompts one at a time from the workers' consumer, runs each with the same
//! executor and routing as the server's own worker, sends its websocket messages over NATS, stores its
//! history entry on the history stream, and only then acknowledges the prompt. A worker that dies before
//! that leaves the prompt to another worker once `ack_wait` has passed.

use super::outputs::{self, OutputPlace};
use super::wire::{EventPayload, RemoteEvent, encode_entry};
use super::{
    Connection, JetStreamConfig, JetStreamError, cancel_subject, event_subject, failed, history_subject, subject_token,
};
use crate::hub::{Outlet, PreviewFrame};
use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::object_store::ObjectStore;
use axum::body::Bytes;
use futures_util::StreamExt;
use kinograph_engine::queue::{HistoryEntry, QueueItem};
use kinograph_engine::{CancelToken, Executor};
use serde_json::Value as Json;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the worker waits before it asks again after NATS failed a request.
const RETRY: Duration = Duration::from_secs(1);
/// How long one fetch waits for a prompt before it asks again.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Messages a prompt may have waiting for the NATS connection before further ones are dropped (live
/// messages only; the history entry never waits here).
const OUTBOX: usize = 1024;

/// The prompt this worker runs now, for the interrupt listener.
type Current = Arc<Mutex<Option<(String, CancelToken)>>>;

/// Runs prompts from JetStream until `shutdown` resolves; fails only when the connection, the streams or
/// the consumer cannot be set up at the start (later failures are retried as the client reconnects). A
/// prompt running at shutdown is not acknowledged and goes to another worker after `ack_wait`.
pub async fn run_worker(
    executor: Executor,
    config: JetStreamConfig,
    identity: WorkerIdentity,
    outputs: OutputPlace,
    shutdown: impl Future<Output = ()>,
) -> Result<(), JetStreamError> {
    let connection = Connection::open(&config, "kinograph worker").await?;
    let consumer = connection.workers_consumer(&config).await?;
    let bucket = match &outputs {
        OutputPlace::SharedFolder => None,
        OutputPlace::ObjectStore(_) => Some(outputs::bucket(&connection.context, &config).await?),
    };
    let current: Current = Arc::default();
    let name = identity.name.clone();
    let _status = AbortOnDrop(tokio::spawn(report_status(connection.client.clone(), identity, current.clone())));
    let cancels =
        connection.client.subscribe("kinograph.cancel.>").await.map_err(failed("subscribing to interrupts"))?;
    let _listener = AbortOnDrop(tokio::spawn(listen_for_cancels(cancels, current.clone())));
    let worker = Worker { connection, executor, config, current, name, outputs, bucket };
    tokio::select! {
        never = take_prompts(&worker, &consumer) => match never {},
        () = shutdown => Ok(()),
    }
}

/// What a running worker holds.
struct Worker {
    connection: Connection,
    executor: Executor,
    config: JetStreamConfig,
    current: Current,
    /// The worker's name, also the subfolder its outputs go under with the object store.
    name: String,
    outputs: OutputPlace,
    /// The outputs' bucket, with [`OutputPlace::ObjectStore`].
    bucket: Option<ObjectStore>,
}

impl Worker {
    /// The subfolder this worker's outputs go under at the front end, when they go through the object store.
    fn output_subfolder(&self) -> Option<&str> {
        self.bucket.as_ref().map(|_| self.name.as_str())
    }

    /// Puts the prompt's output files into the object store (with [`OutputPlace::ObjectStore`]) and moves
    /// them under this worker's subfolder in `entry`; nothing to do with a shared folder.
    async fn send_outputs(&self, entry: &mut HistoryEntry) -> Result<(), String> {
        let (Some(bucket), OutputPlace::ObjectStore(folders)) = (&self.bucket, &self.outputs) else { return Ok(()) };
        let files = outputs::files_of(&entry.outputs);
        outputs::upload(bucket, folders, &files, &self.name).await?;
        for result in entry.outputs.values_mut() {
            outputs::move_under(result, &self.name);
        }
        entry.meta = HistoryEntry::meta_for(&entry.outputs);
        Ok(())
    }
}

/// Who a worker is, as its status says: a name unique among the workers, and the device it computes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub name: String,
    pub device: String,
}

impl WorkerIdentity {
    /// `name` (letters, digits, `-`, `_` and `.`; anything else becomes `_`) on `device`.
    pub fn new(name: &str, device: &str) -> Self {
        let keep = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let name: String = name.chars().map(|c| if keep(c) { c } else { '_' }).collect();
        // The name is a subfolder of the front end's outputs: never `.`, `..` or hidden.
        let name = match name.strip_prefix('.') {
            Some(rest) => format!("_{rest}"),
            None => name,
        };
        WorkerIdentity { name: if name.is_empty() { "worker".into() } else { name }, device: device.to_string() }
    }
}

/// Says every [`super::STATUS_PERIOD`] who this worker is and what it runs: its name, device, the prompt
/// it runs, when it started and when it sent this. A worker that dies falls silent, and the front end stops
/// listing it after [`super::STATUS_LIFETIME`].
async fn report_status(client: async_nats::Client, identity: WorkerIdentity, current: Current) {
    let started = now_millis();
    loop {
        let running = current.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(id, _)| id.clone());
        let status = serde_json::json!({
            "name": identity.name, "device": identity.device, "current_prompt": running,
            "started": started, "last_seen": now_millis(),
        });
        if let Err(error) = client.publish(super::STATUS_SUBJECT, status.to_string().into()).await {
            tracing::warn!("the worker's status could not be sent: {error}");
        }
        tokio::time::sleep(super::STATUS_PERIOD).await;
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Aborts a task when dropped, so that dropping the worker stops everything it started.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn listen_for_cancels(mut cancels: async_nats::Subscriber, current: Current) {
    while let Some(message) = cancels.next().await {
        let guard = current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((prompt_id, cancel)) = guard.as_ref()
            && message.subject.as_str() == cancel_subject(prompt_id)
        {
            tracing::info!("prompt {prompt_id} interrupted");
            cancel.cancel();
        }
    }
}

async fn take_prompts(worker: &Worker, consumer: &Consumer<pull::Config>) -> Infallible {
    loop {
        // One prompt at a time: a worker never holds a second prompt while it runs the first.
        let batch = consumer.batch().max_messages(1).expires(FETCH_WAIT).messages().await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                // The client reconnects by itself; asking again once it has is all there is to do.
                tracing::warn!("asking for a prompt failed ({error}); asking again");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => {
                    let delivered = message.info().map_or(1, |info| info.delivered);
                    let (message, acker) = message.split();
                    handle(worker, &message.payload, delivered, acker).await;
                }
                Err(error) => tracing::warn!("a prompt could not be received: {error}"),
            }
        }
    }
}

async fn handle(worker: &Worker, payload: &Bytes, delivered: i64, acker: Acker) {
    let (connection, current) = (&worker.connection, &worker.current);
    let item = serde_json::from_slice::<Json>(payload).ok().and_then(|value| QueueItem::from_comfy_json(&value));
    let Some(item) = item else {
        tracing::error!("a queued message is not a prompt; it is dropped");
        let _ = acker.ack_with(AckKind::Term).await;
        return;
    };
    let prompt_id = item.prompt_id.clone();
    // A worker that stopped after storing the entry but before acknowledging hands the prompt on; it
    // finished already, and must not run to completion twice.
    if connection.history.get_last_raw_message_by_subject(&history_subject(&prompt_id)).await.is_ok() {
        tracing::info!("prompt {prompt_id} finished already; acknowledging it without running it");
        let _ = acker.double_ack().await;
        return;
    }
    if delivered > 1 {
        tracing::warn!("prompt {prompt_id} is handed out for the {delivered}th time");
    }
    tracing::info!("running prompt {prompt_id}");
    let cancel = CancelToken::new();
    *current.lock().unwrap_or_else(PoisonError::into_inner) = Some((prompt_id.clone(), cancel.clone()));
    let (sender, receiver) = mpsc::channel(OUTBOX);
    let _publisher = AbortOnDrop(tokio::spawn(publish_events(connection.client.clone(), receiver)));
    let outlet = Arc::new(NatsOutlet {
        prompt_id: prompt_id.clone(),
        sender: sender.clone(),
        output_subfolder: worker.output_subfolder().map(str::to_string),
    });
    outlet.send(None, EventPayload::Started);
    let ran = async {
        let mut entry = crate::worker::execute(&worker.executor, &item, outlet, cancel).await;
        worker.send_outputs(&mut entry).await.map(|()| entry)
    };
    let ran = tokio::select! {
        ran = ran => ran,
        never = keep_alive(&acker, worker.config.ack_wait / 3) => match never {},
    };
    *current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    let entry = match ran {
        Ok(entry) => entry,
        Err(error) => {
            // The prompt is not done until its outputs are stored: it runs again, here or elsewhere.
            tracing::error!("prompt {prompt_id} ran, but {error}; it runs again");
            let _ = acker.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
    };
    // Every message goes out before the entry, whose arrival makes the front end send the last one.
    let (flushed, published) = tokio::sync::oneshot::channel();
    if sender.send(Outgoing::Flush(flushed)).await.is_ok() {
        let _ = published.await;
    }
    let _ = connection.client.flush().await;
    let publish = Publish::build().payload(encode_entry(&entry)).message_id(subject_token(&prompt_id));
    let stored = match connection.context.send_publish(history_subject(&prompt_id), publish).await {
        Ok(ack) => ack.await.map(drop).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match stored {
        Ok(()) => {
            if let Err(error) = acker.double_ack().await {
                tracing::warn!("prompt {prompt_id} finished but its acknowledgement was lost: {error}");
            }
            tracing::info!("prompt {prompt_id} finished: {}", entry.status.status_str);
        }
        Err(error) => {
            tracing::error!("the history entry of prompt {prompt_id} was not stored ({error}); it runs again");
            let _ = acker.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// Tells JetStream every `period` that the prompt is still being worked on.
async fn keep_alive(acker: &Acker, period: Duration) -> Infallible {
    let period = period.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        if let Err(error) = acker.ack_with(AckKind::Progress).await {
            tracing::warn!("an in-progress acknowledgement failed: {error}");
        }
    }
}

/// What the event publisher is handed: a message, or a request to say when all before it went out.
enum Outgoing {
    Event(String, Bytes),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Publishes a prompt's messages in order.
async fn publish_events(client: async_nats::Client, mut receiver: mpsc::Receiver<Outgoing>) {
    while let Some(outgoing) = receiver.recv().await {
        match outgoing {
            Outgoing::Event(subject, bytes) => {
                if let Err(error) = client.publish(subject, bytes).await {
                    tracing::warn!("a websocket message could not be sent to the front end: {error}");
                }
            }
            Outgoing::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// A remote prompt's outlet: its messages, routed as the local worker routes them, onto its events subject.
struct NatsOutlet {
    prompt_id: String,
    sender: mpsc::Sender<Outgoing>,
    /// The subfolder the files named in `executed` messages go under (outputs through the object store).
    output_subfolder: Option<String>,
}

impl NatsOutlet {
    fn send(&self, client: Option<&str>, payload: EventPayload) {
        let event = RemoteEvent { prompt_id: self.prompt_id.clone(), client: client.map(str::to_string), payload };
        if self.sender.try_send(Outgoing::Event(event_subject(&self.prompt_id), event.encode())).is_err() {
            tracing::debug!("a message of prompt {} was dropped: the connection is behind", self.prompt_id);
        }
    }
}

impl Outlet for NatsOutlet {
    fn send_json(&self, client_id: Option<&str>, message: &Json) {
        let mut message = message.clone();
        if let Some(subfolder) = &self.output_subfolder
            && message["type"] == "executed"
            && let Some(output) = message.get_mut("data").and_then(|data| data.get_mut("output"))
        {
            outputs::move_under(output, subfolder);
        }
        self.send(client_id, EventPayload::Message(message));
    }

    fn send_preview(&self, client_id: Option<&str>, frame: &PreviewFrame) {
        self.send(client_id, EventPayload::Preview { node: frame.node.clone(), jpeg: frame.jpeg.clone() });
    }
}
