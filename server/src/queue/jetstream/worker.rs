//! `kinograph worker`: takes prompts one at a time, those whose models it holds first, runs each with the
//! same executor and routing as the server's own worker, sends its websocket messages over NATS, puts its
//! outputs in the object store, stores its history entry on the history stream, and only then
//! acknowledges the prompt. A worker that dies before that leaves the prompt to another worker once
//! `ack_wait` has passed; one that is stopped (Ctrl-C) hands its prompt back at once.

use super::locality::{Chooser, Held, Peers, base_family};
use super::outputs::{self, OutputPlace};
use super::wire::{EventPayload, RemoteEvent, encode_entry};
use super::{
    Connection, FAMILY_CONSUMER_PREFIX, FREE_SUBJECT, JetStreamConfig, JetStreamError, LOCALITY_GRACE, WORKERS_BUCKET,
    cancel_subject, event_subject, failed, history_subject, subject_token,
};
use crate::hub::{Outlet, PreviewFrame};
use async_nats::jetstream::consumer::{Consumer, pull};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::object_store::ObjectStore;
use axum::body::Bytes;
use futures_util::StreamExt;
use kinograph_engine::queue::{HistoryEntry, QueueItem};
use kinograph_engine::{CancelToken, Executor, Graph};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

/// How long the worker waits before it asks again after NATS failed a request.
const RETRY: Duration = Duration::from_secs(1);
/// How often an idle worker looks for prompts when no announcement woke it (for prompts handed back by a
/// dead worker, and for those left a while to a worker that holds their models).
const LOOK_AGAIN: Duration = Duration::from_millis(500);
/// Messages a prompt may have waiting for the NATS connection before further ones are dropped (live
/// messages only; the history entry never waits here).
const OUTBOX: usize = 1024;

/// Runs prompts from JetStream until `shutdown` resolves: [`ConnectedWorker::connect`], then
/// [`ConnectedWorker::run`].
pub async fn run_worker(
    executor: Executor,
    config: JetStreamConfig,
    identity: WorkerIdentity,
    outputs: OutputPlace,
    shutdown: impl Future<Output = ()>,
) -> Result<(), JetStreamError> {
    ConnectedWorker::connect(executor, config, identity, outputs).await?.run(shutdown).await;
    Ok(())
}

/// A worker connected to NATS, with its streams, buckets and listeners in place, ready to take prompts.
pub struct ConnectedWorker {
    worker: Worker,
    statuses: kv::Store,
    offers: async_nats::Subscriber,
    /// The status reporter and the listeners, stopped when the worker is dropped.
    _tasks: [AbortOnDrop; 4],
}

impl ConnectedWorker {
    /// Connects and sets everything up; fails when the connection, the streams or the buckets cannot be
    /// (later failures are retried as the client reconnects).
    pub async fn connect(
        executor: Executor,
        config: JetStreamConfig,
        identity: WorkerIdentity,
        outputs: OutputPlace,
    ) -> Result<Self, JetStreamError> {
        let connection = Connection::open(&config, "kinograph worker").await?;
        let bucket = match &outputs {
            OutputPlace::SharedFolder => None,
            OutputPlace::ObjectStore(_) => Some(outputs::bucket(&connection.context, &config).await?),
        };
        let statuses = connection.workers_bucket().await?;
        let client = &connection.client;
        let cancels = client.subscribe("kinograph.cancel.>").await.map_err(failed("subscribing to interrupts"))?;
        let frees = client.subscribe(FREE_SUBJECT).await.map_err(failed("subscribing to requests to free memory"))?;
        let others = client
            .subscribe(format!("$KV.{WORKERS_BUCKET}.>"))
            .await
            .map_err(failed("subscribing to the workers' status"))?;
        let offers = client.subscribe("kinograph.offered.>").await.map_err(failed("subscribing to new prompts"))?;
        let name = identity.name.clone();
        let worker =
            Worker { connection, executor, config, name: name.clone(), outputs, bucket, state: Arc::default() };
        // What the others hold is known from the start, not from their next status.
        for (other, status) in super::read_statuses(&statuses).await {
            if other != name {
                worker.state.peers.lock().unwrap_or_else(PoisonError::into_inner).heard(&status, Instant::now());
            }
        }
        let tasks = [
            AbortOnDrop(tokio::spawn(report_status(statuses.clone(), identity, worker.watch()))),
            AbortOnDrop(tokio::spawn(listen_for_cancels(cancels, worker.state.clone()))),
            AbortOnDrop(tokio::spawn(listen_for_frees(frees, worker.watch()))),
            AbortOnDrop(tokio::spawn(listen_to_others(others, worker.state.clone(), name))),
        ];
        Ok(ConnectedWorker { worker, statuses, offers, _tasks: tasks })
    }

    /// Takes and runs prompts until `shutdown` resolves; a prompt running then is stopped and handed back
    /// at once, for another worker to run.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let (stop, mut stopping) = watch::channel(false);
        let work = take_prompts(&self.worker, &mut self.offers, &mut stopping);
        tokio::pin!(work, shutdown);
        tokio::select! {
            () = &mut work => {}
            () = &mut shutdown => {
                let _ = stop.send(true);
                work.as_mut().await;
            }
        }
        // The front end stops listing it now rather than when its status runs out.
        if let Err(error) = self.statuses.delete(&self.worker.name).await {
            tracing::debug!("the worker's status could not be removed: {error}");
        }
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
        // The name is a subfolder of the front end's outputs and a key of the status bucket: never `.`,
        // `..`, hidden, or ending in a dot.
        let name = match name.strip_prefix('.') {
            Some(rest) => format!("_{rest}"),
            None => name,
        };
        let name = if name.ends_with('.') { format!("{}_", name.trim_end_matches('.')) } else { name };
        WorkerIdentity { name: if name.is_empty() { "worker".into() } else { name }, device: device.to_string() }
    }
}

/// What the worker's tasks share.
#[derive(Default)]
struct State {
    /// The prompt this worker runs now, for the interrupt listener and the status.
    current: Mutex<Option<(String, CancelToken)>>,
    /// The families of prompts whose models this worker holds.
    held: Mutex<Held>,
    /// The other workers, from their statuses.
    peers: Mutex<Peers>,
    /// A `/free` came while a prompt ran: applied once it is done.
    free_pending: AtomicBool,
    /// Wakes the status reporter when the worker starts or finishes a prompt.
    changed: Notify,
}

/// The state and the executor, for tasks that watch and report them.
#[derive(Clone)]
struct Watch {
    state: Arc<State>,
    executor: Executor,
}

impl Watch {
    fn running(&self) -> Option<String> {
        self.state.current.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(id, _)| id.clone())
    }

    /// Drops the cache's outputs and models, as `/free` does on one machine.
    fn free(&self) {
        self.executor.cache().clear_memory();
        self.state.held.lock().unwrap_or_else(PoisonError::into_inner).refresh(self.executor.cache());
        self.state.changed.notify_one();
        tracing::info!("freed the cache");
    }
}

/// What a running worker holds.
struct Worker {
    connection: Connection,
    executor: Executor,
    config: JetStreamConfig,
    /// The worker's name, also the subfolder its outputs go under with the object store.
    name: String,
    outputs: OutputPlace,
    /// The outputs' bucket, with [`OutputPlace::ObjectStore`].
    bucket: Option<ObjectStore>,
    state: Arc<State>,
}

impl Worker {
    fn watch(&self) -> Watch {
        Watch { state: self.state.clone(), executor: self.executor.clone() }
    }

    fn set_current(&self, current: Option<(String, CancelToken)>) {
        *self.state.current.lock().unwrap_or_else(PoisonError::into_inner) = current;
        self.state.changed.notify_one();
    }

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

    /// Remembers the models a prompt of `family` loaded, by the signatures of their loaders.
    fn remember_models(&self, family: &str, graph: &Graph) {
        let Ok(signatures) = kinograph_engine::signature::compute_signatures(graph, self.executor.env()) else {
            return;
        };
        let models = graph.model_files().into_iter().map(|model| (model.key(), signatures[model.node])).collect();
        let mut held = self.state.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.record(family, models);
        held.refresh(self.executor.cache());
    }

    /// Applies a `/free` that came while a prompt ran.
    fn apply_pending_free(&self) {
        if self.state.free_pending.swap(false, Ordering::AcqRel) {
            self.watch().free();
        }
    }
}

/// Puts this worker's status in the bucket every [`super::STATUS_PERIOD`], and at once when it starts or
/// finishes a prompt: its name, device, the prompt it runs, the families and model files it holds warm,
/// when it started and when it sent this. A worker that dies falls silent, and its status runs out of the
/// bucket after [`super::STATUS_LIFETIME`].
async fn report_status(statuses: kv::Store, identity: WorkerIdentity, watch: Watch) {
    let started = now_millis();
    loop {
        let (families, models) = {
            let mut held = watch.state.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.refresh(watch.executor.cache());
            (held.families(), held.models())
        };
        let status = serde_json::json!({
            "name": identity.name, "device": identity.device, "current_prompt": watch.running(),
            "families": families, "models": models, "started": started, "last_seen": now_millis(),
        });
        if let Err(error) = statuses.put(&identity.name, status.to_string().into()).await {
            tracing::warn!("the worker's status could not be stored: {error}");
        }
        let _ = tokio::time::timeout(super::STATUS_PERIOD, watch.state.changed.notified()).await;
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

async fn listen_for_cancels(mut cancels: async_nats::Subscriber, state: Arc<State>) {
    while let Some(message) = cancels.next().await {
        let guard = state.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((prompt_id, cancel)) = guard.as_ref()
            && message.subject.as_str() == cancel_subject(prompt_id)
        {
            tracing::info!("prompt {prompt_id} interrupted");
            cancel.cancel();
        }
    }
}

/// `/free` from the front end: applied now when no prompt runs, else once the running one is done.
async fn listen_for_frees(mut frees: async_nats::Subscriber, watch: Watch) {
    while frees.next().await.is_some() {
        if watch.running().is_some() {
            watch.state.free_pending.store(true, Ordering::Release);
        } else {
            watch.free();
        }
    }
}

/// Keeps what the other workers' statuses say.
async fn listen_to_others(mut statuses: async_nats::Subscriber, state: Arc<State>, me: String) {
    let prefix = format!("$KV.{WORKERS_BUCKET}.");
    while let Some(message) = statuses.next().await {
        let Some(name) = message.subject.as_str().strip_prefix(&prefix) else { continue };
        if name == me {
            continue;
        }
        let mut peers = state.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let operation = message.headers.as_ref().and_then(|headers| headers.get("KV-Operation"));
        if operation.is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE")) {
            peers.gone(name);
        } else if let Ok(status) = serde_json::from_slice::<Json>(&message.payload) {
            peers.heard(&status, Instant::now());
        }
    }
}

/// Takes and runs prompts until `stopping` turns true.
async fn take_prompts(worker: &Worker, offers: &mut async_nats::Subscriber, stopping: &mut watch::Receiver<bool>) {
    let mut consumers: HashMap<String, Consumer<pull::Config>> = HashMap::new();
    let mut chooser = Chooser::new(&worker.name, LOCALITY_GRACE);
    while !*stopping.borrow() {
        worker.apply_pending_free();
        match next_prompt(worker, &mut consumers, &mut chooser).await {
            Ok(Some((family, message))) => {
                chooser.took_one();
                handle(worker, &family, message, stopping).await;
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                // The client reconnects by itself; looking again once it has is all there is to do.
                tracing::warn!("looking for a prompt failed ({error}); looking again");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        // Nothing to take now: wait for a new prompt, the next look, or the end.
        tokio::select! {
            _ = offers.next() => {}
            () = tokio::time::sleep(LOOK_AGAIN) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// One prompt from the families with prompts waiting, in this worker's order ([`Chooser`]), or `None`
/// when there is none for it now.
async fn next_prompt(
    worker: &Worker,
    consumers: &mut HashMap<String, Consumer<pull::Config>>,
    chooser: &mut Chooser,
) -> Result<Option<(String, async_nats::jetstream::Message)>, JetStreamError> {
    let mut listed = worker.connection.prompts.consumers();
    let mut waiting = Vec::new();
    while let Some(info) = listed.next().await {
        let info = info.map_err(failed("listing the families of prompts"))?;
        // Prompts not yet handed out, and those handed out (a dead worker's come back after the ack wait).
        let has_work = info.num_pending > 0 || info.num_ack_pending > 0;
        if let Some(family) = info.name.strip_prefix(FAMILY_CONSUMER_PREFIX)
            && has_work
        {
            waiting.push(family.to_string());
        }
    }
    let own = worker.state.held.lock().unwrap_or_else(PoisonError::into_inner).families();
    let order = {
        let peers = worker.state.peers.lock().unwrap_or_else(PoisonError::into_inner);
        chooser.order(&waiting, &own, &peers, Instant::now())
    };
    for family in order {
        if !consumers.contains_key(&family) {
            let consumer = worker.connection.family_consumer(&worker.config, &family).await?;
            consumers.insert(family.clone(), consumer);
        }
        let Some(consumer) = consumers.get(&family) else { continue };
        // One prompt at a time: a worker never holds a second prompt while it runs the first.
        let mut batch = consumer.fetch().max_messages(1).messages().await.map_err(failed("asking for a prompt"))?;
        match batch.next().await {
            Some(Ok(message)) => return Ok(Some((family, message))),
            Some(Err(error)) => tracing::warn!("a prompt could not be received: {error}"),
            None => {}
        }
    }
    Ok(None)
}

/// Resolves once `stopping` turns true.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    while !*stopping.borrow_and_update() {
        if stopping.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn handle(
    worker: &Worker,
    family: &str,
    message: async_nats::jetstream::Message,
    stopping: &mut watch::Receiver<bool>,
) {
    let connection = &worker.connection;
    let delivered = message.info().map_or(1, |info| info.delivered);
    let (message, acker) = message.split();
    let item =
        serde_json::from_slice::<Json>(&message.payload).ok().and_then(|value| QueueItem::from_comfy_json(&value));
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
    worker.set_current(Some((prompt_id.clone(), cancel.clone())));
    let (sender, receiver) = mpsc::channel(OUTBOX);
    let _publisher = AbortOnDrop(tokio::spawn(publish_events(connection.client.clone(), receiver)));
    let outlet = Arc::new(NatsOutlet {
        prompt_id: prompt_id.clone(),
        sender: sender.clone(),
        output_subfolder: worker.output_subfolder().map(str::to_string),
    });
    outlet.send(None, EventPayload::Started);
    let ran = async {
        let (mut entry, graph) = crate::worker::execute(&worker.executor, &item, outlet, cancel.clone()).await;
        worker.send_outputs(&mut entry).await.map(|()| (entry, graph))
    };
    let ran = tokio::select! {
        ran = ran => ran,
        never = keep_alive(&acker, worker.config.ack_wait / 3) => match never {},
        () = stopped(stopping) => {
            // Stopped by its operator: the prompt goes back to the queue now rather than after the ack wait.
            cancel.cancel();
            worker.set_current(None);
            let _ = acker.ack_with(AckKind::Nak(None)).await;
            tracing::info!("stopping: prompt {prompt_id} is handed back for another worker");
            return;
        }
    };
    worker.set_current(None);
    let (entry, graph) = match ran {
        Ok(ran) => ran,
        Err(error) => {
            // The prompt is not done until its outputs are stored: it runs again, here or elsewhere.
            tracing::error!("prompt {prompt_id} ran, but {error}; it runs again");
            let _ = acker.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
    };
    if let Some(graph) = graph
        && entry.status.status_str == "success"
    {
        worker.remember_models(base_family(family), &graph);
    }
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
    worker.state.changed.notify_one();
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
