//! The bookkeeping of one run: which nodes wait on which, who consumes each output, which outputs are
//! still needed, and the queue of nodes ready to run.

use super::Plan;
use crate::cache::CacheEntry;
use crate::graph::{Graph, GraphInput};
use crate::node::NodeInputs;
use crate::signature::Signature;
use std::collections::VecDeque;
use std::sync::Arc;

/// Bookkeeping of one run: what each node waits for, who uses its outputs, and the outputs still needed.
pub(super) struct RunState {
    pub(super) signatures: Vec<Signature>,
    pub(super) canonical: Vec<usize>,
    pub(super) results: Vec<Option<Arc<CacheEntry>>>,
    pub(super) waiting_on: Vec<usize>,
    pub(super) consumers: Vec<Vec<usize>>,
    pub(super) uses_left: Vec<usize>,
    pub(super) is_output: Vec<bool>,
    pub(super) ready: VecDeque<usize>,
    pub(super) to_run: usize,
    pub(super) done: usize,
}

impl RunState {
    pub(super) fn new(graph: &Graph, plan: Plan) -> Self {
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

    pub(super) fn inputs_of(&self, graph: &Graph, index: usize) -> NodeInputs {
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
    pub(super) fn complete(&mut self, graph: &Graph, index: usize, entry: Arc<CacheEntry>) {
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

    pub(super) fn all_done(&self) -> bool {
        self.done == self.to_run
    }
}
