//! `kinograph edit [FILE]`: the node editor window.

use super::{BudgetArgs, FolderArgs};
use crate::EXIT_INVALID;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EditArgs {
    /// A UI workflow (ComfyUI's editor format) to open; without it the editor starts on an empty graph.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

pub fn run(args: &EditArgs) -> u8 {
    args.budget.apply();
    let environment = match args.folders.environment() {
        Ok(environment) => environment,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    match kinograph_editor::run(args.file.as_deref(), environment) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_INVALID
        }
    }
}
