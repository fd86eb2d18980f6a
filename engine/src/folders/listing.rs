//! Walking one search path for the files (or diffusers folders) of a folder kind.

use super::FileFilter;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The file that marks a folder as a diffusers pipeline.
pub(super) const DIFFUSERS_INDEX: &str = "model_index.json";

/// Folders that an unfinished `kinograph models pull` writes into start with this.
pub const DOWNLOAD_STAGING_PREFIX: &str = ".kinograph-download";

/// The entries of `root` that `filter` accepts, as `/`-separated names relative to `root`, in no
/// particular order. Symbolic links are followed (as ComfyUI does), each real folder is visited once
/// so that a link loop ends, and unreadable entries are skipped.
pub(super) fn list(root: &Path, filter: FileFilter) -> Vec<String> {
    let mut names = Vec::new();
    if !root.is_dir() {
        return names;
    }
    let mut visited = HashSet::new();
    if let Ok(real) = root.canonicalize() {
        visited.insert(real);
    }
    walk(root, "", filter, &mut visited, &mut names);
    names
}

fn walk(folder: &Path, prefix: &str, filter: FileFilter, visited: &mut HashSet<PathBuf>, names: &mut Vec<String>) {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!("cannot list model folder {}: {error}", folder.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            tracing::warn!("skipping {}: its name is not valid UTF-8", path.display());
            continue;
        };
        let name = if prefix.is_empty() { file_name.clone() } else { format!("{prefix}/{file_name}") };
        // `metadata` follows links; a dangling link has none and is skipped.
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        if metadata.is_dir() {
            if file_name == ".git" || file_name.starts_with(DOWNLOAD_STAGING_PREFIX) {
                continue;
            }
            let Ok(real) = path.canonicalize() else { continue };
            if !visited.insert(real) {
                continue;
            }
            if filter == FileFilter::DiffusersFolders && path.join(DIFFUSERS_INDEX).is_file() {
                names.push(name);
                continue;
            }
            walk(&path, &name, filter, visited, names);
        } else if accepts(filter, Path::new(&file_name)) {
            names.push(name);
        }
    }
}

/// Whether a file called `file_name` belongs in a listing with `filter`.
fn accepts(filter: FileFilter, file_name: &Path) -> bool {
    let extension = file_name.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match filter {
        FileFilter::Extensions(allowed) => extension.is_some_and(|e| allowed.contains(&e.as_str())),
        FileFilter::NoExtension => extension.is_none(),
        FileFilter::Any => true,
        FileFilter::DiffusersFolders => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folders::MODEL_EXTENSIONS;

    #[test]
    fn extensions_are_compared_in_lower_case() {
        let weights = FileFilter::Extensions(MODEL_EXTENSIONS);
        assert!(accepts(weights, Path::new("model.SafeTensors")));
        assert!(accepts(weights, Path::new("old.ckpt")));
        assert!(!accepts(weights, Path::new("notes.txt")));
        assert!(!accepts(weights, Path::new(".safetensors")), "a dot file has no extension, as in Python");
        assert!(accepts(FileFilter::NoExtension, Path::new("classifier")));
        assert!(!accepts(FileFilter::NoExtension, Path::new("classifier.pt")));
    }
}
