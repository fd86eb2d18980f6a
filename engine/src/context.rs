//! What a running node can reach: progress reporting, cancellation, folders, and output files that
//! appear only once complete.

use crate::events::{Event, EventKind, EventSink, Preview};
use crate::node::{Environment, NodeError};
use serde_json::Value as Json;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
        let path = self.env.output_dir.join(relative);
        OutputFile::create(&path)
    }
}

/// A file being written that appears only when complete. See [`ExecutionContext::create_output_file`].
pub struct OutputFile {
    path: PathBuf,
    temporary: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl OutputFile {
    /// Starts writing `path` through a temporary file in the same folder (creating the folder).
    pub fn create(path: &Path) -> Result<Self, NodeError> {
        let folder = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder)
            .map_err(|error| NodeError::msg(format!("cannot create output folder {}: {error}", folder.display())))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = folder.join(format!(".{name}.{}.partial", std::process::id()));
        let file = File::create(&temporary)
            .map_err(|error| NodeError::msg(format!("cannot create {}: {error}", temporary.display())))?;
        Ok(OutputFile { path: path.to_path_buf(), temporary, writer: Some(BufWriter::new(file)) })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and moves the file into place. Refuses to replace an existing file.
    pub fn commit(mut self) -> Result<PathBuf, NodeError> {
        let writer = self.writer.take().expect("writer present until commit");
        let result = Self::finish(writer, &self.temporary, &self.path);
        if result.is_err() {
            let _ = std::fs::remove_file(&self.temporary);
        }
        result.map(|()| self.path.clone())
    }

    fn finish(writer: BufWriter<File>, temporary: &Path, path: &Path) -> Result<(), NodeError> {
        let file = writer.into_inner().map_err(|error| NodeError::other(error.into_error()))?;
        file.sync_all()?;
        drop(file);
        if path.exists() {
            return Err(NodeError::msg(format!("{} already exists; it was not overwritten", path.display())));
        }
        std::fs::rename(temporary, path)?;
        Ok(())
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
    fn numbered_paths_continue_after_the_highest_existing_number() {
        let folder = tempfile::tempdir().unwrap();
        assert_eq!(next_numbered_path(folder.path(), "video", "mp4"), folder.path().join("video_00001_.mp4"));
        std::fs::write(folder.path().join("video_00007_.mp4"), b"").unwrap();
        std::fs::write(folder.path().join("videos_00009_.mp4"), b"").unwrap();
        assert_eq!(next_numbered_path(folder.path(), "video", "mp4"), folder.path().join("video_00008_.mp4"));
        assert_eq!(next_numbered_path(folder.path(), "sub/clip", "mp4"), folder.path().join("sub/clip_00001_.mp4"));
    }
}
