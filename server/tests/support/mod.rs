//! What every test needs: a real server on a free loopback port with its own folders and the test nodes
//! ([`TestServer`]), an HTTP client ([`Client`]), a websocket client ([`socket`]) and the prompts the
//! tests queue. Every wait is bounded by [`WAIT`], so a broken server fails a test instead of hanging it.

pub mod nats;
pub mod nodes;
pub mod socket;

use kinograph_engine::{Environment, Executor, ModelFolders};
use kinograph_server::queue::QueueConfig;
use kinograph_server::security::AuthToken;
use kinograph_server::{Limits, Server, ServerConfig, ServerError, SystemStats};
use serde_json::{Value as Json, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any test waits for the server to do something.
pub const WAIT: Duration = Duration::from_secs(20);

/// How a test's server is configured.
#[derive(Clone)]
pub struct Options {
    pub limits: Limits,
    pub token: Option<&'static str>,
    pub listen: IpAddr,
    /// Who runs the prompts: the server's own worker, or remote workers over JetStream.
    pub queue: QueueConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            token: None,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            queue: QueueConfig::Local,
        }
    }
}

/// The folders of one server, which outlive a restart: output, input, temp, models and the state folder
/// holding the queue database.
pub struct Workspace {
    root: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("a temporary folder");
        for folder in ["output", "input", "temp", "models", "state"] {
            std::fs::create_dir(root.path().join(folder)).expect("a folder in the temporary folder");
        }
        Workspace { root }
    }

    /// One of the folders made in [`Workspace::new`].
    pub fn folder(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The temporary folder itself (outside every served folder).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// The report `/system_stats` serves.
fn system_stats() -> SystemStats {
    Arc::new(|| json!({"system": {"os": "test", "ram_total": 1, "ram_free": 1, "comfyui_version": "test"}}))
}

/// An executor over the test nodes in `workspace`'s folders.
pub fn executor(workspace: &Workspace) -> Executor {
    let env = Environment {
        output_dir: workspace.folder("output"),
        input_dir: workspace.folder("input"),
        models: ModelFolders::new(workspace.folder("models")),
    };
    Executor::new(Arc::new(nodes::registry()), env)
}

/// Binds a server over the test nodes in `workspace`, as `kinograph serve` would.
pub fn bind(runtime: &Runtime, workspace: &Workspace, options: &Options) -> Result<Server, ServerError> {
    let executor = executor(workspace);
    let config = ServerConfig {
        listen: options.listen,
        port: 0,
        state_dir: workspace.folder("state"),
        temp_dir: workspace.folder("temp"),
        token: options.token.map(|token| AuthToken::new(token).expect("a token")),
        requeue_interrupted: false,
        limits: options.limits.clone(),
    };
    runtime.block_on(Server::bind_with_queue(config, options.queue.clone(), executor, system_stats()))
}

/// A server running on its own runtime until dropped.
pub struct TestServer {
    /// Where clients reach it (loopback even when it listens on every interface).
    pub address: SocketAddr,
    pub workspace: Workspace,
    options: Options,
    runtime: Option<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// A server with the default limits, no token, on loopback.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        Self::start_in(Workspace::new(), options)
    }

    fn start_in(workspace: Workspace, options: Options) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = bind(&runtime, &workspace, &options).expect("the server binds");
        let mut address = server.local_addr().expect("a bound address");
        if address.ip().is_unspecified() {
            address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serving = runtime.spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            workspace,
            options,
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            serving: Some(serving),
        }
    }

    /// Stops this server and starts a new one on the same folders and queue database.
    pub fn restart(self) -> Self {
        let options = self.options.clone();
        self.restart_with(options)
    }

    /// [`TestServer::restart`] with other options (another NATS server, say).
    pub fn restart_with(mut self, options: Options) -> Self {
        self.stop();
        let workspace = std::mem::replace(&mut self.workspace, Workspace::new());
        Self::start_in(workspace, options)
    }

    fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let (Some(runtime), Some(serving)) = (self.runtime.take(), self.serving.take()) {
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), serving).await });
            // A node may still sleep on a blocking thread; nothing waits for it.
            runtime.shutdown_background();
        }
    }

    /// A client for this server, with the token when one is configured.
    pub fn client(&self) -> Client {
        let client = self.anonymous_client();
        match self.options.token {
            Some(token) => client.with_header("Authorization", &format!("Bearer {token}")),
            None => client,
        }
    }

    /// A client that sends no token.
    pub fn anonymous_client(&self) -> Client {
        Client::new(&format!("http://{}", self.address))
    }

    pub fn output_dir(&self) -> PathBuf {
        self.workspace.folder("output")
    }

    pub fn input_dir(&self) -> PathBuf {
        self.workspace.folder("input")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An answer: status, headers and the whole body.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("status {}: the body is not JSON ({error}): {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A blocking HTTP client that reports every status as an answer.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(WAIT)).build();
        Client { agent: config.new_agent(), base: base.to_string(), headers: Vec::new() }
    }

    /// The same client, sending `name: value` on every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, Vec::new())
    }

    pub fn post(&self, path: &str, body: &Json) -> Reply {
        self.send("POST", path, Some("application/json"), body.to_string().into_bytes())
    }

    /// Sends a request with `body` (none for an empty GET).
    pub fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let request = request.body(body).expect("a well-formed request");
        let mut response =
            self.agent.run(request).unwrap_or_else(|error| panic!("{method} {path} got no answer: {error}"));
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_else(|error| panic!("{method} {path}: the body could not be read: {error}"));
        Reply { status: response.status().as_u16(), headers: response.headers().clone(), body }
    }

    /// Queues `body` (a `POST /prompt` body) and returns the prompt's id; panics unless it was accepted.
    pub fn queue(&self, body: &Json) -> String {
        let reply = self.post("/prompt", body);
        assert_eq!(reply.status, 200, "the prompt was refused: {}", reply.text());
        reply.json()["prompt_id"].as_str().expect("a prompt_id").to_string()
    }

    /// The history entry of `prompt_id` once it is there.
    pub fn wait_for_history(&self, prompt_id: &str) -> Json {
        wait_for(&format!("prompt {prompt_id} in the history"), || {
            let reply = self.get(&format!("/history/{prompt_id}"));
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json().get(prompt_id).cloned()
        })
    }

    /// The ids of the running prompts and of the pending ones, in the order `/queue` lists them.
    pub fn queue_ids(&self) -> (Vec<String>, Vec<String>) {
        let queue = self.get("/queue").json();
        let ids = |key: &str| -> Vec<String> {
            queue[key].as_array().expect("a list").iter().map(|item| item[1].as_str().unwrap().to_string()).collect()
        };
        (ids("queue_running"), ids("queue_pending"))
    }

    /// Waits until `prompt_id` is the running prompt.
    pub fn wait_until_running(&self, prompt_id: &str) {
        wait_for(&format!("prompt {prompt_id} to run"), || {
            self.queue_ids().0.iter().any(|id| id == prompt_id).then_some(())
        });
    }

    /// Panics unless the server still answers `GET /prompt`.
    pub fn assert_still_serving(&self) {
        let reply = self.get("/prompt");
        assert_eq!(reply.status, 200, "the server stopped serving: {}", reply.text());
        assert!(reply.json()["exec_info"]["queue_remaining"].is_u64());
    }
}

/// Polls `check` until it gives a value, for at most [`WAIT`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A prompt that writes `text` to a file.
pub fn save_prompt(text: &str) -> Json {
    json!({"1": {"class_type": "SaveText", "inputs": {"text": text, "filename_prefix": "saved"}}})
}

/// A prompt whose node 1 counts `steps` steps of `step_ms` each and whose node 2 saves what it says.
pub fn slow_prompt(label: &str, steps: u64, step_ms: u64) -> Json {
    json!({
        "1": {"class_type": "SlowCount", "inputs": {"steps": steps, "step_ms": step_ms, "label": label}},
        "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "counted"}},
    })
}

/// A prompt whose only node fails.
pub fn failing_prompt(message: &str) -> Json {
    json!({"1": {"class_type": "Fail", "inputs": {"message": message}}})
}

/// The `type` of each `[event, data]` pair in a history entry's status messages.
pub fn status_messages(entry: &Json) -> Vec<String> {
    entry["status"]["messages"]
        .as_array()
        .expect("status messages")
        .iter()
        .map(|pair| pair[0].as_str().expect("an event name").to_string())
        .collect()
}

/// Percent-encodes `value` for a query string, every byte outside the unreserved set.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Sends `contents` as the multipart file field `image` named `filename`, with the text `fields`, as the
/// front end uploads images.
pub fn upload(client: &Client, path: &str, filename: &str, contents: &[u8], fields: &[(&str, &str)]) -> Reply {
    let boundary = "kinograph-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        let part = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
        body.extend_from_slice(part.as_bytes());
    }
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(contents);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    client.send("POST", path, Some(&format!("multipart/form-data; boundary={boundary}")), body)
}
