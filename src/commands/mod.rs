//! The subcommands, and what they share: loading a workflow and setting up the environment.

pub mod bench;
pub mod convert;
pub mod demo;
pub mod edit;
pub mod models;
pub mod nodes;
pub mod run;
pub mod serve;
pub mod validate;
pub mod worker;

use clap::Args;
use kinograph_engine::size::parse_size;
use kinograph_engine::{
    ApiPrompt, ConvertOptions, Environment, MemoryBudget, MemoryPool, ModelFolders, Registry, WorkflowFile,
    ui_from_prompt,
};
use serde_json::Value as Json;
use std::path::PathBuf;

/// Where model files are looked for: options shared by every command that reads models.
#[derive(Args, Debug, Clone)]
pub struct ModelFolderArgs {
    /// Model folder in ComfyUI's layout (checkpoints/, vae/, `text_encoders`/, ...).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Extra model search paths, in the format of ComfyUI's `extra_model_paths.yaml`. Repeatable.
    #[arg(long = "extra-model-paths", value_name = "FILE")]
    pub extra_model_paths: Vec<PathBuf>,
}

impl ModelFolderArgs {
    /// The model folders these options describe; the error is ready to print.
    pub fn model_folders(&self) -> Result<ModelFolders, String> {
        let mut folders = ModelFolders::new(&self.models_dir);
        for file in &self.extra_model_paths {
            folders.load_extra_paths(file).map_err(|error| error.to_string())?;
        }
        Ok(folders)
    }
}

/// Folder options shared by the commands that read workflows.
#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// Folder for output files.
    #[arg(long, value_name = "DIR", default_value = "output")]
    pub output_dir: PathBuf,
    /// Folder for input files (images to load).
    #[arg(long, value_name = "DIR", default_value = "input")]
    pub input_dir: PathBuf,
    #[command(flatten)]
    pub models: ModelFolderArgs,
}

impl FolderArgs {
    /// The run environment these options describe; fails when an extra model paths file cannot be used.
    pub fn environment(&self) -> Result<Environment, String> {
        Ok(Environment {
            output_dir: self.output_dir.clone(),
            input_dir: self.input_dir.clone(),
            models: self.models.model_folders()?,
        })
    }
}

/// The memory budget: options shared by every command that runs graphs.
#[derive(Args, Debug, Clone, Default)]
pub struct BudgetArgs {
    /// Memory budget for loaded models, streamed blocks and the output cache together (e.g. 8G). Models
    /// that do not fit stream their blocks from the file where they can, the cache gives way first, and a
    /// model that cannot fit is refused before it is read. Default: `KINOGRAPH_MEMORY_LIMIT`, else the
    /// machine's memory (or its cgroup's limit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub ram_budget: Option<usize>,
    /// The same for the GPU's memory, when models run on one (default: no limit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub vram_budget: Option<usize>,
}

impl BudgetArgs {
    /// Sets the process's memory budget from these options.
    pub fn apply(&self) {
        let budget = MemoryBudget::global();
        budget.set_limit(MemoryPool::Ram, self.ram_budget.map(|bytes| bytes as u64));
        budget.set_limit(MemoryPool::Device, self.vram_budget.map(|bytes| bytes as u64));
    }
}

/// An executor over this binary's nodes whose cache (bounded by `cache_ram`) keeps loaded models and
/// encoded prompts warm from one prompt to the next, and gives way to models under the memory budget: what
/// `serve` and `worker` run prompts with.
pub fn warm_executor(env: Environment, cache_ram: usize) -> kinograph_engine::Executor {
    let cache = std::sync::Arc::new(kinograph_engine::Cache::new(cache_ram));
    MemoryBudget::global().attach_cache(&cache);
    kinograph_engine::Executor::new(std::sync::Arc::new(registry()), env).with_cache(cache)
}

/// The device models run on here, as ComfyUI names it and its kind: (`cpu`, `cpu`), (`cuda:0`, `cuda`) or
/// (`mps`, `mps`).
pub fn compute_device_names() -> (&'static str, &'static str) {
    let device = kinograph_nodes::nodes::loaders::compute_device();
    if device.is_cuda() {
        ("cuda:0", "cuda")
    } else if device.is_metal() {
        ("mps", "mps")
    } else {
        ("cpu", "cpu")
    }
}

/// How this binary builds its registry: set by [`crate::main_with_registry`].
static REGISTRY: std::sync::OnceLock<fn() -> Registry> = std::sync::OnceLock::new();

/// Sets how [`registry`] builds the registry; only the first call counts.
pub fn set_registry(build: fn() -> Registry) {
    let _ = REGISTRY.set(build);
}

/// The nodes this binary offers: kinograph's own, unless it was started through
/// [`crate::main_with_registry`] with another registry.
pub fn registry() -> Registry {
    REGISTRY.get().map_or_else(kinograph_nodes::registry, |build| build())
}

/// A workflow ready to validate or run.
pub struct Loaded {
    pub prompt: ApiPrompt,
    /// The UI workflow it came from, if any (saved into outputs as ComfyUI does).
    pub ui_workflow: Option<Json>,
}

/// Loads a workflow in either format (or from a PNG or MP4 that carries one), converts a UI workflow
/// (printing its warnings on stderr) and applies `--set` overrides; errors are ready to print.
pub fn load_workflow(
    file: &std::path::Path,
    overrides: &[String],
    registry: &Registry,
    env: &Environment,
    options: &ConvertOptions,
) -> Result<Loaded, String> {
    if let Some(loaded) = load_output_file(file)? {
        let mut prompt = loaded.prompt;
        for assignment in overrides {
            prompt.apply_override(assignment).map_err(|error| error.to_string())?;
        }
        return Ok(Loaded { prompt, ui_workflow: loaded.ui_workflow });
    }
    let workflow = WorkflowFile::load(file).map_err(|error| error.to_string())?;
    let ui_workflow = match &workflow {
        WorkflowFile::Ui(ui) => Some(ui.to_json()),
        WorkflowFile::Api(_) => None,
    };
    let conversion = workflow.into_prompt(registry, env, options).map_err(|error| error.to_string())?;
    for warning in &conversion.warnings {
        eprintln!("warning: {}: {warning}", file.display());
    }
    let mut prompt = conversion.prompt;
    for assignment in overrides {
        prompt.apply_override(assignment).map_err(|error| error.to_string())?;
    }
    // An API prompt is stored in outputs beside a UI layout of it, so they open in a node editor too.
    let ui_workflow = ui_workflow.or_else(|| ui_from_prompt(&prompt, registry, env).ok().map(|ui| ui.to_json()));
    Ok(Loaded { prompt, ui_workflow })
}

/// A PNG or MP4 output that carries the API prompt it was made with: that prompt runs again exactly as it
/// ran, and the UI workflow beside it is passed on to the new outputs. `None` for other files, and for
/// outputs with only a UI workflow (those are converted like a UI file).
fn load_output_file(file: &std::path::Path) -> Result<Option<Loaded>, String> {
    use kinograph_engine::workflow::embedded::{container, extract};
    let Ok(bytes) = std::fs::read(file) else { return Ok(None) };
    if container(&bytes).is_none() {
        return Ok(None);
    }
    let found = extract(&bytes).map_err(|message| format!("{}: {message}", file.display()))?;
    let Some(prompt_text) = found.prompt else { return Ok(None) };
    let prompt = ApiPrompt::parse(&prompt_text, &format!("{} (prompt)", file.display())).map_err(|e| e.to_string())?;
    let ui_workflow = found.workflow.and_then(|text| serde_json::from_str::<Json>(&text).ok());
    Ok(Some(Loaded { prompt, ui_workflow }))
}
