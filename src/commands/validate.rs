//! `kinograph validate FILE [--json]`.

use super::{FolderArgs, load_workflow, registry};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_engine::ConvertOptions;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The workflow: ComfyUI API prompt or UI workflow (JSON), or a PNG or MP4 that carries one.
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
    let registry = registry();
    let prompt = args.folders.environment().and_then(|env| {
        Ok((load_workflow(&args.file, &args.overrides, &registry, &env, &ConvertOptions::default())?, env))
    });
    let (prompt, env) = match prompt {
        Ok((loaded, env)) => (loaded.prompt, env),
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
    match kinograph_engine::validate(&prompt, &registry, &env) {
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
