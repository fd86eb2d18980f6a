//! Running a validated graph: plan from the cache, then run ready nodes as soon as their inputs exist,
//! independent branches at once, compute on blocking threads, events all along.

use crate::cache::{Cache, CacheEntry, DiskCache};
use crate::context::{CancelToken, ExecutionContext};
use crate::events::{Event, EventKind, EventSink, ExecutionFailure, ignore_events};
use crate::graph::{Graph, GraphInput};
use crate::node::{Environment, NodeError, NodeInputs, NodeOutput};
use crate::registry::Registry;
use crate::signature::{Signature, compute_signatures};
use crate::validation::{self, ValidationReport};
use crate::workflow::ApiPrompt;
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Runs graphs against one registry, one environment and one cache (shared across runs).
#[derive(Clone)]
pub struct Executor {
    registry: Arc<Registry>,
    env: Arc<Environment>,
    cache: Arc<Cache>,
    max_parallel: usize,
}

/// Per-run settings.
#[derive(Clone)]
pub struct RunOptions {
    /// Names the run in events.
    pub prompt_id: String,
    pub events: EventSink,
    pub cancel: CancelToken,
    /// Given to nodes as ComfyUI's `EXTRA_PNGINFO` (`{"workflow": ...}`), for output metadata.
    pub extra_pnginfo: Json,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            prompt_id: "prompt".into(),
            events: ignore_events(),
            cancel: CancelToken::new(),
            extra_pnginfo: Json::Null,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Success,
    Failed,
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    /// Nodes that ran, in completion order.
    pub executed: Vec<String>,
    /// Nodes that did not run because their outputs were cached or not needed.
    pub cached: Vec<String>,
    /// UI results of output nodes (fresh or cached), by node id.
    pub outputs: IndexMap<String, Json>,
    /// Set when `status` is `Failed`.
    pub failure: Option<ExecutionFailure>,
    pub duration: Duration,
}

struct Finished {
    index: usize,
    inputs: NodeInputs,
    result: Result<NodeOutput, NodeError>,
}

impl Executor {
    /// An executor with the default cache (4 GiB in memory, no disk tier).
    pub fn new(registry: Arc<Registry>, env: Environment) -> Self {
        let max_parallel = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
        Executor { registry, env: Arc::new(env), cache: Arc::new(Cache::default()), max_parallel }
    }

    /// Uses `cache` (which may be shared with other executors).
    pub fn with_cache(mut self, cache: Arc<Cache>) -> Self {
        self.cache = cache;
        self
    }

    /// At most `limit` nodes run at once (at least one).
    pub fn with_max_parallel(mut self, limit: usize) -> Self {
        self.max_parallel = limit.max(1);
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The environment.
    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Validates a prompt against this executor's registry and environment.
    pub fn validate(&self, prompt: &ApiPrompt) -> Result<Graph, ValidationReport> {
        validation::validate(prompt, &self.registry, &self.env)
    }

    /// Runs `graph` to completion, failure or cancellation.
    pub async fn run(&self, graph: Arc<Graph>, options: RunOptions) -> RunOutcome {
        let started = Instant::now();
        let prompt_id: Arc<str> = Arc::from(options.prompt_id.as_str());
        let emit = |kind: EventKind| (options.events)(&Event::now(&prompt_id, kind));
        emit(EventKind::ExecutionStart);

        let plan = {
            let (executor, graph) = (self.clone(), graph.clone());
            tokio::task::spawn_blocking(move || executor.plan(&graph)).await.expect("planning does not panic")
        };
        let cached: Vec<String> =
            (0..graph.nodes.len()).filter(|&i| !plan.run[i]).map(|i| graph.nodes[i].id.clone()).collect();
        emit(EventKind::ExecutionCached { nodes: cached.clone() });
        let mut outputs = IndexMap::new();
        for &output in &graph.outputs {
            if let Some(ui) = plan.available[output].as_ref().and_then(|entry| entry.ui.clone()) {
                let node = graph.nodes[output].id.clone();
                emit(EventKind::Executed { node: node.clone(), output: ui.clone() });
                outputs.insert(node, ui);
            }
        }

        let mut state = RunState::new(&graph, plan);
        let abort = Arc::new(AtomicBool::new(false));
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut writes: JoinSet<()> = JoinSet::new();
        let mut running: Vec<usize> = Vec::new();
        let mut executed = Vec::new();
        let mut failure: Option<ExecutionFailure> = None;
        let mut interrupted_at: Option<usize> = None;
        let mut stopping = options.cancel.is_cancelled();

        loop {
            while !stopping && running.len() < self.max_parallel {
                let Some(index) = state.ready.pop_front() else { break };
                let node = &graph.nodes[index];
                let inputs = state.inputs_of(&graph, index);
                emit(EventKind::Executing { node: node.id.clone() });
                let context = ExecutionContext {
                    node_id: node.id.clone(),
                    class_type: node.class_type.clone(),
                    prompt_id: prompt_id.clone(),
                    env: self.env.clone(),
                    events: options.events.clone(),
                    cancel: options.cancel.clone(),
                    abort: abort.clone(),
                    prompt: graph.prompt.clone(),
                    extra_pnginfo: Arc::new(options.extra_pnginfo.clone()),
                };
                let implementation = node.node.clone();
                running.push(index);
                tasks.spawn_blocking(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        implementation.execute(&inputs, &context)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(NodeError::msg(format!("the node panicked: {}", panic_message(&*panic))))
                    });
                    Finished { index, inputs, result }
                });
            }
            if running.is_empty() {
                break;
            }
            let finished = tokio::select! {
                joined = tasks.join_next() => joined,
                () = options.cancel.cancelled(), if !stopping => {
                    stopping = true;
                    interrupted_at = running.first().copied();
                    continue;
                }
            };
            let Some(Ok(Finished { index, inputs, result })) = finished else {
                // A task can only fail to join if the runtime is shutting down.
                break;
            };
            running.retain(|&i| i != index);
            let node = &graph.nodes[index];
            let result = result.and_then(|output| check_output_count(node.schema.outputs.len(), output));
            match result {
                Ok(output) => {
                    executed.push(node.id.clone());
                    let entry = Arc::new(CacheEntry::new(output.values, output.ui));
                    if let Some(ui) = &entry.ui {
                        emit(EventKind::Executed { node: node.id.clone(), output: ui.clone() });
                        if node.schema.output_node {
                            outputs.insert(node.id.clone(), ui.clone());
                        }
                    }
                    if !node.schema.not_idempotent {
                        self.cache.insert(state.signatures[index], entry.clone());
                        if let (Some(disk), false) = (self.cache.disk(), node.schema.output_node) {
                            let (disk, registry, signature, entry) =
                                (disk.clone(), self.registry.clone(), state.signatures[index], entry.clone());
                            writes.spawn_blocking(move || store_on_disk(&disk, &signature, &entry, &registry));
                        }
                    }
                    emit(EventKind::NodeFinished { node: node.id.clone() });
                    state.complete(&graph, index, entry);
                }
                Err(NodeError::Interrupted) => {
                    stopping = true;
                    if failure.is_none() && interrupted_at.is_none() {
                        interrupted_at = Some(index);
                    }
                }
                Err(error) => {
                    stopping = true;
                    abort.store(true, Ordering::SeqCst);
                    if failure.is_none() {
                        failure = Some(ExecutionFailure {
                            node_id: node.id.clone(),
                            node_type: node.class_type.clone(),
                            exception_message: error.to_string(),
                            exception_type: error.type_name().to_string(),
                            current_inputs: inputs.describe(),
                            executed: executed.clone(),
                        });
                    }
                }
            }
        }
        while writes.join_next().await.is_some() {}

        let status = if let Some(failure) = &failure {
            emit(EventKind::ExecutionError(failure.clone()));
            RunStatus::Failed
        } else if stopping || options.cancel.is_cancelled() && !state.all_done() {
            let node = interrupted_at.map(|i| &graph.nodes[i]);
            emit(EventKind::ExecutionInterrupted {
                node_id: node.map(|n| n.id.clone()),
                node_type: node.map(|n| n.class_type.clone()),
                executed: executed.clone(),
            });
            RunStatus::Interrupted
        } else {
            emit(EventKind::ExecutionSuccess);
            RunStatus::Success
        };
        emit(EventKind::Finished);
        RunOutcome { status, executed, cached, outputs, failure, duration: started.elapsed() }
    }

    /// Decides what must run: walking back from the outputs, a node whose outputs are cached (memory, or
    /// disk for non-output nodes) stops the walk; everything else runs.
    fn plan(&self, graph: &Graph) -> Plan {
        let signatures = compute_signatures(graph, &self.env);
        let count = graph.nodes.len();
        // Nodes that compute the same thing (same signature) run once: later ones alias the first.
        let mut first_with: HashMap<Signature, usize> = HashMap::with_capacity(count);
        let canonical: Vec<usize> = (0..count)
            .map(|index| {
                let schema = &graph.nodes[index].schema;
                if schema.output_node || schema.not_idempotent {
                    index
                } else {
                    *first_with.entry(signatures[index]).or_insert(index)
                }
            })
            .collect();
        let mut available: Vec<Option<Arc<CacheEntry>>> = vec![None; count];
        let mut run = vec![false; count];
        let mut visited = vec![false; count];
        let mut stack: Vec<usize> = graph.outputs.clone();
        while let Some(index) = stack.pop() {
            if std::mem::replace(&mut visited[index], true) {
                continue;
            }
            let node = &graph.nodes[index];
            if !node.schema.not_idempotent {
                if let Some(entry) = self.cache.get(&signatures[index]) {
                    available[index] = Some(entry);
                    continue;
                }
                if let (Some(disk), false) = (self.cache.disk(), node.schema.output_node) {
                    match disk.load(&signatures[index], &self.registry) {
                        Ok(Some(entry)) => {
                            let entry = Arc::new(entry);
                            self.cache.insert(signatures[index], entry.clone());
                            available[index] = Some(entry);
                            continue;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!("ignoring cache entry of node {} ({}): {error}", node.id, node.class_type);
                        }
                    }
                }
            }
            run[index] = true;
            for (_, input) in &node.inputs {
                if let GraphInput::Link { node: source, .. } = input {
                    stack.push(canonical[*source]);
                }
            }
        }
        Plan { signatures, available, run, canonical }
    }
}

struct Plan {
    signatures: Vec<Signature>,
    available: Vec<Option<Arc<CacheEntry>>>,
    run: Vec<bool>,
    /// For each node, the node whose outputs it uses (itself unless it duplicates an earlier one).
    canonical: Vec<usize>,
}

/// Bookkeeping of one run: what each node waits for, who uses its outputs, and the outputs still needed.
struct RunState {
    signatures: Vec<Signature>,
    canonical: Vec<usize>,
    results: Vec<Option<Arc<CacheEntry>>>,
    waiting_on: Vec<usize>,
    consumers: Vec<Vec<usize>>,
    uses_left: Vec<usize>,
    is_output: Vec<bool>,
    ready: VecDeque<usize>,
    to_run: usize,
    done: usize,
}

impl RunState {
    fn new(graph: &Graph, plan: Plan) -> Self {
        let count = graph.nodes.len();
        let mut waiting_on = vec![0; count];
        let mut consumers = vec![Vec::new(); count];
        let mut uses_left = vec![0; count];
        let mut is_output = vec![false; count];
        for &output in &graph.outputs {
            is_output[output] = true;
        }
        for (index, node) in graph.nodes.iter().enumerate() {
            if !plan.run[index] {
                continue;
            }
            for (_, input) in &node.inputs {
                if let GraphInput::Link { node: source, .. } = input {
                    let source = plan.canonical[*source];
                    uses_left[source] += 1;
                    if plan.run[source] {
                        waiting_on[index] += 1;
                        consumers[source].push(index);
                    }
                }
            }
        }
        let ready = (0..count).filter(|&i| plan.run[i] && waiting_on[i] == 0).collect();
        let to_run = plan.run.iter().filter(|&&r| r).count();
        RunState {
            signatures: plan.signatures,
            canonical: plan.canonical,
            results: plan.available,
            waiting_on,
            consumers,
            uses_left,
            is_output,
            ready,
            to_run,
            done: 0,
        }
    }

    fn inputs_of(&self, graph: &Graph, index: usize) -> NodeInputs {
        let node = &graph.nodes[index];
        let values = node
            .inputs
            .iter()
            .map(|(name, input)| {
                let value = match input {
                    GraphInput::Constant(value) => value.clone(),
                    GraphInput::Link { node: source, slot } => self.results[self.canonical[*source]]
                        .as_ref()
                        .expect("producers finish before consumers start")
                        .outputs[*slot]
                        .clone(),
                };
                (name.clone(), value)
            })
            .collect();
        NodeInputs::new(values)
    }

    /// Records a finished node: wakes its consumers and releases inputs nobody else needs.
    fn complete(&mut self, graph: &Graph, index: usize, entry: Arc<CacheEntry>) {
        self.done += 1;
        self.results[index] = Some(entry);
        for consumer in std::mem::take(&mut self.consumers[index]) {
            self.waiting_on[consumer] -= 1;
            if self.waiting_on[consumer] == 0 {
                self.ready.push_back(consumer);
            }
        }
        for (_, input) in &graph.nodes[index].inputs {
            if let GraphInput::Link { node: source, .. } = input {
                let source = self.canonical[*source];
                self.uses_left[source] -= 1;
                if self.uses_left[source] == 0 && !self.is_output[source] {
                    self.results[source] = None;
                }
            }
        }
        if self.uses_left[index] == 0 && !self.is_output[index] {
            self.results[index] = None;
        }
    }

    fn all_done(&self) -> bool {
        self.done == self.to_run
    }
}

fn check_output_count(declared: usize, output: NodeOutput) -> Result<NodeOutput, NodeError> {
    if output.values.len() == declared {
        Ok(output)
    } else {
        Err(NodeError::msg(format!(
            "the node returned {} value{} but declares {declared} output{}",
            output.values.len(),
            if output.values.len() == 1 { "" } else { "s" },
            if declared == 1 { "" } else { "s" }
        )))
    }
}

fn store_on_disk(disk: &DiskCache, signature: &Signature, entry: &CacheEntry, registry: &Registry) {
    if let Err(error) = disk.store(signature, entry, registry) {
        tracing::warn!("could not write cache entry: {error}");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".into()
    }
}
