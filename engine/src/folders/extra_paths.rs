//! Reading ComfyUI's `extra_model_paths.yaml`.
//!
//! The file is a mapping of sections (any names: `comfyui`, `a111`, ...). Each section maps folder
//! kinds to paths, and may set `base_path` and `is_default`. The rules are ComfyUI's
//! (`utils/extra_config.py`), with these differences, all for files that ComfyUI would reject or
//! misread: a value may also be a list of paths; `is_default` must be a boolean (or the strings
//! `true`/`false`/`yes`/`no`), not any truthy value; each line of a multi-line value is trimmed; and a
//! key with no path, or a value that is not text, is an error rather than a crash.

use super::normalize;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Why an extra paths file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The file could not be read.
    #[error("cannot read the extra model paths file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("the extra model paths file {} is not valid YAML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// The YAML is valid but does not have the expected shape.
    #[error("the extra model paths file {}: {place}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        /// Where in the file: the section, and the key within it.
        place: String,
        /// What was wrong and what would be right.
        message: String,
    },
}

/// One path to add, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExtraPath {
    pub folder: String,
    pub path: PathBuf,
    pub is_default: bool,
}

/// The paths `yaml_file` adds, in the order they are to be added.
pub(super) fn read(yaml_file: &Path) -> Result<Vec<ExtraPath>, FolderError> {
    let text = std::fs::read_to_string(yaml_file)
        .map_err(|source| FolderError::Read { path: yaml_file.to_path_buf(), source })?;
    let absolute = std::path::absolute(yaml_file).unwrap_or_else(|_| yaml_file.to_path_buf());
    let yaml_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &yaml_dir).map_err(|error| error.at(yaml_file))
}

/// A problem found while parsing, before the file name is attached.
#[derive(Debug)]
enum ParseError {
    Syntax(String),
    Invalid { place: String, message: String },
}

impl ParseError {
    fn invalid(place: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError::Invalid { place: place.into(), message: message.into() }
    }

    fn at(self, path: &Path) -> FolderError {
        let path = path.to_path_buf();
        match self {
            ParseError::Syntax(message) => FolderError::Syntax { path, message },
            ParseError::Invalid { place, message } => FolderError::Invalid { path, place, message },
        }
    }
}

/// Parses the text of an extra paths file whose folder is `yaml_dir`.
fn parse(text: &str, yaml_dir: &Path) -> Result<Vec<ExtraPath>, ParseError> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| ParseError::Syntax(error.to_string()))?;
    let Some(root) = documents.into_iter().next() else { return Ok(Vec::new()) };
    let sections = match root {
        Yaml::Hash(sections) => sections,
        Yaml::Null => return Ok(Vec::new()),
        other => {
            return Err(ParseError::invalid(
                "top level",
                format!("expected sections (`name:` followed by indented settings), found {}", describe(&other)),
            ));
        }
    };
    let mut paths = Vec::new();
    for (section_key, section) in sections {
        let section_name = key_text(&section_key, "top level")?;
        let settings = match section {
            Yaml::Hash(settings) => settings,
            Yaml::Null => continue,
            other => {
                return Err(ParseError::invalid(
                    format!("section '{section_name}'"),
                    format!("expected settings (`checkpoints: path`, ...), found {}", describe(&other)),
                ));
            }
        };
        let mut base_path = None;
        let mut is_default = false;
        let mut entries = Vec::new();
        for (key, value) in settings {
            let key = key_text(&key, &format!("section '{section_name}'"))?;
            let place = format!("section '{section_name}', key '{key}'");
            match key.as_str() {
                "base_path" => base_path = Some(resolve_base_path(&value, yaml_dir, &place)?),
                "is_default" => is_default = flag(&value, &place)?,
                _ => entries.push((key, value, place)),
            }
        }
        for (folder, value, place) in entries {
            for line in path_lines(&value, &place)? {
                let path = match &base_path {
                    Some(base) => base.join(&line),
                    None => yaml_dir.join(&line),
                };
                paths.push(ExtraPath { folder: folder.clone(), path: normalize(&path), is_default });
            }
        }
    }
    Ok(paths)
}

fn key_text(key: &Yaml, place: &str) -> Result<String, ParseError> {
    match key {
        Yaml::String(text) => Ok(text.clone()),
        other => Err(ParseError::invalid(place, format!("keys must be names, found {}", describe(other)))),
    }
}

/// `base_path`, with `~` and `$VAR`/`${VAR}` expanded, and a relative one taken from the file's folder.
fn resolve_base_path(value: &Yaml, yaml_dir: &Path, place: &str) -> Result<PathBuf, ParseError> {
    let Yaml::String(text) = value else {
        return Err(ParseError::invalid(place, format!("expected a folder path, found {}", describe(value))));
    };
    let expanded = expand_user(&expand_vars(text));
    Ok(normalize(&yaml_dir.join(expanded)))
}

fn flag(value: &Yaml, place: &str) -> Result<bool, ParseError> {
    match value {
        Yaml::Boolean(flag) => Ok(*flag),
        Yaml::String(text) if ["true", "yes"].contains(&text.to_ascii_lowercase().as_str()) => Ok(true),
        Yaml::String(text) if ["false", "no"].contains(&text.to_ascii_lowercase().as_str()) => Ok(false),
        other => Err(ParseError::invalid(place, format!("expected true or false, found {}", describe(other)))),
    }
}

/// The paths of one folder kind: the non-empty lines of a text (a `|` block holds several), or the
/// entries of a list.
fn path_lines(value: &Yaml, place: &str) -> Result<Vec<String>, ParseError> {
    let lines: Vec<String> = match value {
        Yaml::String(text) => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
        Yaml::Array(items) => {
            let mut lines = Vec::new();
            for item in items {
                let Yaml::String(text) = item else {
                    return Err(ParseError::invalid(
                        place,
                        format!("expected a list of folder paths, found an entry that is {}", describe(item)),
                    ));
                };
                lines.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
            }
            lines
        }
        Yaml::Null => Vec::new(),
        other => {
            return Err(ParseError::invalid(
                place,
                format!("expected a folder path (or several, one per line after `|`), found {}", describe(other)),
            ));
        }
    };
    if lines.is_empty() {
        return Err(ParseError::invalid(place, "no folder path given"));
    }
    Ok(lines)
}

fn describe(value: &Yaml) -> String {
    match value {
        Yaml::Real(number) => format!("the number {number}"),
        Yaml::Integer(number) => format!("the number {number}"),
        Yaml::String(text) => format!("the text '{text}'"),
        Yaml::Boolean(flag) => format!("the boolean {flag}"),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        Yaml::Alias(_) => "an alias".into(),
        Yaml::Null => "nothing".into(),
        Yaml::BadValue => "an unreadable value".into(),
    }
}

/// `$NAME` and `${NAME}` replaced by the environment variable's value; unset variables are left as
/// written (Python's `os.path.expandvars`).
fn expand_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name) {
            Ok(value) if !name.is_empty() => out.push_str(&value),
            _ => out.push_str(&rest[dollar..=dollar + consumed]),
        }
        rest = &rest[dollar + 1 + consumed..];
    }
    out.push_str(rest);
    out
}

/// A leading `~` (alone or before a separator) replaced by the home folder.
fn expand_user(text: &str) -> String {
    let home = std::env::var("HOME").or_else(|_| std::env::var("USERPROFILE"));
    match (text.strip_prefix('~'), home) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with(['/', '\\']) => format!("{home}{rest}"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, PathBuf, bool)> {
        parse(text, Path::new("/etc/kinograph"))
            .unwrap()
            .into_iter()
            .map(|entry| (entry.folder, entry.path, entry.is_default))
            .collect()
    }

    fn invalid(text: &str) -> String {
        match parse(text, Path::new("/etc/kinograph")).unwrap_err() {
            ParseError::Invalid { place, message } => format!("{place}: {message}"),
            ParseError::Syntax(message) => panic!("expected a shape error, got a syntax error: {message}"),
        }
    }

    #[test]
    fn base_path_lines_and_relative_paths() {
        let text = "a111:\n    base_path: /sd/webui/\n    checkpoints: models/Stable-diffusion\n    loras: |\n        models/Lora\n        models/LyCORIS\n\nlocal:\n    vae: ./vae\n    text_encoders: /abs/te\n";
        assert_eq!(
            parsed(text),
            vec![
                ("checkpoints".into(), PathBuf::from("/sd/webui/models/Stable-diffusion"), false),
                ("loras".into(), PathBuf::from("/sd/webui/models/Lora"), false),
                ("loras".into(), PathBuf::from("/sd/webui/models/LyCORIS"), false),
                ("vae".into(), PathBuf::from("/etc/kinograph/vae"), false),
                ("text_encoders".into(), PathBuf::from("/abs/te"), false),
            ]
        );
    }

    #[test]
    fn relative_base_path_is_taken_from_the_file_folder() {
        let text = "shared:\n  base_path: ../models\n  is_default: true\n  checkpoints: checkpoints\n";
        assert_eq!(parsed(text), vec![("checkpoints".into(), PathBuf::from("/etc/models/checkpoints"), true)]);
    }

    #[test]
    fn is_default_may_come_after_the_paths_and_as_text() {
        let text = "s:\n  vae: v\n  is_default: \"true\"\n";
        assert_eq!(parsed(text), vec![("vae".into(), PathBuf::from("/etc/kinograph/v"), true)]);
    }

    #[test]
    fn lists_and_empty_sections() {
        let text = "empty:\ns:\n  base_path: /m\n  loras: [a, b]\n";
        assert_eq!(
            parsed(text),
            vec![("loras".into(), PathBuf::from("/m/a"), false), ("loras".into(), PathBuf::from("/m/b"), false)]
        );
        assert!(parsed("").is_empty());
        assert!(parsed("# only a comment\n").is_empty());
    }

    #[test]
    fn shape_errors_name_the_section_and_key() {
        assert_eq!(invalid("s:\n  vae:\n"), "section 's', key 'vae': no folder path given");
        assert_eq!(
            invalid("s:\n  vae: 12\n"),
            "section 's', key 'vae': expected a folder path (or several, one per line after `|`), found the number 12"
        );
        assert_eq!(
            invalid("s:\n  is_default: maybe\n"),
            "section 's', key 'is_default': expected true or false, found the text 'maybe'"
        );
        assert_eq!(
            invalid("- a\n- b\n"),
            "top level: expected sections (`name:` followed by indented settings), found a list"
        );
        assert_eq!(
            invalid("s: text\n"),
            "section 's': expected settings (`checkpoints: path`, ...), found the text 'text'"
        );
        assert!(matches!(parse("s: [unclosed\n", Path::new("/")), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn variables_and_home_are_expanded() {
        let home = std::env::var("HOME").unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_vars("$PATH/x"), format!("{path}/x"));
        assert_eq!(expand_vars("${PATH}x"), format!("{path}x"));
        assert_eq!(expand_vars("$KINOGRAPH_SURELY_UNSET_VARIABLE/x"), "$KINOGRAPH_SURELY_UNSET_VARIABLE/x");
        assert_eq!(expand_vars("a$"), "a$");
        assert_eq!(expand_vars("${unclosed"), "${unclosed");
        if !home.is_empty() {
            assert_eq!(expand_user("~/models"), format!("{home}/models"));
            assert_eq!(expand_user("~other/models"), "~other/models");
        }
    }
}
