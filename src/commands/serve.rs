//! `kinograph serve`: ComfyUI's HTTP and websocket API over a queue that survives a crash.

use super::{BudgetArgs, FolderArgs};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_engine::size::parse_size;
use kinograph_server::queue::QueueConfig;
use kinograph_server::queue::jetstream::JetStreamConfig;
use kinograph_server::security::AuthToken;
use kinograph_server::{Limits, Server, ServerConfig, SystemStats};
use serde_json::json;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs `--auth-token` or `--auth-token-file`.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1")]
    pub listen: IpAddr,
    #[arg(long, default_value_t = 8188)]
    pub port: u16,
    /// Folder of the queue and history database.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state_dir: PathBuf,
    /// ComfyUI's temp folder (`/view?type=temp`).
    #[arg(long, value_name = "DIR", default_value = "temp")]
    pub temp_dir: PathBuf,
    /// A token every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN` on the websocket).
    #[arg(long, value_name = "TOKEN", conflicts_with = "auth_token_file")]
    pub auth_token: Option<String>,
    /// The token, read from a file (kept out of the process list).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Run prompts on `kinograph worker` processes through the NATS server with JetStream at this URL
    /// (`nats://HOST:4222`) instead of in this process.
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
    #[command(flatten)]
    pub nats: super::worker::NatsAccessArgs,
    /// With `--queue`: seconds a prompt stays with a worker that has stopped answering before another
    /// worker takes it. Used when this process creates the queue.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, requires = "queue")]
    pub ack_wait: u64,
    /// Run the prompt that was running when the server stopped again, instead of recording it as interrupted.
    #[arg(long)]
    pub requeue_interrupted: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Memory bound of the output cache, which keeps models and encoded prompts warm between prompts.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub cache_ram: usize,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Largest request body (a prompt).
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub max_body_size: usize,
    /// Largest upload.
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub max_upload_size: usize,
    /// Most nodes in one prompt.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_prompt_nodes: usize,
    /// Most prompts waiting at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_queue: usize,
    /// Most websockets open at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_websockets: usize,
    /// Most history entries kept (the oldest go first; output files are never deleted).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_history: usize,
    /// Oldest history entry kept, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub max_history_days: u64,
}

pub fn run(args: &ServeArgs) -> u8 {
    match serve(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_INVALID
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let env = args.folders.environment()?;
    let token = match (&args.auth_token, &args.auth_token_file) {
        (Some(token), _) => Some(AuthToken::new(token).map_err(|error| error.to_string())?),
        (None, Some(file)) => Some(AuthToken::from_file(file).map_err(|error| error.to_string())?),
        (None, None) => None,
    };
    args.budget.apply();
    let executor = super::warm_executor(env, args.cache_ram);
    let config = ServerConfig {
        listen: args.listen,
        port: args.port,
        state_dir: args.state_dir.clone(),
        temp_dir: args.temp_dir.clone(),
        token,
        requeue_interrupted: args.requeue_interrupted,
        limits: Limits {
            max_body_bytes: args.max_body_size,
            max_upload_bytes: args.max_upload_size,
            max_prompt_nodes: args.max_prompt_nodes,
            max_websockets: args.max_websockets,
            max_queue: args.max_queue,
            max_history: args.max_history,
            max_history_age: Duration::from_secs(args.max_history_days.saturating_mul(24 * 3600)),
        },
    };
    let queue = match &args.queue {
        Some(url) => {
            let config = JetStreamConfig::for_url(url).map_err(|error| format!("--queue: {error}"))?;
            let ack_wait = Duration::from_secs(args.ack_wait.max(1));
            QueueConfig::JetStream(args.nats.apply(JetStreamConfig { ack_wait, ..config }))
        }
        None => QueueConfig::Local,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async move {
        let server = Server::bind_with_queue(config, queue, executor, system_stats())
            .await
            .map_err(|error| error.to_string())?;
        let address = server.local_addr().map_err(|error| error.to_string())?;
        // Scripts and tests wait for this line (with the port chosen when --port 0).
        println!("kinograph serve: listening on http://{address}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("kinograph serve: stopping");
        };
        server.run(shutdown).await.map_err(|error| error.to_string())
    })
}

/// `/system_stats` in ComfyUI's shape: the machine's memory and the device models run on.
fn system_stats() -> SystemStats {
    Arc::new(|| {
        let (total, free) = memory_now();
        let (name, kind) = super::compute_device_names();
        json!({
            "system": {
                "os": std::env::consts::OS,
                "ram_total": total,
                "ram_free": free,
                "comfyui_version": env!("CARGO_PKG_VERSION"),
                "kinograph_version": env!("CARGO_PKG_VERSION"),
                "required_frontend_version": "",
                "python_version": "",
                "pytorch_version": "",
                "embedded_python": false,
                "argv": std::env::args().collect::<Vec<_>>(),
            },
            "devices": [{
                "name": name, "type": kind, "index": if kind == "cpu" { json!(null) } else { json!(0) },
                "vram_total": total, "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0,
            }],
        })
    })
}

/// The machine's total and available memory in bytes (`/proc/meminfo`; zeros where there is none).
fn memory_now() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else { return (0, 0) };
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}
