//! Running a validated graph: plan from the cache, then run ready nodes as soon as their inputs exist,
//! independent branches at once, compute on blocking threads, events all along. Links into lazy inputs
//! are followed only when their node asks for them ([`crate::Node::check_lazy_status`]), during the run.

use crate::cache::{Cache, CacheEntry, DiskCache};
use crate::context::{CancelToken, ExecutionContext};
use crate::events::{Event, EventKind, EventSink, ExecutionFailure, ignore_events};
use crate::graph::{Graph, GraphNode};
use crate::node::{Environment, NodeError, NodeInputs, NodeOutput};
use crate::registry::Registry;
use crate::signature::{Signature, SignaturePanic, compute_signatures};
use crate::validation::{self, ValidationReport};
use crate::workflow::ApiPrompt;
use indexmap::IndexMap;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

mod run_state;

use run_state::{RunState, Status};

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
            tokio::task::spawn_blocking(move || executor.plan(&graph)).await.expect("planning catches node panics")
        };
        let state = match plan {
            Ok(state) => state,
            Err(panic) => return Self::planning_failed(&graph, panic, &emit, started),
        };
        let mut cached: Vec<String> = state.not_running().map(|i| graph.nodes[i].id.clone()).collect();
        emit(EventKind::ExecutionCached { nodes: cached.clone() });
        let mut outputs = IndexMap::new();
        for &output in &graph.outputs {
            if state.status[output] != Status::Cached {
                continue;
            }
            if let Some(ui) = state.results[output].as_ref().and_then(|entry| entry.ui.clone()) {
                let node = graph.nodes[output].id.clone();
                emit(EventKind::Executed { node: node.clone(), output: ui.clone() });
                outputs.insert(node, ui);
            }
        }

        let run = Arc::new(SharedRun {
            executor: self.clone(),
            graph: graph.clone(),
            prompt_id: prompt_id.clone(),
            options: options.clone(),
            extra_pnginfo: Arc::new(options.extra_pnginfo.clone()),
            abort: Arc::new(AtomicBool::new(false)),
            scheduler: Mutex::new(Scheduler {
                state,
                running: Vec::new(),
                stopping: options.cancel.is_cancelled(),
                executed: Vec::new(),
                outputs,
                failure: None,
                interrupted_at: None,
                writes: Vec::new(),
            }),
            wake: Condvar::new(),
        });
        // Nodes behind lazy links may be scheduled later: room for them too.
        let may_run = run.lock().state.may_run();
        let mut workers = JoinSet::new();
        for _ in 0..self.max_parallel.min(may_run) {
            let run = run.clone();
            workers.spawn_blocking(move || run.work());
        }
        let mut stopping = false;
        loop {
            tokio::select! {
                joined = workers.join_next() => if joined.is_none() { break },
                () = options.cancel.cancelled(), if !stopping => {
                    stopping = true;
                    let mut scheduler = run.lock();
                    scheduler.stopping = true;
                    if scheduler.interrupted_at.is_none() {
                        scheduler.interrupted_at = scheduler.running.first().copied();
                    }
                    drop(scheduler);
                    run.wake.notify_all();
                }
            }
        }
        let writes = std::mem::take(&mut run.lock().writes);
        for write in writes {
            let _ = write.await;
        }
        let mut scheduler = run.lock();
        let all_done = scheduler.state.all_done();
        let failure = scheduler.failure.take();
        let executed = std::mem::take(&mut scheduler.executed);
        let outputs = std::mem::take(&mut scheduler.outputs);
        let interrupted_at = scheduler.interrupted_at;
        cached.extend(scheduler.state.cached_later.iter().map(|&i| graph.nodes[i].id.clone()));
        drop(scheduler);

        let status = if let Some(failure) = &failure {
            emit(EventKind::ExecutionError(failure.clone()));
            RunStatus::Failed
        } else if !all_done {
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

    /// The end of a run whose planning found a node panicking in `version` or `fingerprint`: that node
    /// fails as it would had it panicked in `execute`, and nothing runs.
    fn planning_failed(graph: &Graph, panic: SignaturePanic, emit: &dyn Fn(EventKind), started: Instant) -> RunOutcome {
        let node = &graph.nodes[panic.index];
        let error =
            NodeError::msg(format!("the node panicked while planning (version or fingerprint): {}", panic.message));
        let failure = ExecutionFailure {
            node_id: node.id.clone(),
            node_type: node.class_type.clone(),
            exception_message: error.to_string(),
            exception_type: error.type_name().to_string(),
            current_inputs: panic.inputs,
            executed: Vec::new(),
        };
        emit(EventKind::ExecutionError(failure.clone()));
        emit(EventKind::Finished);
        RunOutcome {
            status: RunStatus::Failed,
            executed: Vec::new(),
            cached: Vec::new(),
            outputs: IndexMap::new(),
            failure: Some(failure),
            duration: started.elapsed(),
        }
    }

    /// Decides what must run: walking back from the outputs, a node whose outputs are cached (memory, or
    /// disk for non-output nodes) stops the walk, and so does a lazy link; everything else runs.
    fn plan(&self, graph: &Graph) -> Result<RunState, SignaturePanic> {
        let signatures = compute_signatures(graph, &self.env)?;
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
        let mut state = RunState::new(graph, signatures, canonical);
        state.plan(graph, &mut |index, signature| self.lookup(&graph.nodes[index], signature));
        Ok(state)
    }

    /// The cached outputs of `node`, from memory or (for a non-output node) from disk.
    fn lookup(&self, node: &GraphNode, signature: &Signature) -> Option<Arc<CacheEntry>> {
        if node.schema.not_idempotent {
            return None;
        }
        if let Some(entry) = self.cache.get(signature) {
            return Some(entry);
        }
        let (Some(disk), false) = (self.cache.disk(), node.schema.output_node) else {
            return None;
        };
        // A decoder is node-library code: a panic in it makes the entry a miss, as a corrupt file does.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| disk.load(signature, &self.registry)));
        let loaded = loaded.unwrap_or_else(|panic| {
            tracing::warn!(
                "ignoring cache entry of node {} ({}): its decoder panicked: {}",
                node.id,
                node.class_type,
                panic_message(&*panic)
            );
            Ok(None)
        });
        match loaded {
            Ok(Some(entry)) => {
                let entry = Arc::new(entry);
                self.cache.insert(*signature, entry.clone());
                Some(entry)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!("ignoring cache entry of node {} ({}): {error}", node.id, node.class_type);
                None
            }
        }
    }
}

/// One run's state, shared by its worker threads.
struct SharedRun {
    executor: Executor,
    graph: Arc<Graph>,
    prompt_id: Arc<str>,
    options: RunOptions,
    extra_pnginfo: Arc<Json>,
    /// Set when a node fails, so that the others stop at their next check.
    abort: Arc<AtomicBool>,
    scheduler: Mutex<Scheduler>,
    /// Signalled when nodes become ready, finish, or the run stops.
    wake: Condvar,
}

struct Scheduler {
    state: RunState,
    running: Vec<usize>,
    stopping: bool,
    executed: Vec<String>,
    outputs: IndexMap<String, Json>,
    failure: Option<ExecutionFailure>,
    interrupted_at: Option<usize>,
    writes: Vec<tokio::task::JoinHandle<()>>,
}

impl SharedRun {
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, kind: EventKind) {
        (self.options.events)(&Event::now(&self.prompt_id, kind));
    }

    /// A worker: takes ready nodes and runs them until nothing is left or the run stops. The worker that
    /// finishes a node does the bookkeeping and goes on with the next ready node itself, so a chain of
    /// small nodes costs no thread hand-off per node.
    fn work(&self) {
        let mut scheduler = self.lock();
        loop {
            if scheduler.stopping || scheduler.state.all_done() {
                drop(scheduler);
                self.wake.notify_all();
                return;
            }
            let Some(index) = scheduler.state.ready.pop_front() else {
                if scheduler.running.is_empty() {
                    // Nothing ready and nothing running that could make anything ready.
                    return;
                }
                scheduler = self.wake.wait(scheduler).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            };
            scheduler.running.push(index);
            if scheduler.state.has_unevaluated_lazy(index) {
                let (asked_more, next) = self.check_lazy(scheduler, index);
                scheduler = next;
                if asked_more || scheduler.stopping {
                    scheduler.running.retain(|&i| i != index);
                    self.wake.notify_all();
                    continue;
                }
            }
            let inputs = scheduler.state.inputs_of(&self.graph, index);
            drop(scheduler);

            let node = &self.graph.nodes[index];
            self.emit(EventKind::Executing { node: node.id.clone() });
            let context = ExecutionContext {
                node_id: node.id.clone(),
                class_type: node.class_type.clone(),
                prompt_id: self.prompt_id.clone(),
                env: self.executor.env.clone(),
                events: self.options.events.clone(),
                cancel: self.options.cancel.clone(),
                abort: self.abort.clone(),
                prompt: self.graph.prompt.clone(),
                extra_pnginfo: self.extra_pnginfo.clone(),
            };
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.node.execute(&inputs, &context)))
                    .unwrap_or_else(|panic| {
                        Err(NodeError::msg(format!("the node panicked: {}", panic_message(&*panic))))
                    })
                    .and_then(|output| check_outputs(&node.schema, output));

            scheduler = self.lock();
            scheduler.running.retain(|&i| i != index);
            let events = self.record(&mut scheduler, index, &inputs, result);
            drop(scheduler);
            self.wake.notify_all();
            for event in events {
                self.emit(event);
            }
            scheduler = self.lock();
        }
    }

    /// Asks node `index` which of its unevaluated lazy inputs it needs, and schedules them. Returns
    /// whether it asked for anything new (then it waits again, or is back in the ready queue), with the
    /// lock taken again. A failing or panicking check fails the node as `execute` would.
    fn check_lazy<'a>(
        &'a self,
        scheduler: MutexGuard<'a, Scheduler>,
        index: usize,
    ) -> (bool, MutexGuard<'a, Scheduler>) {
        let (inputs, unevaluated) = scheduler.state.lazy_view(&self.graph, index);
        drop(scheduler);
        let node = &self.graph.nodes[index];
        let unevaluated: Vec<&str> = unevaluated.iter().map(String::as_str).collect();
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            node.node.check_lazy_status(&inputs, &unevaluated)
        }))
        .unwrap_or_else(|panic| {
            Err(NodeError::msg(format!("the node panicked in check_lazy_status: {}", panic_message(&*panic))))
        });
        let mut scheduler = self.lock();
        if scheduler.stopping {
            return (false, scheduler);
        }
        // Looking the asked-for nodes up may decode a disk cache entry with the lock held, as planning
        // does without it; it happens once per node asked for, and keeps the bookkeeping in one place.
        let asked = asked.and_then(|names| {
            let graph = &self.graph;
            scheduler.state.request(graph, index, &names, &mut |source, signature| {
                self.executor.lookup(&graph.nodes[source], signature)
            })
        });
        match asked {
            Ok(asked_more) => (asked_more, scheduler),
            Err(error) => {
                self.record(&mut scheduler, index, &inputs, Err(error));
                (false, scheduler)
            }
        }
    }

    /// Books a finished node; returns the events to send once the lock is released.
    fn record(
        &self,
        scheduler: &mut Scheduler,
        index: usize,
        inputs: &NodeInputs,
        result: Result<NodeOutput, NodeError>,
    ) -> Vec<EventKind> {
        let node = &self.graph.nodes[index];
        let mut events = Vec::new();
        match result {
            Ok(output) => {
                scheduler.executed.push(node.id.clone());
                let entry = Arc::new(CacheEntry::new(output.values, output.ui));
                if let Some(ui) = &entry.ui {
                    events.push(EventKind::Executed { node: node.id.clone(), output: ui.clone() });
                    if node.schema.output_node {
                        scheduler.outputs.insert(node.id.clone(), ui.clone());
                    }
                }
                if !node.schema.not_idempotent {
                    let signature = scheduler.state.signatures[index];
                    self.executor.cache.insert(signature, entry.clone());
                    if let (Some(disk), false) = (self.executor.cache.disk(), node.schema.output_node) {
                        let (disk, registry, entry) = (disk.clone(), self.executor.registry.clone(), entry.clone());
                        scheduler.writes.push(tokio::task::spawn_blocking(move || {
                            store_on_disk(&disk, &signature, &entry, &registry);
                        }));
                    }
                }
                events.push(EventKind::NodeFinished { node: node.id.clone() });
                scheduler.state.complete(&self.graph, index, entry);
                // Values the run no longer needs are gone: models only the cache holds now count against
                // its bound, and give way when the memory budget is tight.
                self.executor.cache.fit_budget();
            }
            Err(NodeError::Interrupted) => {
                scheduler.stopping = true;
                if scheduler.failure.is_none() && scheduler.interrupted_at.is_none() {
                    scheduler.interrupted_at = Some(index);
                }
            }
            Err(error) => {
                scheduler.stopping = true;
                self.abort.store(true, Ordering::SeqCst);
                if scheduler.failure.is_none() {
                    scheduler.failure = Some(ExecutionFailure {
                        node_id: node.id.clone(),
                        node_type: node.class_type.clone(),
                        exception_message: error.to_string(),
                        exception_type: error.type_name().to_string(),
                        current_inputs: inputs.describe(),
                        executed: scheduler.executed.clone(),
                    });
                }
            }
        }
        events
    }
}

/// A node must return one value per declared output, each of a type its output may carry.
fn check_outputs(schema: &crate::schema::NodeSchema, output: NodeOutput) -> Result<NodeOutput, NodeError> {
    let declared = schema.outputs.len();
    if output.values.len() != declared {
        return Err(NodeError::msg(format!(
            "the node returned {} value{} but declares {declared} output{}",
            output.values.len(),
            if output.values.len() == 1 { "" } else { "s" },
            if declared == 1 { "" } else { "s" }
        )));
    }
    for (slot, (value, spec)) in output.values.iter().zip(&schema.outputs).enumerate() {
        let produced = value.type_name();
        // A constant handed through a `*` socket keeps its JSON form; anything may travel there.
        if !crate::schema::types_compatible(produced, &spec.type_name) && produced != "*" {
            return Err(NodeError::msg(format!(
                "output {slot} '{}' is declared {} but the node returned a {produced} value",
                spec.name, spec.type_name
            )));
        }
    }
    Ok(output)
}

fn store_on_disk(disk: &DiskCache, signature: &Signature, entry: &CacheEntry, registry: &Registry) {
    if let Err(error) = disk.store(signature, entry, registry) {
        tracing::warn!("could not write cache entry: {error}");
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".into()
    }
}
