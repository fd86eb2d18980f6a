//! The one websocket to the server, kept open on a thread of its own: it reconnects when the connection
//! drops, reads the server's messages into engine events, fetches each output's files as the server
//! reports them (before the run's end is passed on, so that a finished run has its outputs), and
//! fetches the server's node lists on every connect and when asked. Everything it learns goes to the
//! window's thread through a channel, as [`Incoming`] values.

use super::client::{Http, RemoteFile, RequestError};
use super::messages::MessageReader;
use kinograph_engine::{Event, EventKind};
use serde_json::{Value as Json, json};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

/// How long a read waits before the thread looks at its flags again.
const READ_SLICE: Duration = Duration::from_millis(200);
/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After this long without a message the thread pings the server; after twice this long without any
/// answer the connection counts as lost (a server whose machine vanished sends no close).
const QUIET_LIMIT: Duration = Duration::from_secs(20);
/// The longest pause between connection attempts; the first retries come sooner.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the thread tells the window's thread.
#[derive(Debug)]
pub enum Incoming {
    /// The websocket opened; `queue` lists the prompt ids the server is running or holding (`None`
    /// when `/queue` could not be read).
    Connected { queue: Option<Vec<String>> },
    /// The websocket closed, or could not open: why, in words.
    Lost(String),
    /// A run's event.
    Event(Event),
    /// The local copies of an output node's files, after its `executed` event; `failures` says which
    /// could not be fetched and why.
    Files { prompt_id: Arc<str>, node: String, files: Vec<PathBuf>, failures: Vec<String> },
    /// The server's `/object_info`.
    Lists(Arc<Json>),
    /// A request made in the background failed (a stop, a queue change, the node lists).
    Notice(String),
}

/// Whether the websocket is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not yet tried.
    Connecting,
    Connected,
    /// The last attempt failed, or the connection dropped: why.
    Down(String),
}

/// What the thread and the window's thread share.
struct Shared {
    state: Mutex<(LinkState, u64)>,
    changed: Condvar,
    stop: AtomicBool,
    /// Asks for `/object_info` again.
    refresh: AtomicBool,
    /// Cuts a pause between attempts short (someone is waiting to queue).
    retry: AtomicBool,
    wake: Mutex<Arc<dyn Fn() + Send + Sync>>,
}

impl Shared {
    /// Records the state and counts the attempt, waking whoever waits on it.
    fn set(&self, state: LinkState) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0 = state;
        guard.1 += 1;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The thread's handle; dropping it stops the thread (which ends on its own within a read's slice, or
/// after a download it is in the middle of).
pub struct Link {
    shared: Arc<Shared>,
}

impl Link {
    /// Starts the thread for `client_id`, saving output files under `cache` (one folder per prompt).
    pub fn start(http: Http, client_id: String, cache: PathBuf, sender: Sender<Incoming>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new((LinkState::Connecting, 0)),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            refresh: AtomicBool::new(false),
            retry: AtomicBool::new(false),
            wake: Mutex::new(Arc::new(|| {})),
        });
        let thread = Thread { http, client_id, cache, sender, shared: Arc::clone(&shared) };
        std::thread::Builder::new().name("kinograph-server-link".into()).spawn(move || thread.run())?;
        Ok(Link { shared })
    }

    /// Calls `wake` after each message from now on (the window's repaint request).
    pub fn set_wake(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        *self.shared.wake.lock().unwrap_or_else(PoisonError::into_inner) = wake;
    }

    /// Asks for the server's node lists again.
    pub fn refresh_lists(&self) {
        self.shared.refresh.store(true, Ordering::Relaxed);
    }

    /// Waits until the websocket is open, or until an attempt made after this call failed, or `limit`;
    /// the reason when it is not open.
    pub fn wait_connected(&self, limit: Duration) -> Result<(), String> {
        self.shared.retry.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + limit;
        let mut guard = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let start = guard.1;
        loop {
            match &guard.0 {
                LinkState::Connected => return Ok(()),
                // Only an attempt that ended after the call counts: an older failure may be stale.
                LinkState::Down(reason) if guard.1 > start => return Err(reason.clone()),
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(match &guard.0 {
                    LinkState::Down(reason) => reason.clone(),
                    _ => format!("no connection after {} s", limit.as_secs()),
                });
            }
            guard = self.shared.changed.wait_timeout(guard, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The thread's own state.
struct Thread {
    http: Http,
    client_id: String,
    cache: PathBuf,
    sender: Sender<Incoming>,
    shared: Arc<Shared>,
}

impl Thread {
    fn send(&self, incoming: Incoming) {
        let _ = self.sender.send(incoming);
        let wake = Arc::clone(&self.shared.wake.lock().unwrap_or_else(PoisonError::into_inner));
        wake();
    }

    /// Connects, serves the connection until it ends, and tries again, until stopped.
    fn run(self) {
        let mut failures = 0u32;
        let mut last_reason = String::new();
        while !self.shared.stopped() {
            let reason = match self.open() {
                Ok(socket) => {
                    failures = 0;
                    let queue = self.server_queue();
                    self.send(Incoming::Connected { queue });
                    self.shared.set(LinkState::Connected);
                    self.send_lists();
                    match self.serve(socket) {
                        Some(reason) => reason,
                        None => return,
                    }
                }
                Err(reason) => reason,
            };
            if self.shared.stopped() {
                return;
            }
            // Told once per cause, not on every retry.
            if failures == 0 || reason != last_reason {
                self.send(Incoming::Lost(reason.clone()));
            }
            self.shared.set(LinkState::Down(reason.clone()));
            last_reason = reason;
            failures = failures.saturating_add(1);
            self.pause(MAX_BACKOFF.min(Duration::from_millis(250) * 2u32.saturating_pow(failures.min(5))));
        }
    }

    /// Sleeps `length`, or less when stopped or asked to retry.
    fn pause(&self, length: Duration) {
        let until = Instant::now() + length;
        while Instant::now() < until && !self.shared.stopped() && !self.shared.retry.swap(false, Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Opens the websocket and asks for previews that name their node.
    fn open(&self) -> Result<WebSocket<TcpStream>, String> {
        let server = self.http.server();
        let mut request = server.websocket_url(&self.client_id).into_client_request().map_err(|e| e.to_string())?;
        if let Some(authorization) = server.authorization() {
            let value =
                authorization.parse().map_err(|_| "the server token is not a valid header value".to_string())?;
            request.headers_mut().insert("Authorization", value);
        }
        let stream = server.connect().map_err(|error| error.to_string())?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|error| error.to_string())?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|error| error.to_string())?;
        let mut socket = match tungstenite::client(request, stream) {
            Ok((socket, _)) => socket,
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let hint = if status == 401 { " (check --server-token)" } else { "" };
                return Err(format!("the websocket was refused with HTTP {status}{hint}"));
            }
            Err(error) => return Err(format!("the websocket did not open: {error}")),
        };
        socket.get_mut().set_read_timeout(Some(READ_SLICE)).map_err(|error| error.to_string())?;
        let flags = json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}});
        socket.send(Message::text(flags.to_string())).map_err(|error| error.to_string())?;
        Ok(socket)
    }

    /// The ids of the prompts the server runs or holds.
    fn server_queue(&self) -> Option<Vec<String>> {
        let queue = self.http.get_json("/queue").ok()?;
        let ids = ["queue_running", "queue_pending"]
            .iter()
            .flat_map(|key| queue.get(*key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice))
            .filter_map(|item| item.get(1).and_then(Json::as_str).map(str::to_string))
            .collect();
        Some(ids)
    }

    fn send_lists(&self) {
        match self.http.get_json("/object_info") {
            Ok(info) if info.is_object() => self.send(Incoming::Lists(Arc::new(info))),
            Ok(_) => self.send(Incoming::Notice("the server's /object_info is not an object".into())),
            Err(error) => self.send(Incoming::Notice(format!("the server's node lists did not arrive: {error}"))),
        }
    }

    /// Reads messages until the connection ends (the reason) or the thread is stopped (`None`).
    fn serve(&self, mut socket: WebSocket<TcpStream>) -> Option<String> {
        let mut reader = MessageReader::default();
        let mut heard = Instant::now();
        let mut pinged = false;
        loop {
            if self.shared.stopped() {
                let _ = socket.close(None);
                let _ = socket.flush();
                return None;
            }
            if self.shared.refresh.swap(false, Ordering::Relaxed) {
                self.send_lists();
            }
            let message = match socket.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(error))
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    let quiet = heard.elapsed();
                    if quiet > QUIET_LIMIT * 2 {
                        return Some(format!("no answer from the server for {} s", quiet.as_secs()));
                    }
                    if quiet > QUIET_LIMIT && !pinged {
                        pinged = true;
                        if let Err(error) = socket.send(Message::Ping(Vec::new().into())) {
                            return Some(format!("the connection broke: {error}"));
                        }
                    }
                    continue;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Some("the server closed the connection".into());
                }
                Err(error) => return Some(format!("the connection broke: {error}")),
            };
            heard = Instant::now();
            pinged = false;
            match message {
                Message::Text(text) => {
                    for event in reader.text(text.as_str()) {
                        self.pass_on(event);
                    }
                }
                Message::Binary(frame) => {
                    if let Some(event) = reader.binary(&frame) {
                        self.send(Incoming::Event(event));
                    }
                }
                Message::Close(_) => return Some("the server closed the connection".into()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Sends `event` on; after an `executed` one, fetches the node's files and sends where they are.
    fn pass_on(&self, event: Event) {
        let executed = match &event.kind {
            EventKind::Executed { node, output } => Some((node.clone(), RemoteFile::list(output))),
            _ => None,
        };
        let prompt_id = Arc::clone(&event.prompt_id);
        self.send(Incoming::Event(event));
        let Some((node, remote_files)) = executed else { return };
        if remote_files.is_empty() {
            return;
        }
        let Some(folder) = prompt_folder(&self.cache, &prompt_id) else { return };
        let mut files = Vec::new();
        let mut failures = Vec::new();
        for file in remote_files {
            let Some(path) = file.local_path(&folder) else {
                failures.push(format!("{}: the server named a file outside its folders", file.filename));
                continue;
            };
            match self.http.download(&file, &path) {
                Ok(()) => files.push(path),
                Err(RequestError::Status { status, .. }) => {
                    failures.push(format!("{}: the server answered HTTP {status}", file.filename));
                }
                Err(error) => failures.push(format!("{}: {error}", file.filename)),
            }
        }
        self.send(Incoming::Files { prompt_id, node, files, failures });
    }
}

/// The folder for a prompt's files under `cache`, unless its id is not a plain folder name.
fn prompt_folder(cache: &Path, prompt_id: &str) -> Option<PathBuf> {
    let mut components = Path::new(prompt_id).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !prompt_id.contains(['/', '\\']) => Some(cache.join(prompt_id)),
        _ => None,
    }
}
