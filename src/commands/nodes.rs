//! `kinograph nodes [--json] [CLASS...]`.

use super::{FolderArgs, registry};
use crate::EXIT_INVALID;
use clap::Args;
use serde_json::Value as Json;

#[derive(Args, Debug)]
pub struct NodesArgs {
    /// Only these node classes.
    pub classes: Vec<String>,
    /// Print ComfyUI's `/object_info` JSON (inputs, `input_order`, outputs, categories).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub folders: FolderArgs,
}

pub fn run(args: &NodesArgs) -> u8 {
    let registry = registry();
    let env = match args.folders.environment() {
        Ok(env) => env,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let Json::Object(mut all) = registry.object_info(&env) else { unreachable!("object_info is an object") };
    if !args.classes.is_empty() {
        let unknown: Vec<&String> = args.classes.iter().filter(|c| !all.contains_key(c.as_str())).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(|c| c.as_str()).collect();
            eprintln!("error: unknown node type{}: {}", if names.len() == 1 { "" } else { "s" }, names.join(", "));
            return EXIT_INVALID;
        }
        all.retain(|class, _| args.classes.contains(class));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&Json::Object(all)).expect("JSON serialises"));
        return 0;
    }
    let mut rows: Vec<(String, String, String)> = all
        .iter()
        .map(|(class, info)| {
            let category = info["category"].as_str().unwrap_or_default().to_string();
            let mut summary = info["display_name"].as_str().unwrap_or_default().to_string();
            if info["output_node"] == true {
                summary.push_str(" [output]");
            }
            (category, class.clone(), summary)
        })
        .collect();
    rows.sort();
    let class_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut current = None;
    for (category, class, summary) in rows {
        if current.as_ref() != Some(&category) {
            println!("{category}");
            current = Some(category);
        }
        println!("  {class:<class_width$}  {summary}");
    }
    0
}
