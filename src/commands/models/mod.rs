//! `kinograph models list [FOLDER]` and `kinograph models pull REPO FILE`.

mod guess;
mod pull;

use super::ModelFolderArgs;
use crate::EXIT_INVALID;
use clap::{Args, Subcommand};
use kinograph_engine::ModelFolders;
use serde_json::{Map, Value as Json, json};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Print the model files found for each folder kind, and the folders searched.
    ///
    /// Exit codes: 0 listed, 1 unknown folder kind or unusable extra model paths file.
    List(ListArgs),
    /// Download one file of a Hugging Face model repository into the right model folder, and print
    /// where it was put.
    ///
    /// The file appears only once it is complete; an existing file is never overwritten. `HF_TOKEN`
    /// (or the token file under `HF_HOME`) authenticates, `HF_ENDPOINT` changes the server.
    ///
    /// Exit codes: 0 downloaded, 1 failed (nothing is left behind), 130 interrupted.
    Pull(pull::PullArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this folder kind (`checkpoints`, `text_encoders`, `vae`, ...; `clip` and `unet` are read as
    /// `text_encoders` and `diffusion_models`).
    pub folder: Option<String>,
    /// Print JSON: `{kind: {"paths": [...], "files": [...]}}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub models: ModelFolderArgs,
}

pub fn run(args: &ModelsArgs) -> u8 {
    match &args.command {
        ModelsCommand::List(list) => run_list(list),
        ModelsCommand::Pull(pull) => pull::run(pull),
    }
}

fn run_list(args: &ListArgs) -> u8 {
    let folders = match args.models.model_folders() {
        Ok(folders) => folders,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let kinds: Vec<String> = match &args.folder {
        Some(folder) if !folders.is_known(folder) => {
            eprintln!("error: {}", unknown_kind(folder, &folders));
            return EXIT_INVALID;
        }
        Some(folder) => vec![kinograph_engine::folders::canonical_kind(folder).to_string()],
        None => folders.kinds().map(str::to_string).collect(),
    };
    if args.json {
        let listing: Map<String, Json> = kinds
            .iter()
            .map(|kind| {
                let paths: Vec<String> = folders.search_paths(kind).iter().map(|p| p.display().to_string()).collect();
                (kind.clone(), json!({"paths": paths, "files": folders.list(kind)}))
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&Json::Object(listing)).expect("JSON serialises"));
        return 0;
    }
    if !folders.models_dir().is_dir() {
        eprintln!(
            "note: the models folder {} does not exist; --models-dir names another one",
            folders.models_dir().display()
        );
    }
    let mut empty = Vec::new();
    for kind in &kinds {
        let files = folders.list(kind);
        // Without a kind asked for, the many empty kinds are summed up in one line.
        if files.is_empty() && args.folder.is_none() {
            empty.push(kind.as_str());
            continue;
        }
        let paths: Vec<String> = folders.search_paths(kind).iter().map(|p| p.display().to_string()).collect();
        let count = match files.len() {
            0 => "no files".to_string(),
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        };
        println!("{kind} ({count}; searched: {})", paths.join(", "));
        for file in files {
            println!("  {file}");
        }
    }
    if !empty.is_empty() {
        println!("no files in: {}", empty.join(", "));
    }
    0
}

/// The message for a folder kind that does not exist, listing those that do.
fn unknown_kind(folder: &str, folders: &ModelFolders) -> String {
    let kinds: Vec<&str> = folders.kinds().collect();
    format!("unknown folder kind '{folder}'; the folder kinds are: {}", kinds.join(", "))
}
