//! Model files in ComfyUI's folder layout, as the loader nodes see them: the combo of files a folder kind
//! holds, and the path a chosen name resolves to.

use kinograph_engine::{Environment, InputSpec, NodeError};
use std::path::{Path, PathBuf};

/// File extensions ComfyUI lists in model folders.
const MODEL_EXTENSIONS: [&str; 6] = ["safetensors", "sft", "ckpt", "pt", "pth", "bin"];

/// Folder names searched for a folder kind, ComfyUI's legacy names after the current one.
fn folder_names(kind: &str) -> &[&str] {
    match kind {
        "text_encoders" => &["text_encoders", "clip"],
        "diffusion_models" => &["diffusion_models", "unet"],
        "checkpoints" => &["checkpoints"],
        "vae" => &["vae"],
        _ => &[],
    }
}

/// Directories searched for `kind`, in order.
pub fn search_paths(env: &Environment, kind: &str) -> Vec<PathBuf> {
    env.model_roots.iter().flat_map(|root| folder_names(kind).iter().map(move |name| root.join(name))).collect()
}

/// Model files of `kind`, as `/`-separated names relative to their folder, sorted, without duplicates.
pub fn model_files(env: &Environment, kind: &str) -> Vec<String> {
    let mut names = Vec::new();
    for folder in search_paths(env, kind) {
        collect(&folder, &folder, &mut names);
    }
    names.sort();
    names.dedup();
    names
}

fn collect(base: &Path, dir: &Path, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, names);
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| MODEL_EXTENSIONS.contains(&e))
            && let Ok(relative) = path.strip_prefix(base)
        {
            let parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            names.push(parts.join("/"));
        }
    }
}

/// The combo input `name` listing the files of `kind`.
pub fn model_input(name: &str, kind: &str, env: &Environment) -> InputSpec {
    InputSpec::combo(name, model_files(env, kind))
}

/// The path of model file `name` of `kind`, or an error on `input` naming the folders searched and the
/// files found.
pub fn model_path(env: &Environment, kind: &str, input: &str, name: &str) -> Result<PathBuf, NodeError> {
    let safe = !name.is_empty() && Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if safe {
        for folder in search_paths(env, kind) {
            let path = folder.join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let searched: Vec<String> = search_paths(env, kind).iter().map(|p| p.display().to_string()).collect();
    let found = model_files(env, kind);
    Err(NodeError::input(
        input,
        format!(
            "model file '{name}' not found in {kind} folders (searched {}); {}",
            searched.join(", "),
            if found.is_empty() { "no model files there".to_string() } else { format!("found: {}", found.join(", ")) }
        ),
    ))
}
