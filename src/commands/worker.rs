//! `kinograph worker`: runs prompts for a `kinograph serve --queue nats://...` front end, taking them from
//! NATS JetStream; as many workers as machines, each with its own models and cache.

use super::{BudgetArgs, FolderArgs};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_engine::size::parse_size;
use kinograph_server::files::Folders;
use kinograph_server::queue::jetstream::outputs::OutputPlace;
use kinograph_server::queue::jetstream::{ConnectedWorker, JetStreamConfig, WorkerIdentity};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The NATS server with JetStream the front end queues on, `nats://HOST:4222`.
    #[arg(long, value_name = "URL")]
    pub queue: String,
    /// Folders. Outputs are written to `--output-dir` (previews to `temp/` beside it) and sent to the front
    /// end through NATS's object store, under a subfolder named after this worker.
    #[command(flatten)]
    pub folders: FolderArgs,
    /// `--output-dir` is the front end's own output folder (the same machine, or a shared mount): outputs
    /// stay where they are written instead of travelling through the object store.
    #[arg(long)]
    pub shared_outputs: bool,
    /// Memory bound of the output cache, which keeps models and encoded prompts warm between prompts.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub cache_ram: usize,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Seconds a prompt stays with a worker that has stopped answering before another worker takes it
    /// (a live worker keeps it as long as it runs). Used when this worker creates the queue.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub ack_wait: u64,
    #[command(flatten)]
    pub nats: NatsAccessArgs,
    /// The name this worker goes by under `/system_stats` (default: the host's name and this process's id).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// The host's name and this process's id: unique among the workers of one queue.
fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

/// How to log in to NATS and trust its TLS certificate: shared by `serve --queue` and `worker`.
#[derive(Args, Debug, Clone, Default)]
pub struct NatsAccessArgs {
    /// A NATS credentials file (`.creds`, a user JWT and its key) for servers using NATS accounts; a user
    /// and password go in the URL instead (`nats://user:password@host:4222`).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the NATS server's TLS; with it TLS is required. Repeatable.
    #[arg(long = "nats-ca", value_name = "FILE")]
    pub nats_ca: Vec<PathBuf>,
}

impl NatsAccessArgs {
    /// `config` with these credentials and certificates.
    pub fn apply(&self, config: JetStreamConfig) -> JetStreamConfig {
        JetStreamConfig {
            credentials_file: self.nats_creds.clone(),
            tls_root_certificates: self.nats_ca.clone(),
            ..config
        }
    }
}

pub fn run(args: &WorkerArgs) -> u8 {
    match work(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_INVALID
        }
    }
}

fn work(args: &WorkerArgs) -> Result<(), String> {
    let env = args.folders.environment()?;
    args.budget.apply();
    let executor = super::warm_executor(env.clone(), args.cache_ram);
    let config = JetStreamConfig::for_url(&args.queue).map_err(|error| error.to_string())?;
    let config = args.nats.apply(JetStreamConfig { ack_wait: Duration::from_secs(args.ack_wait.max(1)), ..config });
    let identity =
        WorkerIdentity::new(&args.name.clone().unwrap_or_else(default_name), super::compute_device_names().0);
    let outputs = if args.shared_outputs {
        OutputPlace::SharedFolder
    } else {
        OutputPlace::ObjectStore(Folders {
            output: env.output_dir.clone(),
            input: env.input_dir.clone(),
            temp: kinograph_nodes::nodes::image::temp_dir(&env),
        })
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async move {
        let shown = config.shown_url();
        let worker = Box::pin(ConnectedWorker::connect(executor, config, identity, outputs))
            .await
            .map_err(|error| error.to_string())?;
        // Scripts and tests wait for this line.
        println!("kinograph worker: taking prompts from {shown}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("kinograph worker: stopping; a prompt it runs goes back to the queue");
        };
        Box::pin(worker.run(shutdown)).await;
        Ok(())
    })
}
