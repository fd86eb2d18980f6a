//! The queue on NATS JetStream, for many machines: `kinograph serve --queue nats://HOST:4222` in front,
//! `kinograph worker --queue nats://HOST:4222` on each machine with a GPU.
//!
//! - Prompts: the stream [`PROMPTS_STREAM`] (work-queue retention, subjects
//!   `kinograph.prompts.<family>.<id>`). A prompt's family is a key of the model files it reads
//!   ([`family_of`]); each family has a durable pull consumer (`kinograph-family-<family>`, explicit acks)
//!   that every worker may take from. A worker holds a prompt for at most `ack_wait` without a word; while
//!   it runs one it sends in-progress acks, so a live worker keeps its prompt and a dead one loses it to
//!   another worker after `ack_wait`. `max_deliver` bounds how often one prompt is handed out.
//! - Order: a family's prompts are handed out in the order they were queued. Prompts sent with
//!   `"front": true` go into their family's front-of-the-queue twin (`<family>-first`), which every worker
//!   asks before the others.
//! - Locality: each worker says in its status which families it holds warm (their models still in its
//!   cache). A worker takes the prompts of the families it holds first; a prompt of a family that an idle
//!   worker holds is left to that worker for [`LOCALITY_GRACE`] before another takes it, so that a warm
//!   worker does not see a cold one reload its 20 GB model. The front end announces each prompt on
//!   `kinograph.offered.<family>` so that idle workers look at once.
//! - Dedupe: every prompt is published with `Nats-Msg-Id` = its id, so a second publish inside the
//!   duplicate window is dropped; a worker that is handed a prompt whose history entry is already stored
//!   acknowledges it without running it, and the front end keeps the first entry of an id.
//! - Events: each websocket message of a running prompt goes out on core NATS, `kinograph.events.<id>`
//!   ([`wire`]); they are live, not durable. The front end hands them to its websockets by ComfyUI's rules,
//!   which the worker has already applied.
//! - History: a worker publishes the entry on the stream [`HISTORY_STREAM`]
//!   (`kinograph.history.<id>`) and acknowledges the prompt only once the stream has stored it; the front
//!   end reads that stream with its own durable consumer into its database, so a front end that was down
//!   catches up when it starts.
//! - Outputs: put by the worker into the JetStream object store before it stores the entry, and copied
//!   by the front end into its own folders before it records the entry ([`outputs`]); or, with a shared
//!   output folder, written where the front end reads.
//! - Cancel: `kinograph.cancel.<id>` on core NATS; the worker running that prompt stops it. `/free` goes
//!   to every worker on [`FREE_SUBJECT`].

mod front;
mod locality;
pub mod outputs;
pub mod wire;
mod worker;

pub use front::FrontEnd;
pub(crate) use front::relay;
pub use worker::{ConnectedWorker, WorkerIdentity, run_worker};

use async_nats::jetstream::{self, consumer, stream};
use std::fmt::{Display, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The work-queue stream of prompts waiting for a worker.
pub const PROMPTS_STREAM: &str = "KINOGRAPH_PROMPTS";
/// The start of the name of each family's durable consumer, which every worker takes prompts from.
pub const FAMILY_CONSUMER_PREFIX: &str = "kinograph-family-";
/// Marks the family of prompts sent to the front of the queue (`"front": true`): workers ask those first.
pub const FIRST_SUFFIX: &str = "-first";
/// The family of prompts that read no model file.
pub const NO_MODELS_FAMILY: &str = "none";
/// How long a prompt of a family that an idle worker holds is left to that worker.
pub const LOCALITY_GRACE: Duration = Duration::from_millis(1500);
/// The key-value bucket where each worker keeps its status (name → JSON), for [`STATUS_LIFETIME`].
pub const WORKERS_BUCKET: &str = "kinograph-workers";
/// The stream of finished prompts' history entries.
pub const HISTORY_STREAM: &str = "KINOGRAPH_HISTORY";
/// The durable consumer the front end reads history entries with.
pub const FRONT_END_CONSUMER: &str = "kinograph-front-end";
/// Where `/free` goes to every worker (core NATS): each drops its cache once no prompt runs.
pub const FREE_SUBJECT: &str = "kinograph.free";
/// How often a worker sends its status.
pub const STATUS_PERIOD: Duration = Duration::from_secs(2);
/// How long the front end lists a worker after its last status: one gone this long is no longer listed.
pub const STATUS_LIFETIME: Duration = Duration::from_secs(10);

/// How to reach JetStream and how patient to be with workers.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The NATS server, `nats://HOST:PORT`.
    pub url: String,
    /// How long a worker may hold a prompt without an acknowledgement or an in-progress ack before the
    /// prompt goes to another worker. Workers send in-progress acks every third of it.
    pub ack_wait: Duration,
    /// How many times one prompt is handed to a worker at most.
    pub max_deliver: i64,
    /// How long a second publish of the same prompt id is recognised and dropped.
    pub duplicate_window: Duration,
    /// How long history entries stay in the stream (the front end's database keeps them after it read
    /// them; workers look there to skip a prompt that already finished).
    pub history_max_age: Duration,
    /// A NATS credentials file (`.creds`: a user JWT and its key), for servers that use NATS accounts.
    /// A user and password go in the URL (`nats://user:password@host:4222`).
    pub credentials_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the server's TLS certificate; with any, TLS is required
    /// (`tls://host:4222` asks for TLS too).
    pub tls_root_certificates: Vec<PathBuf>,
}

impl JetStreamConfig {
    /// The defaults for the NATS server at `url`, which must be `nats://` or `tls://` (the error says so,
    /// password hidden).
    pub fn for_url(url: &str) -> Result<Self, JetStreamError> {
        if url.starts_with("nats://") || url.starts_with("tls://") {
            Ok(Self::new(url))
        } else {
            let reason = "a NATS server's URL starts with nats:// (or tls://)".to_string();
            Err(JetStreamError::Connect { url: shown_url(url), reason })
        }
    }

    /// The defaults for the NATS server at `url`.
    pub fn new(url: &str) -> Self {
        JetStreamConfig {
            url: url.to_string(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            duplicate_window: Duration::from_hours(1),
            history_max_age: Duration::from_hours(7 * 24),
            credentials_file: None,
            tls_root_certificates: Vec::new(),
        }
    }

    /// The URL as logs and messages show it: a password in it is replaced by `***`.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` without its `user:password@` part, and that user and password (percent-decoding is left out:
/// NATS users and passwords are plain words).
fn split_login(url: &str) -> (String, Option<(String, String)>) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (format!("{scheme}://{host}"), Some((user.to_string(), password.to_string())))
        }
        None => (url.to_string(), None),
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let hidden = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_string() };
    let prefix = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{prefix}{hidden}@{host}")
}

/// What went wrong talking to NATS; every message says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{doing}: {reason}")]
    Request { doing: String, reason: String },
}

/// A mapper from any error to [`JetStreamError::Request`] saying what was being done.
pub(crate) fn failed<E: Display>(doing: &str) -> impl Fn(E) -> JetStreamError + '_ {
    move |error| JetStreamError::Request { doing: doing.to_string(), reason: error.to_string() }
}

/// A prompt id as one subject token: letters, digits, `-` and `_` as they are, every other byte as `%XX`
/// (so `.`, `*`, `>`, spaces and `%` itself never reach a subject, and two ids never share a token).
pub fn subject_token(prompt_id: &str) -> String {
    let mut token = String::with_capacity(prompt_id.len());
    for byte in prompt_id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(byte as char);
        } else {
            let _ = write!(token, "%{byte:02X}");
        }
    }
    token
}

/// The family of a prompt that reads `models` (`folder/name` each): a short key of the sorted names, the
/// same whatever their order, or [`NO_MODELS_FAMILY`] for none.
pub fn family_of(models: &[String]) -> String {
    let mut models: Vec<&str> = models.iter().map(String::as_str).collect();
    models.sort_unstable();
    models.dedup();
    if models.is_empty() {
        return NO_MODELS_FAMILY.to_string();
    }
    let hash = kinograph_engine::content_hash::hash_bytes(models.join("\n").as_bytes());
    kinograph_engine::content_hash::to_hex(&hash)[..16].to_string()
}

/// The subject a prompt of `family` is queued on.
pub fn prompt_subject(family: &str, prompt_id: &str) -> String {
    format!("kinograph.prompts.{family}.{}", subject_token(prompt_id))
}

/// The durable consumer of a family's prompts.
pub fn family_consumer(family: &str) -> String {
    format!("{FAMILY_CONSUMER_PREFIX}{family}")
}

/// Where the front end says that a prompt of `family` was queued (core NATS), to wake idle workers.
pub fn offered_subject(family: &str) -> String {
    format!("kinograph.offered.{family}")
}

/// The subject a prompt's websocket messages go out on.
pub fn event_subject(prompt_id: &str) -> String {
    format!("kinograph.events.{}", subject_token(prompt_id))
}

/// The subject a prompt's history entry is stored on.
pub fn history_subject(prompt_id: &str) -> String {
    format!("kinograph.history.{}", subject_token(prompt_id))
}

/// The subject that stops a running prompt.
pub fn cancel_subject(prompt_id: &str) -> String {
    format!("kinograph.cancel.{}", subject_token(prompt_id))
}

/// A connection with the streams in place (created by whichever process comes first; an existing stream
/// or consumer is used as it is).
pub(crate) struct Connection {
    pub client: async_nats::Client,
    pub context: jetstream::Context,
    pub prompts: stream::Stream,
    pub history: stream::Stream,
}

impl Connection {
    /// Connects as `name` and makes sure the streams exist.
    pub async fn open(config: &JetStreamConfig, name: &str) -> Result<Self, JetStreamError> {
        let refused = |reason: String| JetStreamError::Connect { url: config.shown_url(), reason };
        // A user and password in the URL log in (the client takes them only as options).
        let (address, login) = split_login(&config.url);
        let mut options = match login {
            Some((user, password)) => async_nats::ConnectOptions::with_user_and_password(user, password),
            None => async_nats::ConnectOptions::new(),
        }
        .name(name);
        if let Some(file) = &config.credentials_file {
            options = options
                .credentials_file(file)
                .await
                .map_err(|error| refused(format!("the credentials file {} cannot be used: {error}", file.display())))?;
        }
        for certificate in &config.tls_root_certificates {
            options = options.add_root_certificates(certificate.clone()).require_tls(true);
        }
        // The client's errors may quote the URL it was given: never with its password.
        let client = options
            .connect(address.as_str())
            .await
            .map_err(|error| refused(error.to_string().replace(&config.url, &config.shown_url())))?;
        let context = jetstream::new(client.clone());
        let prompts = context
            .get_or_create_stream(stream::Config {
                name: PROMPTS_STREAM.to_string(),
                subjects: vec!["kinograph.prompts.>".to_string()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(failed("creating the prompts stream"))?;
        let history = context
            .get_or_create_stream(stream::Config {
                name: HISTORY_STREAM.to_string(),
                subjects: vec!["kinograph.history.>".to_string()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: config.history_max_age,
                duplicate_window: config.duplicate_window.min(config.history_max_age),
                ..Default::default()
            })
            .await
            .map_err(failed("creating the history stream"))?;
        Ok(Connection { client, context, prompts, history })
    }

    /// The consumer of `family`'s prompts, which every worker takes them from.
    pub async fn family_consumer(
        &self,
        config: &JetStreamConfig,
        family: &str,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, JetStreamError> {
        let name = family_consumer(family);
        self.prompts
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("kinograph.prompts.{family}.>"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: config.max_deliver,
                    ..Default::default()
                },
            )
            .await
            .map_err(failed("creating the consumer of a family of prompts"))
    }

    /// The workers' status bucket. Its stream is made here as the client would make it, because this
    /// client's own bucket creation asks the server for an account field that 2.9 servers do not send.
    pub async fn workers_bucket(&self) -> Result<async_nats::jetstream::kv::Store, JetStreamError> {
        if let Ok(store) = self.context.get_key_value(WORKERS_BUCKET).await {
            return Ok(store);
        }
        self.context
            .get_or_create_stream(stream::Config {
                name: format!("KV_{WORKERS_BUCKET}"),
                description: Some("kinograph: the status of each worker".to_string()),
                subjects: vec![format!("$KV.{WORKERS_BUCKET}.>")],
                max_messages_per_subject: 1,
                max_age: STATUS_LIFETIME,
                storage: stream::StorageType::Memory,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(failed("creating the workers' status bucket"))?;
        self.context.get_key_value(WORKERS_BUCKET).await.map_err(failed("opening the workers' status bucket"))
    }
}

/// Every status in the workers' bucket now, by worker name (the statuses that do not read are left out).
pub(crate) async fn read_statuses(bucket: &async_nats::jetstream::kv::Store) -> Vec<(String, serde_json::Value)> {
    use futures_util::StreamExt;
    let mut statuses = Vec::new();
    let Ok(mut keys) = bucket.keys().await else { return statuses };
    while let Some(Ok(key)) = keys.next().await {
        if let Ok(Some(value)) = bucket.get(&key).await
            && let Ok(status) = serde_json::from_slice(&value)
        {
            statuses.push((key, status));
        }
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_urls() {
        assert_eq!(shown_url("nats://kino:s3cret@nats-host:4222"), "nats://kino:***@nats-host:4222");
        assert_eq!(shown_url("nats://token@nats-host:4222"), "nats://***@nats-host:4222");
        assert_eq!(shown_url("nats://nats-host:4222"), "nats://nats-host:4222");
        assert_eq!(shown_url("tls://a:b:c@h:1"), "tls://a:***@h:1");
    }

    #[test]
    fn prompt_ids_become_single_subject_tokens() {
        assert_eq!(subject_token("3f2a-9_b"), "3f2a-9_b");
        assert_eq!(subject_token("a.b *>%"), "a%2Eb%20%2A%3E%25");
        assert_ne!(subject_token("a%2E"), subject_token("a."));
        assert_eq!(event_subject("x.y"), "kinograph.events.x%2Ey");
    }

    #[test]
    fn a_family_is_the_same_set_of_models_in_any_order() {
        let a = ["checkpoints/ltxv.safetensors".to_string(), "text_encoders/t5.safetensors".to_string()];
        let b = [a[1].clone(), a[0].clone(), a[0].clone()];
        assert_eq!(family_of(&a), family_of(&b));
        assert_eq!(family_of(&a).len(), 16);
        assert_ne!(family_of(&a), family_of(&a[..1]));
        assert_eq!(family_of(&[]), NO_MODELS_FAMILY);
        assert_eq!(prompt_subject("none", "p.1"), "kinograph.prompts.none.p%2E1");
    }
}
