//! `kinograph validate FILE [--json]`.

use super::{FolderArgs, load_workflow, registry};
use crate::EXIT_INVALID;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The workflow file (ComfyUI API format).
    pub file: PathBuf,
    /// Override an input before validating: `NODE_ID.INPUT=VALUE` (VALUE is JSON, or else a string).
    #[arg(long = "set", value_name = "NODE_ID.INPUT=VALUE")]
    pub overrides: Vec<String>,
    /// Print the result as JSON in ComfyUI's `{error, node_errors}` shape.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
}

pub fn run(args: &ValidateArgs) -> u8 {
    let prompt = match load_workflow(&args.file, &args.overrides) {
        Ok(prompt) => prompt,
        Err(message) => {
            if args.json {
                println!(
                    "{}",
                    json!({"valid": false, "error": {"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}, "node_errors": {}})
                );
            } else {
                eprintln!("error: {message}");
            }
            return EXIT_INVALID;
        }
    };
    let registry = registry();
    match kinograph_engine::validate(&prompt, &registry, &args.folders.environment()) {
        Ok(graph) => {
            let outputs: Vec<&str> = graph.outputs.iter().map(|&i| graph.nodes[i].id.as_str()).collect();
            if args.json {
                println!("{}", json!({"valid": true, "outputs": outputs, "node_errors": {}}));
            } else {
                println!(
                    "{} is valid: {} node{} needed for output{} {}",
                    args.file.display(),
                    graph.nodes.len(),
                    if graph.nodes.len() == 1 { "" } else { "s" },
                    if outputs.len() == 1 { "" } else { "s" },
                    outputs.join(", ")
                );
            }
            0
        }
        Err(report) => {
            if args.json {
                let mut body = report.to_comfy_json();
                body["valid"] = json!(false);
                println!("{body}");
            } else {
                eprint!("error: {}: {}", args.file.display(), report.to_text());
            }
            EXIT_INVALID
        }
    }
}
