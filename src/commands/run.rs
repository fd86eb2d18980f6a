//! `kinograph run FILE`: validate, then run with progress (bars, or JSON events), Ctrl-C to stop.

use super::{BudgetArgs, FolderArgs, Loaded, load_workflow, registry};
use crate::progress::{EventMode, Reporter};
use crate::{EXIT_INTERRUPTED, EXIT_INVALID, EXIT_RUNTIME};
use clap::Args;
use kinograph_engine::queue::{QueueItem, run_queued};
use kinograph_engine::size::parse_size;
use kinograph_engine::{
    Cache, CancelToken, ConvertOptions, DiskCache, Environment, Executor, MemoryBudget, Registry, RunStatus,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workflow: ComfyUI API prompt or UI workflow (JSON), or a PNG or MP4 that carries one.
    pub file: PathBuf,
    /// Override an input: `NODE_ID.INPUT=VALUE` (VALUE is JSON, or else a string). Repeatable.
    #[arg(long = "set", value_name = "NODE_ID.INPUT=VALUE")]
    pub overrides: Vec<String>,
    /// Seed for `{a|b}` dynamic prompts in UI workflows (default 0: the same choice every run).
    #[arg(long, value_name = "N")]
    pub prompt_seed: Option<u64>,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// How to report progress: bars on a terminal (plain lines otherwise), or one JSON object per line
    /// on stdout in the shape of ComfyUI's websocket messages.
    #[arg(long, value_enum, default_value_t = EventMode::Bars)]
    pub events: EventMode,
    /// Memory bound of the output cache (e.g. 512M, 4G).
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub cache_ram: usize,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Keep outputs in this folder too, so a later run skips unchanged nodes.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run at most this many nodes at once (default: the number of cores, at least 2).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

pub fn run(args: &RunArgs) -> u8 {
    let registry = registry();
    let options = ConvertOptions { dynamic_prompt_seed: args.prompt_seed };
    let loaded = args
        .folders
        .environment()
        .and_then(|env| Ok((load_workflow(&args.file, &args.overrides, &registry, &env, &options)?, env)));
    match loaded {
        Ok((loaded, env)) => run_loaded(loaded, registry, env, args),
        Err(message) => {
            let reporter = Reporter::new(args.events, &args.folders.output_dir);
            reporter.invalid(&json!({"error": {"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}, "node_errors": {}}), &format!("error: {message}\n"));
            EXIT_INVALID
        }
    }
}

/// Validates and runs a loaded workflow with the settings in `args` (its `file` names it in messages).
pub fn run_loaded(loaded: Loaded, registry: Registry, env: Environment, args: &RunArgs) -> u8 {
    let reporter = Reporter::new(args.events, &args.folders.output_dir);
    args.budget.apply();
    // One workflow per process: nothing after this run could reuse a cached model, so each is freed as
    // soon as the run no longer needs it.
    let mut cache = Cache::new(args.cache_ram).without_models();
    if let Some(folder) = &args.cache_dir {
        match DiskCache::open(folder, env!("CARGO_PKG_VERSION")) {
            Ok(disk) => cache = cache.with_disk(disk),
            Err(error) => {
                eprintln!("error: cannot use the cache folder: {error}");
                return EXIT_INVALID;
            }
        }
    }
    let cache = Arc::new(cache);
    MemoryBudget::global().attach_cache(&cache);
    let mut executor = Executor::new(Arc::new(registry), env).with_cache(cache);
    if let Some(jobs) = args.jobs {
        executor = executor.with_max_parallel(jobs);
    }
    let graph = match executor.validate(&loaded.prompt) {
        Ok(graph) => Arc::new(graph),
        Err(report) => {
            reporter.invalid(&report.to_comfy_json(), &format!("error: {}: {}", args.file.display(), report.to_text()));
            return EXIT_INVALID;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return EXIT_RUNTIME;
        }
    };
    let cancel = CancelToken::new();
    let reporter = Arc::new(reporter.for_graph(&graph));
    // The one-shot form of the server's queue: one item, run as the server's worker runs it.
    let extra_pnginfo = loaded.ui_workflow.map_or(serde_json::Value::Null, |workflow| json!({ "workflow": workflow }));
    let item = QueueItem {
        number: 0.0,
        prompt_id: prompt_id(),
        prompt: loaded.prompt.to_json(),
        extra_data: json!({ "extra_pnginfo": extra_pnginfo }),
        outputs_to_execute: graph.outputs.iter().map(|&index| graph.nodes[index].id.clone()).collect(),
    };
    let (outcome, _history) = runtime.block_on(async {
        tokio::spawn(interrupt_on_ctrl_c(cancel.clone()));
        run_queued(&executor, graph, &item, reporter.sink(), cancel).await
    });
    reporter.finish(&outcome);
    match outcome.status {
        RunStatus::Success => 0,
        RunStatus::Failed => EXIT_RUNTIME,
        RunStatus::Interrupted => EXIT_INTERRUPTED,
    }
}

/// First Ctrl-C: stop after the running nodes reach their next check. Second: quit at once.
async fn interrupt_on_ctrl_c(cancel: CancelToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\ninterrupting: waiting for running nodes to stop (Ctrl-C again to quit at once)");
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }
}

/// Tells runs apart in events: process id and start time.
fn prompt_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:08x}-{nanos:x}", std::process::id())
}
