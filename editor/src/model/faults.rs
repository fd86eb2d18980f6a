//! What a check found wrong, by node and input, for the canvas to show where the fault is.

use super::NodeId;
use kinograph_engine::ValidationReport;
use std::collections::BTreeMap;

/// One problem with a node: the input at fault (None when it is the node as a whole) and a sentence
/// saying what is wrong and what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFault {
    pub input: Option<String>,
    pub message: String,
}

/// The problems of each node that has any.
pub type Faults = BTreeMap<NodeId, Vec<NodeFault>>;

/// The node and input faults of a validation report. Nodes the report names by an id the editor does
/// not use (inside a subgraph) are left out: the graph-level message still says what is wrong.
pub fn from_report(report: &ValidationReport) -> Faults {
    let mut faults = Faults::new();
    for (id, errors) in &report.node_errors {
        let Ok(id) = id.parse::<NodeId>() else { continue };
        let list = faults.entry(id).or_default();
        for error in &errors.errors {
            let message = if error.explanation.is_empty() {
                if error.details.is_empty() {
                    error.message.clone()
                } else {
                    format!("{}: {}", error.message, error.details)
                }
            } else {
                error.explanation.clone()
            };
            list.push(NodeFault { input: error.input.clone(), message });
        }
    }
    faults
}

/// The first fault of `faults` on input `name`.
pub fn on_input<'a>(faults: &'a [NodeFault], name: &str) -> Option<&'a NodeFault> {
    faults.iter().find(|fault| fault.input.as_deref() == Some(name))
}
