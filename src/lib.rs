//! The `kinograph` command line as a library: `src/main.rs` is `kinograph::main()`, and a binary with
//! nodes or samplers of its own besides the built-in ones is [`main_with_registry`] (see
//! `docs/writing-nodes.md`, "Adding your nodes to the `kinograph` binary").

mod commands;
mod progress;

use clap::{Parser, Subcommand};
use kinograph_engine::Registry;
use std::ffi::OsString;
use std::process::ExitCode;

/// Exit code: the workflow or the command line is invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: a node failed while running.
pub const EXIT_RUNTIME: u8 = 2;
/// Exit code: the run was interrupted (Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A native node-graph engine for open-weight video diffusion models.
#[derive(Parser)]
#[command(name = "kinograph", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run LTX-Video text-to-video on tiny built-in models (no download) and write an MP4.
    ///
    /// Writes the demo models into the models folder first. Exit codes as for `run`.
    Demo(commands::demo::DemoArgs),
    /// Open the node editor window on a UI workflow, or on an empty graph.
    ///
    /// Needs a display (X11 or Wayland). Exit codes: 0 closed, 1 no display, the file cannot be opened, or the
    /// server URL or token cannot be used.
    Edit(commands::edit::EditArgs),
    /// Run a workflow headless.
    ///
    /// Exit codes: 0 success, 1 invalid workflow, 2 a node failed, 130 interrupted.
    Run(commands::run::RunArgs),
    /// Serve ComfyUI's HTTP and websocket API, with a queue and history that survive a crash.
    ///
    /// Loopback by default; any other address needs a token. Exit codes: 0 stopped, 1 could not start.
    Serve(commands::serve::ServeArgs),
    /// Run prompts for a `kinograph serve --queue nats://...` front end, taken from NATS JetStream.
    ///
    /// Exit codes: 0 stopped, 1 could not start or lost the queue.
    Worker(commands::worker::WorkerArgs),
    /// Check a workflow without running it; reports every error at once.
    ///
    /// Exit codes: 0 valid, 1 invalid.
    Validate(commands::validate::ValidateArgs),
    /// Print the API prompt a workflow runs as (UI workflows are converted; warnings go to stderr).
    ///
    /// Exit codes: 0 converted, 1 the file cannot be read as a workflow.
    Convert(commands::convert::ConvertArgs),
    /// List the node types kinograph knows.
    Nodes(commands::nodes::NodesArgs),
    /// List the model files found in the model folders, or download one from Hugging Face.
    Models(commands::models::ModelsArgs),
    /// Time the model code on random weights of the real shapes (built in memory); prints JSON.
    ///
    /// Build with `--release` for meaningful numbers. `tools/bench/compare.py` runs the PyTorch
    /// reference on the same shapes beside it.
    Bench(commands::bench::BenchArgs),
}

/// The `kinograph` command line with the built-in nodes, on this process's arguments.
pub fn main() -> ExitCode {
    main_with_registry(std::env::args_os(), kinograph_nodes::registry)
}

/// The `kinograph` command line on `args` (the program name first), with the nodes of the registry that
/// `registry` builds: every command that reads workflows (`run`, `validate`, `convert`, `nodes`, `demo`)
/// uses it. Typically `kinograph_nodes::registry()` plus a crate's own nodes, or
/// `kinograph_nodes::registry_with_samplers` with extra samplers. Can be called once per process (it
/// sets up logging).
pub fn main_with_registry<I, T>(args: I, registry: fn() -> Registry) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(run_with_registry(args, registry))
}

/// [`main_with_registry`], returning the exit code as a number (0, [`EXIT_INVALID`], [`EXIT_RUNTIME`] or
/// [`EXIT_INTERRUPTED`]).
pub fn run_with_registry<I, T>(args: I, registry: fn() -> Registry) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { EXIT_INVALID } else { 0 };
        }
    };
    commands::set_registry(registry);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KINOGRAPH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match cli.command {
        Command::Demo(args) => commands::demo::run(&args),
        Command::Edit(args) => commands::edit::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Validate(args) => commands::validate::run(&args),
        Command::Worker(args) => commands::worker::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Nodes(args) => commands::nodes::run(&args),
        Command::Models(args) => commands::models::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
    }
}
