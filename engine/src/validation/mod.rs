//! Validation: everything checked before anything runs, every error reported at once.
//!
//! Follows ComfyUI's `validate_prompt`: unknown classes anywhere in the prompt; then, for the nodes the
//! output nodes need, missing inputs, malformed links and links to nodes that do not exist, type
//! mismatches, constants of the wrong type, out of range or not in a combo's list, the nodes' own checks,
//! and dependency cycles. Unlike ComfyUI, it does not stop at the first unknown class.

mod constants;
mod report;

pub use constants::closest_options;
pub use report::{ErrorType, NodeErrors, ValidationError, ValidationReport};

use crate::graph::{Graph, GraphInput, GraphNode};
use crate::node::{Environment, Node, NodeInputs};
use crate::registry::Registry;
use crate::schema::{InputKind, NodeSchema, types_compatible};
use crate::workflow::{ApiPrompt, InputValue};
use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Validates `prompt` for all of its output nodes.
pub fn validate(prompt: &ApiPrompt, registry: &Registry, env: &Environment) -> Result<Graph, ValidationReport> {
    Validator::new(prompt, registry, env).run(None)
}

/// Validates `prompt` for the given output nodes only (ComfyUI's `partial_execution_targets`).
pub fn validate_targets(
    prompt: &ApiPrompt,
    registry: &Registry,
    env: &Environment,
    targets: &[String],
) -> Result<Graph, ValidationReport> {
    Validator::new(prompt, registry, env).run(Some(targets))
}

struct Known {
    node: Arc<dyn Node>,
    schema: Arc<NodeSchema>,
}

struct Validator<'a> {
    prompt: &'a ApiPrompt,
    registry: &'a Registry,
    env: &'a Environment,
    /// Per prompt position: the node type and schema, if the class is known.
    known: Vec<Option<Known>>,
    errors: IndexMap<usize, Vec<ValidationError>>,
}

impl<'a> Validator<'a> {
    fn new(prompt: &'a ApiPrompt, registry: &'a Registry, env: &'a Environment) -> Self {
        let mut schemas: HashMap<&str, Arc<NodeSchema>> = HashMap::new();
        let known = prompt
            .nodes
            .values()
            .map(|node| {
                let class = node.class_type.as_deref()?;
                let implementation = registry.get(class)?;
                let schema = schemas.entry(class).or_insert_with(|| Arc::new(implementation.schema(env))).clone();
                Some(Known { node: implementation.clone(), schema })
            })
            .collect();
        Validator { prompt, registry, env, known, errors: IndexMap::new() }
    }

    fn error(&mut self, position: usize, error: ValidationError) {
        self.errors.entry(position).or_default().push(error);
    }

    fn run(mut self, targets: Option<&[String]>) -> Result<Graph, ValidationReport> {
        self.check_classes();
        let outputs = self.outputs(targets);
        if outputs.is_empty() {
            let no_outputs = ValidationError {
                error_type: ErrorType::PromptNoOutputs,
                message: "Prompt has no outputs".into(),
                details: String::new(),
                extra_info: Map::new(),
                input: None,
                explanation: match targets {
                    Some(targets) => format!("none of the requested nodes ({}) is an output node", targets.join(", ")),
                    None => "the workflow has no output node (a node that saves or previews a result), so there is nothing to run".into(),
                },
            };
            // Unknown classes may well have been the outputs: report them too.
            return Err(self.report(no_outputs, &outputs));
        }
        let reachable = self.reachable(&outputs);
        let mut resolved: HashMap<usize, Vec<(String, GraphInput)>> = HashMap::with_capacity(reachable.len());
        for &position in &reachable {
            if let Some(inputs) = self.check_inputs(position) {
                resolved.insert(position, inputs);
            }
        }
        let order = self.check_cycles(&reachable);
        if !self.errors.is_empty() {
            let summary = ValidationError {
                error_type: ErrorType::PromptOutputsFailedValidation,
                message: "Prompt outputs failed validation".into(),
                details: String::new(),
                extra_info: Map::new(),
                input: None,
                explanation: "prompt outputs failed validation".into(),
            };
            return Err(self.report(summary, &outputs));
        }
        Ok(self.build_graph(&order, &outputs, resolved))
    }

    fn check_classes(&mut self) {
        let registered: Vec<String> = self.registry.class_types().map(str::to_string).collect();
        for (position, (id, node)) in self.prompt.nodes.iter().enumerate() {
            if self.known[position].is_some() {
                continue;
            }
            let class = node.class_type.clone().unwrap_or_default();
            let title = node.title().unwrap_or(&class).to_string();
            let explanation = if node.class_type.is_none() {
                format!("node {id} has no class_type, so kinograph cannot tell what it is")
            } else {
                let closest = closest_options(&class, &registered, 3);
                let hint = if closest.is_empty() {
                    String::new()
                } else {
                    format!("; similar: {}", closest.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", "))
                };
                format!("unknown node type '{class}': no such node is installed (`kinograph nodes` lists them){hint}")
            };
            let mut extra = Map::new();
            extra.insert("node_id".into(), json!(id));
            extra.insert("class_type".into(), json!(class));
            extra.insert("node_title".into(), json!(title));
            self.error(
                position,
                ValidationError {
                    error_type: ErrorType::MissingNodeType,
                    message: format!("Node '{title}' not found. The custom node may not be installed."),
                    details: format!("Node ID '#{id}'"),
                    extra_info: extra,
                    input: None,
                    explanation,
                },
            );
        }
    }

    fn outputs(&self, targets: Option<&[String]>) -> Vec<usize> {
        (0..self.prompt.nodes.len())
            .filter(|&position| self.known[position].as_ref().is_some_and(|k| k.schema.output_node))
            .filter(|&position| {
                targets.is_none_or(|targets| {
                    let id = self.prompt.nodes.get_index(position).map(|(id, _)| id);
                    targets.iter().any(|target| Some(target) == id)
                })
            })
            .collect()
    }

    /// Prompt positions the outputs need, found by walking links backwards.
    fn reachable(&self, outputs: &[usize]) -> Vec<usize> {
        let mut seen = vec![false; self.prompt.nodes.len()];
        let mut queue: VecDeque<usize> = outputs.iter().copied().collect();
        let mut found = Vec::new();
        for &output in outputs {
            seen[output] = true;
        }
        while let Some(position) = queue.pop_front() {
            found.push(position);
            let Some(known) = &self.known[position] else { continue };
            let node = &self.prompt.nodes[position];
            for spec in &known.schema.inputs {
                if let Some(InputValue::Link(link)) = node.inputs.get(&spec.name)
                    && let Some(source) = self.prompt.nodes.get_index_of(&link.node)
                    && !seen[source]
                {
                    seen[source] = true;
                    queue.push_back(source);
                }
            }
        }
        found
    }

    /// Checks one node's inputs; returns them resolved when the node has no errors of its own.
    fn check_inputs(&mut self, position: usize) -> Option<Vec<(String, GraphInput)>> {
        let Some(known) = &self.known[position] else { return None };
        let schema = known.schema.clone();
        let implementation = known.node.clone();
        let (_, node) = self.prompt.nodes.get_index(position).expect("position in range");
        let mut errors = Vec::new();
        let mut resolved = Vec::with_capacity(schema.inputs.len());
        let mut constants = IndexMap::new();
        for spec in &schema.inputs {
            match node.inputs.get(&spec.name) {
                None if spec.optional => {}
                None => errors.push(missing_input(spec, &schema)),
                Some(InputValue::BadLink(raw)) => errors.push(bad_link(spec, raw)),
                Some(InputValue::Link(link)) => match self.check_link(spec, &link.node, link.slot) {
                    Ok(source) => {
                        resolved.push((spec.name.clone(), GraphInput::Link { node: source, slot: link.slot }));
                    }
                    Err(Some(error)) => errors.push(*error),
                    Err(None) => {}
                },
                Some(InputValue::Literal(raw)) => match constants::check_constant(spec, raw) {
                    Ok(value) => {
                        constants.insert(spec.name.clone(), value.clone());
                        resolved.push((spec.name.clone(), GraphInput::Constant(value)));
                    }
                    Err(error) => errors.push(error),
                },
            }
        }
        if errors.is_empty() {
            let constants = NodeInputs::new(constants);
            for (input, message) in implementation.validate(&constants, self.env) {
                let mut extra = Map::new();
                extra.insert("input_name".into(), json!(input));
                errors.push(ValidationError {
                    error_type: ErrorType::CustomValidationFailed,
                    message: "Custom validation failed for node".into(),
                    details: format!("{input} - {message}"),
                    extra_info: extra,
                    input: Some(input.clone()),
                    explanation: message,
                });
            }
        }
        if errors.is_empty() {
            Some(resolved)
        } else {
            for error in errors {
                self.error(position, error);
            }
            None
        }
    }

    /// Checks a link; `Err(None)` means the source has errors of its own and this link adds none.
    #[allow(clippy::result_large_err)]
    fn check_link(
        &self,
        spec: &crate::schema::InputSpec,
        source_id: &str,
        slot: usize,
    ) -> Result<usize, Option<Box<ValidationError>>> {
        let mut extra = Map::new();
        extra.insert("input_name".into(), json!(spec.name));
        extra.insert("input_config".into(), spec.object_info());
        extra.insert("linked_node".into(), json!([source_id, slot]));
        let Some(source) = self.prompt.nodes.get_index_of(source_id) else {
            extra.insert("received_value".into(), json!([source_id, slot]));
            return Err(Some(Box::new(ValidationError {
                error_type: ErrorType::BadLinkedInput,
                message: "Linked node does not exist".into(),
                details: format!("{}: node '{source_id}' is not in the workflow", spec.name),
                extra_info: extra,
                input: Some(spec.name.clone()),
                explanation: format!("is linked to node '{source_id}', which is not in the workflow"),
            })));
        };
        let Some(source_known) = &self.known[source] else { return Err(None) };
        let source_schema = &source_known.schema;
        let expected = spec.kind.type_name();
        let Some(output) = source_schema.outputs.get(slot) else {
            let outputs: Vec<String> =
                source_schema.outputs.iter().map(|o| format!("{} ({})", o.name, o.type_name)).collect();
            return Err(Some(Box::new(ValidationError {
                error_type: ErrorType::BadLinkedInput,
                message: "Bad linked input, output slot does not exist".into(),
                details: format!("{}: node '{source_id}' has no output {slot}", spec.name),
                extra_info: extra,
                input: Some(spec.name.clone()),
                explanation: format!(
                    "is linked to output {slot} of node {source_id} ({}), which has {} output{}{}",
                    source_schema.class_type,
                    outputs.len(),
                    if outputs.len() == 1 { "" } else { "s" },
                    if outputs.is_empty() { String::new() } else { format!(": {}", outputs.join(", ")) }
                ),
            })));
        };
        let received = output.type_name.as_str();
        let compatible = match &spec.kind {
            InputKind::Combo(_) => matches!(received, "COMBO" | "*"),
            _ => {
                types_compatible(received, expected)
                    || spec.also_accepts.iter().any(|accepted| types_compatible(received, accepted))
            }
        };
        if compatible {
            return Ok(source);
        }
        extra.insert("received_type".into(), json!(received));
        Err(Some(Box::new(ValidationError {
            error_type: ErrorType::ReturnTypeMismatch,
            message: "Return type mismatch between linked nodes".into(),
            details: format!("{}, received_type({received}) mismatch input_type({expected})", spec.name),
            extra_info: extra,
            input: Some(spec.name.clone()),
            explanation: format!(
                "expects {expected}, but is linked to output {slot} '{}' of node {source_id} ({}), which gives {received}",
                output.name, source_schema.class_type
            ),
        })))
    }

    /// Finds cycles among the reachable nodes; returns them in dependency order when there are none.
    fn check_cycles(&mut self, reachable: &[usize]) -> Vec<usize> {
        let mut consumers: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut pending: HashMap<usize, usize> = reachable.iter().map(|&p| (p, 0)).collect();
        for &position in reachable {
            for source in self.sources(position) {
                if pending.contains_key(&source) {
                    consumers.entry(source).or_default().push(position);
                    *pending.get_mut(&position).expect("reachable") += 1;
                }
            }
        }
        let mut ready: VecDeque<usize> = reachable.iter().copied().filter(|p| pending[p] == 0).collect();
        let mut order = Vec::with_capacity(reachable.len());
        while let Some(position) = ready.pop_front() {
            order.push(position);
            for &consumer in consumers.get(&position).map_or(&[][..], Vec::as_slice) {
                let count = pending.get_mut(&consumer).expect("reachable");
                *count -= 1;
                if *count == 0 {
                    ready.push_back(consumer);
                }
            }
        }
        if order.len() == reachable.len() {
            return order;
        }
        // What is left is on a cycle or downstream of one; peel off the downstream part.
        let mut left: std::collections::HashSet<usize> = reachable.iter().copied().filter(|p| pending[p] > 0).collect();
        loop {
            let sinks: Vec<usize> = left
                .iter()
                .copied()
                .filter(|p| !consumers.get(p).is_some_and(|c| c.iter().any(|c| left.contains(c))))
                .collect();
            if sinks.is_empty() {
                break;
            }
            for sink in sinks {
                left.remove(&sink);
            }
        }
        let mut cycle: Vec<usize> = left.into_iter().collect();
        cycle.sort_unstable();
        let ids: Vec<String> =
            cycle.iter().map(|&p| self.prompt.nodes.get_index(p).expect("in range").0.clone()).collect();
        for (&position, id) in cycle.iter().zip(&ids) {
            let mut extra = Map::new();
            extra.insert("node_id".into(), json!(id));
            extra.insert("cycle_nodes".into(), json!(ids));
            self.error(
                position,
                ValidationError {
                    error_type: ErrorType::DependencyCycle,
                    message: "Dependency cycle detected".into(),
                    details: format!("node {id} depends on itself through nodes {}", ids.join(", ")),
                    extra_info: extra,
                    input: None,
                    explanation: format!(
                        "is part of a dependency cycle through nodes {}; remove one of the links",
                        ids.join(" → ")
                    ),
                },
            );
        }
        order
    }

    /// Prompt positions of the nodes this node's declared inputs link to.
    fn sources(&self, position: usize) -> Vec<usize> {
        let Some(known) = &self.known[position] else { return Vec::new() };
        let node = &self.prompt.nodes[position];
        known
            .schema
            .inputs
            .iter()
            .filter_map(|spec| match node.inputs.get(&spec.name) {
                Some(InputValue::Link(link)) => self.prompt.nodes.get_index_of(&link.node),
                _ => None,
            })
            .collect()
    }

    fn report(self, error: ValidationError, outputs: &[usize]) -> ValidationReport {
        let mut dependents: HashMap<usize, Vec<String>> = HashMap::new();
        for &output in outputs {
            let output_id = self.prompt.nodes.get_index(output).expect("in range").0.clone();
            for position in self.reachable(&[output]) {
                if self.errors.contains_key(&position) {
                    dependents.entry(position).or_default().push(output_id.clone());
                }
            }
        }
        let mut positions: Vec<usize> = self.errors.keys().copied().collect();
        positions.sort_unstable();
        let mut errors = self.errors;
        let node_errors = positions
            .into_iter()
            .map(|position| {
                let (id, node) = self.prompt.nodes.get_index(position).expect("in range");
                let class_type = node.class_type.clone().unwrap_or_default();
                let entry = NodeErrors {
                    title: node.title().map(str::to_string),
                    class_type,
                    errors: errors.swap_remove(&position).unwrap_or_default(),
                    dependent_outputs: dependents.remove(&position).unwrap_or_default(),
                };
                (id.clone(), entry)
            })
            .collect();
        ValidationReport { error, node_errors }
    }

    fn build_graph(
        self,
        order: &[usize],
        outputs: &[usize],
        mut resolved: HashMap<usize, Vec<(String, GraphInput)>>,
    ) -> Graph {
        let index_of: HashMap<usize, usize> = order.iter().enumerate().map(|(index, &p)| (p, index)).collect();
        let mut known = self.known;
        let nodes = order
            .iter()
            .map(|&position| {
                let (id, prompt_node) = self.prompt.nodes.get_index(position).expect("in range");
                let Known { node, schema } = known[position].take().expect("validated nodes are known");
                let mut inputs = resolved.remove(&position).unwrap_or_default();
                for (_, input) in &mut inputs {
                    if let GraphInput::Link { node: source, .. } = input {
                        *source = index_of[source];
                    }
                }
                GraphNode {
                    id: id.clone(),
                    class_type: schema.class_type.clone(),
                    title: prompt_node.title().map(str::to_string),
                    node,
                    schema,
                    inputs,
                }
            })
            .collect();
        Graph { nodes, outputs: outputs.iter().map(|p| index_of[p]).collect(), prompt: Arc::new(self.prompt.to_json()) }
    }
}

fn missing_input(spec: &crate::schema::InputSpec, schema: &NodeSchema) -> ValidationError {
    let mut extra = Map::new();
    extra.insert("input_name".into(), json!(spec.name));
    let what = if spec.kind.is_widget() {
        format!("a {} value", spec.kind.type_name())
    } else {
        format!("a link from a {} output", spec.kind.type_name())
    };
    ValidationError {
        error_type: ErrorType::RequiredInputMissing,
        message: "Required input is missing".into(),
        details: spec.name.clone(),
        extra_info: extra,
        input: Some(spec.name.clone()),
        explanation: format!("required input is missing; {} needs {what} here", schema.class_type),
    }
}

fn bad_link(spec: &crate::schema::InputSpec, raw: &Json) -> ValidationError {
    let mut extra = Map::new();
    extra.insert("input_name".into(), json!(spec.name));
    extra.insert("input_config".into(), spec.object_info());
    extra.insert("received_value".into(), raw.clone());
    ValidationError {
        error_type: ErrorType::BadLinkedInput,
        message: "Bad linked input, must be a length-2 list of [node_id, slot_index]".into(),
        details: spec.name.clone(),
        extra_info: extra,
        input: Some(spec.name.clone()),
        explanation: format!(
            "{raw} is not a link: a link is [\"node_id\", output_index]; a literal list must be written {{\"__value__\": [...]}}"
        ),
    }
}
