//! Many machines in one test: a real `nats-server` with JetStream on a free loopback port and a temporary
//! store ([`NatsServer`]), and remote workers on runtimes of their own ([`RemoteWorker`]), which a test
//! can kill as a machine dies: their tasks and their NATS connection go at once, nothing acknowledged.

use super::{WAIT, Workspace, nodes};
use kinograph_engine::{Environment, Executor, ModelFolders};
use kinograph_server::files::Folders;
use kinograph_server::queue::jetstream::outputs::OutputPlace;
use kinograph_server::queue::jetstream::{JetStreamConfig, WorkerIdentity, run_worker};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// The `nats-server` binary: on the `PATH`, or where Debian's package puts it.
pub fn nats_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|folder| folder.join("nats-server"));
    on_path.chain([PathBuf::from("/usr/sbin/nats-server")]).find(|candidate| candidate.is_file())
}

/// A `nats-server -js` process, killed when dropped.
pub struct NatsServer {
    process: Child,
    pub url: String,
    _store: TempDir,
}

impl NatsServer {
    /// Starts one, or `None` when `nats-server` is not installed (CI installs it: there it is a failure).
    pub fn start() -> Option<Self> {
        Self::start_with(&[], None)
    }

    /// One that takes only `user` with `password` (`--user`, `--pass`); its URL carries them.
    pub fn start_with_login(user: &str, password: &str) -> Option<Self> {
        Self::start_with(&["--user", user, "--pass", password], Some(format!("{user}:{password}@")))
    }

    fn start_with(extra: &[&str], login: Option<String>) -> Option<Self> {
        let Some(binary) = nats_server_binary() else {
            assert!(std::env::var_os("CI").is_none(), "nats-server is not installed (apt-get install nats-server)");
            eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let port = free_port();
        let store = tempfile::tempdir().expect("a temporary folder");
        let process = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let login = login.unwrap_or_default();
        let server = NatsServer { process, url: format!("nats://{login}127.0.0.1:{port}"), _store: store };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(address).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {address}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The queue's settings for this server, with an `ack_wait` short enough for a test to see a dead
    /// worker's prompt handed on.
    pub fn config(&self) -> JetStreamConfig {
        JetStreamConfig { ack_wait: Duration::from_secs(2), ..JetStreamConfig::new(&self.url) }
    }
}

impl NatsServer {
    /// The names of the objects in `bucket` now (empty when it does not exist).
    pub fn object_names(&self, bucket: &str) -> Vec<String> {
        use futures_util::StreamExt;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let client = async_nats::connect(self.url.as_str()).await.expect("a connection to nats-server");
            let Ok(store) = async_nats::jetstream::new(client).get_object_store(bucket).await else {
                return Vec::new();
            };
            let mut names = Vec::new();
            let mut list = store.list().await.expect("the bucket's list");
            while let Some(info) = list.next().await {
                names.push(info.expect("an object's information").name);
            }
            names
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| listener.local_addr()).expect("a free port").port()
}

/// Numbers the test workers' names.
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

fn next_name() -> String {
    format!("test-worker-{}", NEXT_WORKER.fetch_add(1, Ordering::Relaxed))
}

/// A remote worker with its own folders (outputs through the object store), or writing into a front end's
/// output folder (a shared folder, as on one machine).
pub struct RemoteWorker {
    runtime: Option<Runtime>,
    /// Stops the worker as Ctrl-C does.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<()>>,
    _workspace: Workspace,
}

impl RemoteWorker {
    /// Starts a worker on `config`'s NATS server whose outputs go through the object store.
    pub fn start(config: &JetStreamConfig) -> Self {
        Self::named(config, &next_name())
    }

    /// [`RemoteWorker::start`] under the name `name`.
    pub fn named(config: &JetStreamConfig, name: &str) -> Self {
        Self::spawn(config, name, None)
    }

    /// A worker that writes its outputs into `output_dir`, the front end's output folder.
    pub fn sharing(config: &JetStreamConfig, output_dir: &Path) -> Self {
        Self::spawn(config, &next_name(), Some(output_dir))
    }

    fn spawn(config: &JetStreamConfig, name: &str, shared_output: Option<&Path>) -> Self {
        let identity = WorkerIdentity::new(name, "cpu");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let workspace = Workspace::new();
        let folders = Folders {
            output: shared_output.map_or_else(|| workspace.folder("output"), Path::to_path_buf),
            input: workspace.folder("input"),
            temp: workspace.folder("temp"),
        };
        let env = Environment {
            output_dir: folders.output.clone(),
            input_dir: folders.input.clone(),
            models: ModelFolders::new(workspace.folder("models")),
        };
        let place = if shared_output.is_some() { OutputPlace::SharedFolder } else { OutputPlace::ObjectStore(folders) };
        let executor = Executor::new(Arc::new(nodes::registry()), env);
        let config = config.clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let finished = runtime.spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(error) = Box::pin(run_worker(executor, config, identity, place, stopped)).await {
                panic!("the worker stopped: {error}");
            }
        });
        RemoteWorker {
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            finished: Some(finished),
            _workspace: workspace,
        }
    }

    /// Stops the worker as its operator does with Ctrl-C, and waits until it has.
    pub fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let (Some(runtime), Some(finished)) = (self.runtime.take(), self.finished.take()) {
            runtime.block_on(finished).expect("the worker stops cleanly");
            runtime.shutdown_background();
        }
    }

    /// Kills the worker as a machine dies: its tasks stop where they are, and its connection closes.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for RemoteWorker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
