//! `kinograph models pull REPO FILE`: one file of a Hugging Face repository into the model folder of
//! its kind.
//!
//! hf-hub downloads into a staging folder beside the destination (so the final step is a rename on
//! the same file system, not a copy of many gigabytes), and the file is then linked to its final name
//! only if nothing has that name: a file appears complete or not at all, and is never overwritten.

use super::guess;
use crate::commands::ModelFolderArgs;
use crate::{EXIT_INTERRUPTED, EXIT_INVALID};
use clap::Args;
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use kinograph_engine::folders::{DOWNLOAD_STAGING_PREFIX, canonical_kind};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The server used when `HF_ENDPOINT` is not set.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The model repository, `owner/name` (for example `Lightricks/LTX-Video`).
    pub repo: String,
    /// The file's path in the repository (for example `ltxv-2b-0.9.8-distilled.safetensors`).
    pub file: String,
    /// The folder kind to put it in (`checkpoints`, `text_encoders`, `vae`, ...). Without it the kind
    /// is guessed from the file's path: a folder named after a kind, else words such as `t5`,
    /// `text_encoder`, `vae`, `lora` or `upscaler` in the name, else `checkpoints`.
    #[arg(long, value_name = "KIND")]
    pub folder: Option<String>,
    /// Branch, tag or commit to download from.
    #[arg(long, value_name = "R", default_value = "main")]
    pub revision: String,
    #[command(flatten)]
    pub models: ModelFolderArgs,
}

/// What to download, and how to reach it.
#[derive(Debug, Clone)]
struct Source {
    endpoint: String,
    token: Option<String>,
    repo: String,
    revision: String,
    file: String,
}

pub fn run(args: &PullArgs) -> u8 {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let Plan { source, kind, destination } = plan;
    let folder = destination.parent().map(Path::to_path_buf).unwrap_or_default();
    eprintln!(
        "downloading {} from {} (revision {}) into {} ({kind})",
        source.file,
        source.repo,
        source.revision,
        folder.display()
    );
    let created = match create_folders(&folder) {
        Ok(created) => created,
        Err(error) => {
            eprintln!("error: cannot create the model folder {}: {error}", folder.display());
            return EXIT_INVALID;
        }
    };
    let staging = folder.join(format!("{DOWNLOAD_STAGING_PREFIX}-{}", unique_suffix()));
    let outcome = match std::fs::create_dir(&staging) {
        Ok(()) => download_interruptibly(&source, &staging),
        Err(error) => Outcome::Failed(format!("cannot create {}: {error}", staging.display())),
    };
    let result = match outcome {
        Outcome::Downloaded(blob) => place(&blob, &destination),
        Outcome::Failed(message) => Err(message),
        Outcome::Interrupted => {
            clean_up(&staging, &created);
            eprintln!("interrupted: nothing was kept");
            return EXIT_INTERRUPTED;
        }
    };
    let _ = std::fs::remove_dir_all(&staging);
    match result {
        Ok(()) => {
            println!("{}", destination.display());
            0
        }
        Err(message) => {
            clean_up(&staging, &created);
            eprintln!("error: {message}");
            EXIT_INVALID
        }
    }
}

/// Where the file goes, checked before anything is downloaded.
struct Plan {
    source: Source,
    kind: String,
    destination: PathBuf,
}

fn plan(args: &PullArgs) -> Result<Plan, String> {
    let folders = args.models.model_folders()?;
    let kind = match &args.folder {
        Some(folder) if !folders.is_known(folder) => {
            let kinds: Vec<&str> = folders.kinds().collect();
            return Err(format!("unknown folder kind '{folder}'; the folder kinds are: {}", kinds.join(", ")));
        }
        Some(folder) => canonical_kind(folder).to_string(),
        None => guess::folder_for(&args.file).to_string(),
    };
    let repo = args.repo.trim();
    if repo.is_empty() || repo.starts_with('/') || repo.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(format!("'{}' is not a repository name: expected `owner/name`", args.repo));
    }
    let file_name = file_name_in_repo(&args.file)?;
    let folder =
        folders.download_path(&kind).ok_or_else(|| format!("folder kind '{kind}' has no folder to download into"))?;
    if let Ok(present) = folders.resolve(&kind, file_name) {
        return Err(format!(
            "{file_name} is already in folder kind '{kind}' as {}; kinograph never overwrites or duplicates a \
             model file: remove it first, or pass --folder",
            present.display()
        ));
    }
    let destination = folder.join(file_name);
    if destination.symlink_metadata().is_ok() {
        return Err(format!(
            "{} already exists; kinograph never overwrites a model file: remove it first, or pass --folder",
            destination.display()
        ));
    }
    let source = Source {
        endpoint: std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|endpoint| !endpoint.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string(),
        token: token(),
        repo: repo.to_string(),
        revision: args.revision.clone(),
        file: args.file.trim_start_matches('/').to_string(),
    };
    Ok(Plan { source, kind, destination })
}

/// The last part of a path inside a repository, which names the downloaded file.
fn file_name_in_repo(file: &str) -> Result<&str, String> {
    let parts: Vec<&str> = file.split('/').filter(|part| !part.is_empty()).collect();
    if parts.iter().any(|part| *part == "." || *part == "..") {
        return Err(format!("'{file}' is not a file path in a repository: `.` and `..` are not allowed"));
    }
    parts.last().copied().ok_or_else(|| format!("'{file}' is not a file path in a repository"))
}

/// The access token, as the Python `huggingface_hub` finds it: `HF_TOKEN`, else the file `token` in `HF_HOME`
/// (by default `~/.cache/huggingface`).
fn token() -> Option<String> {
    if let Ok(token) = std::env::var("HF_TOKEN")
        && !token.trim().is_empty()
    {
        return Some(token.trim().to_string());
    }
    let home = match std::env::var_os("HF_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface"),
    };
    let token = std::fs::read_to_string(home.join("token")).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

enum Outcome {
    /// The complete file, inside the staging folder.
    Downloaded(PathBuf),
    Failed(String),
    Interrupted,
}

/// Downloads on a blocking thread while waiting for Ctrl-C, which abandons the download.
fn download_interruptibly(source: &Source, staging: &Path) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return Outcome::Failed(format!("cannot start the runtime: {error}")),
    };
    let (source, staging) = (source.clone(), staging.to_path_buf());
    let outcome = runtime.block_on(async move {
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        // Polling once installs the handler, so that Ctrl-C is caught from the first byte written.
        tokio::select! {
            biased;
            _ = &mut ctrl_c => return Outcome::Interrupted,
            () = std::future::ready(()) => {}
        }
        let download = tokio::task::spawn_blocking(move || download(&source, &staging));
        tokio::select! {
            joined = download => match joined {
                Ok(Ok(blob)) => Outcome::Downloaded(blob),
                Ok(Err(message)) => Outcome::Failed(message),
                Err(error) => Outcome::Failed(format!("the download stopped: {error}")),
            },
            _ = ctrl_c => Outcome::Interrupted,
        }
    });
    // An abandoned download thread must not keep the process alive.
    runtime.shutdown_background();
    outcome
}

/// Downloads `source.file` into `staging` with hf-hub, returning the complete file.
fn download(source: &Source, staging: &Path) -> Result<PathBuf, String> {
    let api = ApiBuilder::from_cache(Cache::new(staging.to_path_buf()))
        .with_endpoint(source.endpoint.clone())
        .with_token(source.token.clone())
        .with_progress(std::io::stderr().is_terminal())
        .with_user_agent("kinograph", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|error| describe(&error, source))?;
    let repo = api.repo(Repo::with_revision(source.repo.clone(), RepoType::Model, source.revision.clone()));
    let expected = api.metadata(&repo.url(&source.file)).map_err(|error| describe(&error, source))?.size();
    let pointer = repo.download(&source.file).map_err(|error| describe(&error, source))?;
    // hf-hub leaves a link in `snapshots/` to the data in `blobs/`: the data is what we keep.
    let blob = std::fs::canonicalize(&pointer)
        .map_err(|error| format!("cannot find the downloaded file {}: {error}", pointer.display()))?;
    let size = std::fs::metadata(&blob).map_err(|error| format!("cannot read {}: {error}", blob.display()))?.len();
    if size != expected as u64 {
        return Err(format!(
            "cannot download {} from {}: the connection ended after {size} of {expected} bytes; try again",
            source.file, source.repo
        ));
    }
    Ok(blob)
}

/// A download error in words a user can act on.
fn describe(error: &ApiError, source: &Source) -> String {
    let what = format!("cannot download {} from {} (revision {})", source.file, source.repo, source.revision);
    match error {
        ApiError::RequestError(request) => match request.as_ref() {
            ureq::Error::StatusCode(404) => format!(
                "{what}: {} answered 404 (not found): check the repository name, the file's path in it and \
                 --revision; a private repository also answers 404 without a token (set HF_TOKEN)",
                source.endpoint
            ),
            ureq::Error::StatusCode(code @ (401 | 403)) => format!(
                "{what}: {} answered {code} (access denied): the repository is gated or private; accept its \
                 terms on its page and set HF_TOKEN to a token that has access",
                source.endpoint
            ),
            ureq::Error::StatusCode(code) => format!("{what}: {} answered HTTP {code}", source.endpoint),
            other => {
                format!("{what}: cannot reach {}: {other} (offline? HF_ENDPOINT sets another server)", source.endpoint)
            }
        },
        other => format!("{what}: {other}"),
    }
}

/// Gives `blob` the name `destination` unless something already has that name.
fn place(blob: &Path, destination: &Path) -> Result<(), String> {
    let taken = || {
        format!("{} appeared while downloading; it was left as it is and the download discarded", destination.display())
    };
    // A hard link fails when the name is taken, so nothing can be overwritten, even by a race.
    match std::fs::hard_link(blob, destination) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(taken()),
        // File systems without hard links: check, then rename.
        Err(_) if destination.symlink_metadata().is_ok() => Err(taken()),
        Err(_) => std::fs::rename(blob, destination)
            .map_err(|error| format!("cannot move the download to {}: {error}", destination.display())),
    }
}

/// Creates `folder` and its missing parents; returns those it created, innermost first.
fn create_folders(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let created: Vec<PathBuf> = folder
        .ancestors()
        .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(folder)?;
    Ok(created)
}

/// Removes the staging folder and the folders this command created, if they are empty.
fn clean_up(staging: &Path, created: &[PathBuf]) {
    let _ = std::fs::remove_dir_all(staging);
    for folder in created {
        let _ = std::fs::remove_dir(folder);
    }
}

/// Tells concurrent pulls into the same folder apart.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_file_paths_name_the_downloaded_file() {
        assert_eq!(file_name_in_repo("split_files/vae/ltxv_vae.safetensors"), Ok("ltxv_vae.safetensors"));
        assert_eq!(file_name_in_repo("model.safetensors"), Ok("model.safetensors"));
        assert!(file_name_in_repo("../model.safetensors").is_err());
        assert!(file_name_in_repo("/").is_err());
    }

    #[test]
    fn created_folders_are_removed_when_empty() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("models/checkpoints");
        let created = create_folders(&folder).unwrap();
        assert_eq!(created, vec![folder.clone(), root.path().join("models")]);
        let staging = folder.join(".kinograph-download-test");
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("blob.part"), b"partial").unwrap();
        clean_up(&staging, &created);
        assert!(!root.path().join("models").exists());
    }

    #[test]
    fn placing_never_overwrites() {
        let root = tempfile::tempdir().unwrap();
        let blob = root.path().join("blob");
        let destination = root.path().join("model.safetensors");
        std::fs::write(&blob, b"new").unwrap();
        std::fs::write(&destination, b"old").unwrap();
        assert!(place(&blob, &destination).unwrap_err().contains("appeared while downloading"));
        assert_eq!(std::fs::read(&destination).unwrap(), b"old");
        std::fs::remove_file(&destination).unwrap();
        place(&blob, &destination).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"new");
    }
}
