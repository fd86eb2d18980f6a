//! `kinograph convert FILE`: print the API prompt a workflow runs as (or, with `--ui`, the workflow in
//! ComfyUI's UI format); conversion warnings go to stderr.

use super::{FolderArgs, registry};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_engine::{ConvertOptions, WorkflowFile, ui_from_prompt};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The workflow: ComfyUI UI workflow or API prompt (JSON), or a PNG or MP4 that carries one.
    pub file: PathBuf,
    /// Seed for `{a|b}` dynamic prompts (default 0: the same choice every time).
    #[arg(long, value_name = "N")]
    pub prompt_seed: Option<u64>,
    /// Print the workflow in ComfyUI's UI format instead (an API prompt is laid out as a graph).
    #[arg(long)]
    pub ui: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
}

pub fn run(args: &ConvertArgs) -> u8 {
    let options = ConvertOptions { dynamic_prompt_seed: args.prompt_seed };
    if args.ui {
        return print_ui(args);
    }
    let conversion = args.folders.environment().and_then(|env| {
        WorkflowFile::load(&args.file)
            .and_then(|workflow| workflow.into_prompt(&registry(), &env, &options))
            .map_err(|error| error.to_string())
    });
    match conversion {
        Ok(conversion) => {
            for warning in &conversion.warnings {
                eprintln!("warning: {}: {warning}", args.file.display());
            }
            println!("{}", serde_json::to_string_pretty(&conversion.prompt.to_json()).unwrap_or_default());
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_INVALID
        }
    }
}

fn print_ui(args: &ConvertArgs) -> u8 {
    let laid_out = args.folders.environment().and_then(|env| match WorkflowFile::load(&args.file) {
        Ok(WorkflowFile::Ui(ui)) => Ok(ui.to_json()),
        Ok(WorkflowFile::Api(prompt)) => {
            ui_from_prompt(&prompt, &registry(), &env).map(|ui| ui.to_json()).map_err(|error| error.to_string())
        }
        Err(error) => Err(error.to_string()),
    });
    match laid_out {
        Ok(json) => {
            println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_INVALID
        }
    }
}
