//! Running the graph from the editor: the engine runs in-process on a thread of its own, or on a
//! kinograph server ([`super::remote`]); either way its events come back through a channel that the
//! window drains each frame, so the window never waits on a run, and fold into the same [`RunView`].

use super::document::DocumentError;
use super::editor::Editor;
use super::remote::{RemoteRuns, ServerAddress, ServerStatus};
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
    /// The view of a run that starts now: running, every node of its prompt queued.
    pub fn starting(node_ids: impl IntoIterator<Item = String>) -> Self {
        let nodes = node_ids.into_iter().map(|id| (id, NodeRunState::Queued)).collect();
        RunView { nodes, running: true, ..RunView::default() }
    }

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
            // A prompt a server refuses when its turn comes (its files changed since it was queued)
            // fails at no node.
            EventKind::ExecutionError(failure) if failure.node_id.is_empty() => {
                self.outcome = Some(format!("The run failed: {}", failure.exception_message));
            }
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
    /// The server could not be reached (connection refused, timed out, websocket closed).
    #[error("the server at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered, but did not take the run (and gave no validation report).
    #[error("the server at {url} refused the run: {message}")]
    Refused { url: String, message: String },
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

/// Runs graphs from the editor, one at a time in the order queued: in-process, keeping the engine's
/// cache between runs ([`Runner::new`]), or on a server ([`Runner::remote`]).
pub struct Runner {
    /// What the window shows of the run in progress, or of the last one.
    pub view: RunView,
    /// How many runs have ended (finished, failed, stopped, or cut off from their server).
    pub finished: u64,
    backend: Backend,
}

/// Where the runs happen.
enum Backend {
    InProcess(InProcess),
    Remote(Box<RemoteRuns>),
}

/// Runs in this process, on the engine's executor.
struct InProcess {
    executor: Arc<Executor>,
    events: Option<Receiver<Event>>,
    cancel: CancelToken,
    /// Runs queued behind the one in progress, first in first out.
    pending: VecDeque<QueuedRun>,
    wake: Arc<dyn Fn() + Send + Sync>,
    runs: u64,
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
    /// A runner for the editor's node classes and folders, running in this process.
    pub fn new(editor: &Editor) -> Self {
        let catalog = &editor.catalog;
        let executor = Executor::new(catalog.shared_registry(), catalog.environment().clone());
        // The output cache gives way to models under the process's memory budget, as `kinograph run`'s does.
        kinograph_engine::MemoryBudget::global().attach_cache(executor.cache());
        let backend = Backend::InProcess(InProcess {
            executor: Arc::new(executor),
            events: None,
            cancel: CancelToken::new(),
            pending: VecDeque::new(),
            wake: Arc::new(|| {}),
            runs: 0,
            output_dir: catalog.environment().output_dir.clone(),
        });
        Runner { view: RunView::default(), finished: 0, backend }
    }

    /// A runner that queues on the server at `server`; its output files are copied under
    /// `<output dir>/remote/<prompt id>/`. It connects in the background at once (and reconnects
    /// whenever the connection drops), fetching the server's node lists for
    /// [`Runner::apply_server_lists`].
    pub fn remote(editor: &Editor, server: ServerAddress) -> Result<Self, QueueError> {
        let cache = editor.catalog.environment().output_dir.join("remote");
        let remote = RemoteRuns::connect(server, cache).map_err(QueueError::Runtime)?;
        Ok(Runner { view: RunView::default(), finished: 0, backend: Backend::Remote(Box::new(remote)) })
    }

    /// Queues the graph: it starts at once when nothing is running, else after the runs queued before
    /// it. In-process it is converted and validated first; on a server the server validates it, and its
    /// refusal comes back as [`QueueError::Invalid`] when it is a validation report. Then applies the
    /// seeds' control modes (as ComfyUI does after queueing), so that each queued run has its own seed;
    /// a refused graph is left as it was. `wake` is called after each event, from other threads: the
    /// window passes its repaint request. Returns how many of this runner's runs are ahead of this one
    /// (0: it started).
    pub fn queue(&mut self, editor: &mut Editor, wake: Arc<dyn Fn() + Send + Sync>) -> Result<usize, QueueError> {
        let ahead = match &mut self.backend {
            Backend::InProcess(local) => local.queue(editor, wake, &mut self.view)?,
            Backend::Remote(remote) => remote.queue(editor, wake, &mut self.view)?,
        };
        editor.after_queue();
        Ok(ahead)
    }

    /// Applies the events that arrived since the last call, and starts the next queued run when one
    /// ended; returns whether anything changed. The view of an ended run stays until the next starts,
    /// which happens on a later call, so that the window sees every run's outcome.
    pub fn poll(&mut self) -> bool {
        match &mut self.backend {
            Backend::InProcess(local) => local.poll(&mut self.view, &mut self.finished),
            Backend::Remote(remote) => remote.poll(&mut self.view, &mut self.finished),
        }
    }

    /// How many runs wait behind the one in progress.
    pub fn pending(&self) -> usize {
        match &self.backend {
            Backend::InProcess(local) => local.pending.len(),
            Backend::Remote(remote) => remote.pending(),
        }
    }

    /// Whether a run is in progress or waiting.
    pub fn busy(&self) -> bool {
        self.view.running || self.pending() > 0
    }

    /// Asks the run in progress to stop at the next point a node checks; queued runs still follow.
    pub fn stop(&self) {
        match &self.backend {
            Backend::InProcess(local) => local.cancel.cancel(),
            Backend::Remote(remote) => remote.stop(&self.view),
        }
    }

    /// Drops the runs waiting behind the one in progress; returns how many there were.
    pub fn clear_queue(&mut self) -> usize {
        match &mut self.backend {
            Backend::InProcess(local) => {
                let count = local.pending.len();
                local.pending.clear();
                count
            }
            Backend::Remote(remote) => remote.clear_queue(),
        }
    }

    /// Calls `wake` whenever something arrives from now on, before any run is queued too (a server
    /// connecting or going away); the window passes its repaint request.
    pub fn set_wake(&mut self, wake: Arc<dyn Fn() + Send + Sync>) {
        match &mut self.backend {
            Backend::InProcess(local) => local.wake = wake,
            Backend::Remote(remote) => remote.set_wake(wake),
        }
    }

    /// The server the runs go to and whether it is reachable; `None` for runs in this process.
    pub fn server(&self) -> Option<ServerStatus> {
        match &self.backend {
            Backend::InProcess(_) => None,
            Backend::Remote(remote) => Some(remote.status()),
        }
    }

    /// Puts the server's combo options (model and file lists) into the editor's catalog when new ones
    /// arrived since the last call; returns whether it did. In-process runs use the local lists.
    pub fn apply_server_lists(&mut self, editor: &mut Editor) -> bool {
        match &mut self.backend {
            Backend::InProcess(_) => false,
            Backend::Remote(remote) => remote.apply_lists(editor),
        }
    }

    /// Asks the server for its node lists again (new model files); they arrive through
    /// [`Runner::apply_server_lists`].
    pub fn refresh_server_lists(&self) {
        if let Backend::Remote(remote) = &self.backend {
            remote.refresh_lists();
        }
    }
}

impl InProcess {
    /// Validates and queues the graph; see [`Runner::queue`].
    fn queue(
        &mut self,
        editor: &Editor,
        wake: Arc<dyn Fn() + Send + Sync>,
        view: &mut RunView,
    ) -> Result<usize, QueueError> {
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
        if view.running {
            self.pending.push_back(run);
            Ok(self.pending.len())
        } else {
            self.start(run, view)?;
            Ok(0)
        }
    }

    /// Starts `run` on a thread of its own, with a fresh view and cancel token.
    fn start(&mut self, run: QueuedRun, view: &mut RunView) -> Result<(), QueueError> {
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
        *view = RunView::starting(node_ids);
        Ok(())
    }

    /// See [`Runner::poll`].
    fn poll(&mut self, view: &mut RunView, finished: &mut u64) -> bool {
        let mut any = false;
        if !view.running
            && let Some(next) = self.pending.pop_front()
        {
            if let Err(error) = self.start(next, view) {
                view.outcome = Some(format!("The next queued run did not start: {error}"));
                *finished += 1;
            }
            any = true;
        }
        let Some(events) = &self.events else { return any };
        while let Ok(event) = events.try_recv() {
            view.apply(&event);
            if let EventKind::Executed { node, output } = &event.kind {
                let files = output_files(output, &self.output_dir);
                if !files.is_empty() {
                    view.outputs.insert(node.clone(), files);
                }
            }
            any = true;
            if matches!(event.kind, EventKind::Finished) {
                *finished += 1;
                self.events = None;
                (self.wake)();
                break;
            }
        }
        any
    }
}
