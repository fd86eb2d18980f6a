//! The node classes the editor offers: schemas read once from the registry, searchable by name and
//! grouped by category, and new node instances built from them with the schema's defaults.

use super::node::{NodeInstance, NodeMode, Point, Socket};
use kinograph_engine::schema::types_compatible;
use kinograph_engine::workflow::widgets::widget_order;
use kinograph_engine::{Environment, InputKind, InputSpec, NodeSchema, Registry};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The schemas of every registered node class, with the registry and environment they came from.
pub struct Catalog {
    registry: Arc<Registry>,
    environment: Environment,
    schemas: BTreeMap<String, NodeSchema>,
}

impl Catalog {
    /// Reads the schema of every class in `registry`, computed for `environment` (model file lists).
    pub fn new(registry: Arc<Registry>, environment: Environment) -> Self {
        let schemas = registry
            .class_types()
            .filter_map(|class| registry.get(class).map(|node| (class.to_string(), node.schema(&environment))))
            .collect();
        Catalog { registry, environment, schemas }
    }

    /// This catalog with the combo options a server lists (its `/object_info`) in place of the local
    /// ones, for every combo input of the same node class and name: the model and file lists of the
    /// machine that runs the graph. Classes and inputs the server does not list keep their local options;
    /// a default the server's list lacks is dropped, so that new nodes start on the server's first file.
    pub fn with_server_lists(&self, object_info: &Json) -> Catalog {
        let mut schemas = self.schemas.clone();
        for (class_type, schema) in &mut schemas {
            let Some(inputs) = object_info.get(class_type).and_then(|info| info.get("input")) else { continue };
            for input in &mut schema.inputs {
                let InputKind::Combo(options) = &mut input.kind else { continue };
                if !options.dynamic.is_empty() {
                    continue; // its options choose inputs, not files
                }
                let listed = ["required", "optional"].iter().find_map(|group| inputs.get(*group)?.get(&input.name));
                let Some(listed) = listed.and_then(combo_options) else { continue };
                if options.default.as_ref().is_some_and(|default| !listed.contains(default)) {
                    options.default = None;
                }
                options.options = listed;
            }
        }
        Catalog { registry: Arc::clone(&self.registry), environment: self.environment.clone(), schemas }
    }

    /// Whether `value` is one of the options combo `input` of `class_type` offers.
    pub fn offers(&self, class_type: &str, input: &str, value: &str) -> bool {
        self.schema(class_type).and_then(|schema| schema.input_spec(input)).is_some_and(|spec| match &spec.kind {
            InputKind::Combo(options) => options.options.iter().any(|option| option == value),
            _ => false,
        })
    }

    /// The registry the schemas came from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, shared (for an executor).
    pub fn shared_registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The environment the schemas were computed for.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// The schema of `class_type`.
    pub fn schema(&self, class_type: &str) -> Option<&NodeSchema> {
        self.schemas.get(class_type)
    }

    /// Every schema, by class name.
    pub fn schemas(&self) -> impl Iterator<Item = &NodeSchema> {
        self.schemas.values()
    }

    /// The schemas whose display name, class or category contains every word of `query` (any case),
    /// grouped by category and sorted by display name within it. Deprecated classes are left out.
    pub fn search(&self, query: &str) -> Vec<&NodeSchema> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut found: Vec<&NodeSchema> = self
            .schemas
            .values()
            .filter(|schema| !schema.deprecated)
            .filter(|schema| {
                let text = format!("{} {} {}", schema.display_name, schema.class_type, schema.category).to_lowercase();
                words.iter().all(|word| text.contains(word.as_str()))
            })
            .collect();
        found.sort_by(|a, b| (&a.category, &a.display_name).cmp(&(&b.category, &b.display_name)));
        found
    }

    /// The slot of the first socket on a new `class_type` node that a link could join to a pin of type
    /// `type_name`: an input accepting it when `pin_is_output` (the pin gives the value), else an output
    /// giving it. The sockets are those [`Catalog::instantiate`] makes; `*` on either side matches all.
    pub fn compatible_slot(&self, class_type: &str, type_name: &str, pin_is_output: bool) -> Option<usize> {
        let node = self.instantiate(class_type, [0.0, 0.0])?;
        if pin_is_output {
            node.inputs.iter().position(|input| types_compatible(type_name, &input.type_name))
        } else {
            node.outputs.iter().position(|output| types_compatible(&output.type_name, type_name))
        }
    }

    /// The classes (not deprecated) a link from a pin of type `type_name` could reach, ordered as
    /// [`Catalog::search`] orders them: for an output pin, those with an input accepting the type; for
    /// an input pin, those with an output giving it.
    pub fn compatible_classes(&self, type_name: &str, pin_is_output: bool) -> Vec<&NodeSchema> {
        self.search("")
            .into_iter()
            .filter(|schema| self.compatible_slot(&schema.class_type, type_name, pin_is_output).is_some())
            .collect()
    }

    /// A new instance of `class_type` at `pos`: sockets and widget defaults from its schema. The id is
    /// left at 0 for the graph to assign.
    pub fn instantiate(&self, class_type: &str, pos: Point) -> Option<NodeInstance> {
        let schema = self.schema(class_type)?;
        let inputs: Vec<Socket> = schema
            .inputs
            .iter()
            .filter(|input| !input.kind.is_widget() || input.force_input)
            .map(|input| Socket::new(&input.name, input.kind.type_name()))
            .collect();
        let outputs: Vec<Socket> =
            schema.outputs.iter().map(|output| Socket::new(&output.name, &output.type_name)).collect();
        let widgets = widget_order(schema, default_choice);
        let values: Vec<Json> = widgets.iter().flat_map(|input| default_values(input)).collect();
        let rows = inputs.len().max(outputs.len()) + widgets.len();
        Some(NodeInstance {
            id: 0,
            class_type: class_type.to_string(),
            title: None,
            pos,
            size: [NODE_WIDTH, 12.0 + ROW_HEIGHT * rows as f32],
            mode: NodeMode::Normal,
            inputs,
            outputs,
            widgets_values: (!values.is_empty()).then_some(Json::Array(values)),
            fields: Map::new(),
        })
    }

    /// A note: a node of the frontend-only class `Note` holding `text`.
    pub fn note(text: &str, pos: Point) -> NodeInstance {
        NodeInstance {
            id: 0,
            class_type: "Note".into(),
            title: None,
            pos,
            size: [NODE_WIDTH, 120.0],
            mode: NodeMode::Normal,
            inputs: Vec::new(),
            outputs: Vec::new(),
            widgets_values: Some(Json::Array(vec![Json::String(text.to_string())])),
            fields: Map::new(),
        }
    }
}

impl Catalog {
    /// A new reroute at `pos`: a dot a link passes through, ComfyUI's `Reroute` (its output takes the type
    /// of what feeds it).
    pub fn reroute(pos: Point) -> NodeInstance {
        NodeInstance {
            id: 0,
            class_type: REROUTE.into(),
            title: None,
            pos,
            size: REROUTE_SIZE,
            mode: NodeMode::Normal,
            inputs: vec![Socket::new("", "*")],
            outputs: vec![Socket::new("", "*")],
            widgets_values: None,
            fields: Map::new(),
        }
    }
}

/// The frontend-only class of a reroute.
pub const REROUTE: &str = "Reroute";
/// A reroute's size, as ComfyUI draws it.
pub const REROUTE_SIZE: Point = [75.0, 26.0];

/// The options of a combo input as `/object_info` lists them: `[[option, ...], {...}]`, or the newer
/// `["COMBO", {"options": [option, ...]}]`; `None` for any other input.
fn combo_options(entry: &Json) -> Option<Vec<String>> {
    let list = match entry.get(0)? {
        Json::Array(list) => list,
        Json::String(kind) if kind == "COMBO" => entry.get(1)?.get("options")?.as_array()?,
        _ => return None,
    };
    Some(list.iter().filter_map(|option| option.as_str().map(str::to_string)).collect())
}

/// The width of a new node, in canvas units.
pub const NODE_WIDTH: f32 = 260.0;
/// The height of one socket or widget row, in canvas units.
pub const ROW_HEIGHT: f32 = 24.0;

/// The values a new widget stores: its default, then the extras ComfyUI's frontend stores after it
/// (a seed's control keyword, a combo's control keyword and filter, an upload button's value).
/// The default option of a dynamic combo (what a new node shows).
pub(crate) fn default_choice(input: &InputSpec) -> Option<String> {
    match &input.kind {
        InputKind::Combo(options) if !options.dynamic.is_empty() => {
            options.default.clone().or_else(|| options.options.first().cloned())
        }
        _ => None,
    }
}

/// The values a new widget stores: its default, then the extras the editor keeps after it.
pub(crate) fn default_values(input: &InputSpec) -> Vec<Json> {
    match &input.kind {
        InputKind::Int(options) => {
            let value = i64::try_from(options.default).map_or_else(|_| Json::from(options.default as f64), Json::from);
            if options.control_after_generate || input.name == "seed" || input.name == "noise_seed" {
                vec![value, Json::from("randomize")]
            } else {
                vec![value]
            }
        }
        InputKind::Float(options) => vec![Json::from(options.default)],
        InputKind::String(options) => vec![Json::from(options.default.clone())],
        InputKind::Boolean(options) => vec![Json::from(options.default)],
        InputKind::Combo(options) => {
            let value = options.default.clone().or_else(|| options.options.first().cloned());
            let mut values = vec![value.map_or(Json::Null, Json::String)];
            if options.control_after_generate {
                values.extend([Json::from("fixed"), Json::from("")]);
            }
            if options.image_upload {
                values.push(Json::from("image"));
            }
            values
        }
        InputKind::Socket(_) => Vec::new(),
    }
}
