//! Checking constant inputs against their widget: type coercion, ranges and combo membership.

use super::report::{ErrorType, ValidationError};
use crate::folders::MissingModel;
use crate::schema::{InputKind, InputSpec, ModelFolderSource};
use crate::value::Value;
use crate::workflow::json_kind;
use serde_json::{Map, Value as Json, json};

/// The most options an error echoes before it says "(list of length N)", as ComfyUI does.
const MAX_ECHOED_OPTIONS: usize = 20;

/// Coerces `raw` to the input's type and checks it; ComfyUI's rules, but never lossy (5.5 is not an INT).
pub fn check_constant(spec: &InputSpec, raw: &Json) -> Result<Value, ValidationError> {
    match &spec.kind {
        InputKind::Int(options) => {
            let value = to_int(raw).ok_or_else(|| invalid_type(spec, raw, "an integer"))?;
            if let Some(min) = options.min
                && value < min
            {
                return Err(range_error(
                    spec,
                    raw,
                    ErrorType::ValueSmallerThanMin,
                    &min.to_string(),
                    options.max.map(|m| m.to_string()),
                ));
            }
            if let Some(max) = options.max
                && value > max
            {
                return Err(range_error(
                    spec,
                    raw,
                    ErrorType::ValueBiggerThanMax,
                    &max.to_string(),
                    options.min.map(|m| m.to_string()),
                ));
            }
            Ok(Value::Int(value))
        }
        InputKind::Float(options) => {
            let value = to_float(raw).ok_or_else(|| invalid_type(spec, raw, "a number"))?;
            if let Some(min) = options.min
                && value < min
            {
                return Err(range_error(
                    spec,
                    raw,
                    ErrorType::ValueSmallerThanMin,
                    &min.to_string(),
                    options.max.map(|m| m.to_string()),
                ));
            }
            if let Some(max) = options.max
                && value > max
            {
                return Err(range_error(
                    spec,
                    raw,
                    ErrorType::ValueBiggerThanMax,
                    &max.to_string(),
                    options.min.map(|m| m.to_string()),
                ));
            }
            Ok(Value::Float(value))
        }
        InputKind::String(_) => match raw {
            Json::String(text) => Ok(Value::String(text.as_str().into())),
            Json::Number(number) => Ok(Value::String(number.to_string().into())),
            Json::Bool(flag) => Ok(Value::String(if *flag { "True" } else { "False" }.into())),
            _ => Err(invalid_type(spec, raw, "a string")),
        },
        InputKind::Boolean(_) => match raw {
            Json::Bool(flag) => Ok(Value::Bool(*flag)),
            Json::Number(number) if number.as_f64() == Some(0.0) => Ok(Value::Bool(false)),
            Json::Number(number) if number.as_f64() == Some(1.0) => Ok(Value::Bool(true)),
            Json::String(text) if text.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Json::String(text) if text.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(invalid_type(spec, raw, "true or false")),
        },
        InputKind::Combo(options) => {
            let text = match raw {
                Json::String(text) => text.clone(),
                Json::Number(number) => number.to_string(),
                _ => return Err(invalid_type(spec, raw, "one of the listed options (a string)")),
            };
            if options.node_validated || options.options.iter().any(|option| option == &text) {
                return Ok(Value::String(text.into()));
            }
            match &options.model_folder {
                // Workflows saved on Windows name files in subfolders with `\`; listings use `/`.
                Some(_) if text.contains('\\') && options.options.contains(&text.replace('\\', "/")) => {
                    Ok(Value::String(text.into()))
                }
                Some(source) => Err(missing_model(spec, &text, &options.options, source)),
                None => Err(not_in_list(spec, &text, &options.options)),
            }
        }
        InputKind::Socket(type_name) if type_name == "*" => Ok(Value::from_json(raw)),
        InputKind::Socket(type_name) => {
            let mut extra = base_extra(spec, raw);
            extra.insert("exception_message".into(), json!(format!("expects a link from a {type_name} output")));
            Err(ValidationError {
                error_type: ErrorType::InvalidInputType,
                message: format!("Failed to convert an input value to a {type_name} value"),
                details: format!("{}, {raw}, a {type_name} input takes a link, not a constant", spec.name),
                extra_info: extra,
                input: Some(spec.name.clone()),
                explanation: format!(
                    "got the constant {}, but this input takes a link from a node's {type_name} output",
                    short(raw)
                ),
            })
        }
    }
}

fn to_int(raw: &Json) -> Option<i128> {
    match raw {
        Json::Number(number) => number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
            .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1.8e19).map(|f| f as i128)),
        Json::String(text) => text.trim().parse::<i128>().ok(),
        Json::Bool(flag) => Some(i128::from(*flag)),
        _ => None,
    }
}

fn to_float(raw: &Json) -> Option<f64> {
    match raw {
        Json::Number(number) => number.as_f64(),
        Json::String(text) => text.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        Json::Bool(flag) => Some(f64::from(u8::from(*flag))),
        _ => None,
    }
}

fn short(raw: &Json) -> String {
    let text = raw.to_string();
    if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text }
}

fn base_extra(spec: &InputSpec, raw: &Json) -> Map<String, Json> {
    let mut extra = Map::new();
    extra.insert("input_name".into(), json!(spec.name));
    extra.insert("input_config".into(), spec.object_info());
    extra.insert("received_value".into(), raw.clone());
    extra
}

fn invalid_type(spec: &InputSpec, raw: &Json, expected: &str) -> ValidationError {
    let type_name = spec.kind.type_name();
    let mut extra = base_extra(spec, raw);
    let reason = format!("{} is {}, not {expected}", short(raw), json_kind(raw));
    extra.insert("exception_message".into(), json!(reason));
    ValidationError {
        error_type: ErrorType::InvalidInputType,
        message: format!("Failed to convert an input value to a {type_name} value"),
        details: format!("{}, {raw}, {reason}", spec.name),
        extra_info: extra,
        input: Some(spec.name.clone()),
        explanation: format!("expected {expected} ({type_name}), got {} ({})", short(raw), json_kind(raw)),
    }
}

fn range_error(
    spec: &InputSpec,
    raw: &Json,
    error_type: ErrorType,
    bound: &str,
    other: Option<String>,
) -> ValidationError {
    let (message, relation) = if error_type == ErrorType::ValueSmallerThanMin {
        (format!("Value {raw} smaller than min of {bound}"), format!("is below the minimum {bound}"))
    } else {
        (format!("Value {raw} bigger than max of {bound}"), format!("is above the maximum {bound}"))
    };
    let valid = match (error_type, other) {
        (ErrorType::ValueSmallerThanMin, Some(max)) => format!("{bound} ≤ {} ≤ {max}", spec.name),
        (ErrorType::ValueBiggerThanMax, Some(min)) => format!("{min} ≤ {} ≤ {bound}", spec.name),
        (ErrorType::ValueSmallerThanMin, None) => format!("{} ≥ {bound}", spec.name),
        _ => format!("{} ≤ {bound}", spec.name),
    };
    ValidationError {
        error_type,
        message,
        details: spec.name.clone(),
        extra_info: base_extra(spec, raw),
        input: Some(spec.name.clone()),
        explanation: format!("value {} {relation} (valid: {valid})", short(raw)),
    }
}

fn not_in_list(spec: &InputSpec, value: &str, options: &[String]) -> ValidationError {
    let closest = closest_options(value, options, 3);
    let listed = if options.len() <= MAX_ECHOED_OPTIONS {
        format!("{options:?}")
    } else {
        format!("(list of length {})", options.len())
    };
    let mut extra = base_extra(spec, &json!(value));
    if options.len() > MAX_ECHOED_OPTIONS {
        extra.insert("input_config".into(), Json::Null);
    }
    extra.insert("closest_values".into(), json!(closest));
    let explanation = if options.is_empty() {
        format!("'{value}' is not available: there are no options to choose from")
    } else if closest.is_empty() {
        format!("'{value}' is not one of the {} options", options.len())
    } else {
        format!("'{value}' is not one of the {} options; closest: {}", options.len(), quote_all(&closest))
    };
    ValidationError {
        error_type: ErrorType::ValueNotInList,
        message: "Value not in list".into(),
        details: format!("{}: '{value}' not in {listed}", spec.name),
        extra_info: extra,
        input: Some(spec.name.clone()),
        explanation,
    }
}

/// A model file combo whose file is not in any of its folders: ComfyUI's `value_not_in_list`, with the
/// folders searched and the files found in the explanation and in `extra_info`.
fn missing_model(spec: &InputSpec, value: &str, options: &[String], source: &ModelFolderSource) -> ValidationError {
    let mut error = not_in_list(spec, value, options);
    let missing = MissingModel {
        folder: source.kind.clone(),
        name: value.to_string(),
        searched: source.searched.clone(),
        found: options.to_vec(),
        known_kind: source.known_kind,
    };
    let closest = closest_options(value, options, 3);
    error.explanation =
        if closest.is_empty() { missing.to_string() } else { format!("{missing}; closest: {}", quote_all(&closest)) };
    error.extra_info.insert("model_folder".into(), json!(source.kind));
    error.extra_info.insert(
        "searched_paths".into(),
        json!(source.searched.iter().map(|path| path.display().to_string()).collect::<Vec<_>>()),
    );
    error
}

fn quote_all(values: &[String]) -> String {
    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
}

/// Up to `count` options closest to `value`: case-insensitive edit distance, substrings first.
pub fn closest_options(value: &str, options: &[String], count: usize) -> Vec<String> {
    let wanted = value.to_lowercase();
    let mut scored: Vec<(usize, &String)> = options
        .iter()
        .map(|option| {
            let candidate = option.to_lowercase();
            let distance = edit_distance(&wanted, &candidate);
            let contained = !wanted.is_empty() && (candidate.contains(&wanted) || wanted.contains(&candidate));
            (if contained { distance.min(1) } else { distance }, option)
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    // Beyond a third of the name, a "similar" option is more confusing than helpful.
    let limit = (wanted.chars().count() / 3).max(2);
    scored.into_iter().filter(|(distance, _)| *distance <= limit).take(count).map(|(_, o)| o.clone()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_prefers_near_spellings() {
        let options: Vec<String> = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "lcm"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        assert_eq!(closest_options("eulr", &options, 1), vec!["euler".to_string()]);
        assert_eq!(closest_options("ancestral", &options, 1), vec!["euler_ancestral".to_string()]);
        assert_eq!(closest_options("DPMPP_2M", &options, 1), vec!["dpmpp_2m".to_string()]);
    }

    #[test]
    fn ints_are_never_truncated() {
        let spec = InputSpec::int("steps", 20);
        assert!(check_constant(&spec, &json!(5.5)).is_err());
        assert!(matches!(check_constant(&spec, &json!(5.0)), Ok(Value::Int(5))));
        assert!(matches!(check_constant(&spec, &json!("7")), Ok(Value::Int(7))));
        let seed = InputSpec::int("seed", 0).min(0).max(u64::MAX);
        assert!(matches!(check_constant(&seed, &json!(u64::MAX)), Ok(Value::Int(v)) if v == i128::from(u64::MAX)));
    }
}
