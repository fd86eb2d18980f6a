//! The bookkeeping of one run: which nodes will run, which wait on which, who consumes each output,
//! which outputs are still needed, and the queue of nodes ready to run.
//!
//! Nodes are scheduled by walking back from what is needed (the output nodes at first): a node found in
//! the cache stops the walk, and a lazy link is not followed. A node with lazy links asks for some of
//! them once its other inputs are there ([`RunState::request`]), which walks back from their sources in
//! the same way, so the set of nodes that run grows during the run.
//!
//! A node's outputs are kept while any node that may still use them has not finished: `uses_left`
//! counts the links into a node from nodes that have neither run, nor come from the cache, nor been
//! found unneeded. A node that nobody may use any more and that was never scheduled is unneeded, which
//! releases its own inputs in turn; so the sources of a lazy link that was never asked for are released
//! when the node holding it finishes.

use crate::cache::CacheEntry;
use crate::graph::{Graph, GraphInput};
use crate::node::{NodeError, NodeInputs};
use crate::signature::Signature;
use std::collections::VecDeque;
use std::sync::Arc;

/// Looks a node (by index) up in the cache; `None` for a miss or a node never served from the cache.
pub(super) type Lookup<'a> = dyn FnMut(usize, &Signature) -> Option<Arc<CacheEntry>> + 'a;

/// Where a node stands in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Not needed so far; may still be (through a lazy link not yet decided).
    Pending,
    /// Will run (waiting, ready or running).
    Scheduled,
    /// Ran.
    Done,
    /// Its outputs came from the cache.
    Cached,
    /// Will not run: nothing that runs needs it.
    Unneeded,
    /// Computes the same as an earlier node (its `canonical`), whose outputs it uses.
    Alias,
}

/// Bookkeeping of one run: what each node waits for, who uses its outputs, and the outputs still needed.
pub(super) struct RunState {
    pub(super) signatures: Vec<Signature>,
    canonical: Vec<usize>,
    pub(super) results: Vec<Option<Arc<CacheEntry>>>,
    pub(super) status: Vec<Status>,
    /// Per node, per input (in `GraphNode::inputs` order): a link into a lazy input. Empty for nodes
    /// without lazy inputs.
    lazy_link: Vec<Vec<bool>>,
    /// Per node, per input: a lazy link the node asked for. Same shape as `lazy_link`.
    requested: Vec<Vec<bool>>,
    waiting_on: Vec<usize>,
    consumers: Vec<Vec<usize>>,
    uses_left: Vec<usize>,
    is_output: Vec<bool>,
    pub(super) ready: VecDeque<usize>,
    to_run: usize,
    pub(super) done: usize,
    /// Nodes served from the cache after planning, because a lazy link asked for them.
    pub(super) cached_later: Vec<usize>,
}

impl RunState {
    /// Nothing scheduled yet: every node is pending except duplicates, which alias their `canonical`.
    pub(super) fn new(graph: &Graph, signatures: Vec<Signature>, canonical: Vec<usize>) -> Self {
        let count = graph.nodes.len();
        let mut status = vec![Status::Pending; count];
        let mut uses_left = vec![0; count];
        let mut lazy_link = vec![Vec::new(); count];
        let mut is_output = vec![false; count];
        for &output in &graph.outputs {
            is_output[output] = true;
        }
        for (index, node) in graph.nodes.iter().enumerate() {
            if canonical[index] != index {
                status[index] = Status::Alias;
                continue;
            }
            for (_, input) in &node.inputs {
                if let GraphInput::Link { node: source, .. } = input {
                    uses_left[canonical[*source]] += 1;
                }
            }
            if node.schema.inputs.iter().any(|spec| spec.lazy) {
                lazy_link[index] = node
                    .inputs
                    .iter()
                    .map(|(name, input)| {
                        matches!(input, GraphInput::Link { .. })
                            && node.schema.input_spec(name).is_some_and(|spec| spec.lazy)
                    })
                    .collect();
            }
        }
        let requested = lazy_link.iter().map(|links| vec![false; links.len()]).collect();
        let mut state = RunState {
            signatures,
            canonical,
            results: vec![None; count],
            status,
            lazy_link,
            requested,
            waiting_on: vec![0; count],
            consumers: vec![Vec::new(); count],
            uses_left,
            is_output,
            ready: VecDeque::new(),
            to_run: 0,
            done: 0,
            cached_later: Vec::new(),
        };
        // A node used only by duplicates of other nodes is not needed.
        for index in (0..count).rev() {
            if state.status[index] == Status::Pending && state.uses_left[index] == 0 && !state.is_output[index] {
                state.set_unneeded(graph, index);
            }
        }
        state
    }

    /// Schedules what the output nodes need; the ready queue starts in graph order.
    pub(super) fn plan(&mut self, graph: &Graph, lookup: &mut Lookup<'_>) {
        for &output in &graph.outputs {
            self.require(graph, output, lookup);
        }
        self.ready.make_contiguous().sort_unstable();
        self.cached_later.clear();
    }

    /// Makes node `root` (canonical, pending) available: from the cache, or by scheduling it and, the same
    /// way, the sources of its non-lazy links.
    fn require(&mut self, graph: &Graph, root: usize, lookup: &mut Lookup<'_>) {
        let mut stack = vec![root];
        while let Some(index) = stack.pop() {
            if self.status[index] != Status::Pending {
                continue;
            }
            if let Some(entry) = lookup(index, &self.signatures[index]) {
                self.status[index] = Status::Cached;
                self.cached_later.push(index);
                self.resolve(graph, index, entry);
                continue;
            }
            self.status[index] = Status::Scheduled;
            self.to_run += 1;
            for (position, (_, input)) in graph.nodes[index].inputs.iter().enumerate() {
                if let GraphInput::Link { node: source, .. } = input
                    && !self.is_lazy_link(index, position)
                {
                    let source = self.canonical[*source];
                    self.wait_for(index, source);
                    stack.push(source);
                }
            }
            if self.waiting_on[index] == 0 {
                self.ready.push_back(index);
            }
        }
    }

    /// Makes `consumer` wait for `source` if `source` has yet to run (or to be looked up).
    fn wait_for(&mut self, consumer: usize, source: usize) {
        match self.status[source] {
            Status::Pending | Status::Scheduled => {
                self.consumers[source].push(consumer);
                self.waiting_on[consumer] += 1;
            }
            Status::Done | Status::Cached => {}
            Status::Unneeded | Status::Alias => {
                unreachable!("a node that may still be used is never unneeded, and links go to canonical nodes")
            }
        }
    }

    fn is_lazy_link(&self, index: usize, position: usize) -> bool {
        self.lazy_link[index].get(position).copied().unwrap_or(false)
    }

    /// Whether node `index` has a linked lazy input that it has not asked for.
    pub(super) fn has_unevaluated_lazy(&self, index: usize) -> bool {
        self.lazy_link[index].iter().zip(&self.requested[index]).any(|(&lazy, &requested)| lazy && !requested)
    }

    /// What `check_lazy_status` of node `index` sees: its inputs so far, and the names of its linked lazy
    /// inputs not evaluated yet.
    pub(super) fn lazy_view(&self, graph: &Graph, index: usize) -> (NodeInputs, Vec<String>) {
        let unevaluated = graph.nodes[index]
            .inputs
            .iter()
            .enumerate()
            .filter(|&(position, _)| self.is_lazy_link(index, position) && !self.requested[index][position])
            .map(|(_, (name, _))| name.clone())
            .collect();
        (self.inputs_of(graph, index), unevaluated)
    }

    /// Books what `check_lazy_status` of node `index` asked for: the lazy links among `names` not yet
    /// asked for are scheduled (or found in the cache). Returns whether anything new was asked for; if so,
    /// the node is put back to wait, or at the front of the ready queue when all it asked for is there.
    pub(super) fn request(
        &mut self,
        graph: &Graph,
        index: usize,
        names: &[String],
        lookup: &mut Lookup<'_>,
    ) -> Result<bool, NodeError> {
        let node = &graph.nodes[index];
        let mut positions = Vec::new();
        for name in names {
            let Some(position) = node.inputs.iter().position(|(input, _)| input == name) else {
                return Err(NodeError::msg(format!(
                    "check_lazy_status asked for input '{name}', which is not connected"
                )));
            };
            if self.is_lazy_link(index, position) && !self.requested[index][position] {
                positions.push(position);
            }
        }
        if positions.is_empty() {
            return Ok(false);
        }
        for position in positions {
            if std::mem::replace(&mut self.requested[index][position], true) {
                continue;
            }
            let GraphInput::Link { node: source, .. } = node.inputs[position].1 else {
                unreachable!("lazy links are links")
            };
            let source = self.canonical[source];
            self.wait_for(index, source);
            if self.status[source] == Status::Pending {
                self.require(graph, source, lookup);
            }
        }
        if self.waiting_on[index] == 0 && !self.ready.contains(&index) {
            self.ready.push_front(index);
        }
        Ok(true)
    }

    /// The inputs `execute` receives: constants, links, and the lazy links that were asked for.
    pub(super) fn inputs_of(&self, graph: &Graph, index: usize) -> NodeInputs {
        let node = &graph.nodes[index];
        let values = node
            .inputs
            .iter()
            .enumerate()
            .filter(|&(position, _)| !self.is_lazy_link(index, position) || self.requested[index][position])
            .map(|(_, (name, input))| {
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

    /// Records a finished node: wakes its consumers and releases inputs nobody else may need.
    pub(super) fn complete(&mut self, graph: &Graph, index: usize, entry: Arc<CacheEntry>) {
        self.done += 1;
        self.status[index] = Status::Done;
        self.resolve(graph, index, entry);
    }

    /// Node `index` has its outputs (it ran, or they came from the cache).
    fn resolve(&mut self, graph: &Graph, index: usize, entry: Arc<CacheEntry>) {
        self.results[index] = Some(entry);
        for consumer in std::mem::take(&mut self.consumers[index]) {
            self.waiting_on[consumer] -= 1;
            if self.waiting_on[consumer] == 0 {
                self.ready.push_back(consumer);
            }
        }
        self.release_inputs(graph, index);
        if self.uses_left[index] == 0 && !self.is_output[index] {
            self.results[index] = None;
        }
    }

    /// Node `index` will not use its inputs any more: each source loses a use, and a pending source left
    /// without any becomes unneeded, releasing its own inputs in turn.
    fn release_inputs(&mut self, graph: &Graph, index: usize) {
        let mut finished = vec![index];
        while let Some(node) = finished.pop() {
            for (_, input) in &graph.nodes[node].inputs {
                if let GraphInput::Link { node: source, .. } = input {
                    let source = self.canonical[*source];
                    self.uses_left[source] -= 1;
                    if self.uses_left[source] == 0 && !self.is_output[source] {
                        self.results[source] = None;
                        if self.status[source] == Status::Pending {
                            self.status[source] = Status::Unneeded;
                            finished.push(source);
                        }
                    }
                }
            }
        }
    }

    fn set_unneeded(&mut self, graph: &Graph, index: usize) {
        self.status[index] = Status::Unneeded;
        self.release_inputs(graph, index);
    }

    /// Nodes that will not run as things stand after planning: cached, only needed by cached nodes, or
    /// duplicates of a node that is not pending.
    pub(super) fn not_running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.status.len()).filter(|&index| match self.status[index] {
            Status::Cached | Status::Unneeded => true,
            Status::Alias => self.status[self.canonical[index]] != Status::Pending,
            Status::Pending | Status::Scheduled | Status::Done => false,
        })
    }

    /// How many nodes may run: those scheduled, and those a lazy link may still ask for.
    pub(super) fn may_run(&self) -> usize {
        self.to_run + self.status.iter().filter(|&&status| status == Status::Pending).count()
    }

    pub(super) fn all_done(&self) -> bool {
        self.done == self.to_run
    }
}
