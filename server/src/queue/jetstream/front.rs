//! The front end's side of JetStream: publishing accepted prompts, withdrawing deleted ones, asking
//! workers to stop, and relaying what workers send back: their websocket messages to this process's
//! websockets and their history entries into its database.

use super::wire::{EventPayload, RemoteEvent, decode_entry};
use super::{
    Connection, FREE_SUBJECT, FRONT_END_CONSUMER, JetStreamConfig, JetStreamError, PROMPTS_STREAM, WORKERS_BUCKET,
    cancel_subject, failed, family_of, offered_subject, prompt_subject, subject_token,
};
use crate::queue::Backend;
use crate::state::Shared;
use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::message::{AckKind, Message};
use axum::body::Bytes;
use futures_util::StreamExt;
use kinograph_engine::ModelUse;
use kinograph_engine::queue::{HistoryEntry, QueueItem, failed_entry_of};
use std::sync::Arc;
use std::time::Duration;

/// How long the relay waits before it reconnects its subscriptions after NATS failed it.
const RETRY: Duration = Duration::from_secs(1);

/// The front end's connection to JetStream.
pub struct FrontEnd {
    connection: Connection,
    /// Where workers put output files for this front end to copy.
    outputs: async_nats::jetstream::object_store::ObjectStore,
    /// The last status each worker sent, by name, and when it came.
    workers: std::sync::Mutex<std::collections::BTreeMap<String, (std::time::Instant, serde_json::Value)>>,
    /// How long a history entry handed to this front end waits for its acknowledgement before it is
    /// handed again (after a restart, the entries the stopped process was handed come again after it).
    ack_wait: Duration,
    /// The queue's settings, for the consumers of new families.
    config: JetStreamConfig,
    /// The families whose consumer this process has made sure of.
    families: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

impl FrontEnd {
    /// Connects to NATS and makes sure the streams, the outputs' object store and the status bucket exist.
    pub async fn connect(config: &JetStreamConfig) -> Result<Self, JetStreamError> {
        let connection = Connection::open(config, "kinograph serve").await?;
        let outputs = super::outputs::bucket(&connection.context, config).await?;
        // The workers are listed from the start, not from their next status.
        let now = std::time::Instant::now();
        let workers = super::read_statuses(&connection.workers_bucket().await?)
            .await
            .into_iter()
            .map(|(name, status)| (name, (now, status)))
            .collect();
        Ok(FrontEnd {
            connection,
            outputs,
            workers: std::sync::Mutex::new(workers),
            ack_wait: config.ack_wait,
            config: config.clone(),
            families: tokio::sync::Mutex::default(),
        })
    }

    /// Publishes a prompt that reads `models` (`folder/name` each) for the workers, under its family (its
    /// front-of-the-queue twin with `first`), and waits until the stream has stored it; then tells idle
    /// workers. The message id is the prompt id, so a second publish of the same prompt is dropped.
    pub(crate) async fn publish_prompt(
        &self,
        item: &QueueItem,
        models: &[String],
        first: bool,
    ) -> Result<(), JetStreamError> {
        let family = family_of(models);
        let family = if first { format!("{family}{}", super::FIRST_SUFFIX) } else { family };
        {
            let mut known = self.families.lock().await;
            if !known.contains(&family) {
                self.connection.family_consumer(&self.config, &family).await?;
                known.insert(family.clone());
            }
        }
        let publish = Publish::build()
            .payload(item.to_comfy_json().to_string().into())
            .message_id(subject_token(&item.prompt_id));
        let ack = self
            .connection
            .context
            .send_publish(prompt_subject(&family, &item.prompt_id), publish)
            .await
            .map_err(failed("publishing the prompt"))?
            .await
            .map_err(failed("storing the prompt in JetStream"))?;
        if ack.duplicate {
            tracing::debug!("prompt {} was already in the stream", item.prompt_id);
        }
        if let Err(error) = self.connection.client.publish(offered_subject(&family), Bytes::new()).await {
            tracing::debug!("idle workers were not told of prompt {}: {error}", item.prompt_id);
        }
        Ok(())
    }

    /// Removes waiting prompts from the stream. One a worker has already taken runs on: it counts as
    /// running from its first message on, and deleting only removes waiting prompts.
    pub(crate) async fn withdraw(&self, prompt_ids: &[String]) {
        for prompt_id in prompt_ids {
            let purged = self.connection.prompts.purge().filter(prompt_subject("*", prompt_id)).await;
            if let Err(error) = purged {
                tracing::error!("prompt {prompt_id} could not be removed from the stream: {error}");
            }
        }
    }

    /// Asks the workers running these prompts to stop them.
    pub(crate) async fn cancel(&self, prompt_ids: &[String]) {
        for prompt_id in prompt_ids {
            if let Err(error) = self.connection.client.publish(cancel_subject(prompt_id), Bytes::new()).await {
                tracing::error!("the interrupt of prompt {prompt_id} could not be sent: {error}");
            }
        }
    }

    /// Asks every worker to drop its cache between prompts, as `/free` does locally.
    pub(crate) async fn free(&self, request: crate::state::FreeRequest) {
        let body = serde_json::json!({"unload_models": request.unload_models, "free_memory": request.free_memory});
        if let Err(error) = self.connection.client.publish(FREE_SUBJECT, body.to_string().into()).await {
            tracing::error!("the request to free memory could not be sent to the workers: {error}");
        }
    }

    /// The status of every worker heard from within [`super::STATUS_LIFETIME`], by name.
    pub fn workers(&self) -> Vec<serde_json::Value> {
        let mut workers = self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        workers.retain(|_, (heard, _)| heard.elapsed() < super::STATUS_LIFETIME);
        workers.values().map(|(_, status)| status.clone()).collect()
    }

    /// Keeps a worker's status, as it was put in the status bucket; a worker that stopped deleted its
    /// key and is no longer listed.
    fn heard_from(&self, message: &async_nats::Message) {
        let mut workers = self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(name) = deleted_key(message) {
            workers.remove(&name);
            return;
        }
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(&message.payload) else { return };
        let Some(name) = status["name"].as_str().map(str::to_string) else { return };
        workers.insert(name, (std::time::Instant::now(), status));
    }

    async fn history_consumer(&self) -> Result<consumer::Consumer<pull::Config>, JetStreamError> {
        self.connection
            .history
            .get_or_create_consumer(
                FRONT_END_CONSUMER,
                pull::Config {
                    durable_name: Some(FRONT_END_CONSUMER.to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(failed("creating the front end's history consumer"))
    }
}

/// Relays the workers' messages and history entries until the server stops, reconnecting after a failure.
pub(crate) async fn relay(shared: Arc<Shared>) {
    let Backend::JetStream(front_end) = &shared.backend else { return };
    tokio::spawn(republish_missing(shared.clone()));
    loop {
        if let Err(error) = relay_until_failure(&shared, front_end).await {
            tracing::error!("relaying from the workers stopped: {error}; starting again");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn relay_until_failure(shared: &Arc<Shared>, front_end: &FrontEnd) -> Result<(), JetStreamError> {
    let mut events =
        front_end.connection.client.subscribe("kinograph.events.>").await.map_err(failed("subscribing to events"))?;
    let mut statuses = front_end
        .connection
        .client
        .subscribe(format!("$KV.{WORKERS_BUCKET}.>"))
        .await
        .map_err(failed("subscribing to workers' status"))?;
    let mut undelivered = front_end
        .connection
        .client
        .subscribe(max_deliveries_advisory())
        .await
        .map_err(failed("subscribing to the advisories of undelivered prompts"))?;
    let entries = front_end.history_consumer().await?.messages().await.map_err(failed("reading the history stream"))?;
    // Entries are recorded beside the events, so that a database write never holds up a websocket message;
    // the prompt's last message goes out from this loop, after the events that came before its entry.
    let (finished, mut announcements) = tokio::sync::mpsc::unbounded_channel();
    let recorder = record_entries(shared, front_end, entries, finished);
    tokio::pin!(recorder);
    loop {
        tokio::select! {
            biased;
            Some(event) = events.next() => relay_event(shared, &event.payload),
            Some((prompt_id, client)) = announcements.recv() => {
                crate::worker::announce_finished(shared, &prompt_id, client.as_deref());
            }
            Some(advisory) = undelivered.next() => record_undelivered(shared, front_end, &advisory.payload).await,
            Some(status) = statuses.next() => front_end.heard_from(&status),
            result = &mut recorder => return result,
        }
    }
}

/// How many entries have their output files copied at once (each copy waits on NATS and the disk; the
/// entries are still recorded one by one in the stream's order).
const COPIES_AT_ONCE: usize = 8;

/// Records the history entries in the order the stream holds them, and hands each new one's prompt id and
/// client to the relay loop to announce; returns when the stream fails.
async fn record_entries(
    shared: &Arc<Shared>,
    front_end: &FrontEnd,
    entries: consumer::pull::Stream,
    finished: tokio::sync::mpsc::UnboundedSender<(String, Option<String>)>,
) -> Result<(), JetStreamError> {
    let copied = entries
        .map(|message| async move {
            let message = message.map_err(failed("reading the history stream"))?;
            Ok::<_, JetStreamError>(copy_outputs(shared, front_end, message).await)
        })
        .buffered(COPIES_AT_ONCE);
    tokio::pin!(copied);
    while let Some(copied) = copied.next().await {
        if let Some((entry, message)) = copied?
            && let Some(announcement) = record_entry(shared, entry, message).await
        {
            let _ = finished.send(announcement);
        }
    }
    Err(failed("reading the history stream")("it ended"))
}

/// Hands one worker message to the websockets, or marks a prompt a worker started running (in a task of
/// its own: the database write must not hold up the messages behind it).
fn relay_event(shared: &Arc<Shared>, bytes: &Bytes) {
    let Some(event) = RemoteEvent::decode(bytes) else {
        tracing::warn!("dropped an event from a worker that is not in kinograph's form");
        return;
    };
    match &event.payload {
        EventPayload::Started => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let (store, prompt_id) = (shared.store.clone(), event.prompt_id.clone());
                // A prompt whose entry was recorded first has no row left to mark: nothing changes.
                match tokio::task::spawn_blocking(move || store.mark_running(&prompt_id)).await {
                    Ok(Ok(_)) => shared.broadcast_status(),
                    Ok(Err(error)) => {
                        tracing::error!("prompt {} could not be marked running: {error}", event.prompt_id);
                    }
                    Err(error) => tracing::error!("marking prompt {} running failed: {error}", event.prompt_id),
                }
            });
        }
        EventPayload::Message(message) => shared.hub.send_json(event.client.as_deref(), message),
        EventPayload::Preview { .. } => {
            if let Some(frame) = event.preview_frame() {
                shared.hub.send_preview(event.client.as_deref(), &frame);
            }
        }
    }
}

/// Publishes again every prompt the database holds as waiting or running that JetStream has lost: one
/// accepted just before this process died, before the stream stored it, or one lost with a NATS server's
/// store. A prompt still in the stream (waiting, or held by a worker) or whose entry is on the history
/// stream is left alone, so nothing runs twice.
async fn republish_missing(shared: Arc<Shared>) {
    let Backend::JetStream(front_end) = &shared.backend else { return };
    let store = shared.store.clone();
    let items = match tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((store.running()?, store.pending()?))
    })
    .await
    {
        Ok(Ok((running, pending))) => running.into_iter().chain(pending).collect::<Vec<_>>(),
        Ok(Err(error)) => return tracing::error!("the queued prompts could not be read to check the stream: {error}"),
        Err(error) => return tracing::error!("reading the queued prompts failed: {error}"),
    };
    for item in items {
        let models = {
            let (executor, item) = (shared.executor.clone(), item.clone());
            tokio::task::spawn_blocking(move || models_of(&executor, &item)).await.unwrap_or_default()
        };
        let family = family_of(&models);
        let connection = &front_end.connection;
        let first = format!("{family}{}", super::FIRST_SUFFIX);
        let mut in_stream = false;
        for family in [&family, &first] {
            let subject = prompt_subject(family, &item.prompt_id);
            in_stream |= connection.prompts.get_last_raw_message_by_subject(&subject).await.is_ok();
        }
        if in_stream {
            continue;
        }
        if connection.history.get_last_raw_message_by_subject(&super::history_subject(&item.prompt_id)).await.is_ok() {
            continue;
        }
        match front_end.publish_prompt(&item, &models, false).await {
            Ok(()) => tracing::warn!("prompt {} was not in the stream; it is queued again", item.prompt_id),
            Err(error) => tracing::error!("prompt {} could not be queued again: {error}", item.prompt_id),
        }
    }
}

/// The model files a queued prompt reads (`folder/name`), as when it was accepted; none when it no longer
/// validates (the worker that takes it records why).
fn models_of(executor: &kinograph_engine::Executor, item: &QueueItem) -> Vec<String> {
    crate::worker::validated_graph(executor, item)
        .map_or_else(|_| Vec::new(), |graph| graph.model_files().iter().map(ModelUse::key).collect())
}

/// JetStream's advisory that a prompt was handed to workers as many times as the consumer allows
/// (`max_deliver`) without one finishing it: each of those workers died or lost its connection.
fn max_deliveries_advisory() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{PROMPTS_STREAM}.*")
}

/// The key a status bucket message deletes (`KV-Operation: DEL` or `PURGE`), if it is a deletion.
fn deleted_key(message: &async_nats::Message) -> Option<String> {
    let operation = message.headers.as_ref()?.get("KV-Operation")?.as_str();
    if operation != "DEL" && operation != "PURGE" {
        return None;
    }
    message.subject.as_str().strip_prefix(&format!("$KV.{WORKERS_BUCKET}.")).map(str::to_string)
}

/// Records a prompt no worker finished in its deliveries as failed, with the reason, and takes it off the
/// stream (a work queue keeps a message nobody acknowledged).
async fn record_undelivered(shared: &Arc<Shared>, front_end: &FrontEnd, advisory: &Bytes) {
    let advisory: serde_json::Value = serde_json::from_slice(advisory).unwrap_or_default();
    let (Some(sequence), deliveries) = (advisory["stream_seq"].as_u64(), advisory["deliveries"].as_u64().unwrap_or(0))
    else {
        tracing::warn!("an advisory of an undelivered prompt names no stream sequence: {advisory}");
        return;
    };
    let prompts = &front_end.connection.prompts;
    let item = match prompts.get_raw_message(sequence).await {
        Ok(message) => serde_json::from_slice(&message.payload).ok().and_then(|json| QueueItem::from_comfy_json(&json)),
        Err(error) => {
            tracing::error!("the prompt at sequence {sequence} that ran out of deliveries could not be read: {error}");
            return;
        }
    };
    let Some(item) = item else {
        tracing::error!("the prompt at sequence {sequence} that ran out of deliveries is not in kinograph's form");
        return;
    };
    let reason = format!(
        "no worker finished this prompt: it was handed out {deliveries} times, and each worker stopped (died or \
         lost its connection) before it was done"
    );
    let entry = failed_entry_of(&item, "undelivered", &reason);
    let (prompt_id, client) = (item.prompt_id.clone(), item.client_id().map(str::to_string));
    let error = entry.status.messages.iter().find(|(kind, _)| kind == "execution_error").map(|(_, data)| data.clone());
    match finish_remote(shared, entry).await {
        Ok(true) => {
            tracing::warn!("prompt {prompt_id} failed: {reason}");
            if let (Some(client), Some(data)) = (&client, error) {
                shared.hub.send_json(Some(client), &serde_json::json!({"type": "execution_error", "data": data}));
            }
            crate::worker::announce_finished(shared, &prompt_id, client.as_deref());
        }
        Ok(false) => {}
        Err(error) => tracing::error!("the failure of prompt {prompt_id} was not stored: {error}"),
    }
    if let Err(error) = prompts.delete_message(sequence).await {
        tracing::warn!("prompt {prompt_id} could not be taken off the stream: {error}");
    }
}

/// How often an entry whose output files could not be copied is taken again before it is recorded without
/// them (the worker stored them before the entry, so only a failing NATS server or disk gets here).
const OUTPUT_COPY_TRIES: i64 = 5;

/// Reads one history entry from the stream and copies its output files from the object store. `None` when
/// the entry was dealt with here: one that is not in kinograph's form is dropped, and one whose files could
/// not be copied is handed back to be delivered again (a few times; then it is recorded without them, the
/// failure logged, so that a lost file never holds up the history).
async fn copy_outputs(shared: &Shared, front_end: &FrontEnd, message: Message) -> Option<(HistoryEntry, Message)> {
    let Some(entry) = decode_entry(&message.payload) else {
        tracing::error!("a history entry on {} is not in kinograph's form; it is skipped", message.subject);
        if let Err(error) = message.ack_with(AckKind::Term).await {
            tracing::warn!("the unreadable history entry could not be acknowledged: {error}");
        }
        return None;
    };
    let mut entry = entry;
    let files = super::outputs::files_of(&entry.outputs);
    match super::outputs::download(&front_end.outputs, &shared.folders, &files).await {
        Ok(renamed) if renamed.is_empty() => {}
        Ok(renamed) => {
            for (file, new_name) in &renamed {
                super::outputs::rename_in(&mut entry.outputs, file, new_name);
            }
            entry.meta = HistoryEntry::meta_for(&entry.outputs);
        }
        Err(error) => {
            let prompt_id = &entry.item.prompt_id;
            let tries = message.info().map_or(1, |info| info.delivered);
            if tries < OUTPUT_COPY_TRIES {
                tracing::warn!("the outputs of prompt {prompt_id} were not copied ({error}); trying again");
                let _ = message.ack_with(AckKind::Nak(Some(RETRY))).await;
                return None;
            }
            tracing::error!(
                "the outputs of prompt {prompt_id} were not copied ({error}); its entry is kept without them"
            );
        }
    }
    Some((entry, message))
}

/// Stores one history entry, then acknowledges it: an entry the database did not take is delivered again.
/// The prompt id and client of an entry that is new, for its announcement.
async fn record_entry(shared: &Arc<Shared>, entry: HistoryEntry, message: Message) -> Option<(String, Option<String>)> {
    let prompt_id = entry.item.prompt_id.clone();
    let client = entry.item.client_id().map(str::to_string);
    match finish_remote(shared, entry).await {
        Ok(added) => {
            if let Err(error) = message.ack().await {
                tracing::warn!("the history entry of prompt {prompt_id} could not be acknowledged: {error}");
            }
            if !added {
                tracing::info!("prompt {prompt_id} finished again; the history keeps its first entry");
            }
            added.then_some((prompt_id, client))
        }
        Err(error) => {
            tracing::error!("the history entry of prompt {prompt_id} was not stored: {error}");
            let _ = message.ack_with(AckKind::Nak(Some(RETRY))).await;
            None
        }
    }
}

/// Records an entry a remote worker finished (or that no worker could) in the database, off the async
/// threads: whether it was new, or why it was not stored.
async fn finish_remote(shared: &Shared, entry: HistoryEntry) -> Result<bool, String> {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.finish_remote(&entry)).await {
        Ok(stored) => stored.map_err(|error| error.to_string()),
        Err(error) => Err(format!("the database write stopped: {error}")),
    }
}
