//! Node schemas: the inputs, outputs and metadata a node declares, in ComfyUI's vocabulary.
//!
//! A schema is what validation checks a workflow against, what the editor draws, and what
//! `/object_info` prints (see [`NodeSchema::object_info`]).

use crate::node::Environment;
use serde_json::{Map, Value as Json, json};
use std::path::PathBuf;

/// A number bound or step given to [`InputSpec::min`], [`InputSpec::max`] or [`InputSpec::step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn as_int(self) -> i128 {
        match self {
            Number::Int(int) => int,
            Number::Float(float) => float as i128,
        }
    }
    fn as_float(self) -> f64 {
        match self {
            Number::Int(int) => int as f64,
            Number::Float(float) => float,
        }
    }
}

macro_rules! number_from_int {
    ($($t:ty),*) => {$(impl From<$t> for Number { fn from(v: $t) -> Self { Number::Int(v as i128) } })*};
}
number_from_int!(i32, i64, u32, u64, i128, usize);
impl From<f64> for Number {
    fn from(value: f64) -> Self {
        Number::Float(value)
    }
}

/// Options of an INT widget.
#[derive(Debug, Clone, PartialEq)]
pub struct IntOptions {
    pub default: i128,
    pub min: Option<i128>,
    pub max: Option<i128>,
    pub step: Option<i128>,
    /// Seeds: the UI offers fixed / increment / decrement / randomize after each run.
    pub control_after_generate: bool,
    pub slider: bool,
}

/// Options of a FLOAT widget.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatOptions {
    pub default: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The bounds as the node declared them: an integer bound (ComfyUI's `-sys.maxsize`, say) is written
    /// as that integer in `/object_info`, where its f64 in `min`/`max` would be rounded.
    pub declared_bounds: [Option<Number>; 2],
    pub step: Option<f64>,
    pub round: Option<f64>,
    pub slider: bool,
}

/// Options of a STRING widget.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StringOptions {
    pub default: String,
    pub multiline: bool,
    pub placeholder: Option<String>,
    pub dynamic_prompts: bool,
}

/// Options of a BOOLEAN widget.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BooleanOptions {
    pub default: bool,
    pub label_on: Option<String>,
    pub label_off: Option<String>,
}

/// Options of a COMBO widget (a choice among strings, such as a model file or a sampler name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComboOptions {
    pub options: Vec<String>,
    pub default: Option<String>,
    /// The UI shows an upload button (ComfyUI's `image_upload`), and stores an extra widget value.
    pub image_upload: bool,
    pub control_after_generate: bool,
    /// Values outside `options` pass validation and are left to the node's own
    /// [`crate::Node::validate`], as ComfyUI skips its list check for an input that a node's
    /// `VALIDATE_INPUTS` takes (`LoadImage` accepts `name.png [output]` and files in subfolders).
    pub node_validated: bool,
    /// Set for a combo of model files ([`InputSpec::model_file`]): where the options came from, so
    /// that a missing file is reported with the folders searched.
    pub model_folder: Option<ModelFolderSource>,
}

/// Where the options of a model file combo were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFolderSource {
    /// The folder kind (`checkpoints`, `text_encoders`, ...), as the node named it.
    pub kind: String,
    /// Whether it is a known folder kind.
    pub known_kind: bool,
    /// The folders searched, in order.
    pub searched: Vec<PathBuf>,
}

/// What kind of value an input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Int(IntOptions),
    Float(FloatOptions),
    String(StringOptions),
    Boolean(BooleanOptions),
    Combo(ComboOptions),
    /// A socket only: `MODEL`, `LATENT`, a comma list of types, or `*` for any.
    Socket(String),
}

impl InputKind {
    /// The type name as ComfyUI writes it (`INT`, `COMBO`, `MODEL`, ...).
    pub fn type_name(&self) -> &str {
        match self {
            InputKind::Int(_) => "INT",
            InputKind::Float(_) => "FLOAT",
            InputKind::String(_) => "STRING",
            InputKind::Boolean(_) => "BOOLEAN",
            InputKind::Combo(_) => "COMBO",
            InputKind::Socket(name) => name,
        }
    }

    /// True for inputs the UI shows as a widget (they may also take a link).
    pub fn is_widget(&self) -> bool {
        !matches!(self, InputKind::Socket(_))
    }
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub kind: InputKind,
    pub optional: bool,
    pub tooltip: Option<String>,
    /// Shown as a socket, never as a widget (ComfyUI's `forceInput`).
    pub force_input: bool,
}

impl InputSpec {
    fn new(name: &str, kind: InputKind) -> Self {
        InputSpec { name: name.to_string(), kind, optional: false, tooltip: None, force_input: false }
    }

    /// An INT widget with its default.
    pub fn int(name: &str, default: impl Into<Number>) -> Self {
        let default = default.into().as_int();
        Self::new(
            name,
            InputKind::Int(IntOptions {
                default,
                min: None,
                max: None,
                step: None,
                control_after_generate: false,
                slider: false,
            }),
        )
    }

    /// A FLOAT widget with its default.
    pub fn float(name: &str, default: f64) -> Self {
        Self::new(
            name,
            InputKind::Float(FloatOptions {
                default,
                min: None,
                max: None,
                declared_bounds: [None, None],
                step: None,
                round: None,
                slider: false,
            }),
        )
    }

    /// A single-line STRING widget.
    pub fn string(name: &str, default: &str) -> Self {
        Self::new(name, InputKind::String(StringOptions { default: default.to_string(), ..StringOptions::default() }))
    }

    /// A multiline STRING widget.
    pub fn multiline(name: &str, default: &str) -> Self {
        Self::new(
            name,
            InputKind::String(StringOptions {
                default: default.to_string(),
                multiline: true,
                ..StringOptions::default()
            }),
        )
    }

    /// A BOOLEAN widget.
    pub fn boolean(name: &str, default: bool) -> Self {
        Self::new(name, InputKind::Boolean(BooleanOptions { default, ..BooleanOptions::default() }))
    }

    /// A COMBO widget over `options`; the default is the first option.
    pub fn combo<S: Into<String>>(name: &str, options: impl IntoIterator<Item = S>) -> Self {
        let options: Vec<String> = options.into_iter().map(Into::into).collect();
        Self::new(
            name,
            InputKind::Combo(ComboOptions { default: options.first().cloned(), options, ..ComboOptions::default() }),
        )
    }

    /// A COMBO of the model files of folder kind `folder` (`checkpoints`, `vae`, `text_encoders`, ...)
    /// found in `env`'s model folders, as [`crate::ModelFolders::list`] names them; the default is the
    /// first. `/object_info` shows it as a plain combo; a workflow naming a file that is not there
    /// fails validation with the folders searched and the files found.
    pub fn model_file(name: &str, folder: &str, env: &Environment) -> Self {
        let mut spec = Self::combo(name, env.models.list(folder));
        if let InputKind::Combo(options) = &mut spec.kind {
            options.model_folder = Some(ModelFolderSource {
                kind: folder.to_string(),
                known_kind: env.models.is_known(folder),
                searched: env.models.search_paths(folder),
            });
        }
        spec
    }

    /// A socket of `type_name` (`MODEL`, `LATENT`, `*`, ...).
    pub fn socket(name: &str, type_name: &str) -> Self {
        Self::new(name, InputKind::Socket(type_name.to_string()))
    }

    /// Marks the input optional.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Adds a tooltip.
    pub fn tooltip(mut self, text: &str) -> Self {
        self.tooltip = Some(text.to_string());
        self
    }

    /// Lower bound of an INT or FLOAT.
    pub fn min(mut self, bound: impl Into<Number>) -> Self {
        let bound = bound.into();
        match &mut self.kind {
            InputKind::Int(options) => options.min = Some(bound.as_int()),
            InputKind::Float(options) => {
                options.min = Some(bound.as_float());
                options.declared_bounds[0] = Some(bound);
            }
            _ => debug_assert!(false, "min on non-number input {}", self.name),
        }
        self
    }

    /// Upper bound of an INT or FLOAT.
    pub fn max(mut self, bound: impl Into<Number>) -> Self {
        let bound = bound.into();
        match &mut self.kind {
            InputKind::Int(options) => options.max = Some(bound.as_int()),
            InputKind::Float(options) => {
                options.max = Some(bound.as_float());
                options.declared_bounds[1] = Some(bound);
            }
            _ => debug_assert!(false, "max on non-number input {}", self.name),
        }
        self
    }

    /// Widget step of an INT or FLOAT (a UI hint; not validated, as in ComfyUI).
    pub fn step(mut self, step: impl Into<Number>) -> Self {
        let step = step.into();
        match &mut self.kind {
            InputKind::Int(options) => options.step = Some(step.as_int()),
            InputKind::Float(options) => options.step = Some(step.as_float()),
            _ => debug_assert!(false, "step on non-number input {}", self.name),
        }
        self
    }

    /// Rounding of a FLOAT widget (a UI hint).
    pub fn round(mut self, round: f64) -> Self {
        if let InputKind::Float(options) = &mut self.kind {
            options.round = Some(round);
        }
        self
    }

    /// Shows an INT or FLOAT as a slider.
    pub fn slider(mut self) -> Self {
        match &mut self.kind {
            InputKind::Int(options) => options.slider = true,
            InputKind::Float(options) => options.slider = true,
            _ => {}
        }
        self
    }

    /// Offers ComfyUI's seed control (fixed, increment, decrement, randomize) after each run.
    pub fn control_after_generate(mut self) -> Self {
        match &mut self.kind {
            InputKind::Int(options) => options.control_after_generate = true,
            InputKind::Combo(options) => options.control_after_generate = true,
            _ => debug_assert!(false, "control_after_generate on {}", self.name),
        }
        self
    }

    /// Sets the default of a COMBO.
    pub fn default_option(mut self, option: &str) -> Self {
        if let InputKind::Combo(options) = &mut self.kind {
            options.default = Some(option.to_string());
        }
        self
    }

    /// Adds an upload button to a COMBO of input images.
    pub fn image_upload(mut self) -> Self {
        if let InputKind::Combo(options) = &mut self.kind {
            options.image_upload = true;
        }
        self
    }

    /// Lets a COMBO take values outside its options, which the node's `validate` then checks.
    pub fn node_validated(mut self) -> Self {
        if let InputKind::Combo(options) = &mut self.kind {
            options.node_validated = true;
        }
        self
    }

    /// Placeholder text of a STRING.
    pub fn placeholder(mut self, text: &str) -> Self {
        if let InputKind::String(options) = &mut self.kind {
            options.placeholder = Some(text.to_string());
        }
        self
    }

    /// Enables `{a|b}` dynamic prompts on a STRING.
    pub fn dynamic_prompts(mut self) -> Self {
        if let InputKind::String(options) = &mut self.kind {
            options.dynamic_prompts = true;
        }
        self
    }

    /// Labels of a BOOLEAN's two states.
    pub fn labels(mut self, on: &str, off: &str) -> Self {
        if let InputKind::Boolean(options) = &mut self.kind {
            options.label_on = Some(on.to_string());
            options.label_off = Some(off.to_string());
        }
        self
    }

    /// Shows a widget input as a socket only.
    pub fn force_input(mut self) -> Self {
        self.force_input = true;
        self
    }

    /// The `[type, options]` pair of `/object_info`.
    pub fn object_info(&self) -> Json {
        let mut options = Map::new();
        let mut put = |key: &str, value: Json| {
            options.insert(key.to_string(), value);
        };
        let type_entry = match &self.kind {
            InputKind::Int(int) => {
                put("default", crate::value::int_to_json(int.default));
                if let Some(min) = int.min {
                    put("min", crate::value::int_to_json(min));
                }
                if let Some(max) = int.max {
                    put("max", crate::value::int_to_json(max));
                }
                if let Some(step) = int.step {
                    put("step", crate::value::int_to_json(step));
                }
                if int.control_after_generate {
                    put("control_after_generate", Json::Bool(true));
                }
                if int.slider {
                    put("display", json!("slider"));
                }
                json!("INT")
            }
            InputKind::Float(float) => {
                put("default", json!(float.default));
                for (key, bound) in [("min", float.declared_bounds[0]), ("max", float.declared_bounds[1])] {
                    match bound {
                        Some(Number::Int(int)) => put(key, crate::value::int_to_json(int)),
                        Some(Number::Float(float)) => put(key, json!(float)),
                        None => {}
                    }
                }
                if let Some(step) = float.step {
                    put("step", json!(step));
                }
                if let Some(round) = float.round {
                    put("round", json!(round));
                }
                if float.slider {
                    put("display", json!("slider"));
                }
                json!("FLOAT")
            }
            InputKind::String(string) => {
                put("default", json!(string.default));
                if string.multiline {
                    put("multiline", Json::Bool(true));
                }
                if let Some(placeholder) = &string.placeholder {
                    put("placeholder", json!(placeholder));
                }
                if string.dynamic_prompts {
                    put("dynamicPrompts", Json::Bool(true));
                }
                json!("STRING")
            }
            InputKind::Boolean(boolean) => {
                put("default", json!(boolean.default));
                if let Some(on) = &boolean.label_on {
                    put("label_on", json!(on));
                }
                if let Some(off) = &boolean.label_off {
                    put("label_off", json!(off));
                }
                json!("BOOLEAN")
            }
            InputKind::Combo(combo) => {
                if let Some(default) = &combo.default {
                    put("default", json!(default));
                }
                if combo.image_upload {
                    put("image_upload", Json::Bool(true));
                }
                if combo.control_after_generate {
                    put("control_after_generate", Json::Bool(true));
                }
                json!(combo.options)
            }
            InputKind::Socket(name) => json!(name),
        };
        if let Some(tooltip) = &self.tooltip {
            options.insert("tooltip".into(), json!(tooltip));
        }
        if self.force_input {
            options.insert("forceInput".into(), Json::Bool(true));
        }
        if options.is_empty() { json!([type_entry]) } else { json!([type_entry, options]) }
    }
}

/// One declared output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub type_name: String,
    pub name: String,
    pub tooltip: Option<String>,
}

/// Everything a node declares about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSchema {
    /// The class name workflows use (`KSampler`).
    pub class_type: String,
    pub display_name: String,
    /// Menu path, `/`-separated (`sampling/custom_sampling`).
    pub category: String,
    pub description: String,
    /// Inputs in widget order (required first is not enforced; `/object_info` splits them).
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Output nodes are what a prompt runs for (savers, previews).
    pub output_node: bool,
    /// Never served from the cache: runs every time (ComfyUI's `NOT_IDEMPOTENT`).
    pub not_idempotent: bool,
    pub deprecated: bool,
    pub experimental: bool,
    /// The module name `/object_info` reports.
    pub module: String,
}

impl NodeSchema {
    /// A schema for `class_type`, displayed under the same name, in category `utils`.
    pub fn new(class_type: &str) -> Self {
        NodeSchema {
            class_type: class_type.to_string(),
            display_name: class_type.to_string(),
            category: "utils".to_string(),
            description: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            output_node: false,
            not_idempotent: false,
            deprecated: false,
            experimental: false,
            module: "kinograph".to_string(),
        }
    }

    /// Sets the name users see.
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = name.to_string();
        self
    }

    /// Sets the menu category.
    pub fn category(mut self, category: &str) -> Self {
        self.category = category.to_string();
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }

    /// Adds an input.
    pub fn input(mut self, input: InputSpec) -> Self {
        self.inputs.push(input);
        self
    }

    /// Adds an output of `type_name` shown as `name`.
    pub fn output(mut self, type_name: &str, name: &str) -> Self {
        self.outputs.push(OutputSpec { type_name: type_name.to_string(), name: name.to_string(), tooltip: None });
        self
    }

    /// Marks this node as an output node.
    pub fn output_node(mut self) -> Self {
        self.output_node = true;
        self
    }

    /// Marks this node as never cached.
    pub fn not_idempotent(mut self) -> Self {
        self.not_idempotent = true;
        self
    }

    /// Sets the module name shown in `/object_info`.
    pub fn module(mut self, module: &str) -> Self {
        self.module = module.to_string();
        self
    }

    /// The declared input called `name`.
    pub fn input_spec(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|input| input.name == name)
    }

    /// This schema as one `/object_info` entry.
    pub fn object_info(&self) -> Json {
        let mut required = Map::new();
        let mut optional = Map::new();
        let mut required_order = Vec::new();
        let mut optional_order = Vec::new();
        for input in &self.inputs {
            if input.optional {
                optional.insert(input.name.clone(), input.object_info());
                optional_order.push(input.name.clone());
            } else {
                required.insert(input.name.clone(), input.object_info());
                required_order.push(input.name.clone());
            }
        }
        let mut input = Map::new();
        input.insert("required".into(), Json::Object(required));
        let mut input_order = Map::new();
        input_order.insert("required".into(), json!(required_order));
        if !optional_order.is_empty() {
            input.insert("optional".into(), Json::Object(optional));
            input_order.insert("optional".into(), json!(optional_order));
        }
        let mut entry = json!({
            "input": input,
            "input_order": input_order,
            "output": self.outputs.iter().map(|o| o.type_name.clone()).collect::<Vec<_>>(),
            "output_is_list": self.outputs.iter().map(|_| false).collect::<Vec<_>>(),
            "output_name": self.outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
            "name": self.class_type,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": self.module,
            "category": self.category,
            "output_node": self.output_node,
        });
        if self.outputs.iter().any(|o| o.tooltip.is_some()) {
            entry["output_tooltips"] =
                json!(self.outputs.iter().map(|o| o.tooltip.clone().unwrap_or_default()).collect::<Vec<_>>());
        }
        if self.deprecated {
            entry["deprecated"] = Json::Bool(true);
        }
        if self.experimental {
            entry["experimental"] = Json::Bool(true);
        }
        entry
    }
}

/// Whether an output of type `output` may feed an input of type `input`, by ComfyUI's rule: equal, either
/// is `*`, or the two comma-separated type lists share a type. Widget inputs take links of their own type.
pub fn types_compatible(output: &str, input: &str) -> bool {
    if output == input || output == "*" || input == "*" {
        return true;
    }
    output
        .split(',')
        .map(str::trim)
        .any(|produced| input.split(',').map(str::trim).any(|accepted| accepted == produced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_compatibility_follows_comfyui() {
        assert!(types_compatible("LATENT", "LATENT"));
        assert!(types_compatible("*", "MODEL"));
        assert!(types_compatible("INT", "FLOAT,INT"));
        assert!(!types_compatible("LATENT", "IMAGE"));
    }

    /// ComfyUI declares some FLOAT bounds as Python ints (`PrimitiveFloat`: `min=-sys.maxsize`) and
    /// writes them as JSON integers; an f64 bound stays a float, and validation compares as floats.
    #[test]
    fn integer_float_bounds_are_written_as_integers() {
        let schema = NodeSchema::new("Floats")
            .input(InputSpec::float("huge", 0.0).min(-i64::MAX).max(i64::MAX))
            .input(InputSpec::float("unit", 0.5).min(0.0).max(1.0));
        let info = serde_json::to_string(&schema.object_info()).unwrap();
        assert!(info.contains(r#""min":-9223372036854775807,"max":9223372036854775807"#), "{info}");
        assert!(info.contains(r#""min":0.0,"max":1.0"#), "{info}");
        let InputKind::Float(huge) = &schema.inputs[0].kind else { panic!("a FLOAT input") };
        assert_eq!(huge.max, Some(i64::MAX as f64));
    }

    #[test]
    fn object_info_shape() {
        let schema = NodeSchema::new("Demo")
            .category("testing")
            .input(InputSpec::int("steps", 20).min(1).max(10_000))
            .input(InputSpec::combo("mode", ["a", "b"]))
            .input(InputSpec::socket("model", "MODEL").optional())
            .output("LATENT", "samples");
        let info = schema.object_info();
        assert_eq!(info["input"]["required"]["steps"], json!(["INT", {"default": 20, "min": 1, "max": 10000}]));
        assert_eq!(info["input"]["required"]["mode"], json!([["a", "b"], {"default": "a"}]));
        assert_eq!(info["input"]["optional"]["model"], json!(["MODEL"]));
        assert_eq!(info["input_order"], json!({"required": ["steps", "mode"], "optional": ["model"]}));
        assert_eq!(info["output"], json!(["LATENT"]));
        assert_eq!(info["output_name"], json!(["samples"]));
    }
}
