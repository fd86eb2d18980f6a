//! Editing a UI workflow through the engine: a widget value is addressed by node and input name and
//! written at the `widgets_values` position the converter reads it from; everything else (layout,
//! links, unknown fields) stays as it was.

use super::api::WorkflowError;
use super::ui::{SubgraphDefinition, UiGraph, UiNode, UiWorkflow};
use super::ui_to_api::feeds_widget;
use super::widgets::{layout, widget_inputs};
use crate::node::Environment;
use crate::registry::Registry;
use serde_json::Value as Json;

impl UiWorkflow {
    /// Sets widget `input` of node `node_id` to `value`.
    ///
    /// `node_id` is a root node id (`"70"`), or a path into subgraphs (`"92:89"`), which edits the
    /// definition and so every instance of it. On a subgraph instance, `input` names a promoted input.
    pub fn set_widget_value(
        &mut self,
        node_id: &str,
        input: &str,
        value: Json,
        registry: &Registry,
        env: &Environment,
    ) -> Result<(), WorkflowError> {
        let edit = |message: String| WorkflowError::Edit(format!("node {node_id}: {message}"));
        let parts: Vec<&str> = node_id.split(':').collect();
        let (inner_id, path) = parts.split_last().ok_or_else(|| edit("empty node id".into()))?;
        // Walk instance ids down to the graph that holds the node.
        let mut definition_id: Option<String> = None;
        for instance_id in path {
            let graph = match &definition_id {
                None => &self.root,
                Some(id) => &find_definition(&self.root, id).ok_or_else(|| edit("subgraph not found".into()))?.graph,
            };
            let instance = graph.node(instance_id).ok_or_else(|| edit(format!("no node {instance_id}")))?;
            definition_id = Some(instance.type_name.clone());
        }
        // Newer editors keep promoted values on the inner nodes and list them in `proxyWidgets`.
        let holder = match &definition_id {
            None => Some(&self.root),
            Some(id) => find_definition(&self.root, id).map(|definition| &definition.graph),
        };
        if let Some(inner) = holder.and_then(|graph| graph.node(inner_id)).and_then(|node| proxied(node, input)) {
            return self.set_widget_value(&format!("{node_id}:{inner}"), input, value, registry, env);
        }
        let definitions: Vec<SubgraphDefinition> = self.all_subgraphs().into_iter().cloned().collect();
        let graph = match &definition_id {
            None => &mut self.root,
            Some(id) => {
                &mut find_definition_mut(&mut self.root, id)
                    .ok_or_else(|| edit(format!("node {} is not a subgraph instance", path.join(":"))))?
                    .graph
            }
        };
        let node = graph.node_mut(inner_id).ok_or_else(|| edit("no such node".into()))?;
        if let Some(definition) = definitions.iter().find(|definition| definition.id == node.type_name) {
            return set_promoted(node, definition, input, value).map_err(edit);
        }
        let schema = registry
            .get(&node.type_name)
            .map(|implementation| implementation.schema(env))
            .ok_or_else(|| edit(format!("unknown node type '{}', so its widgets are unknown", node.type_name)))?;
        let mut values = node.widget_list().to_vec();
        let index = layout(&schema, &values).index_of(input).ok_or_else(|| {
            let names: Vec<&str> = widget_inputs(&schema).map(|spec| spec.name.as_str()).collect();
            edit(format!("'{input}' is not a widget of {} (its widgets: {})", node.type_name, names.join(", ")))
        })?;
        values[index] = value;
        node.widgets_values = Some(Json::Array(values));
        Ok(())
    }
}

/// The inner node holding widget `input` of a subgraph instance that stores no values of its own but
/// lists `properties.proxyWidgets` (`[[inner_id, widget_name], ...]`).
fn proxied(instance: &UiNode, input: &str) -> Option<String> {
    if !instance.widget_list().is_empty() {
        return None;
    }
    let entries = instance.field("properties")?.get("proxyWidgets")?.as_array()?;
    entries.iter().find_map(|entry| {
        let (inner, name) = (entry.get(0)?, entry.get(1)?.as_str()?);
        let inner = match inner {
            Json::String(id) => id.clone(),
            Json::Number(id) => id.to_string(),
            _ => return None,
        };
        (name == input && !inner.starts_with('-')).then_some(inner)
    })
}

fn set_promoted(node: &mut UiNode, definition: &SubgraphDefinition, input: &str, value: Json) -> Result<(), String> {
    let position = definition
        .inputs
        .iter()
        .filter(|slot| feeds_widget(definition, &slot.link_ids))
        .position(|slot| slot.name == input)
        .ok_or_else(|| format!("subgraph '{}' has no promoted widget '{input}'", definition.name))?;
    let mut values = node.widget_list().to_vec();
    let slot = values.get_mut(position).ok_or_else(|| format!("the instance stores no value for '{input}'"))?;
    *slot = value;
    node.widgets_values = Some(Json::Array(values));
    Ok(())
}

fn find_definition<'a>(graph: &'a UiGraph, id: &str) -> Option<&'a SubgraphDefinition> {
    graph.subgraphs.iter().find_map(|definition| {
        if definition.id == id { Some(definition) } else { find_definition(&definition.graph, id) }
    })
}

fn find_definition_mut<'a>(graph: &'a mut UiGraph, id: &str) -> Option<&'a mut SubgraphDefinition> {
    for definition in &mut graph.subgraphs {
        if definition.id == id {
            return Some(definition);
        }
        if let Some(found) = find_definition_mut(&mut definition.graph, id) {
            return Some(found);
        }
    }
    None
}
