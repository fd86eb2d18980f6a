//! UI workflow → API prompt, with the rules of ComfyUI's editor (`graphToPrompt`).
//!
//! Widget values are mapped by position onto each node's widget inputs (see [`super::widgets`]); links
//! override widgets of the same name. Notes are dropped; `Reroute`s are followed; a `PrimitiveNode`
//! gives its value to the inputs it feeds; muted nodes (mode 2) are left out and inputs linked to them
//! deleted; bypassed nodes (mode 4) are replaced by one of their inputs, chosen by the editor's rule;
//! subgraph instances are flattened, their inner nodes taking `outer:inner` ids and unconnected subgraph
//! inputs the instance's promoted widget values. Dynamic prompts are resolved with a seeded choice.
//! Classes the registry lacks keep their links and class so that validation reports them.

use super::api::{ApiPrompt, InputValue, Link, PromptNode, WorkflowError};
use super::dynamic_prompts::{Chooser, has_dynamic_parts, resolve};
use super::ui::{SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE, SubgraphDefinition, UiGraph, UiLink, UiNode, UiWorkflow};
use super::widgets::layout;
use crate::node::Environment;
use crate::registry::Registry;
use crate::schema::{InputKind, NodeSchema};
use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Choices a caller may make about a conversion.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Seed for `{a|b}` dynamic prompts. `None`: 0, so a file always converts to the same prompt. Each
    /// widget draws from its own generator, seeded from this seed, its node id, its input name and its
    /// text: the choices are derived from the workflow, and editing one widget does not reshuffle the
    /// choices of the others.
    pub dynamic_prompt_seed: Option<u64>,
}

/// Something in the file that the conversion had to guess about.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionWarning {
    /// The node's id in the API prompt (`92:89` inside a subgraph).
    pub node_id: String,
    pub title: Option<String>,
    pub class_type: String,
    pub message: String,
}

impl fmt::Display for ConversionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.title {
            Some(title) if title != &self.class_type => {
                write!(f, "node {} \"{title}\" ({}): {}", self.node_id, self.class_type, self.message)
            }
            _ => write!(f, "node {} ({}): {}", self.node_id, self.class_type, self.message),
        }
    }
}

/// A converted workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub prompt: ApiPrompt,
    pub warnings: Vec<ConversionWarning>,
}

/// Converts `workflow` to the API form, reading node schemas from `registry` computed with `env`.
pub fn convert(
    workflow: &UiWorkflow,
    registry: &Registry,
    env: &Environment,
    options: &ConvertOptions,
) -> Result<Conversion, WorkflowError> {
    let definitions: HashMap<&str, &SubgraphDefinition> =
        workflow.all_subgraphs().into_iter().map(|definition| (definition.id.as_str(), definition)).collect();
    let mut converter = Converter {
        scopes: Vec::new(),
        definitions,
        registry,
        env,
        schemas: HashMap::new(),
        seed: options.dynamic_prompt_seed.unwrap_or(0),
        warnings: Vec::new(),
    };
    converter.add_scope(&workflow.root, "", None, &mut Vec::new())?;
    let mut nodes = IndexMap::new();
    for scope_index in 0..converter.scopes.len() {
        converter.emit_scope(scope_index, &mut nodes);
    }
    // An input linked to a node that is not in the prompt (muted, a note) is deleted, not left dangling.
    let present: HashSet<String> = nodes.keys().cloned().collect();
    for node in nodes.values_mut() {
        node.inputs.retain(|_, value| !matches!(value, InputValue::Link(link) if !present.contains(&link.node)));
    }
    Ok(Conversion { prompt: ApiPrompt { nodes }, warnings: converter.warnings })
}

/// One graph being flattened: the root, or one instance of a subgraph.
struct Scope<'a> {
    graph: &'a UiGraph,
    /// Prefix of the ids of this scope's nodes in the prompt (`""`, `"92:"`, `"92:7:"`).
    prefix: String,
    /// The instance this scope expands: its scope, the instance node and its definition.
    parent: Option<(usize, &'a UiNode, &'a SubgraphDefinition)>,
    nodes: HashMap<&'a str, &'a UiNode>,
    links: HashMap<i64, &'a UiLink>,
    /// Instance node id → the scope expanding it.
    children: HashMap<&'a str, usize>,
}

/// Where an input's value comes from.
enum Source {
    Link(Link),
    Constant(Json),
    /// The input is deleted (it reached a muted node or a note).
    Dropped,
    /// Nothing overrides the widget value.
    Keep,
}

/// Link chains longer than this (through reroutes, bypassed nodes, subgraph boundaries) are cut.
const MAX_HOPS: usize = 512;
const MAX_SCOPES: usize = 10_000;

struct Converter<'a> {
    scopes: Vec<Scope<'a>>,
    definitions: HashMap<&'a str, &'a SubgraphDefinition>,
    registry: &'a Registry,
    env: &'a Environment,
    schemas: HashMap<String, Option<Arc<NodeSchema>>>,
    seed: u64,
    warnings: Vec<ConversionWarning>,
}

fn is_note(type_name: &str) -> bool {
    matches!(type_name, "Note" | "MarkdownNote")
}

impl<'a> Converter<'a> {
    fn add_scope(
        &mut self,
        graph: &'a UiGraph,
        prefix: &str,
        parent: Option<(usize, &'a UiNode, &'a SubgraphDefinition)>,
        stack: &mut Vec<&'a str>,
    ) -> Result<usize, WorkflowError> {
        if self.scopes.len() >= MAX_SCOPES {
            return Err(WorkflowError::Ui {
                origin: "the workflow".into(),
                message: format!("subgraphs expand to more than {MAX_SCOPES} instances"),
            });
        }
        let index = self.scopes.len();
        self.scopes.push(Scope {
            graph,
            prefix: prefix.to_string(),
            parent,
            nodes: graph.nodes.iter().map(|node| (node.id.as_str(), node)).collect(),
            links: graph.links.iter().map(|link| (link.id, link)).collect(),
            children: HashMap::new(),
        });
        for node in &graph.nodes {
            let Some(&definition) = self.definitions.get(node.type_name.as_str()) else { continue };
            // A muted or bypassed instance runs none of its inner nodes.
            if node.mode == 2 || node.mode == 4 {
                continue;
            }
            if stack.contains(&definition.id.as_str()) {
                return Err(WorkflowError::Ui {
                    origin: "the workflow".into(),
                    message: format!(
                        "node {prefix}{} uses subgraph '{}', which contains itself",
                        node.id, definition.name
                    ),
                });
            }
            stack.push(&definition.id);
            let child = self.add_scope(
                &definition.graph,
                &format!("{prefix}{}:", node.id),
                Some((index, node, definition)),
                stack,
            )?;
            stack.pop();
            self.scopes[index].children.insert(node.id.as_str(), child);
        }
        Ok(index)
    }

    fn schema(&mut self, class: &str) -> Option<Arc<NodeSchema>> {
        if let Some(known) = self.schemas.get(class) {
            return known.clone();
        }
        let schema = self.registry.get(class).map(|node| Arc::new(node.schema(self.env)));
        self.schemas.insert(class.to_string(), schema.clone());
        schema
    }

    fn emit_scope(&mut self, scope_index: usize, out: &mut IndexMap<String, PromptNode>) {
        let graph = self.scopes[scope_index].graph;
        for node in &graph.nodes {
            let virtual_node = is_note(&node.type_name)
                || matches!(node.type_name.as_str(), "Reroute" | "PrimitiveNode")
                || self.definitions.contains_key(node.type_name.as_str());
            if virtual_node || node.mode == 2 || node.mode == 4 {
                continue;
            }
            let id = format!("{}{}", self.scopes[scope_index].prefix, node.id);
            let converted = self.convert_node(scope_index, node, &id);
            out.insert(id, converted);
        }
    }

    fn convert_node(&mut self, scope_index: usize, node: &'a UiNode, id: &str) -> PromptNode {
        let schema = self.schema(&node.type_name);
        let title = node
            .title
            .clone()
            .or_else(|| schema.as_ref().map(|schema| schema.display_name.clone()))
            .unwrap_or_else(|| node.type_name.clone());
        let mut inputs: IndexMap<String, InputValue> = IndexMap::new();
        if let Some(schema) = &schema {
            self.map_widgets(node, schema, id, &title, &mut inputs);
        }
        for input in &node.inputs {
            let Some(link) = input.link else { continue };
            let name =
                if input.name.is_empty() { input.widget.clone().unwrap_or_default() } else { input.name.clone() };
            match self.resolve(scope_index, link, &input.type_name, 0) {
                Source::Link(link) => {
                    inputs.insert(name, InputValue::Link(link));
                }
                Source::Constant(value) => {
                    let value = self.dynamic(schema.as_deref(), &name, id, value);
                    inputs.insert(name, InputValue::Literal(value));
                }
                Source::Dropped => {
                    inputs.shift_remove(&name);
                }
                Source::Keep => {}
            }
        }
        let mut extra = Map::new();
        extra.insert("_meta".into(), json!({ "title": title }));
        PromptNode { class_type: Some(node.type_name.clone()), inputs, extra }
    }

    fn map_widgets(
        &mut self,
        node: &UiNode,
        schema: &NodeSchema,
        id: &str,
        title: &str,
        inputs: &mut IndexMap<String, InputValue>,
    ) {
        if let Some(Json::Object(by_name)) = &node.widgets_values {
            for (name, value) in by_name {
                if schema.input_spec(name).is_some_and(|input| input.kind.is_widget()) {
                    let value = self.dynamic(Some(schema), name, id, value.clone());
                    inputs.insert(name.clone(), InputValue::Literal(value));
                }
            }
            return;
        }
        let values = node.widget_list();
        let mapping = layout(schema, values);
        if mapping.mismatched() {
            self.warnings.push(ConversionWarning {
                node_id: id.to_string(),
                title: Some(title.to_string()),
                class_type: node.type_name.clone(),
                message: format!(
                    "widgets_values holds {} value{}, the schema expects {}; values were mapped by position and may \
                     land on the wrong inputs (the file was likely saved by another version of this node)",
                    mapping.found,
                    if mapping.found == 1 { "" } else { "s" },
                    mapping.expected
                ),
            });
        }
        for slot in &mapping.slots {
            let Some(index) = slot.index else { continue };
            let value = self.dynamic(Some(schema), &slot.input.name, id, values[index].clone());
            inputs.insert(slot.input.name.clone(), InputValue::Literal(value));
        }
    }

    /// Resolves dynamic prompts in a STRING widget that asks for them.
    fn dynamic(&self, schema: Option<&NodeSchema>, name: &str, id: &str, value: Json) -> Json {
        let dynamic = schema
            .and_then(|schema| schema.input_spec(name))
            .is_some_and(|input| matches!(&input.kind, InputKind::String(options) if options.dynamic_prompts));
        match value {
            Json::String(text) if dynamic && has_dynamic_parts(&text) => {
                Json::String(resolve(&text, &mut Chooser::for_widget(self.seed, id, name, &text)))
            }
            other => other,
        }
    }

    /// Follows link `link_id` of scope `scope_index` back to the node that produces its value.
    fn resolve(&self, scope_index: usize, link_id: i64, target_type: &str, hops: usize) -> Source {
        if hops > MAX_HOPS {
            return Source::Dropped;
        }
        let scope = &self.scopes[scope_index];
        let Some(link) = scope.links.get(&link_id) else { return Source::Keep };
        if link.origin == SUBGRAPH_INPUT_NODE {
            return self.resolve_subgraph_input(scope_index, link.origin_slot, target_type, hops);
        }
        let Some(origin) = scope.nodes.get(link.origin.as_str()) else { return Source::Dropped };
        if is_note(&origin.type_name) || origin.mode == 2 {
            return Source::Dropped;
        }
        let definition = self.definitions.get(origin.type_name.as_str()).copied();
        // Bypass comes first, for subgraph instances too: the value passes through one of the node's inputs.
        if origin.mode == 4 {
            let inputs: Vec<(&str, &str)> = match definition {
                Some(definition) => {
                    definition.inputs.iter().map(|slot| (slot.name.as_str(), slot.type_name.as_str())).collect()
                }
                None => origin.inputs.iter().map(|input| (input.name.as_str(), input.type_name.as_str())).collect(),
            };
            let output_type = match definition {
                Some(definition) => definition.outputs.get(link.origin_slot).map(|slot| slot.type_name.as_str()),
                None => origin.outputs.get(link.origin_slot).map(|output| output.type_name.as_str()),
            };
            let types: Vec<&str> = inputs.iter().map(|(_, type_name)| *type_name).collect();
            let Some(chosen) = bypass_slot(&types, output_type.unwrap_or("*"), link.origin_slot, target_type) else {
                return Source::Keep;
            };
            let chosen_name = inputs[chosen].0;
            let next = match definition {
                Some(_) => origin.inputs.iter().find(|input| input.name == chosen_name).and_then(|input| input.link),
                None => origin.inputs[chosen].link,
            };
            return match next {
                Some(next) => self.resolve(scope_index, next, target_type, hops + 1),
                None => Source::Keep,
            };
        }
        if let Some(&child) = scope.children.get(origin.id.as_str()) {
            let inner = &self.scopes[child];
            let feeding = inner.graph.links.iter().find(|inner_link| {
                inner_link.target == SUBGRAPH_OUTPUT_NODE && inner_link.target_slot == link.origin_slot
            });
            return match feeding {
                Some(inner_link) => self.resolve(child, inner_link.id, target_type, hops + 1),
                None => Source::Keep,
            };
        }
        match origin.type_name.as_str() {
            "Reroute" => {
                return match origin.inputs.first().and_then(|input| input.link) {
                    Some(next) => self.resolve(scope_index, next, target_type, hops + 1),
                    None => Source::Keep,
                };
            }
            "PrimitiveNode" => {
                return origin.widget_list().first().cloned().map_or(Source::Keep, Source::Constant);
            }
            _ => {}
        }
        Source::Link(Link { node: format!("{}{}", scope.prefix, origin.id), slot: link.origin_slot })
    }

    /// A link from a subgraph's input node: continue outside, at the instance's input, or take the
    /// instance's promoted widget value.
    fn resolve_subgraph_input(&self, scope_index: usize, slot: usize, target_type: &str, hops: usize) -> Source {
        let Some((parent, instance, definition)) = self.scopes[scope_index].parent else { return Source::Keep };
        let Some(input) = definition.inputs.get(slot) else { return Source::Dropped };
        let outer_link = instance.inputs.iter().find(|outer| outer.name == input.name).and_then(|outer| outer.link);
        if let Some(outer_link) = outer_link {
            return self.resolve(parent, outer_link, target_type, hops + 1);
        }
        promoted_value(definition, instance, slot).map_or(Source::Keep, Source::Constant)
    }
}

/// The promoted widget value of subgraph input `slot` stored on `instance`: one value per definition
/// input that feeds a widget, in input order. Older files may also hold a seed's control keyword after
/// its value; such keywords are passed over.
fn promoted_value(definition: &SubgraphDefinition, instance: &UiNode, slot: usize) -> Option<Json> {
    let values = instance.widget_list();
    let mut cursor = 0;
    for (index, input) in definition.inputs.iter().enumerate() {
        if !feeds_widget(definition, &input.link_ids) {
            continue;
        }
        if index == slot {
            return values.get(cursor).cloned();
        }
        cursor += 1;
        let control = values
            .get(cursor)
            .and_then(Json::as_str)
            .is_some_and(|text| matches!(text, "fixed" | "increment" | "decrement" | "randomize" | "increment-wrap"));
        if control && input.type_name == "INT" {
            cursor += 1;
        }
    }
    None
}

/// Whether a subgraph input's links end on widget inputs of inner nodes.
pub fn feeds_widget(definition: &SubgraphDefinition, link_ids: &[i64]) -> bool {
    link_ids.iter().any(|id| {
        definition.graph.links.iter().find(|link| link.id == *id).is_some_and(|link| {
            definition
                .graph
                .node(&link.target)
                .and_then(|node| node.inputs.get(link.target_slot))
                .is_some_and(|input| input.widget.is_some())
        })
    })
}

/// The editor's link-compatibility rule: empty and `*` match anything; otherwise equal names, case
/// ignored, or comma lists that share a name.
fn compatible(left: &str, right: &str) -> bool {
    if left.is_empty() || left == "*" || right.is_empty() || right == "*" {
        return true;
    }
    let (left, right) = (left.to_ascii_lowercase(), right.to_ascii_lowercase());
    left == right || left.split(',').any(|a| right.split(',').any(|b| a.trim() == b.trim()))
}

/// Which input of a bypassed node (input types `inputs`) stands in for its output `slot` (of type
/// `output_type`) feeding an input of `target_type`: the input at the same index if it fits both the output
/// and the target, else the first input of exactly the target's type, else the first input that fits
/// both. An untyped target takes the same index, or the first input.
fn bypass_slot(inputs: &[&str], output_type: &str, slot: usize, target_type: &str) -> Option<usize> {
    if inputs.is_empty() {
        return None;
    }
    if target_type.is_empty() || target_type == "*" {
        return Some(if slot < inputs.len() { slot } else { 0 });
    }
    if let Some(same) = inputs.get(slot)
        && compatible(same, output_type)
        && compatible(same, target_type)
    {
        return Some(slot);
    }
    inputs
        .iter()
        .position(|input| *input == target_type)
        .or_else(|| inputs.iter().position(|input| compatible(input, output_type) && compatible(input, target_type)))
}
