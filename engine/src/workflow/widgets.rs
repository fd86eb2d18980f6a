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
}

impl WidgetLayout<'_> {
    /// True when the stored values do not fit the schema, in a way that may misplace values: a node
    /// without widget inputs has nothing to misplace, and trailing `null`s are the editor's display-only
    /// widgets (`PreviewAny` stores three).
    pub fn mismatched(&self) -> bool {
        self.expected != 0 && self.expected != self.found && !(self.found > self.expected && self.trailing_nulls)
    }

    /// The index of the value of widget `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots.iter().find(|slot| slot.input.name == name).and_then(|slot| slot.index)
    }
}

/// The widget inputs of `schema`, in the order the editor creates their widgets.
pub fn widget_inputs(schema: &NodeSchema) -> impl Iterator<Item = &InputSpec> {
    let widget = |input: &&InputSpec| input.kind.is_widget() && !input.force_input;
    let required = schema.inputs.iter().filter(|input| !input.optional).filter(widget);
    let optional = schema.inputs.iter().filter(|input| input.optional).filter(widget);
    required.chain(optional)
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

/// Maps `values` onto the widget inputs of `schema`.
pub fn layout<'a>(schema: &'a NodeSchema, values: &[Json]) -> WidgetLayout<'a> {
    let mut slots = Vec::new();
    let mut cursor = 0;
    let mut expected = 0;
    let mut misfit = false;
    for input in widget_inputs(schema) {
        slots.push(WidgetSlot { input, index: (cursor < values.len()).then_some(cursor) });
        cursor += 1;
        expected += 1;
        for looks_right in extras(input) {
            expected += 1;
            match values.get(cursor) {
                Some(value) if looks_right(value) => cursor += 1,
                Some(_) => misfit = true,
                None => {}
            }
        }
    }
    let found = values.len();
    // A skipped extra that was not there means the file predates the schema: report it even if the
    // counts happen to agree.
    let expected = if misfit && expected == found { expected + 1 } else { expected };
    let trailing_nulls = values.iter().skip(expected).all(Json::is_null);
    WidgetLayout { slots, expected, found, trailing_nulls }
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
}
