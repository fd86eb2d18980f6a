//! Runs on a kinograph server (`kinograph edit --server URL`): the artist draws on one machine and the
//! graph runs on a bigger one, through the server's ComfyUI API.
//!
//! Queueing posts the prompt to `/prompt` under this editor's client id; one websocket, kept open on a
//! thread of its own (`socket.rs`), brings the run's messages back as engine events (`messages.rs`), so that
//! [`RunView::apply`] folds them exactly as it folds an in-process run's. Output files are copied from
//! `/view` into a local folder as the server reports them, for the editor's player. When the server
//! cannot be reached, queueing says so and a run in progress ends with that outcome; the graph is never
//! touched. The server's node lists (`/object_info`) replace the local combo options, so the model
//! combos show the server's files.

mod client;
mod messages;
mod socket;

pub use client::{RemoteFile, ServerAddress};

use super::catalog::Catalog;
use super::editor::Editor;
use super::run::{QueueError, RunView};
use client::{Http, RequestError};
use kinograph_engine::{ErrorType, EventKind, ValidationReport};
use serde_json::{Value as Json, json};
use socket::{Incoming, Link, LinkState};
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// How long queueing waits for the websocket to open (it must be open before the prompt is sent, or
/// the run's first messages would be lost).
const CONNECT_WAIT: Duration = Duration::from_secs(8);

/// The server the runs go to, as the menu bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub url: String,
    /// Why the server is not reachable now; `None` while connected (or before the first attempt ends).
    pub problem: Option<String>,
    /// The last thing that went wrong in the background (a stop, a download, the node lists).
    pub notice: Option<String>,
}

/// A prompt this editor sent: its id and the node ids its view starts with.
struct SentPrompt {
    id: Arc<str>,
    nodes: Vec<String>,
}

/// Runs on a server, one at a time in the order queued (the server runs them in order; other
/// clients' prompts may run between them).
pub struct RemoteRuns {
    http: Http,
    client_id: String,
    link: Link,
    incoming: Receiver<Incoming>,
    /// For requests made in the background, whose failures come back as notices.
    notices: Sender<Incoming>,
    /// Sent and not yet started, in the order queued.
    waiting: VecDeque<SentPrompt>,
    /// The prompt the view shows.
    current: Option<SentPrompt>,
    /// The prompts that were in flight when the connection dropped: when it is back, those the server
    /// no longer holds are dropped, since their messages went nowhere.
    unconfirmed: HashSet<Arc<str>>,
    state: LinkState,
    notice: Option<String>,
    /// Node lists that arrived and are not yet in the editor's catalog.
    lists: Option<Arc<Json>>,
    sent: u64,
    /// Whether the run shown was asked to stop: the request goes again when the server starts it, since
    /// a server ignores a stop for a prompt it has not started yet.
    stop_requested: AtomicBool,
}

impl RemoteRuns {
    /// Starts the websocket thread for the server at `server` (it connects in the background); output
    /// files are copied under `cache`.
    pub fn connect(server: ServerAddress, cache: PathBuf) -> std::io::Result<Self> {
        let http = Http::new(server);
        let client_id = format!("kinograph-editor-{:016x}", random_number());
        let (sender, incoming) = channel();
        let link = Link::start(http.clone(), client_id.clone(), cache, sender.clone())?;
        Ok(RemoteRuns {
            http,
            client_id,
            link,
            incoming,
            notices: sender,
            waiting: VecDeque::new(),
            current: None,
            unconfirmed: HashSet::new(),
            state: LinkState::Connecting,
            notice: None,
            lists: None,
            sent: 0,
            stop_requested: AtomicBool::new(false),
        })
    }

    fn url(&self) -> String {
        self.http.server().url().to_string()
    }

    /// Sends the graph to the server; see [`super::run::Runner::queue`].
    pub fn queue(
        &mut self,
        editor: &Editor,
        wake: Arc<dyn Fn() + Send + Sync>,
        view: &mut RunView,
    ) -> Result<usize, QueueError> {
        self.link.set_wake(wake);
        let url = self.url();
        let unreachable = |reason: String| QueueError::Unreachable { url: url.clone(), reason };
        let workflow = editor.to_json();
        let prompt = editor.to_prompt()?.prompt.to_json();
        self.link.wait_connected(CONNECT_WAIT).map_err(unreachable)?;
        self.sent += 1;
        let id: Arc<str> = Arc::from(format!("{}-{}", self.client_id, self.sent));
        let body = json!({
            "prompt": prompt,
            "client_id": self.client_id,
            "prompt_id": &*id,
            "extra_data": {"extra_pnginfo": {"workflow": workflow}},
        });
        if let Err(error) = self.http.post_json("/prompt", &body) {
            let report = match &error {
                RequestError::Status { status: 400, body } => ValidationReport::from_comfy_json(body),
                _ => None,
            };
            return Err(match (error, report) {
                (_, Some(report)) => QueueError::Invalid(Box::new(report)),
                (RequestError::Unreachable(reason), None) => unreachable(reason),
                (refusal, None) => QueueError::Refused { url, message: refusal.to_string() },
            });
        }
        let nodes = prompt.as_object().map(|nodes| nodes.keys().cloned().collect()).unwrap_or_default();
        let sent = SentPrompt { id, nodes };
        if view.running || !self.waiting.is_empty() {
            self.waiting.push_back(sent);
            Ok(self.waiting.len() + usize::from(view.running) - 1)
        } else {
            // Shown as started at once, as an in-process run is; the server's messages follow.
            *view = RunView::starting(sent.nodes.clone());
            self.current = Some(sent);
            self.stop_requested.store(false, Ordering::Relaxed);
            Ok(0)
        }
    }

    /// Folds in what arrived since the last call; see [`super::run::Runner::poll`].
    pub fn poll(&mut self, view: &mut RunView, finished: &mut u64) -> bool {
        let mut any = false;
        while let Ok(incoming) = self.incoming.try_recv() {
            any = true;
            match incoming {
                Incoming::Connected { queue } => {
                    self.state = LinkState::Connected;
                    self.confirm(queue.as_deref(), view);
                }
                Incoming::Lost(reason) => {
                    self.state = LinkState::Down(reason.clone());
                    self.unconfirmed.extend(self.waiting.iter().map(|sent| Arc::clone(&sent.id)));
                    if view.running {
                        if let Some(current) = &self.current {
                            self.unconfirmed.insert(Arc::clone(&current.id));
                        }
                        view.running = false;
                        view.outcome = Some(format!("The server at {} is not reachable: {reason}", self.url()));
                        *finished += 1;
                        break;
                    }
                }
                Incoming::Lists(info) => self.lists = Some(info),
                Incoming::Notice(text) => self.notice = Some(text),
                Incoming::Files { prompt_id, node, files, failures } => {
                    if self.current.as_ref().is_some_and(|current| current.id == prompt_id) && !files.is_empty() {
                        view.outputs.insert(node.clone(), files);
                    }
                    if !failures.is_empty() {
                        self.notice = Some(format!("output of node {node} not copied: {}", failures.join("; ")));
                    }
                }
                Incoming::Event(event) => {
                    let shown = self.current.as_ref().is_some_and(|current| current.id == event.prompt_id);
                    if !shown {
                        // The next prompt of ours starts; messages of other prompts are not ours to show.
                        let Some(at) = self.waiting.iter().position(|sent| sent.id == event.prompt_id) else {
                            continue;
                        };
                        if view.running {
                            *finished += 1; // the one shown never reported its end
                        }
                        self.start_view(at, view);
                    }
                    if matches!(event.kind, EventKind::ExecutionStart) && self.stop_requested.load(Ordering::Relaxed) {
                        self.send_stop(&event.prompt_id);
                    }
                    view.apply(&event);
                    if matches!(event.kind, EventKind::Finished) {
                        *finished += 1;
                        break;
                    }
                }
            }
        }
        any
    }

    /// Shows waiting prompt `at` as the one running.
    fn start_view(&mut self, at: usize, view: &mut RunView) {
        if let Some(sent) = self.waiting.remove(at) {
            *view = RunView::starting(sent.nodes.clone());
            self.current = Some(sent);
            self.stop_requested.store(false, Ordering::Relaxed);
        }
    }

    /// After a reconnect: keeps following the prompts the server still holds (`queue`, running and
    /// waiting ids) and drops those it no longer does. A prompt it still runs is shown again.
    fn confirm(&mut self, queue: Option<&[String]>, view: &mut RunView) {
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        if unconfirmed.is_empty() {
            return;
        }
        let held = |id: &Arc<str>| queue.is_none_or(|ids| ids.iter().any(|held| **held == **id));
        let before = self.waiting.len();
        self.waiting.retain(|sent| !unconfirmed.contains(&sent.id) || held(&sent.id));
        let mut gone = before - self.waiting.len();
        if let Some(current) = self.current.take() {
            if unconfirmed.contains(&current.id) && !view.running && held(&current.id) {
                // Still on the server: its messages come to this client again from now on.
                self.waiting.push_front(current);
                self.start_view(0, view);
            } else {
                gone += usize::from(unconfirmed.contains(&current.id) && !held(&current.id));
                self.current = Some(current);
            }
        }
        if gone > 0 {
            self.notice = Some(format!(
                "{gone} run(s) ended while the server was out of reach; their outputs are in the server's history"
            ));
        }
    }

    /// How many runs wait behind the one in progress.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Asks the server to stop the run shown, if it is running (in the background: the window never
    /// waits on the network for this).
    pub fn stop(&self, view: &RunView) {
        let Some(current) = self.current.as_ref().filter(|_| view.running) else { return };
        self.stop_requested.store(true, Ordering::Relaxed);
        self.send_stop(&current.id);
    }

    /// Asks the server to stop prompt `id` if it is the one running.
    fn send_stop(&self, id: &str) {
        self.in_background("the stop request", "/interrupt", json!({"prompt_id": id}));
    }

    /// Drops this editor's waiting runs from the server's queue; returns how many there were.
    pub fn clear_queue(&mut self) -> usize {
        let ids: Vec<String> = self.waiting.drain(..).map(|sent| sent.id.to_string()).collect();
        if !ids.is_empty() {
            self.in_background("clearing the queue", "/queue", json!({"delete": ids}));
        }
        ids.len()
    }

    /// Posts `body` to `path` on a thread of its own; a failure comes back as a notice about `what`.
    fn in_background(&self, what: &'static str, path: &'static str, body: Json) {
        let (http, notices) = (self.http.clone(), self.notices.clone());
        let posted = std::thread::Builder::new().name("kinograph-server-request".into()).spawn(move || {
            if let Err(error) = http.post_json(path, &body) {
                let _ = notices.send(Incoming::Notice(format!("{what} did not reach the server: {error}")));
            }
        });
        if let Err(error) = posted {
            let _ = self.notices.send(Incoming::Notice(format!("{what} was not sent: {error}")));
        }
    }

    /// See [`super::run::Runner::set_wake`].
    pub fn set_wake(&mut self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.link.set_wake(wake);
    }

    /// The server's address and state, for the menu bar.
    pub fn status(&self) -> ServerStatus {
        let problem = match &self.state {
            LinkState::Down(reason) => Some(format!("not reachable: {reason}")),
            LinkState::Connecting | LinkState::Connected => None,
        };
        ServerStatus { url: self.url(), problem, notice: self.notice.clone() }
    }

    /// See [`super::run::Runner::apply_server_lists`].
    pub fn apply_lists(&mut self, editor: &mut Editor) -> bool {
        let Some(info) = self.lists.take() else { return false };
        editor.catalog = Arc::new(editor.catalog.with_server_lists(&info));
        true
    }

    /// See [`super::run::Runner::refresh_server_lists`].
    pub fn refresh_lists(&self) {
        self.link.refresh_lists();
    }
}

/// A local check's report without its "value not in list" errors for values the catalog offers, which,
/// with a server's lists in it, are files on the server that this machine lacks; `None` when nothing
/// else is wrong. The server checks the graph again when it is queued.
pub fn beyond_server_lists(mut report: ValidationReport, catalog: &Catalog) -> Option<ValidationReport> {
    for node in report.node_errors.values_mut() {
        let class_type = node.class_type.clone();
        node.errors.retain(|error| {
            let value = error.extra_info.get("received_value").and_then(Json::as_str);
            let listed = error
                .input
                .as_deref()
                .zip(value)
                .is_some_and(|(input, value)| catalog.offers(&class_type, input, value));
            !(error.error_type == ErrorType::ValueNotInList && listed)
        });
    }
    report.node_errors.retain(|_, node| !node.errors.is_empty());
    let summary_only = report.error.error_type == ErrorType::PromptOutputsFailedValidation;
    (!summary_only || !report.node_errors.is_empty()).then_some(report)
}

/// A number that differs from process to process and call to call (for the client id: the server sends
/// a prompt's messages to every socket of its client, so two editors must not share one).
fn random_number() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}
