//! An API prompt as a UI workflow: the nodes laid out in columns by their depth in the graph, widget
//! values in the order the editor stores them (with the seed-control and upload values it adds), links
//! with their types. Converting the result back with [`super::convert`] gives the same prompt, so an
//! API workflow can be stored in outputs and opened in a node editor like one saved there.

use super::api::{ApiPrompt, InputValue, WorkflowError};
use super::ui::UiWorkflow;
use super::widgets::widget_order;
use crate::node::Environment;
use crate::registry::Registry;
use crate::schema::{InputKind, InputSpec, NodeSchema};
use crate::value::int_to_json;
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;

/// Horizontal distance between columns, and the node width, in canvas units.
const COLUMN: f64 = 380.0;
const NODE_WIDTH: f64 = 320.0;
/// Height of a title, and of one slot or widget row.
const TITLE: f64 = 30.0;
const ROW: f64 = 24.0;
const GAP: f64 = 40.0;

/// Lays out `prompt` as a UI workflow (format 0.4). Every node's class must be in `registry`.
pub fn ui_from_prompt(prompt: &ApiPrompt, registry: &Registry, env: &Environment) -> Result<UiWorkflow, WorkflowError> {
    let ids = numeric_ids(prompt);
    let mut schemas: HashMap<&str, NodeSchema> = HashMap::new();
    for (id, node) in &prompt.nodes {
        let class = node.class_type.as_deref().unwrap_or_default();
        let schema = registry
            .get(class)
            .ok_or_else(|| WorkflowError::Edit(format!("node {id}: unknown node type '{class}' cannot be laid out")))?
            .schema(env);
        schemas.insert(id.as_str(), schema);
    }
    let depth = depths(prompt);

    // Links first, so that outputs can list theirs.
    let mut links = Vec::new();
    let mut input_links: HashMap<(&str, &str), i64> = HashMap::new();
    let mut output_links: HashMap<(&str, usize), Vec<i64>> = HashMap::new();
    for (id, node) in &prompt.nodes {
        let schema = &schemas[id.as_str()];
        for (slot, input) in ui_inputs(schema, node).iter().enumerate() {
            let Some(InputValue::Link(link)) = node.inputs.get(&input.name) else { continue };
            let Some(origin) = schemas.get(link.node.as_str()) else { continue };
            let type_name = origin.outputs.get(link.slot).map_or("*", |output| output.type_name.as_str());
            let link_id = links.len() as i64 + 1;
            links.push(json!([link_id, ids[&link.node], link.slot, ids[id], slot, type_name]));
            input_links.insert((id.as_str(), input.name.as_str()), link_id);
            output_links.entry((link.node.as_str(), link.slot)).or_default().push(link_id);
        }
    }

    let mut column_height: HashMap<usize, f64> = HashMap::new();
    let mut nodes = Vec::new();
    for (order, (id, node)) in prompt.nodes.iter().enumerate() {
        let schema = &schemas[id.as_str()];
        let inputs: Vec<Json> = ui_inputs(schema, node)
            .iter()
            .map(|input| {
                let mut slot = Map::new();
                slot.insert("name".into(), json!(input.name));
                slot.insert("type".into(), json!(input.kind.type_name()));
                if input.kind.is_widget() {
                    slot.insert("widget".into(), json!({"name": input.name}));
                }
                slot.insert(
                    "link".into(),
                    input_links.get(&(id.as_str(), input.name.as_str())).map_or(Json::Null, |l| json!(l)),
                );
                Json::Object(slot)
            })
            .collect();
        let outputs: Vec<Json> = schema
            .outputs
            .iter()
            .enumerate()
            .map(|(slot, output)| {
                let links = output_links.get(&(id.as_str(), slot)).cloned().unwrap_or_default();
                json!({"name": output.name, "type": output.type_name, "links": links, "slot_index": slot})
            })
            .collect();
        let widgets = widget_values(schema, node);
        let rows = inputs.len().max(outputs.len()) + prompt_widgets(schema, node).len();
        let height = TITLE + ROW * rows as f64;
        let column = depth.get(id.as_str()).copied().unwrap_or(0);
        let top = column_height.entry(column).or_insert(0.0);
        let position = [column as f64 * COLUMN, *top];
        *top += height + GAP;
        let mut entry = Map::new();
        entry.insert("id".into(), json!(ids[id]));
        entry.insert("type".into(), json!(schema.class_type));
        entry.insert("pos".into(), json!(position));
        entry.insert("size".into(), json!([NODE_WIDTH, height]));
        entry.insert("flags".into(), json!({}));
        entry.insert("order".into(), json!(order));
        entry.insert("mode".into(), json!(0));
        entry.insert("inputs".into(), Json::Array(inputs));
        entry.insert("outputs".into(), Json::Array(outputs));
        entry.insert("properties".into(), json!({"Node name for S&R": schema.class_type}));
        entry.insert("widgets_values".into(), Json::Array(widgets));
        if let Some(title) = node.extra.get("_meta").and_then(|meta| meta.get("title")).and_then(Json::as_str)
            && title != schema.display_name
        {
            entry.insert("title".into(), json!(title));
        }
        nodes.push(Json::Object(entry));
    }
    let workflow = json!({
        "last_node_id": ids.values().copied().max().unwrap_or(0),
        "last_link_id": links.len(),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4
    });
    UiWorkflow::from_json(workflow, "laid-out prompt")
}

/// The slots a node shows: its socket inputs, plus widget inputs that a link feeds. The inputs of a
/// dynamic combo's options show only under the option the prompt picks.
fn ui_inputs<'a>(schema: &'a NodeSchema, node: &super::api::PromptNode) -> Vec<&'a InputSpec> {
    let required = schema.inputs.iter().filter(|input| !input.optional);
    let optional = schema.inputs.iter().filter(|input| input.optional);
    let shown = |input: &InputSpec| match schema.dynamic_parent(input) {
        Some(parent) => selected(schema, node, parent)
            .is_some_and(|key| schema.dynamic_children(parent, &key).iter().any(|child| child.name == input.name)),
        None => true,
    };
    required
        .chain(optional)
        .filter(|input| {
            !input.kind.is_widget()
                || input.force_input
                || matches!(node.inputs.get(&input.name), Some(InputValue::Link(_)))
        })
        .filter(|input| shown(input))
        .collect()
}

/// The option of dynamic combo `combo` that `node` picks: its literal, else the default.
fn selected(schema: &NodeSchema, node: &super::api::PromptNode, combo: &InputSpec) -> Option<String> {
    if combo.dynamic_options().is_empty() {
        return None;
    }
    let shown = match schema.dynamic_parent(combo) {
        Some(parent) => selected(schema, node, parent)
            .is_some_and(|key| schema.dynamic_children(parent, &key).iter().any(|child| child.name == combo.name)),
        None => true,
    };
    if !shown {
        return None;
    }
    match node.inputs.get(&combo.name) {
        Some(InputValue::Literal(Json::String(key))) => Some(key.clone()),
        _ => default_value(combo).as_str().map(str::to_string),
    }
}

/// The widgets the editor shows for `node`, in order.
fn prompt_widgets<'a>(schema: &'a NodeSchema, node: &super::api::PromptNode) -> Vec<&'a InputSpec> {
    widget_order(schema, |combo| selected(schema, node, combo))
}

/// `widgets_values`: each widget's value (the prompt's literal, else the default), followed by the
/// extra values the editor stores (`fixed` after seeds, `image` after an upload combo). Optional widgets
/// the prompt leaves out are left out at the end too, so that converting back gives the same prompt.
fn widget_values(schema: &NodeSchema, node: &super::api::PromptNode) -> Vec<Json> {
    let mut values = Vec::new();
    // The length up to the last widget the prompt sets or needs.
    let mut kept = 0;
    for input in prompt_widgets(schema, node) {
        let value = match node.inputs.get(&input.name) {
            Some(InputValue::Literal(literal)) => literal.clone(),
            _ => default_value(input),
        };
        values.push(value);
        match &input.kind {
            InputKind::Int(options)
                if options.control_after_generate || input.name == "seed" || input.name == "noise_seed" =>
            {
                values.push(json!("fixed"));
            }
            InputKind::Combo(options) => {
                if options.control_after_generate {
                    values.push(json!("fixed"));
                    values.push(json!(""));
                }
                if options.image_upload {
                    values.push(json!("image"));
                }
            }
            _ => {}
        }
        if !input.optional || node.inputs.contains_key(&input.name) {
            kept = values.len();
        }
    }
    values.truncate(kept);
    values
}

fn default_value(input: &InputSpec) -> Json {
    match &input.kind {
        InputKind::Int(options) => int_to_json(options.default),
        InputKind::Float(options) => json!(options.default),
        InputKind::String(options) => json!(options.default),
        InputKind::Boolean(options) => json!(options.default),
        InputKind::Combo(options) => json!(options.default.clone().or_else(|| options.options.first().cloned())),
        InputKind::Socket(_) => Json::Null,
    }
}

/// The editor needs numeric node ids: numeric prompt ids are kept, others get the next free numbers.
fn numeric_ids(prompt: &ApiPrompt) -> HashMap<String, i64> {
    let mut ids: HashMap<String, i64> = prompt
        .nodes
        .keys()
        .filter_map(|id| id.parse::<i64>().ok().filter(|n| *n > 0).map(|n| (id.clone(), n)))
        .collect();
    let mut next = ids.values().copied().max().unwrap_or(0);
    for id in prompt.nodes.keys() {
        if !ids.contains_key(id) {
            next += 1;
            ids.insert(id.clone(), next);
        }
    }
    ids
}

/// Each node's column: the length of the longest chain of links leading to it (cycles cut).
fn depths(prompt: &ApiPrompt) -> HashMap<&str, usize> {
    fn visit<'a>(
        prompt: &'a ApiPrompt,
        id: &'a str,
        memo: &mut HashMap<&'a str, usize>,
        stack: &mut Vec<&'a str>,
    ) -> usize {
        if let Some(depth) = memo.get(id) {
            return *depth;
        }
        if stack.contains(&id) {
            return 0;
        }
        stack.push(id);
        let depth = prompt.nodes.get(id).map_or(0, |node| {
            node.inputs
                .values()
                .filter_map(|value| match value {
                    InputValue::Link(link) => {
                        prompt.nodes.get_key_value(link.node.as_str()).map(|(key, _)| key.as_str())
                    }
                    _ => None,
                })
                .map(|origin| visit(prompt, origin, memo, stack) + 1)
                .max()
                .unwrap_or(0)
        });
        stack.pop();
        memo.insert(id, depth);
        depth
    }
    let mut memo = HashMap::new();
    for id in prompt.nodes.keys() {
        visit(prompt, id, &mut memo, &mut Vec::new());
    }
    memo
}
