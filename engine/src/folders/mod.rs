//! Model folders in ComfyUI's layout: which folders hold which kind of model file, how extra search
//! paths are added, and how a file name in a workflow becomes a path on disk.
//!
//! The folder kinds, their default subfolders, their legacy aliases and the file extensions they list
//! follow ComfyUI's `folder_paths.py`: `checkpoints/`, `text_encoders/` (and the legacy `clip/`),
//! `diffusion_models/` (and the legacy `unet/`), `vae/`, `loras/`, `latent_upscale_models/`, and so
//! on. Extra search paths come from an `extra_model_paths.yaml` file ([`ModelFolders::load_extra_paths`],
//! described in `docs/models.md`).

mod extra_paths;
mod listing;

pub use extra_paths::FolderError;
pub use listing::DOWNLOAD_STAGING_PREFIX;

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The extensions ComfyUI lists for weight files (its `supported_pt_extensions`), compared in lower case.
pub const MODEL_EXTENSIONS: &[&str] = &["ckpt", "pt", "pt2", "bin", "pth", "safetensors", "pkl", "sft"];

/// Which entries of a folder a kind lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFilter {
    /// Files with one of these extensions (lower case, without the dot).
    Extensions(&'static [&'static str]),
    /// Files without an extension (ComfyUI's `classifiers`).
    NoExtension,
    /// Every file (kinds that only an extra paths file names).
    Any,
    /// Folders that hold a `model_index.json` (diffusers pipelines), not files.
    DiffusersFolders,
}

/// A built-in folder kind: its name, its subfolders of the models folder (in search order), what it lists.
struct BuiltIn {
    name: &'static str,
    subfolders: &'static [&'static str],
    filter: FileFilter,
}

const fn models(name: &'static str, subfolders: &'static [&'static str]) -> BuiltIn {
    BuiltIn { name, subfolders, filter: FileFilter::Extensions(MODEL_EXTENSIONS) }
}

/// ComfyUI's model folder kinds (the folders it keeps outside the models folder, such as `custom_nodes`
/// and `fonts`, are not model folders and are left out).
const BUILT_IN: &[BuiltIn] = &[
    models("checkpoints", &["checkpoints"]),
    BuiltIn { name: "configs", subfolders: &["configs"], filter: FileFilter::Extensions(&["yaml"]) },
    models("loras", &["loras"]),
    models("vae", &["vae"]),
    models("text_encoders", &["text_encoders", "clip"]),
    models("diffusion_models", &["unet", "diffusion_models"]),
    models("clip_vision", &["clip_vision"]),
    models("style_models", &["style_models"]),
    models("embeddings", &["embeddings"]),
    BuiltIn { name: "diffusers", subfolders: &["diffusers"], filter: FileFilter::DiffusersFolders },
    models("vae_approx", &["vae_approx"]),
    models("controlnet", &["controlnet", "t2i_adapter"]),
    models("gligen", &["gligen"]),
    models("upscale_models", &["upscale_models"]),
    models("latent_upscale_models", &["latent_upscale_models"]),
    models("hypernetworks", &["hypernetworks"]),
    models("photomaker", &["photomaker"]),
    BuiltIn { name: "classifiers", subfolders: &["classifiers"], filter: FileFilter::NoExtension },
    models("model_patches", &["model_patches"]),
    models("audio_encoders", &["audio_encoders"]),
    models("background_removal", &["background_removal"]),
    models("frame_interpolation", &["frame_interpolation"]),
    models("geometry_estimation", &["geometry_estimation"]),
    models("optical_flow", &["optical_flow"]),
    models("detection", &["detection"]),
];

/// Kinds that search another kind's folders for other files, as ComfyUI-GGUF registers them: (kind, the
/// kind whose search paths it shares, the extensions it lists). `unet_gguf` lists the `.gguf` files of
/// `diffusion_models` (and the legacy `unet`), extra paths included.
/// `clip_gguf` likewise lists the `.gguf` files of `text_encoders` (and the legacy `clip`).
const VIEWS: &[(&str, &str, &[&str])] =
    &[("unet_gguf", "diffusion_models", &["gguf"]), ("clip_gguf", "text_encoders", &["gguf"])];

/// Legacy folder kind names and the kind they stand for (ComfyUI's `map_legacy`).
const ALIASES: &[(&str, &str)] = &[("unet", "diffusion_models"), ("clip", "text_encoders")];

/// The kind a folder name stands for: `clip` is `text_encoders`, `unet` is `diffusion_models`, any other
/// name is itself.
pub fn canonical_kind(folder: &str) -> &str {
    ALIASES.iter().find(|(alias, _)| *alias == folder).map_or(folder, |(_, kind)| kind)
}

/// One folder kind: where its files are searched for, in order, and which files it lists.
#[derive(Debug, Clone)]
struct Kind {
    name: String,
    paths: Vec<PathBuf>,
    filter: FileFilter,
    /// Where downloads go unless an `is_default` path was added: `<models>/<kind>` for built-in kinds.
    home: Option<PathBuf>,
    /// Set once an `is_default` path was added: downloads then go to the first search path.
    has_default: bool,
}

/// The model folders of a run: for each folder kind (`checkpoints`, `vae`, ...), the folders searched,
/// in order. Built from one models folder in ComfyUI's layout, plus extra paths.
#[derive(Debug, Clone)]
pub struct ModelFolders {
    models_dir: PathBuf,
    kinds: Vec<Kind>,
}

impl Default for ModelFolders {
    /// ComfyUI's layout under `models` in the current directory.
    fn default() -> Self {
        ModelFolders::new("models")
    }
}

impl ModelFolders {
    /// ComfyUI's layout under `models_dir`: `models_dir/checkpoints`, `models_dir/text_encoders` then
    /// `models_dir/clip`, `models_dir/unet` then `models_dir/diffusion_models`, and so on.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        let models_dir = models_dir.into();
        let kinds = BUILT_IN
            .iter()
            .map(|built_in| Kind {
                name: built_in.name.to_string(),
                paths: built_in.subfolders.iter().map(|sub| models_dir.join(sub)).collect(),
                filter: built_in.filter,
                home: Some(models_dir.join(built_in.name)),
                has_default: false,
            })
            .collect();
        ModelFolders { models_dir, kinds }
    }

    /// The models folder the layout was built from.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// Adds `path` at the end of the search paths of `folder` (an alias adds to the kind it stands
    /// for). A path already searched is not added twice. An unknown kind is created, and lists every
    /// file in its paths.
    pub fn add_path(&mut self, folder: &str, path: PathBuf) {
        let kind = self.kind_mut(folder);
        if !kind.paths.iter().any(|known| same_path(known, &path)) {
            kind.paths.push(path);
        }
    }

    /// Puts `path` first in the search paths of `folder` (moving it there if it was already searched),
    /// and makes it where downloads of that kind go: ComfyUI's `is_default`.
    pub fn add_default_path(&mut self, folder: &str, path: PathBuf) {
        let kind = self.kind_mut(folder);
        kind.paths.retain(|known| !same_path(known, &path));
        kind.paths.insert(0, path);
        kind.has_default = true;
    }

    /// Reads an `extra_model_paths.yaml` file (ComfyUI's format) and adds its paths; see
    /// `docs/models.md` for the rules. Nothing is added when the file has an error.
    pub fn load_extra_paths(&mut self, yaml_file: &Path) -> Result<(), FolderError> {
        for entry in extra_paths::read(yaml_file)? {
            if entry.is_default {
                self.add_default_path(&entry.folder, entry.path);
            } else {
                self.add_path(&entry.folder, entry.path);
            }
        }
        Ok(())
    }

    /// Whether `folder` (or the kind it is an alias of) is a known folder kind.
    pub fn is_known(&self, folder: &str) -> bool {
        self.kind(folder).is_some()
    }

    /// The folder kinds, built-in ones first in ComfyUI's order, then those added by extra paths.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.iter().map(|kind| kind.name.as_str())
    }

    /// The folders searched for `folder`, in search order (the alias folders included); empty for an
    /// unknown kind.
    pub fn search_paths(&self, folder: &str) -> Vec<PathBuf> {
        self.kind(folder).map(|kind| kind.paths.clone()).unwrap_or_default()
    }

    /// Where a download of kind `folder` goes: the first search path when an `is_default` path was
    /// added, else `<models>/<kind>` (so `models/diffusion_models`, not the legacy `models/unet` that
    /// is searched first), else, for kinds that only extra paths define, their first path.
    pub fn download_path(&self, folder: &str) -> Option<PathBuf> {
        let kind = self.kind(folder)?;
        if kind.has_default {
            return kind.paths.first().cloned();
        }
        kind.home.clone().or_else(|| kind.paths.first().cloned())
    }

    /// The files of kind `folder` under all its paths: names relative to the path they are in,
    /// `/`-separated, sorted, without duplicates, and only those with the kind's extensions (weights
    /// files for most kinds; `diffusers` lists folders that hold a `model_index.json`). Folders that
    /// do not exist are skipped; `.git` folders and unfinished downloads are not looked into.
    pub fn list(&self, folder: &str) -> Vec<String> {
        let Some(kind) = self.kind(folder) else { return Vec::new() };
        let mut names: Vec<String> = kind.paths.iter().flat_map(|path| listing::list(path, kind.filter)).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The path of the file `name` of kind `folder`: the first search path that has it. `name` is a
    /// name as [`ModelFolders::list`] gives it; `\` is read as `/`, and `..` cannot leave the folder.
    pub fn resolve(&self, folder: &str, name: &str) -> Result<PathBuf, MissingModel> {
        let missing = || MissingModel {
            folder: folder.to_string(),
            name: name.to_string(),
            searched: self.search_paths(folder),
            found: self.list(folder),
            known_kind: self.is_known(folder),
        };
        let Some(kind) = self.kind(folder) else { return Err(missing()) };
        let Some(relative) = contained_relative_path(name) else { return Err(missing()) };
        for path in &kind.paths {
            let candidate = path.join(&relative);
            let found = match kind.filter {
                FileFilter::DiffusersFolders => candidate.join(listing::DIFFUSERS_INDEX).is_file(),
                _ => candidate.is_file(),
            };
            if found {
                return Ok(candidate);
            }
        }
        Err(missing())
    }

    fn kind(&self, folder: &str) -> Option<std::borrow::Cow<'_, Kind>> {
        if let Some((_, base, extensions)) = VIEWS.iter().find(|(view, _, _)| *view == folder) {
            let base = self.kinds.iter().find(|kind| kind.name == *base)?;
            let filter = FileFilter::Extensions(extensions);
            return Some(std::borrow::Cow::Owned(Kind { name: folder.to_string(), filter, ..base.clone() }));
        }
        let name = canonical_kind(folder);
        self.kinds.iter().find(|kind| kind.name == name).map(std::borrow::Cow::Borrowed)
    }

    fn kind_mut(&mut self, folder: &str) -> &mut Kind {
        let name = canonical_kind(folder);
        let position = if let Some(position) = self.kinds.iter().position(|kind| kind.name == name) {
            position
        } else {
            self.kinds.push(Kind {
                name: name.to_string(),
                paths: Vec::new(),
                filter: FileFilter::Any,
                home: None,
                has_default: false,
            });
            self.kinds.len() - 1
        };
        &mut self.kinds[position]
    }
}

/// Two search paths are the same when they are equal after removing `.` and resolving `..` lexically.
fn same_path(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}

/// Removes `.` components and resolves `..` against the component before it, without touching the
/// disk (Python's `os.path.normpath`).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = normal.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        normal.pop();
                    }
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    _ => normal.push(".."),
                }
            }
            other => normal.push(other.as_os_str()),
        }
    }
    if normal.as_os_str().is_empty() { PathBuf::from(".") } else { normal }
}

/// `name` as a relative path that stays inside the folder it is joined to: `\` and `/` both separate,
/// and `..` cannot climb above the start (as ComfyUI reads names). `None` when nothing is left.
fn contained_relative_path(name: &str) -> Option<PathBuf> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() { None } else { Some(parts.iter().collect()) }
}

/// The most file names a [`MissingModel`] message lists before it says how many more there are.
const MAX_LISTED_FILES: usize = 20;

/// A model file that is in none of its kind's folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingModel {
    /// The folder kind asked for, as the caller spelled it.
    pub folder: String,
    /// The file name asked for.
    pub name: String,
    /// The folders searched, in order.
    pub searched: Vec<PathBuf>,
    /// The files of that kind that are there.
    pub found: Vec<String>,
    /// False when `folder` is not a folder kind at all.
    pub known_kind: bool,
}

impl fmt::Display for MissingModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model file '{}' not found in folder kind '{}'; searched: ", self.name, self.folder)?;
        if !self.known_kind {
            write!(f, "nothing ('{}' is not a known folder kind)", self.folder)?;
        } else if self.searched.is_empty() {
            f.write_str("no folders")?;
        } else {
            let searched: Vec<String> = self.searched.iter().map(|path| path.display().to_string()).collect();
            f.write_str(&searched.join(", "))?;
        }
        f.write_str("; found: ")?;
        if self.found.is_empty() {
            return f.write_str("no files");
        }
        let shown: Vec<&str> = self.found.iter().take(MAX_LISTED_FILES).map(String::as_str).collect();
        f.write_str(&shown.join(", "))?;
        if self.found.len() > MAX_LISTED_FILES {
            write!(f, " and {} more", self.found.len() - MAX_LISTED_FILES)?;
        }
        Ok(())
    }
}

impl std::error::Error for MissingModel {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_their_kind() {
        assert_eq!(canonical_kind("clip"), "text_encoders");
        assert_eq!(canonical_kind("unet"), "diffusion_models");
        assert_eq!(canonical_kind("vae"), "vae");
    }

    /// `unet_gguf` lists the `.gguf` files of both diffusion-model folders and of extra paths added to
    /// `diffusion_models` later, and nothing else; the weights kinds do not list `.gguf` files.
    #[test]
    fn unet_gguf_lists_the_gguf_files_of_the_diffusion_model_folders() {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("models");
        for (folder, file) in [
            ("unet", "old.gguf"),
            ("diffusion_models", "ltxv-Q8_0.GGUF"),
            ("diffusion_models", "ltxv.safetensors"),
            ("extra", "more.gguf"),
        ] {
            std::fs::create_dir_all(models.join(folder)).unwrap();
            std::fs::write(models.join(folder).join(file), b"GGUF").unwrap();
        }
        let mut folders = ModelFolders::new(&models);
        folders.add_path("unet", models.join("extra"));
        assert_eq!(folders.list("unet_gguf"), ["ltxv-Q8_0.GGUF", "more.gguf", "old.gguf"]);
        assert_eq!(folders.list("diffusion_models"), ["ltxv.safetensors"]);
        assert!(folders.is_known("unet_gguf"));
        assert_eq!(folders.search_paths("unet_gguf"), folders.search_paths("diffusion_models"));
        assert_eq!(folders.resolve("unet_gguf", "more.gguf").unwrap(), models.join("extra").join("more.gguf"));
        assert!(folders.resolve("unet_gguf", "missing.gguf").is_err());
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
        assert_eq!(normalize(Path::new("./")), PathBuf::from("."));
    }

    #[test]
    fn names_cannot_leave_their_folder() {
        assert_eq!(contained_relative_path("../../etc/passwd"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(contained_relative_path("sub\\model.safetensors"), Some(PathBuf::from("sub/model.safetensors")));
        assert_eq!(contained_relative_path("/abs/x.pt"), Some(PathBuf::from("abs/x.pt")));
        assert_eq!(contained_relative_path(".."), None);
    }
}
