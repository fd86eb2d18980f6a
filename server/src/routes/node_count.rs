//! The number of nodes a `POST /prompt` body holds, read over the JSON without building it, so that an
//! oversized prompt is refused before it takes memory and time: 200,000 tiny nodes are 17 MB of text but
//! several times that as a JSON tree, and building the tree takes most of the time.

use serde::de::{Deserialize, DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// How many nodes the body's `prompt` holds: an API prompt's entries, or the length of a UI workflow's
/// `nodes` list (0 without a `prompt`, or for a `prompt` that is no object). `None` when the body is
/// not a JSON object; the full parse then says what is wrong.
pub fn prompt_nodes(body: &[u8]) -> Option<usize> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let count = Probe::Body.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    count
}

/// Which value is being read over: the request body, its `prompt`, or the prompt's `nodes`.
#[derive(Clone, Copy)]
enum Probe {
    /// Gives the node count of its `prompt` entry.
    Body,
    /// Gives its number of entries, or the length of its `nodes` list when that is a list.
    Prompt,
    /// Gives its length when it is a list.
    Nodes,
}

impl<'de> DeserializeSeed<'de> for Probe {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe {
    type Value = Option<usize>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        let (mut entries, mut found) = (0, None);
        while let Some(key) = map.next_key::<Key>()? {
            entries += 1;
            match (self, key) {
                (Probe::Body, Key::Prompt) => found = Some(map.next_value_seed(Probe::Prompt)?.unwrap_or(0)),
                (Probe::Prompt, Key::Nodes) => found = map.next_value_seed(Probe::Nodes)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match self {
            Probe::Body => Some(found.unwrap_or(0)),
            Probe::Prompt => Some(found.unwrap_or(entries)),
            Probe::Nodes => None,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<usize>, A::Error> {
        let mut items = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            items += 1;
        }
        Ok(matches!(self, Probe::Nodes).then_some(items))
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<Option<usize>, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }
}

/// An object key, told apart only as far as [`Probe`] needs.
#[derive(Clone, Copy)]
enum Key {
    Prompt,
    Nodes,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object key")
            }
            fn visit_str<E: Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "prompt" => Key::Prompt,
                    "nodes" => Key::Nodes,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::prompt_nodes;

    #[test]
    fn api_prompts_count_their_entries_and_workflows_their_node_list() {
        let count = |body: &str| prompt_nodes(body.as_bytes());
        assert_eq!(count(r#"{"prompt": {"1": {"inputs": {"nodes": [1, 2, 3]}}, "2": {}}, "client_id": "c"}"#), Some(2));
        assert_eq!(count(r#"{"client_id": "c", "prompt": {"nodes": [{}, {}, {}], "links": []}}"#), Some(3));
        assert_eq!(count(r#"{"prompt": {"nodes": {"1": {}}, "2": {}}}"#), Some(2), "a node named nodes");
        assert_eq!(count(r#"{"prompt": [1, 2], "extra": {"prompt": {"1": {}}}}"#), Some(0));
        assert_eq!(count(r#"{"client_id": "c"}"#), Some(0));
        assert_eq!(count(r#"{"prompt": null}"#), Some(0));
        assert_eq!(count("[1]"), None);
        assert_eq!(count(r#"{"prompt": {}"#), None);
        assert_eq!(count(r#"{"prompt": {}} trailing"#), None);
        assert_eq!(count(&format!(r#"{{"prompt": {}}}"#, "[".repeat(10_000))), None, "too deep");
    }
}
