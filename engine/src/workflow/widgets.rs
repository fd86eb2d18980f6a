//! Where each widget input of a node sits in its positional `widgets_values`.
//!
//! The editor creates one widget per widget-typed input, in schema order (required inputs, then optional
//! ones), skipping socket-only (`forceInput`) inputs. Some widgets store extra values right after their
//! own: a seed's "control after generate" keyword (`seed`/`noise_seed` INTs and inputs marked
//! `control_after_generate`), a combo with control stores that keyword and a filter string, and an image
//! upload combo stores its upload button's value. Extras are skipped only when the stored value looks
//! like one, so a file saved before such a widget existed still maps its real values.

use crate::schema::{InputKind, InputSpec, NodeSchema};
use serde_json::Value as Json;

/// The keywords a seed control widget stores.
const CONTROL_KEYWORDS: [&str; 5] = ["fixed", "increment", "decrement", "randomize", "increment-wrap"];

/// One widget input and the index of its value.
#[derive(Debug, Clone, PartialEq)]
pub struct WidgetSlot<'a> {
    pub input: &'a InputSpec,
    /// Index into `widgets_values`; `None` when the list is too short.
    pub index: Option<usize>,
}

/// The mapping of one node's `widgets_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct WidgetLayout<'a> {
    pub slots: Vec<WidgetSlot<'a>>,
    /// How many values the schema expects (widgets and their extras).
    pub expected: usize,
    /// How many the file stores.
    pub found: usize,
    /// Whether every value past the expected ones is `null`.
    trailing_nulls: bool,
    /// Whether the values ran out before optional widgets only.
    optional_tail: bool,
}

impl WidgetLayout<'_> {
    /// True when the stored values do not fit the schema, in a way that may misplace values: a node
    /// without widget inputs has nothing to misplace, trailing `null`s are the editor's display-only
    /// widgets (`PreviewAny` stores three), and values that end before optional widgets only leave
    /// those at their defaults.
    pub fn mismatched(&self) -> bool {
        self.expected != 0
            && self.expected != self.found
            && !(self.found > self.expected && self.trailing_nulls)
            && !(self.found < self.expected && self.optional_tail)
    }

    /// The index of the value of widget `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots.iter().find(|slot| slot.input.name == name).and_then(|slot| slot.index)
    }
}

/// The top-level widget inputs of `schema`, in the order the editor creates their widgets: required
/// inputs, then optional ones, without the inputs of dynamic combo options (see [`widget_order`]).
pub fn widget_inputs(schema: &NodeSchema) -> impl Iterator<Item = &InputSpec> {
    let widget = |input: &&InputSpec| is_widget(input) && schema.dynamic_parent(input).is_none();
    let required = schema.inputs.iter().filter(|input| !input.optional).filter(widget);
    let optional = schema.inputs.iter().filter(|input| input.optional).filter(widget);
    required.chain(optional)
}

fn is_widget(input: &InputSpec) -> bool {
    input.kind.is_widget() && !input.force_input
}

/// Every widget input in the editor's order: [`widget_inputs`], each dynamic combo followed by the
/// widgets of the option `selected` gives for it (nested combos likewise).
pub fn widget_order(schema: &NodeSchema, selected: impl Fn(&InputSpec) -> Option<String>) -> Vec<&InputSpec> {
    fn visit<'a>(
        schema: &'a NodeSchema,
        input: &'a InputSpec,
        selected: &dyn Fn(&InputSpec) -> Option<String>,
        order: &mut Vec<&'a InputSpec>,
    ) {
        order.push(input);
        if let Some(key) = selected(input) {
            for child in schema.dynamic_children(input, &key).into_iter().filter(|child| is_widget(child)) {
                visit(schema, child, selected, order);
            }
        }
    }
    let mut order = Vec::new();
    for input in widget_inputs(schema) {
        visit(schema, input, &selected, &mut order);
    }
    order
}

/// The extra values stored after this input's own, and whether a stored value may be one of them.
fn extras(input: &InputSpec) -> Vec<fn(&Json) -> bool> {
    let keyword: fn(&Json) -> bool = |value| value.as_str().is_some_and(|text| CONTROL_KEYWORDS.contains(&text));
    let any_text: fn(&Json) -> bool = |value| value.is_string() || value.is_null();
    match &input.kind {
        InputKind::Int(options)
            if options.control_after_generate || input.name == "seed" || input.name == "noise_seed" =>
        {
            vec![keyword]
        }
        InputKind::Combo(options) => {
            let mut extra = Vec::new();
            if options.control_after_generate {
                extra.push(keyword);
                extra.push(any_text);
            }
            if options.image_upload {
                extra.push(any_text);
            }
            extra
        }
        _ => Vec::new(),
    }
}

/// Maps `values` onto the widget inputs of `schema`. A dynamic combo's stored value picks the option
/// whose widgets follow it.
pub fn layout<'a>(schema: &'a NodeSchema, values: &[Json]) -> WidgetLayout<'a> {
    struct Walk<'a, 'v> {
        schema: &'a NodeSchema,
        values: &'v [Json],
        slots: Vec<WidgetSlot<'a>>,
        cursor: usize,
        expected: usize,
        misfit: bool,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, input: &'a InputSpec) {
            let index = (self.cursor < self.values.len()).then_some(self.cursor);
            self.slots.push(WidgetSlot { input, index });
            self.cursor += 1;
            self.expected += 1;
            for looks_right in extras(input) {
                self.expected += 1;
                match self.values.get(self.cursor) {
                    Some(value) if looks_right(value) => self.cursor += 1,
                    Some(_) => self.misfit = true,
                    None => {}
                }
            }
            let key = index.and_then(|index| self.values[index].as_str());
            if let Some(key) = key {
                for child in self.schema.dynamic_children(input, key).into_iter().filter(|child| is_widget(child)) {
                    self.visit(child);
                }
            }
        }
    }
    let mut walk = Walk { schema, values, slots: Vec::new(), cursor: 0, expected: 0, misfit: false };
    for input in widget_inputs(schema) {
        walk.visit(input);
    }
    let Walk { slots, cursor, expected, misfit, .. } = walk;
    let found = values.len();
    // A skipped extra that was not there means the file predates the schema: report it even if the
    // counts happen to agree.
    let expected = if misfit && expected == found { expected + 1 } else { expected };
    let trailing_nulls = values.iter().skip(expected).all(Json::is_null);
    // Every stored value placed, and only optional widgets left without one: a file saved before those
    // widgets existed (or without the advanced ones); they take their defaults, as in the editor.
    let optional_tail =
        !misfit && cursor >= found && slots.iter().all(|slot| slot.index.is_some() || slot.input.optional);
    WidgetLayout { slots, expected, found, trailing_nulls, optional_tail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampler() -> NodeSchema {
        NodeSchema::new("SamplerCustom")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::boolean("add_noise", true))
            .input(InputSpec::int("noise_seed", 0).control_after_generate())
            .input(InputSpec::float("cfg", 8.0))
    }

    #[test]
    fn seed_control_values_are_skipped() {
        let schema = sampler();
        let values = [json!(true), json!(5), json!("randomize"), json!(3)];
        let layout = layout(&schema, &values);
        assert_eq!(layout.index_of("add_noise"), Some(0));
        assert_eq!(layout.index_of("noise_seed"), Some(1));
        assert_eq!(layout.index_of("cfg"), Some(3));
        assert!(!layout.mismatched());
    }

    #[test]
    fn a_missing_control_value_is_not_skipped_and_is_reported() {
        let schema = sampler();
        let values = [json!(true), json!(5), json!(3)];
        let layout = layout(&schema, &values);
        assert_eq!(layout.index_of("cfg"), Some(2));
        assert_eq!((layout.expected, layout.found), (4, 3));
    }

    #[test]
    fn display_only_values_are_not_a_mismatch() {
        let preview = NodeSchema::new("PreviewAny").input(InputSpec::socket("source", "*"));
        assert!(!layout(&preview, &[Json::Null, Json::Null, Json::Null]).mismatched());
        let schema = sampler();
        let values = [json!(true), json!(5), json!("fixed"), json!(3), Json::Null];
        assert!(!layout(&schema, &values).mismatched());
        let values = [json!(true), json!(5), json!("fixed"), json!(3), json!(0.5)];
        assert!(layout(&schema, &values).mismatched());
    }

    #[test]
    fn upload_and_combo_control_extras() {
        let schema = NodeSchema::new("LoadImage")
            .input(InputSpec::combo("image", ["a.png"]).image_upload())
            .input(InputSpec::combo("mode", ["x", "y"]).control_after_generate())
            .input(InputSpec::int("after", 1));
        let values = [json!("a.png"), json!("image"), json!("y"), json!("fixed"), json!(""), json!(7)];
        let layout = layout(&schema, &values);
        assert_eq!(layout.index_of("mode"), Some(2));
        assert_eq!(layout.index_of("after"), Some(5));
        assert!(!layout.mismatched());
    }

    /// `SaveVideo`'s shape: a dynamic combo whose option shows another dynamic combo, then a hidden
    /// optional one.
    fn save_video() -> NodeSchema {
        let codec = [("auto", &[][..]), ("h264", &["encoding"][..])];
        NodeSchema::new("SaveVideo")
            .input(InputSpec::socket("video", "VIDEO"))
            .input(InputSpec::string("filename_prefix", "video/ComfyUI"))
            .input(InputSpec::dynamic_combo("format", [("auto", &["codec"][..]), ("mp4", &["codec"][..])]))
            .input(InputSpec::dynamic_combo("format.codec", codec).optional())
            .input(InputSpec::dynamic_combo("format.codec.encoding", [("auto", &[][..])]).optional())
            .input(InputSpec::dynamic_combo("codec", codec).optional())
            .input(InputSpec::dynamic_combo("codec.encoding", [("auto", &[][..])]).optional())
    }

    #[test]
    fn a_dynamic_combos_option_widgets_follow_it() {
        let schema = save_video();
        let values = [json!("video/x"), json!("mp4"), json!("h264"), json!("auto"), json!("auto")];
        let mapping = layout(&schema, &values);
        let names: Vec<(&str, Option<usize>)> =
            mapping.slots.iter().map(|slot| (slot.input.name.as_str(), slot.index)).collect();
        assert_eq!(
            names,
            [
                ("filename_prefix", Some(0)),
                ("format", Some(1)),
                ("format.codec", Some(2)),
                ("format.codec.encoding", Some(3)),
                ("codec", Some(4)),
            ]
        );
        assert!(!mapping.mismatched());
        // `auto` shows no encoding widget, so the fourth value is the hidden `codec`.
        let values = [json!("video/x"), json!("auto"), json!("auto"), json!("auto")];
        let mapping = layout(&schema, &values);
        assert_eq!(mapping.index_of("codec"), Some(3));
        assert_eq!(mapping.index_of("format.codec.encoding"), None);
        assert!(!mapping.mismatched());
    }

    #[test]
    fn values_that_end_before_optional_widgets_leave_them_at_their_defaults() {
        let schema = save_video();
        let mapping = layout(&schema, &[json!("video/x"), json!("mp4"), json!("auto")]);
        assert_eq!(mapping.index_of("codec"), None);
        assert!(!mapping.mismatched());
        // A required widget without a value is still reported.
        let mapping = layout(&schema, &[json!("video/x")]);
        assert!(mapping.mismatched());
    }

    #[test]
    fn widget_order_follows_the_selected_options() {
        let schema = save_video();
        let order: Vec<&str> = widget_order(&schema, |combo| match combo.name.as_str() {
            "format" => Some("mp4".into()),
            "format.codec" => Some("h264".into()),
            _ => Some("auto".into()),
        })
        .iter()
        .map(|input| input.name.as_str())
        .collect();
        assert_eq!(order, ["filename_prefix", "format", "format.codec", "format.codec.encoding", "codec"]);
        assert_eq!(widget_inputs(&schema).count(), 3);
    }
}
