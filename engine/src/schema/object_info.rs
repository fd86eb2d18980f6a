//! Schemas as ComfyUI's `/object_info` JSON: each input as `[TYPE, {options}]` (or a combo's option
//! list), and each node with its required and optional inputs, their order, its outputs and flags.

use super::{InputKind, InputSpec, NodeSchema, Number};
use serde_json::{Map, Value as Json, json};

impl InputSpec {
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
                let bounds =
                    [("min", float.min, float.declared_bounds[0]), ("max", float.max, float.declared_bounds[1])];
                for (key, bound, declared) in bounds {
                    match (bound, declared) {
                        // Declared as an integer, and not changed since: that integer, as ComfyUI writes it.
                        (Some(bound), Some(Number::Int(int))) if int as f64 == bound => {
                            put(key, crate::value::int_to_json(int));
                        }
                        (Some(bound), _) => put(key, json!(bound)),
                        (None, _) => {}
                    }
                }
                if let Some(step) = float.step {
                    put("step", json!(step));
                }
                match float.round {
                    Some(0.0) => put("round", Json::Bool(false)),
                    Some(round) => put("round", json!(round)),
                    None => {}
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
        if self.lazy {
            options.insert("lazy".into(), Json::Bool(true));
        }
        if options.is_empty() { json!([type_entry]) } else { json!([type_entry, options]) }
    }
}

impl NodeSchema {
    /// `input`'s `[type, options]` pair; a dynamic combo is ComfyUI's `COMFY_DYNAMICCOMBO_V3` entry, its
    /// options listed with the inputs each shows (under their own names).
    fn input_info(&self, input: &InputSpec) -> Json {
        if input.dynamic_options().is_empty() {
            return input.object_info();
        }
        let options: Vec<Json> = input
            .dynamic_options()
            .iter()
            .map(|option| {
                let mut shown = Map::new();
                for child in self.dynamic_children(input, &option.key) {
                    let local = child.name.rsplit_once('.').map_or(child.name.as_str(), |(_, local)| local);
                    shown.insert(local.to_string(), self.input_info(child));
                }
                json!({"key": option.key, "inputs": {"required": shown}})
            })
            .collect();
        let mut info = input.object_info().get(1).and_then(Json::as_object).cloned().unwrap_or_default();
        info.insert("options".into(), Json::Array(options));
        json!(["COMFY_DYNAMICCOMBO_V3", info])
    }

    /// This schema as one `/object_info` entry.
    pub fn object_info(&self) -> Json {
        let mut required = Map::new();
        let mut optional = Map::new();
        let mut required_order = Vec::new();
        let mut optional_order = Vec::new();
        for input in self.inputs.iter().filter(|input| self.dynamic_parent(input).is_none()) {
            if input.optional {
                optional.insert(input.name.clone(), self.input_info(input));
                optional_order.push(input.name.clone());
            } else {
                required.insert(input.name.clone(), self.input_info(input));
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `min` and `max` are what validation checks, so they are what `/object_info` writes: a bound
    /// changed or removed through the public fields after it was declared is written as it now is.
    #[test]
    fn float_bounds_set_through_the_fields_are_written() {
        let mut spec = InputSpec::float("strength", 1.0).min(0).max(10);
        assert_eq!(spec.object_info()[1], json!({"default": 1.0, "min": 0, "max": 10}));
        let InputKind::Float(options) = &mut spec.kind else { panic!("a FLOAT input") };
        options.min = Some(0.5);
        options.max = None;
        assert_eq!(spec.object_info()[1], json!({"default": 1.0, "min": 0.5}));
    }

    /// ComfyUI's `round: False` (`SamplerEulerAncestral`, `SetFirstSigma`) is written as `false`, a
    /// rounding step as its number.
    #[test]
    fn no_round_is_written_as_false() {
        let spec = InputSpec::float("eta", 1.0).min(0.0).max(100.0).step(0.01).no_round();
        assert_eq!(
            spec.object_info()[1],
            json!({"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": false})
        );
        assert_eq!(InputSpec::float("cfg", 8.0).round(0.01).object_info()[1], json!({"default": 8.0, "round": 0.01}));
    }

    #[test]
    fn a_dynamic_combo_lists_its_options_with_their_inputs() {
        let schema = NodeSchema::new("Resize")
            .input(InputSpec::dynamic_combo("resize_type", [("by size", &["width"][..]), ("keep", &[][..])]))
            .input(InputSpec::int("resize_type.width", 512).min(1).optional())
            .input(InputSpec::combo("method", ["area"]));
        let info = schema.object_info();
        assert_eq!(
            info["input"]["required"]["resize_type"],
            json!(["COMFY_DYNAMICCOMBO_V3", {"default": "by size", "options": [
                {"key": "by size", "inputs": {"required": {"width": ["INT", {"default": 512, "min": 1}]}}},
                {"key": "keep", "inputs": {"required": {}}},
            ]}])
        );
        assert!(info["input"].get("optional").is_none(), "the option's input is not listed on its own");
        assert_eq!(info["input_order"], json!({"required": ["resize_type", "method"]}));
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

    #[test]
    fn lazy_inputs_say_so() {
        let schema = NodeSchema::new("Choose")
            .input(InputSpec::boolean("flag", false))
            .input(InputSpec::socket("value", "*").optional().lazy());
        let info = schema.object_info();
        assert_eq!(info["input"]["required"]["flag"], json!(["BOOLEAN", {"default": false}]));
        assert_eq!(info["input"]["optional"]["value"], json!(["*", {"lazy": true}]));
    }
}
