//! What a running node can reach: progress reporting, cancellation, folders, and output files that
//! appear only once complete.

use crate::events::{Event, EventKind, EventSink, Preview};
use crate::node::{Environment, NodeError};
use serde_json::Value as Json;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// Cooperative cancellation, shared between whoever may cancel (Ctrl-C, `/interrupt`, the editor's
/// button) and the run. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation; running nodes stop at their next check.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Handed to [`crate::Node::execute`].
pub struct ExecutionContext {
    pub(crate) node_id: String,
    pub(crate) class_type: String,
    pub(crate) prompt_id: Arc<str>,
    pub(crate) env: Arc<Environment>,
    pub(crate) events: EventSink,
    pub(crate) cancel: CancelToken,
    pub(crate) abort: Arc<AtomicBool>,
    pub(crate) prompt: Arc<Json>,
    pub(crate) extra_pnginfo: Arc<Json>,
}

impl ExecutionContext {
    /// A context for calling a node outside a run (tests, tools): events are dropped.
    pub fn detached(node_id: &str, class_type: &str, env: Environment) -> Self {
        ExecutionContext {
            node_id: node_id.to_string(),
            class_type: class_type.to_string(),
            prompt_id: Arc::from("detached"),
            env: Arc::new(env),
            events: crate::events::ignore_events(),
            cancel: CancelToken::new(),
            abort: Arc::new(AtomicBool::new(false)),
            prompt: Arc::new(Json::Null),
            extra_pnginfo: Arc::new(Json::Null),
        }
    }

    /// The id of the node being run.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Its class.
    pub fn class_type(&self) -> &str {
        &self.class_type
    }

    /// The folders of this run.
    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// The API prompt being run (ComfyUI's hidden `PROMPT`), for output metadata.
    pub fn prompt(&self) -> &Json {
        &self.prompt
    }

    /// Extra PNG info from the client, usually `{"workflow": <UI workflow>}` (ComfyUI's `EXTRA_PNGINFO`).
    pub fn extra_pnginfo(&self) -> &Json {
        &self.extra_pnginfo
    }

    /// Whether the run was cancelled or stopped by another node's failure.
    pub fn is_interrupted(&self) -> bool {
        self.cancel.is_cancelled() || self.abort.load(Ordering::SeqCst)
    }

    /// Returns `Err(Interrupted)` once the run is cancelled; call it between units of work.
    pub fn check_interrupted(&self) -> Result<(), NodeError> {
        if self.is_interrupted() { Err(NodeError::Interrupted) } else { Ok(()) }
    }

    /// Logs a warning about this node's work that does not stop it (as ComfyUI logs "lora key not
    /// loaded"): shown on the command line's stderr, with the node's id and class.
    pub fn warn(&self, message: &str) {
        tracing::warn!("node {} ({}): {message}", self.node_id, self.class_type);
    }

    /// Reports `value` of `max` done (a sampler step), then checks for cancellation.
    pub fn progress(&self, value: u64, max: u64) -> Result<(), NodeError> {
        self.emit_progress(value, max, None);
        self.check_interrupted()
    }

    /// Like [`Self::progress`], with a preview image.
    pub fn progress_with_preview(&self, value: u64, max: u64, preview: Preview) -> Result<(), NodeError> {
        self.emit_progress(value, max, Some(Arc::new(preview)));
        self.check_interrupted()
    }

    fn emit_progress(&self, value: u64, max: u64, preview: Option<Arc<Preview>>) {
        let kind = EventKind::Progress { node: self.node_id.clone(), value, max, preview };
        (self.events)(&Event::now(&self.prompt_id, kind));
    }

    /// Creates `path` (relative to the output folder) for writing. The data goes to a hidden temporary
    /// file beside it and appears under its name only on [`OutputFile::commit`]; dropped or cancelled,
    /// the temporary file is removed, so an interrupted run never leaves a half-written output.
    pub fn create_output_file(&self, relative: &Path) -> Result<OutputFile, NodeError> {
        OutputFile::create(&self.env.output_dir.join(relative))
    }

    /// How UI results name a written file, as ComfyUI's savers do:
    /// `{"filename": ..., "subfolder": <relative to the output folder>, "type": "output"}`.
    pub fn output_file_entry(&self, written: &Path) -> Json {
        let relative = written.strip_prefix(&self.env.output_dir).unwrap_or(written);
        let filename = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let subfolder = relative.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        serde_json::json!({"filename": filename, "subfolder": subfolder, "type": "output"})
    }

    /// Like [`Self::create_output_file`], named `<prefix>_00001_.<extension>` with the next free number
    /// (ComfyUI's numbering). The number is taken when the file is committed, so two nodes saving
    /// under one prefix at the same time get different numbers and neither file is overwritten.
    /// `prefix` may contain `/` to write into a subfolder of the output folder.
    pub fn create_numbered_output(&self, prefix: &str, extension: &str) -> Result<OutputFile, NodeError> {
        OutputFile::numbered(&self.env.output_dir, prefix, extension)
    }
}

/// Where a committed [`OutputFile`] goes.
enum Target {
    Fixed(PathBuf),
    Numbered { folder: PathBuf, prefix: String, extension: String },
}

/// Makes temporary names unique within the process, even for files with the same final name.
static TEMPORARY_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A file being written that appears only when complete. See [`ExecutionContext::create_output_file`].
pub struct OutputFile {
    target: Target,
    temporary: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl OutputFile {
    /// Starts writing `path` through a temporary file in the same folder (creating the folder).
    pub fn create(path: &Path) -> Result<Self, NodeError> {
        let folder = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::start(folder, &name, Target::Fixed(path.to_path_buf()))
    }

    /// Starts writing a file named `<prefix>_NNNNN_.<extension>` in `folder`, numbered on commit.
    pub fn numbered(folder: &Path, prefix: &str, extension: &str) -> Result<Self, NodeError> {
        let full = folder.join(prefix);
        let directory = full.parent().map_or_else(|| folder.to_path_buf(), Path::to_path_buf);
        let stem = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = Target::Numbered {
            folder: folder.to_path_buf(),
            prefix: prefix.to_string(),
            extension: extension.to_string(),
        };
        Self::start(&directory, &stem, target)
    }

    fn start(folder: &Path, name: &str, target: Target) -> Result<Self, NodeError> {
        std::fs::create_dir_all(folder)
            .map_err(|error| NodeError::msg(format!("cannot create output folder {}: {error}", folder.display())))?;
        let sequence = TEMPORARY_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let temporary = folder.join(format!(".{name}.{}-{sequence}.partial", std::process::id()));
        let file = File::create(&temporary)
            .map_err(|error| NodeError::msg(format!("cannot create {}: {error}", temporary.display())))?;
        Ok(OutputFile { target, temporary, writer: Some(BufWriter::new(file)) })
    }

    /// Flushes, syncs and moves the file into place, never replacing an existing file: a fixed name
    /// that exists is an error; a numbered file takes the next free number. Returns the final path.
    pub fn commit(mut self) -> Result<PathBuf, NodeError> {
        let writer = self.writer.take().expect("writer present until commit");
        let result = Self::finish(writer).and_then(|()| self.place());
        let _ = std::fs::remove_file(&self.temporary);
        result
    }

    fn finish(writer: BufWriter<File>) -> Result<(), NodeError> {
        let file = writer.into_inner().map_err(|error| NodeError::other(error.into_error()))?;
        file.sync_all()?;
        Ok(())
    }

    fn place(&self) -> Result<PathBuf, NodeError> {
        match &self.target {
            Target::Fixed(path) => match link_without_replacing(&self.temporary, path) {
                Ok(()) => Ok(path.clone()),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(NodeError::msg(format!("{} already exists; it was not overwritten", path.display())))
                }
                Err(error) => Err(error.into()),
            },
            Target::Numbered { folder, prefix, extension } => {
                // Another writer may take a number between the scan and the link: then try the next.
                for _ in 0..10_000 {
                    let path = next_numbered_path(folder, prefix, extension);
                    match link_without_replacing(&self.temporary, &path) {
                        Ok(()) => return Ok(path),
                        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                Err(NodeError::msg(format!("no free file name for {prefix} in {}", folder.display())))
            }
        }
    }
}

/// Gives `from` the name `to` unless `to` exists, atomically where the file system has hard links.
fn link_without_replacing(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(error),
        Err(_) if to.exists() => Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
        // No hard links here (some network and FAT file systems): fall back to a plain rename.
        Err(_) => std::fs::rename(from, to),
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.as_mut().expect("writer present until commit").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().expect("writer present until commit").flush()
    }
}

/// Seeking lets container writers patch sizes they learn at the end (an MP4's `mdat`).
impl Seek for OutputFile {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.writer.as_mut().expect("writer present until commit").seek(position)
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// The next free `prefix_00001_.ext` style name in `folder` (ComfyUI's numbering; never overwrites).
/// `prefix` may contain `/` to write into a subfolder.
pub fn next_numbered_path(folder: &Path, prefix: &str, extension: &str) -> PathBuf {
    let full = folder.join(prefix);
    let directory = full.parent().map_or_else(|| folder.to_path_buf(), Path::to_path_buf);
    let stem = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut highest = 0_u64;
    if let Ok(entries) = std::fs::read_dir(&directory) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&format!("{stem}_"))
                && let Some(number) = rest.split('_').next().and_then(|n| n.parse::<u64>().ok())
            {
                highest = highest.max(number);
            }
        }
    }
    directory.join(format!("{stem}_{:05}_.{extension}", highest + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_file_appears_only_when_committed() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("clip.txt");
        let mut file = OutputFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        assert!(!path.exists(), "nothing under the final name while writing");
        drop(file);
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0, "an abandoned file leaves nothing behind");

        let mut file = OutputFile::create(&path).unwrap();
        file.write_all(b"whole").unwrap();
        assert_eq!(file.commit().unwrap(), path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole");

        let mut second = OutputFile::create(&path).unwrap();
        second.write_all(b"other").unwrap();
        assert!(second.commit().is_err(), "an existing file is never replaced");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole");
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_numbered_files_under_one_prefix_get_distinct_numbers() {
        let folder = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (0..8)
            .map(|index| {
                let folder = folder.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut file = OutputFile::numbered(&folder, "clips/take", "txt").unwrap();
                    let text = format!("{index}").repeat(100_000);
                    file.write_all(text.as_bytes()).unwrap();
                    (file.commit().unwrap(), text)
                })
            })
            .collect();
        let mut paths = Vec::new();
        for writer in writers {
            let (path, text) = writer.join().unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "each file holds exactly its own text");
            paths.push(path);
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 8);
        assert_eq!(std::fs::read_dir(folder.path().join("clips")).unwrap().count(), 8, "no temporary file is left");
    }

    #[test]
    fn numbered_paths_continue_after_the_highest_existing_number() {
        let folder = tempfile::tempdir().unwrap();
        assert_eq!(next_numbered_path(folder.path(), "video", "mp4"), folder.path().join("video_00001_.mp4"));
        std::fs::write(folder.path().join("video_00007_.mp4"), b"").unwrap();
        std::fs::write(folder.path().join("videos_00009_.mp4"), b"").unwrap();
        assert_eq!(next_numbered_path(folder.path(), "video", "mp4"), folder.path().join("video_00008_.mp4"));
        assert_eq!(next_numbered_path(folder.path(), "sub/clip", "mp4"), folder.path().join("sub/clip_00001_.mp4"));
    }
}
