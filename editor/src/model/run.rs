//! Running the graph from the editor: the engine runs in-process on a thread of its own, and its events
//! come back through a channel that the window drains each frame, so the window never waits on a run.

use super::document::DocumentError;
use super::editor::Editor;
use kinograph_engine::queue::{QueueItem, run_queued};
use kinograph_engine::{
    CancelToken, Event, EventKind, EventSink, Executor, Graph, Preview, ValidationReport, validate,
};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use thiserror::Error;

/// How far one node has got in the current run.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRunState {
    /// Waiting for its inputs.
    Queued,
    /// Running; `value` of `max` steps when it reports progress.
    Running {
        value: u64,
        max: u64,
    },
    /// Taken from the cache.
    Cached,
    Done,
    /// Failed with this message.
    Failed(String),
}

/// What the window shows of the current or last run, built from the engine's events.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    /// By node id as the prompt names it.
    pub nodes: HashMap<String, NodeRunState>,
    /// The latest preview a node sent, and which node.
    pub preview: Option<(String, Arc<Preview>)>,
    /// Whether a run is in progress.
    pub running: bool,
    /// How the last run ended, for the status line.
    pub outcome: Option<String>,
    /// The image, video and sound files each output node reported, in the order reported.
    pub outputs: HashMap<String, Vec<PathBuf>>,
}

impl RunView {
    /// Folds one event into the view.
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ExecutionStart => {
                self.running = true;
                self.outcome = None;
            }
            EventKind::ExecutionCached { nodes } => {
                for node in nodes {
                    self.nodes.insert(node.clone(), NodeRunState::Cached);
                }
            }
            EventKind::Executing { node } => {
                self.nodes.insert(node.clone(), NodeRunState::Running { value: 0, max: 0 });
            }
            EventKind::Progress { node, value, max, preview } => {
                self.nodes.insert(node.clone(), NodeRunState::Running { value: *value, max: *max });
                if let Some(preview) = preview {
                    self.preview = Some((node.clone(), Arc::clone(preview)));
                }
            }
            EventKind::Executed { .. } => {}
            EventKind::NodeFinished { node } => {
                self.nodes.insert(node.clone(), NodeRunState::Done);
            }
            EventKind::ExecutionSuccess => self.outcome = Some("The run finished.".into()),
            EventKind::ExecutionError(failure) => {
                let message = format!("{} ({}): {}", failure.node_id, failure.node_type, failure.exception_message);
                self.nodes.insert(failure.node_id.clone(), NodeRunState::Failed(failure.exception_message.clone()));
                self.outcome = Some(format!("The run failed at node {message}"));
            }
            EventKind::ExecutionInterrupted { .. } => self.outcome = Some("The run was stopped.".into()),
            EventKind::Finished => self.running = false,
        }
    }
}

/// Why a run could not be queued.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the graph is not ready to run: {}", summary(.0))]
    Invalid(Box<ValidationReport>),
    #[error("could not start the engine: {0}")]
    Runtime(std::io::Error),
}

fn summary(report: &ValidationReport) -> String {
    let first = report.node_errors.iter().find_map(|(id, errors)| {
        errors
            .errors
            .first()
            .map(|error| format!("node {id} ({}): {}: {}", errors.class_type, error.message, error.details))
    });
    first.unwrap_or_else(|| report.error.message.clone())
}

/// A validated prompt waiting for its turn: the engine's queue item (with the workflow it came from in its
/// `extra_data`, embedded in its outputs) and its graph.
struct QueuedRun {
    graph: Arc<Graph>,
    item: QueueItem,
}

/// Runs graphs from the editor, one at a time in the order queued, keeping the engine's cache between
/// runs.
pub struct Runner {
    executor: Arc<Executor>,
    events: Option<Receiver<Event>>,
    cancel: CancelToken,
    /// What the window shows of the run in progress, or of the last one.
    pub view: RunView,
    /// Runs queued behind the one in progress, first in first out.
    pending: VecDeque<QueuedRun>,
    wake: Arc<dyn Fn() + Send + Sync>,
    runs: u64,
    /// How many runs have ended (finished, failed or stopped).
    pub finished: u64,
    /// Where "output" files are; "temp" files are in `temp/` beside it.
    output_dir: PathBuf,
}

/// The files of a node's UI result (`{"images": [{"filename", "subfolder", "type"}, ...]}`, as the
/// image and video savers report them, or `{"audio": [...]}` from the sound savers), as paths under
/// the output or temp folder.
pub fn output_files(output: &serde_json::Value, output_dir: &Path) -> Vec<PathBuf> {
    let entries = |key: &str| output.get(key).and_then(serde_json::Value::as_array).map_or(&[][..], Vec::as_slice);
    entries("images")
        .iter()
        .chain(entries("audio"))
        .filter_map(|entry| {
            let filename = entry.get("filename")?.as_str()?;
            let subfolder = entry.get("subfolder").and_then(serde_json::Value::as_str).unwrap_or_default();
            let folder = match entry.get("type").and_then(serde_json::Value::as_str) {
                Some("temp") => kinograph_nodes::nodes::image::temp_dir_beside(output_dir),
                _ => output_dir.to_path_buf(),
            };
            Some(folder.join(subfolder).join(filename))
        })
        .collect()
}

impl Runner {
    /// A runner for the editor's node classes and folders.
    pub fn new(editor: &Editor) -> Self {
        let catalog = &editor.catalog;
        let executor = Executor::new(catalog.shared_registry(), catalog.environment().clone());
        // The output cache gives way to models under the process's memory budget, as `kinograph run`'s does.
        kinograph_engine::MemoryBudget::global().attach_cache(executor.cache());
        Runner {
            executor: Arc::new(executor),
            events: None,
            cancel: CancelToken::new(),
            view: RunView::default(),
            pending: VecDeque::new(),
            wake: Arc::new(|| {}),
            runs: 0,
            finished: 0,
            output_dir: catalog.environment().output_dir.clone(),
        }
    }

    /// Converts and validates the graph and queues it: it starts at once when nothing is running, else
    /// after the runs queued before it. Then applies the seeds' control modes (as ComfyUI does after
    /// queueing), so that each queued run has its own seed. `wake` is called after each event, from the
    /// engine's threads: the window passes its repaint request. Returns how many runs are ahead of this
    /// one (0: it started).
    pub fn queue(&mut self, editor: &mut Editor, wake: Arc<dyn Fn() + Send + Sync>) -> Result<usize, QueueError> {
        let workflow = editor.to_json();
        let prompt = editor.to_prompt()?.prompt;
        let catalog = Arc::clone(&editor.catalog);
        let graph = validate(&prompt, catalog.registry(), catalog.environment())
            .map_err(|report| QueueError::Invalid(Box::new(report)))?;
        self.wake = wake;
        self.runs += 1;
        let item = QueueItem {
            number: self.runs as f64,
            prompt_id: format!("editor-{}", self.runs),
            prompt: prompt.to_json(),
            extra_data: serde_json::json!({ "extra_pnginfo": { "workflow": workflow } }),
            outputs_to_execute: graph.outputs.iter().map(|&index| graph.nodes[index].id.clone()).collect(),
        };
        let run = QueuedRun { graph: Arc::new(graph), item };
        let ahead = if self.view.running {
            self.pending.push_back(run);
            self.pending.len()
        } else {
            self.start(run)?;
            0
        };
        editor.after_queue();
        Ok(ahead)
    }

    /// Starts `run` on a thread of its own, with a fresh view and cancel token.
    fn start(&mut self, run: QueuedRun) -> Result<(), QueueError> {
        let runtime = tokio::runtime::Runtime::new().map_err(QueueError::Runtime)?;
        let (sender, receiver): (Sender<Event>, Receiver<Event>) = channel();
        self.cancel = CancelToken::new();
        let wake = Arc::clone(&self.wake);
        let events: EventSink = Arc::new(move |event: &Event| {
            let _ = sender.send(event.clone());
            wake();
        });
        let cancel = self.cancel.clone();
        let executor = Arc::clone(&self.executor);
        let node_ids: Vec<String> =
            run.item.prompt.as_object().map(|nodes| nodes.keys().cloned().collect()).unwrap_or_default();
        let QueuedRun { graph, item } = run;
        // The run as the server's worker and `kinograph run` run a queue item.
        std::thread::Builder::new()
            .name("kinograph-run".into())
            .spawn(move || runtime.block_on(run_queued(&executor, graph, &item, events, cancel)))
            .map_err(QueueError::Runtime)?;
        self.events = Some(receiver);
        self.view = RunView { running: true, ..RunView::default() };
        for id in node_ids {
            self.view.nodes.insert(id, NodeRunState::Queued);
        }
        Ok(())
    }

    /// Applies the events that arrived since the last call, and starts the next queued run when one
    /// ended; returns whether anything changed. The view of an ended run stays until the next starts,
    /// which happens on a later call, so that the window sees every run's outcome.
    pub fn poll(&mut self) -> bool {
        let mut any = false;
        if !self.view.running
            && let Some(next) = self.pending.pop_front()
        {
            if let Err(error) = self.start(next) {
                self.view.outcome = Some(format!("The next queued run did not start: {error}"));
                self.finished += 1;
            }
            any = true;
        }
        let Some(events) = &self.events else { return any };
        while let Ok(event) = events.try_recv() {
            self.view.apply(&event);
            if let EventKind::Executed { node, output } = &event.kind {
                let files = output_files(output, &self.output_dir);
                if !files.is_empty() {
                    self.view.outputs.insert(node.clone(), files);
                }
            }
            any = true;
            if matches!(event.kind, EventKind::Finished) {
                self.finished += 1;
                self.events = None;
                (self.wake)();
                break;
            }
        }
        any
    }

    /// How many runs wait behind the one in progress.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a run is in progress or waiting.
    pub fn busy(&self) -> bool {
        self.view.running || !self.pending.is_empty()
    }

    /// Asks the run in progress to stop at the next point a node checks; queued runs still follow.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Drops the runs waiting behind the one in progress; returns how many there were.
    pub fn clear_queue(&mut self) -> usize {
        let count = self.pending.len();
        self.pending.clear();
        count
    }
}
