//! Node schemas: the inputs, outputs and metadata a node declares, in ComfyUI's vocabulary.
//!
//! A schema is what validation checks a workflow against, what the editor draws, and what
//! `/object_info` prints (see [`NodeSchema::object_info`]).

use crate::node::Environment;
use std::path::PathBuf;

mod object_info;

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
    /// as that integer in `/object_info`, where its f64 in `min`/`max` would be rounded. `min` and `max`
    /// stay what counts: one changed after it was declared is written as it now is.
    pub declared_bounds: [Option<Number>; 2],
    pub step: Option<f64>,
    /// The UI's rounding of typed values; `Some(0.0)` is ComfyUI's `round: False` (no rounding, not even
    /// to the step), written as `false` in `/object_info`.
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
    /// Set for a dynamic combo (ComfyUI's `DynamicCombo`, `COMFY_DYNAMICCOMBO_V3` in `/object_info`): each
    /// option shows its own inputs. Those are declared in the schema as optional inputs named
    /// `<combo>.<input>` (the names ComfyUI's API prompts use), and the editor places their widgets right
    /// after the combo's own.
    pub dynamic: Vec<DynamicOption>,
}

/// One choice of a dynamic combo and the inputs it shows, by their names under the combo
/// (`width` for the schema input `resize_type.width`), in widget order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicOption {
    pub key: String,
    pub inputs: Vec<String>,
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
    /// Other types a link into this input may carry (ComfyUI's `MultiType` inputs: a FLOAT that also takes
    /// an INT).
    pub also_accepts: Vec<String>,
    /// A link into this input is evaluated only if the node asks for it (ComfyUI's `lazy`): planning does
    /// not schedule its source, and [`crate::Node::check_lazy_status`] decides at run time.
    pub lazy: bool,
}

impl InputSpec {
    fn new(name: &str, kind: InputKind) -> Self {
        InputSpec {
            name: name.to_string(),
            kind,
            optional: false,
            tooltip: None,
            force_input: false,
            also_accepts: Vec::new(),
            lazy: false,
        }
    }

    /// Lets a link of `type_name` feed this input too (ComfyUI's `MultiType`).
    pub fn accepts(mut self, type_name: &str) -> Self {
        self.also_accepts.push(type_name.to_string());
        self
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

    /// A dynamic combo: a choice among `options`, each given with the names of the inputs it shows
    /// (declare those with [`NodeSchema::input`] as optional inputs named `<name>.<input>`, after this one).
    /// The default is the first option.
    pub fn dynamic_combo<'a>(name: &str, options: impl IntoIterator<Item = (&'a str, &'a [&'a str])>) -> Self {
        let dynamic: Vec<DynamicOption> = options
            .into_iter()
            .map(|(key, inputs)| DynamicOption {
                key: key.to_string(),
                inputs: inputs.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let mut spec = Self::combo(name, dynamic.iter().map(|option| option.key.clone()));
        if let InputKind::Combo(combo) = &mut spec.kind {
            combo.dynamic = dynamic;
        }
        spec
    }

    /// The options of a dynamic combo; empty for any other input.
    pub fn dynamic_options(&self) -> &[DynamicOption] {
        match &self.kind {
            InputKind::Combo(combo) => &combo.dynamic,
            _ => &[],
        }
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

    /// ComfyUI's `round: False` on a FLOAT widget: the UI keeps typed values as they are instead of
    /// rounding them to the step (a UI hint).
    pub fn no_round(self) -> Self {
        self.round(0.0)
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

    /// Makes the input lazy: what is linked to it runs only if the node's
    /// [`crate::Node::check_lazy_status`] asks for it (ComfyUI's `lazy=True`).
    pub fn lazy(mut self) -> Self {
        self.lazy = true;
        self
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

    /// Adds several inputs, in order.
    pub fn inputs(mut self, inputs: impl IntoIterator<Item = InputSpec>) -> Self {
        self.inputs.extend(inputs);
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

    /// The dynamic combo that shows `input` (`resize_type` for `resize_type.width`), if it is one of the
    /// inputs a dynamic combo's options show.
    pub fn dynamic_parent(&self, input: &InputSpec) -> Option<&InputSpec> {
        let (parent, child) = input.name.rsplit_once('.')?;
        let parent = self.input_spec(parent)?;
        parent.dynamic_options().iter().any(|option| option.inputs.iter().any(|name| name == child)).then_some(parent)
    }

    /// The inputs `combo`'s option `key` shows, in order (none for an unknown key or a plain combo).
    pub fn dynamic_children(&self, combo: &InputSpec, key: &str) -> Vec<&InputSpec> {
        let Some(option) = combo.dynamic_options().iter().find(|option| option.key == key) else {
            return Vec::new();
        };
        option.inputs.iter().filter_map(|child| self.input_spec(&format!("{}.{child}", combo.name))).collect()
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
}
