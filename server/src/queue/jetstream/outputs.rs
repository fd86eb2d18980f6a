//! Output files between machines: a worker puts the files a prompt saved into the JetStream object store
//! [`OUTPUTS_BUCKET`] before it stores the prompt's history entry; the front end copies them into its own
//! folders before it records the entry, so `/view` serves them from there like any local output, and
//! removes them from the bucket once copied.
//!
//! Every worker's counters (`ComfyUI_00001_.png`) start from its own folder, so two workers would name
//! different files alike. Their files therefore go under a subfolder named after the worker
//! (`gpu-box-1/ComfyUI_00001_.png`), which the worker writes into the `executed` messages and the entry it
//! sends, so that clients ask `/view` for the name the front end holds.
//!
//! With a shared output folder (`kinograph worker --shared-outputs`) none of this happens: the worker
//! writes where the front end reads.

use super::{JetStreamConfig, JetStreamError, failed};
use crate::files::{self, FileKind, Folders};
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::{self, stream};
use serde_json::{Map, Value as Json};
use std::path::Path;

/// The object store bucket outputs travel through.
pub const OUTPUTS_BUCKET: &str = "kinograph-outputs";

/// Where a worker's outputs go for the front end to serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputPlace {
    /// The worker's output folder is the front end's (the same machine or a shared mount).
    SharedFolder,
    /// Through the object store, from the worker's own folders (`output`, and `temp` for previews).
    ObjectStore(Folders),
}

/// One file named in a prompt's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub kind: FileKind,
    pub subfolder: String,
    pub filename: String,
}

impl OutputFile {
    /// The object's name in the bucket: the folder kind, the subfolder and the file name, `/`-joined.
    pub fn object_name(&self) -> String {
        let mut name = self.kind.as_str().to_string();
        for part in [self.subfolder.as_str(), self.filename.as_str()] {
            if !part.is_empty() {
                name.push('/');
                name.push_str(part);
            }
        }
        name
    }
}

/// The files a node's UI result names (`{"images": [{"filename", "subfolder", "type"}], ...}`): every object
/// in a list with a string `filename` and a `type` of `output` or `temp`.
fn files_of_node(result: &Json) -> impl Iterator<Item = OutputFile> + '_ {
    let lists = result.as_object().into_iter().flat_map(|map| map.values()).filter_map(Json::as_array);
    lists.flatten().filter_map(|item| {
        let kind = match item.get("type")?.as_str()? {
            "output" => FileKind::Output,
            "temp" => FileKind::Temp,
            _ => return None,
        };
        let filename = item.get("filename")?.as_str()?.to_string();
        let subfolder = item.get("subfolder").and_then(Json::as_str).unwrap_or_default().to_string();
        Some(OutputFile { kind, subfolder, filename })
    })
}

/// Every file a history entry's outputs name, once each.
pub fn files_of(outputs: &Map<String, Json>) -> Vec<OutputFile> {
    let mut files: Vec<OutputFile> = Vec::new();
    for file in outputs.values().flat_map(files_of_node) {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    files
}

/// Puts the files of a node's UI result under the subfolder `worker`, in place.
pub fn move_under(result: &mut Json, worker: &str) {
    let Some(map) = result.as_object_mut() else { return };
    for item in map.values_mut().filter_map(Json::as_array_mut).flatten() {
        let is_file = item.get("filename").is_some_and(Json::is_string)
            && matches!(item.get("type").and_then(Json::as_str), Some("output" | "temp"));
        if !is_file {
            continue;
        }
        let subfolder = item.get("subfolder").and_then(Json::as_str).unwrap_or_default();
        let moved = if subfolder.is_empty() { worker.to_string() } else { format!("{worker}/{subfolder}") };
        item["subfolder"] = Json::String(moved);
    }
}

/// The bucket, created with the history's lifetime where it does not exist yet.
pub(crate) async fn bucket(
    context: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<ObjectStore, JetStreamError> {
    if let Ok(store) = context.get_object_store(OUTPUTS_BUCKET).await {
        return Ok(store);
    }
    context
        .create_object_store(object_store::Config {
            bucket: OUTPUTS_BUCKET.to_string(),
            description: Some("kinograph: output files on their way from a worker to the front end".to_string()),
            max_age: config.history_max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(failed("creating the outputs' object store"))
}

/// The worker's side: puts each file `files` names (as the worker's nodes wrote them, before they were
/// moved under the worker's subfolder) into the bucket under the name the front end will look for.
pub(crate) async fn upload(
    bucket: &ObjectStore,
    folders: &Folders,
    files: &[OutputFile],
    worker: &str,
) -> Result<(), String> {
    for file in files {
        let path = files::resolve_existing(folders, file.kind, &file.subfolder, &file.filename)
            .map_err(|error| format!("output {} cannot be sent: {error}", file.object_name()))?;
        let mut reader = tokio::fs::File::open(&path)
            .await
            .map_err(|error| format!("output {} cannot be opened: {error}", path.display()))?;
        let moved = OutputFile { subfolder: under(worker, &file.subfolder), ..file.clone() };
        bucket
            .put(moved.object_name().as_str(), &mut reader)
            .await
            .map_err(|error| format!("output {} was not stored in the object store: {error}", path.display()))?;
    }
    Ok(())
}

fn under(worker: &str, subfolder: &str) -> String {
    if subfolder.is_empty() { worker.to_string() } else { format!("{worker}/{subfolder}") }
}

/// The front end's side: copies each file `files` names from the bucket into `folders`, then removes it
/// from the bucket. A file the bucket does not hold is left alone (a worker with a shared folder wrote it
/// in place, or it was copied before a restart). Where the name already holds the same bytes (a copy made
/// before a restart) nothing is written; where it holds a different file (a worker whose folder was wiped
/// numbering from one again), that file is kept and this one stored as `name (1).ext`, the first free
/// such name. Returns the files stored under another name, with that name.
pub(crate) async fn download(
    bucket: &ObjectStore,
    folders: &Folders,
    files: &[OutputFile],
) -> Result<Vec<(OutputFile, String)>, String> {
    let mut renamed = Vec::new();
    for file in files {
        let name = file.object_name();
        let unreadable =
            |error: &dyn std::fmt::Display| format!("output {name} could not be read from the object store: {error}");
        let object = match bucket.get(&name).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => continue,
            Err(error) => return Err(unreadable(&error)),
        };
        let target = files::output_target(folders, file.kind, &file.subfolder, &file.filename)
            .map_err(|error| format!("output {name} cannot be stored here: {error}"))?;
        if std::fs::symlink_metadata(&target).is_err() {
            write_atomically(object, &target).await?;
        } else if !same_contents(object, &target).await {
            let (path, new_name) = free_name(&target)?;
            let object = bucket.get(&name).await.map_err(|error| unreadable(&error))?;
            write_atomically(object, &path).await?;
            tracing::warn!(
                "output {name} was stored as {new_name}: the front end holds a different file under its name \
                 (keep a worker's --output-dir from one run to the next, or give it a new --name)"
            );
            renamed.push((file.clone(), new_name));
        }
        if let Err(error) = bucket.delete(&name).await {
            tracing::warn!("output {name} was copied but stays in the object store: {error}");
        }
    }
    Ok(renamed)
}

/// Gives the file `file` names in `outputs` its new name.
pub fn rename_in(outputs: &mut Map<String, Json>, file: &OutputFile, new_name: &str) {
    for result in outputs.values_mut().filter_map(Json::as_object_mut) {
        for item in result.values_mut().filter_map(Json::as_array_mut).flatten() {
            let named = item.get("filename").and_then(Json::as_str) == Some(&file.filename)
                && item.get("type").and_then(Json::as_str) == Some(file.kind.as_str())
                && item.get("subfolder").and_then(Json::as_str).unwrap_or_default() == file.subfolder;
            if named {
                item["filename"] = Json::String(new_name.to_string());
            }
        }
    }
}

/// `stem (n).ext` beside `target`, for the first `n` whose name is free.
fn free_name(target: &Path) -> Result<(std::path::PathBuf, String), String> {
    let name = target.file_name().and_then(|name| name.to_str()).unwrap_or("output");
    let path = Path::new(name);
    let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or(name);
    let extension = path.extension().and_then(|extension| extension.to_str()).map(|e| format!(".{e}"));
    for attempt in 1..=files::MAX_DUPLICATES {
        let candidate = format!("{stem} ({attempt}){}", extension.as_deref().unwrap_or(""));
        let candidate_path = target.with_file_name(&candidate);
        if std::fs::symlink_metadata(&candidate_path).is_err() {
            return Ok((candidate_path, candidate));
        }
    }
    Err(format!("no free name for {} after {} tries", target.display(), files::MAX_DUPLICATES))
}

/// Whether the regular file at `path` holds exactly what `object` streams.
async fn same_contents(mut object: object_store::Object, path: &Path) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return false };
    if !metadata.is_file() {
        return false;
    }
    let Ok(mut file) = tokio::fs::File::open(path).await else { return false };
    let (mut theirs, mut ours) = (vec![0_u8; 64 * 1024], vec![0_u8; 64 * 1024]);
    loop {
        let Ok(read) = object.read(&mut theirs).await else { return false };
        if read == 0 {
            return matches!(file.read(&mut ours[..1]).await, Ok(0));
        }
        if file.read_exact(&mut ours[..read]).await.is_err() || ours[..read] != theirs[..read] {
            return false;
        }
    }
}

/// Streams `object` into a new file beside `target`, flushed, then links it under `target`, which must
/// not exist: a reader never sees half a file, a failure leaves nothing behind, and a file that appeared
/// under `target` meanwhile is never replaced.
async fn write_atomically(mut object: object_store::Object, target: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let partial = target.with_file_name(format!(
        ".{}.{}.partial",
        target.file_name().and_then(|name| name.to_str()).unwrap_or("output"),
        std::process::id()
    ));
    let result = async {
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&partial).await?;
        tokio::io::copy(&mut object, &mut file).await?;
        file.flush().await?;
        file.sync_all().await?;
        tokio::fs::hard_link(&partial, target).await
    }
    .await;
    let _ = tokio::fs::remove_file(&partial).await;
    result.map_err(|error| format!("output {} could not be written: {error}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_are_found_in_any_list_and_moved_under_the_worker() {
        let outputs: Map<String, Json> = [
            (
                "9".to_string(),
                json!({"images": [{"filename": "a.png", "subfolder": "", "type": "output"}],
                "animated": [true]}),
            ),
            (
                "4".to_string(),
                json!({"audio": [{"filename": "b.flac", "subfolder": "s/t", "type": "temp"}],
                "text": ["hello"]}),
            ),
            ("5".to_string(), json!({"images": [{"filename": "in.png", "subfolder": "", "type": "input"}]})),
        ]
        .into_iter()
        .collect();
        let files = files_of(&outputs);
        let mut names: Vec<String> = files.iter().map(OutputFile::object_name).collect();
        names.sort();
        assert_eq!(names, ["output/a.png", "temp/s/t/b.flac"]);

        let mut result = outputs["4"].clone();
        move_under(&mut result, "gpu-1");
        assert_eq!(result["audio"][0]["subfolder"], "gpu-1/s/t");
        assert_eq!(result["text"], json!(["hello"]));
        let mut input = outputs["5"].clone();
        move_under(&mut input, "gpu-1");
        assert_eq!(input, outputs["5"], "inputs are where the front end has them");
    }
}
