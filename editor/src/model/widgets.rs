//! Widget values by input name, and ComfyUI's "control after generate" for seeds.

use super::catalog::Catalog;
use super::catalog::{default_choice, default_values};
use super::graph::EditorGraph;
use super::node::{NodeInstance, NodeMode};
use kinograph_engine::workflow::widgets::{layout, widget_order};
use kinograph_engine::{InputKind, InputSpec, NodeSchema};
use serde_json::Value as Json;

/// Where the value of widget `name` sits in the node's `widgets_values`.
pub fn widget_index(schema: &NodeSchema, node: &NodeInstance, name: &str) -> Option<usize> {
    layout(schema, node.widget_list()).index_of(name)
}

/// The widget inputs `node` shows, in order: a dynamic combo's stored choice decides which of its
/// options' widgets follow it.
pub fn shown_widgets<'a>(schema: &'a NodeSchema, node: &NodeInstance) -> Vec<&'a InputSpec> {
    layout(schema, node.widget_list()).slots.into_iter().map(|slot| slot.input).collect()
}

/// `node`'s `widgets_values` after dynamic combo `name` changes to `choice`: the widgets of the new
/// option take their defaults, the widgets shown before and after keep their values (and extras).
pub fn with_choice(schema: &NodeSchema, node: &NodeInstance, name: &str, choice: &str) -> Vec<Json> {
    let values = node.widget_list();
    let before = layout(schema, values);
    let mut choices: std::collections::HashMap<String, String> = before
        .slots
        .iter()
        .filter(|slot| !slot.input.dynamic_options().is_empty())
        .filter_map(|slot| Some((slot.input.name.clone(), values.get(slot.index?)?.as_str()?.to_string())))
        .collect();
    choices.insert(name.to_string(), choice.to_string());
    let mut rebuilt = Vec::new();
    for input in widget_order(schema, |combo| choices.get(&combo.name).cloned().or_else(|| default_choice(combo))) {
        let defaults = default_values(input);
        match before.index_of(&input.name) {
            Some(index) => {
                let start = rebuilt.len();
                rebuilt.extend(values.iter().skip(index).take(defaults.len()).cloned());
                if input.name == name {
                    rebuilt[start] = Json::from(choice);
                }
            }
            None => rebuilt.extend(defaults),
        }
    }
    rebuilt
}

/// What happens to a seed after each queued run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedControl {
    Fixed,
    Increment,
    Decrement,
    Randomize,
}

impl SeedControl {
    /// Every mode, in the order the editor offers them.
    pub const ALL: [SeedControl; 4] =
        [SeedControl::Fixed, SeedControl::Increment, SeedControl::Decrement, SeedControl::Randomize];

    /// The keyword ComfyUI stores after the seed.
    pub fn keyword(self) -> &'static str {
        match self {
            SeedControl::Fixed => "fixed",
            SeedControl::Increment => "increment",
            SeedControl::Decrement => "decrement",
            SeedControl::Randomize => "randomize",
        }
    }

    /// The mode a stored keyword names (`increment-wrap` counts as increment).
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        match keyword {
            "fixed" => Some(SeedControl::Fixed),
            "increment" | "increment-wrap" => Some(SeedControl::Increment),
            "decrement" => Some(SeedControl::Decrement),
            "randomize" => Some(SeedControl::Randomize),
            _ => None,
        }
    }
}

/// Whether an INT input carries a control keyword after its value.
pub fn has_seed_control(schema: &NodeSchema, name: &str) -> bool {
    schema.input_spec(name).is_some_and(|input| {
        matches!(&input.kind, InputKind::Int(options)
            if options.control_after_generate || name == "seed" || name == "noise_seed")
    })
}

/// The control mode of seed widget `name`, when the node stores one.
pub fn seed_control(schema: &NodeSchema, node: &NodeInstance, name: &str) -> Option<SeedControl> {
    if !has_seed_control(schema, name) {
        return None;
    }
    let index = widget_index(schema, node, name)?;
    node.widget_list().get(index + 1).and_then(Json::as_str).and_then(SeedControl::from_keyword)
}

/// Largest seed `Randomize` draws: ComfyUI's frontend keeps random seeds within 2^50 so that they stay
/// exact in JavaScript numbers.
const RANDOM_SEED_LIMIT: i128 = 1 << 50;

/// Applies every seed's control mode, as after a queued run: increments, decrements (within the input's
/// min and max) and draws new random seeds with `next_random`. Muted and bypassed nodes are left alone.
/// Returns how many values changed.
pub fn apply_seed_controls(graph: &mut EditorGraph, catalog: &Catalog, next_random: &mut dyn FnMut() -> u64) -> usize {
    let mut changed = 0;
    for node in graph.nodes.iter_mut().filter(|node| node.mode == NodeMode::Normal) {
        let Some(schema) = catalog.schema(&node.class_type) else { continue };
        for input in &schema.inputs {
            let InputKind::Int(options) = &input.kind else { continue };
            let Some(control) = seed_control(schema, node, &input.name) else { continue };
            let Some(index) = widget_index(schema, node, &input.name) else { continue };
            let Some(Json::Array(values)) = node.widgets_values.as_mut() else { continue };
            let Some(current) =
                values[index].as_i64().map(i128::from).or_else(|| values[index].as_u64().map(i128::from))
            else {
                continue;
            };
            let min = options.min.unwrap_or(0);
            let max = options.max.unwrap_or(i128::from(u64::MAX));
            let next = match control {
                SeedControl::Fixed => current,
                SeedControl::Increment => (current + 1).min(max),
                SeedControl::Decrement => (current - 1).max(min),
                SeedControl::Randomize => {
                    let span = (max.min(RANDOM_SEED_LIMIT) - min).max(0) + 1;
                    min + i128::from(next_random()) % span
                }
            };
            if next != current {
                values[index] = u64::try_from(next).map_or_else(|_| Json::from(next as i64), Json::from);
                changed += 1;
            }
        }
    }
    changed
}

/// A small deterministic generator (`SplitMix64`) for random seeds.
#[derive(Debug, Clone)]
pub struct SeedRandom(u64);

impl SeedRandom {
    /// A generator starting from `state`.
    pub fn new(state: u64) -> Self {
        SeedRandom(state)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
