//! `kinograph convert FILE`: print the API prompt a workflow runs as; conversion warnings go to stderr.

use super::{FolderArgs, registry};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_engine::{ConvertOptions, WorkflowFile};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The workflow: ComfyUI UI workflow or API prompt (JSON), or a PNG or MP4 that carries one.
    pub file: PathBuf,
    /// Seed for `{a|b}` dynamic prompts (default 0: the same choice every time).
    #[arg(long, value_name = "N")]
    pub prompt_seed: Option<u64>,
    #[command(flatten)]
    pub folders: FolderArgs,
}

pub fn run(args: &ConvertArgs) -> u8 {
    let options = ConvertOptions { dynamic_prompt_seed: args.prompt_seed };
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
