//! # kinograph-server
//!
//! `kinograph serve`: ComfyUI's HTTP and websocket API (routes, JSON shapes, binary preview frames) in
//! front of one worker that runs prompts in queue order, with the queue and history in an embedded
//! database that survives a crash ([`store`]).
//!
//! - [`routes`]: the routes, each also under `/api/...`.
//! - [`hub`]: the open websockets and who gets which message.
//! - [`queue`]: who runs the prompts: the one local worker, or `kinograph worker` processes over NATS
//!   JetStream ([`queue::jetstream`]).
//! - [`worker`]: runs prompts one at a time with the engine's executor, whose cache stays warm.
//! - [`store`]: the queue and history on `SQLite`; every accepted prompt and finished entry is on disk
//!   before the server answers or announces it.
//! - [`files`]: `/view` and uploads, which never leave their folders.
//! - [`security`]: loopback by default, a token beyond it, ComfyUI's Origin check.
//!
//! The server knows nothing about models: the binary hands it an [`Executor`] with its node registry.

pub mod files;
pub mod hub;
pub mod queue;
pub mod routes;
pub mod security;
pub mod state;
pub mod store;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use kinograph_engine::Executor;
use queue::{Backend, QueueConfig};
use routes::{files as file_routes, info, prompts, websocket};
use security::{AccessPolicy, AuthToken};
pub use state::{Limits, Shared, SystemStats};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use store::{Store, StoreLimits};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on (loopback by default; anything else needs a token).
    pub listen: IpAddr,
    /// The port (0: any free one, as tests use).
    pub port: u16,
    /// Where the queue database lives.
    pub state_dir: PathBuf,
    /// ComfyUI's temp folder (`/view?type=temp`).
    pub temp_dir: PathBuf,
    /// The token every request must carry; required beyond loopback.
    pub token: Option<AuthToken>,
    /// Whether a prompt that was running when the server stopped runs again (else it is recorded as
    /// interrupted).
    pub requeue_interrupted: bool,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: IpAddr::from([127, 0, 0, 1]),
            port: 8188,
            state_dir: PathBuf::from("state"),
            temp_dir: PathBuf::from("temp"),
            token: None,
            requeue_interrupted: false,
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Queue(#[from] queue::jetstream::JetStreamError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// A server bound to its address, with its queue recovered, ready to [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    policy: Arc<AccessPolicy>,
}

impl Server {
    /// Checks the bind policy, opens the queue database (recovering after a crash) and binds, with the
    /// server's own worker running the prompts.
    pub async fn bind(
        config: ServerConfig,
        executor: Executor,
        system_stats: SystemStats,
    ) -> Result<Self, ServerError> {
        Self::bind_with_queue(config, QueueConfig::Local, executor, system_stats).await
    }

    /// [`Server::bind`], with the prompts run as `queue` says: locally, or by remote workers over
    /// JetStream (connected to before the server binds, so a server that cannot reach NATS never starts).
    pub async fn bind_with_queue(
        config: ServerConfig,
        queue: QueueConfig,
        executor: Executor,
        system_stats: SystemStats,
    ) -> Result<Self, ServerError> {
        security::check_bind(config.listen, config.token.as_ref())?;
        let backend = match &queue {
            QueueConfig::Local => Backend::Local,
            QueueConfig::JetStream(jetstream) => {
                Backend::JetStream(Box::new(queue::jetstream::FrontEnd::connect(jetstream).await?))
            }
        };
        // With remote workers a prompt marked running may still be running on one; its entry will come.
        let remote = matches!(backend, Backend::JetStream(_));
        let store_limits =
            StoreLimits { max_history: config.limits.max_history, max_age: config.limits.max_history_age };
        let state_dir = config.state_dir.clone();
        let requeue = config.requeue_interrupted;
        let (store, recovery) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&state_dir, store_limits)?;
            let recovery = if remote { store::Recovery::default() } else { store.recover(requeue)? };
            Ok::<_, store::StoreError>((store, recovery))
        })
        .await
        .map_err(|panic| ServerError::Serve(std::io::Error::other(panic.to_string())))??;
        log_recovery(&recovery);
        let env = executor.env();
        let folders = files::Folders {
            output: env.output_dir.clone(),
            input: env.input_dir.clone(),
            temp: config.temp_dir.clone(),
        };
        let address = SocketAddr::new(config.listen, config.port);
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Listen { address, source })?;
        let check_origin = security::is_loopback(&config.listen);
        let policy = Arc::new(AccessPolicy { token: config.token, check_origin });
        let shared = Arc::new(Shared::new(executor, Arc::new(store), backend, config.limits, folders, system_stats));
        Ok(Server { shared, listener, policy })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the routes and the worker share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` resolves, running queued prompts meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let worker = Backend::start(&self.shared);
        let app = app(self.shared.clone(), self.policy);
        let served = axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        worker.abort();
        served.map_err(ServerError::Serve)
    }
}

/// Every route, at `/` and under `/api`, behind the access guard and the body limit.
pub fn app(shared: Arc<Shared>, policy: Arc<AccessPolicy>) -> Router {
    let limits = shared.limits.clone();
    let routes = || {
        let upload_limit = DefaultBodyLimit::max(limits.max_upload_bytes);
        Router::new()
            .route("/prompt", get(prompts::queue_info).post(prompts::submit))
            .route("/queue", get(prompts::queue).post(prompts::edit_queue))
            .route("/history", get(prompts::history).post(prompts::edit_history))
            .route("/history/{prompt_id}", get(prompts::history_entry))
            .route("/interrupt", post(prompts::interrupt))
            .route("/free", post(prompts::free))
            .route("/object_info", get(info::object_info))
            .route("/object_info/{class}", get(info::object_info_of))
            .route("/models", get(info::model_folders))
            .route("/models/{folder}", get(info::models_in))
            .route("/embeddings", get(info::embeddings))
            .route("/extensions", get(info::extensions))
            .route("/features", get(info::features))
            .route("/system_stats", get(info::system_stats))
            .route("/view", get(file_routes::view))
            .route("/upload/image", post(file_routes::upload_image).layer(upload_limit))
            .route("/upload/mask", post(file_routes::upload_mask).layer(upload_limit))
            .route("/ws", get(websocket::connect))
    };
    Router::new()
        .merge(routes())
        .nest("/api", routes())
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(policy, security::guard))
        .with_state(shared)
}

/// Says what a restart found: prompts still waiting, and what became of the one that was running.
fn log_recovery(recovery: &store::Recovery) {
    if !recovery.pending.is_empty() {
        tracing::info!("{} queued prompts are waiting from before the restart", recovery.pending.len());
    }
    for id in &recovery.requeued {
        tracing::warn!("prompt {id} was running when the server stopped; it runs again first");
    }
    for id in &recovery.interrupted {
        tracing::warn!("prompt {id} was running when the server stopped; it is in the history as interrupted");
    }
}
