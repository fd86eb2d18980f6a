//! The subcommands, and what they share: loading a workflow and setting up the environment.

pub mod nodes;
pub mod run;
pub mod validate;

use clap::Args;
use kinograph_engine::{ApiPrompt, Environment, Registry};
use std::path::PathBuf;

/// Folder options shared by the commands that read workflows.
#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// Folder for output files.
    #[arg(long, value_name = "DIR", default_value = "output")]
    pub output_dir: PathBuf,
    /// Folder for input files (images to load).
    #[arg(long, value_name = "DIR", default_value = "input")]
    pub input_dir: PathBuf,
    /// Model folder in ComfyUI's layout (checkpoints/, vae/, `text_encoders`/, ...).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

impl FolderArgs {
    /// The run environment these options describe.
    pub fn environment(&self) -> Environment {
        Environment {
            output_dir: self.output_dir.clone(),
            input_dir: self.input_dir.clone(),
            model_roots: vec![self.models_dir.clone()],
        }
    }
}

/// Every node kinograph ships.
pub fn registry() -> Registry {
    kinograph_nodes::registry()
}

/// Loads a workflow and applies `--set` overrides; errors are ready to print.
pub fn load_workflow(file: &std::path::Path, overrides: &[String]) -> Result<ApiPrompt, String> {
    let mut prompt = ApiPrompt::load(file).map_err(|error| error.to_string())?;
    for assignment in overrides {
        prompt.apply_override(assignment).map_err(|error| error.to_string())?;
    }
    Ok(prompt)
}
