//! ComfyUI's websocket messages read back into the engine's [`Event`]s, so that a run on a server folds
//! into a [`super::super::run::RunView`] exactly as a run in-process does. The messages are those
//! [`Event::to_comfy_json`] writes, and the binary preview frames of ComfyUI's protocol.

use kinograph_engine::{Event, EventKind, ExecutionFailure, Preview};
use serde_json::{Map, Value as Json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// ComfyUI's binary event for a preview image: `[u32 BE 1][u32 BE image type][image bytes]`.
const PREVIEW_IMAGE: u32 = 1;
/// A preview with metadata: `[u32 BE 4][u32 BE metadata length][metadata JSON][image bytes]`.
const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;
/// The image type of a JPEG preview.
const JPEG: u32 = 1;

/// Reads one connection's messages: remembers which node of which prompt runs and its last progress,
/// since a plain preview frame names neither, and which nodes already finished, since ComfyUI's
/// `progress_state` repeats the states of every node each time.
#[derive(Default)]
pub struct MessageReader {
    /// The prompt and node that last started or reported progress.
    running: Option<(Arc<str>, String)>,
    /// The last `value` and `max` of each node of the running prompt.
    progress: HashMap<String, (u64, u64)>,
    /// Nodes reported finished, by prompt.
    finished: HashMap<Arc<str>, HashSet<String>>,
}

impl MessageReader {
    /// The events of one text message (none for messages that are not about a run, or malformed ones).
    pub fn text(&mut self, text: &str) -> Vec<Event> {
        let Ok(message) = serde_json::from_str::<Json>(text) else { return Vec::new() };
        let (Some(kind), Some(data)) = (message.get("type").and_then(Json::as_str), message.get("data")) else {
            return Vec::new();
        };
        let Some(prompt_id) = data.get("prompt_id").and_then(Json::as_str).map(Arc::<str>::from) else {
            return Vec::new();
        };
        let text_of = |key: &str| data.get(key).and_then(Json::as_str).map(str::to_string);
        let strings = |key: &str| -> Vec<String> {
            let list = data.get(key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
            list.iter().filter_map(|item| item.as_str().map(str::to_string)).collect()
        };
        let kinds = match kind {
            "execution_start" => {
                self.finished.remove(&prompt_id);
                self.progress.clear();
                vec![EventKind::ExecutionStart]
            }
            "execution_cached" => vec![EventKind::ExecutionCached { nodes: strings("nodes") }],
            "executing" => {
                if let Some(node) = text_of("node") {
                    self.running = Some((prompt_id.clone(), node.clone()));
                    vec![EventKind::Executing { node }]
                } else {
                    // `node: null`: the run is over, whatever its outcome.
                    self.running = None;
                    self.finished.remove(&prompt_id);
                    vec![EventKind::Finished]
                }
            }
            "progress" => {
                let Some(node) = text_of("node") else { return Vec::new() };
                let number = |key: &str| data.get(key).and_then(Json::as_u64).unwrap_or(0);
                let (value, max) = (number("value"), number("max"));
                self.running = Some((prompt_id.clone(), node.clone()));
                self.progress.insert(node.clone(), (value, max));
                vec![EventKind::Progress { node, value, max, preview: None }]
            }
            "progress_state" => self.finished_nodes(&prompt_id, data),
            "executed" => match text_of("node") {
                Some(node) => {
                    let output = data.get("output").cloned().unwrap_or(Json::Null);
                    vec![EventKind::Executed { node, output }]
                }
                None => Vec::new(),
            },
            "execution_success" => vec![EventKind::ExecutionSuccess],
            "execution_error" => vec![EventKind::ExecutionError(ExecutionFailure {
                node_id: text_of("node_id").unwrap_or_default(),
                node_type: text_of("node_type").unwrap_or_default(),
                exception_message: text_of("exception_message").unwrap_or_default(),
                exception_type: text_of("exception_type").unwrap_or_default(),
                current_inputs: data.get("current_inputs").and_then(Json::as_object).cloned().unwrap_or_default(),
                executed: strings("executed"),
            })],
            "execution_interrupted" => vec![EventKind::ExecutionInterrupted {
                node_id: text_of("node_id"),
                node_type: text_of("node_type"),
                executed: strings("executed"),
            }],
            _ => Vec::new(),
        };
        kinds.into_iter().map(|kind| Event::now(&prompt_id, kind)).collect()
    }

    /// `NodeFinished` for each node `progress_state` lists as finished that was not reported before.
    fn finished_nodes(&mut self, prompt_id: &Arc<str>, data: &Json) -> Vec<EventKind> {
        let empty = Map::new();
        let nodes = data.get("nodes").and_then(Json::as_object).unwrap_or(&empty);
        let reported = self.finished.entry(prompt_id.clone()).or_default();
        nodes
            .iter()
            .filter(|(_, state)| state.get("state").and_then(Json::as_str) == Some("finished"))
            .filter(|(node, _)| reported.insert((*node).clone()))
            .map(|(node, _)| EventKind::NodeFinished { node: node.clone() })
            .collect()
    }

    /// The progress event carrying a binary preview frame, decoded to RGB; `None` for frames of other
    /// kinds, images that do not decode, and plain frames arriving when no node is known to run.
    pub fn binary(&mut self, frame: &[u8]) -> Option<Event> {
        let word =
            |at: usize| frame.get(at..at + 4).map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let (prompt_id, node, jpeg) = match word(0)? {
            PREVIEW_IMAGE => {
                if word(4)? != JPEG {
                    return None;
                }
                let (prompt_id, node) = self.running.clone()?;
                (prompt_id, node, &frame[8..])
            }
            PREVIEW_IMAGE_WITH_METADATA => {
                let length = word(4)? as usize;
                let metadata: Json = serde_json::from_slice(frame.get(8..8usize.checked_add(length)?)?).ok()?;
                let node = metadata.get("node_id").and_then(Json::as_str)?.to_string();
                let prompt_id = Arc::<str>::from(metadata.get("prompt_id").and_then(Json::as_str)?);
                (prompt_id, node, &frame[8 + length..])
            }
            _ => return None,
        };
        let preview = decode_jpeg(jpeg)?;
        let (value, max) = self.progress.get(&node).copied().unwrap_or((0, 0));
        Some(Event::now(&prompt_id, EventKind::Progress { node, value, max, preview: Some(Arc::new(preview)) }))
    }
}

/// A JPEG as an RGB preview.
fn decode_jpeg(bytes: &[u8]) -> Option<Preview> {
    let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).ok()?.to_rgb8();
    Some(Preview { width: image.width(), height: image.height(), rgb: image.into_raw() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(reader: &mut MessageReader, message: &Json) -> Vec<EventKind> {
        reader.text(&message.to_string()).into_iter().map(|event| event.kind).collect()
    }

    /// Every event the engine sends reads back as itself.
    #[test]
    fn the_servers_messages_read_back_as_the_engines_events() {
        let id: Arc<str> = Arc::from("p1");
        let failure = ExecutionFailure {
            node_id: "3".into(),
            node_type: "KSampler".into(),
            exception_message: "out of memory".into(),
            exception_type: "RuntimeError".into(),
            current_inputs: Map::new(),
            executed: vec!["1".into()],
        };
        let events = [
            EventKind::ExecutionStart,
            EventKind::ExecutionCached { nodes: vec!["1".into(), "2".into()] },
            EventKind::Executing { node: "3".into() },
            EventKind::Progress { node: "3".into(), value: 2, max: 20, preview: None },
            EventKind::NodeFinished { node: "3".into() },
            EventKind::Executed { node: "9".into(), output: json!({"images": []}) },
            EventKind::ExecutionSuccess,
            EventKind::ExecutionError(failure),
            EventKind::ExecutionInterrupted { node_id: None, node_type: None, executed: vec!["1".into()] },
            EventKind::Finished,
        ];
        let mut reader = MessageReader::default();
        for kind in events {
            let message = Event::now(&id, kind.clone()).to_comfy_json();
            let read = reader.text(&message.to_string());
            assert_eq!(read.len(), 1, "{message}");
            assert_eq!((&*read[0].prompt_id, &read[0].kind), ("p1", &kind));
        }
    }

    #[test]
    fn finished_nodes_are_reported_once_and_other_messages_not_at_all() {
        let mut reader = MessageReader::default();
        let state = |nodes: Json| json!({"type": "progress_state", "data": {"prompt_id": "p", "nodes": nodes}});
        let first = state(json!({"1": {"state": "finished"}, "2": {"state": "running"}}));
        assert_eq!(kinds(&mut reader, &first), vec![EventKind::NodeFinished { node: "1".into() }]);
        let second = state(json!({"1": {"state": "finished"}, "2": {"state": "finished"}}));
        assert_eq!(kinds(&mut reader, &second), vec![EventKind::NodeFinished { node: "2".into() }]);
        assert!(kinds(&mut reader, &json!({"type": "status", "data": {"status": {}}})).is_empty());
        assert!(reader.text("not json").is_empty());
        assert!(kinds(&mut reader, &json!({"type": "executed", "data": {"prompt_id": "p"}})).is_empty());
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb([200, 40, 40]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn preview_frames_become_progress_with_the_image() {
        let mut reader = MessageReader::default();
        let mut plain = [1u32.to_be_bytes(), 1u32.to_be_bytes()].concat();
        plain.extend(jpeg(8, 4));
        assert!(reader.binary(&plain).is_none(), "no node is known to run yet");
        let progress = json!({"type": "progress", "data": {"prompt_id": "p", "node": "5", "value": 1, "max": 4}});
        kinds(&mut reader, &progress);
        let event = reader.binary(&plain).expect("a preview");
        let EventKind::Progress { node, value, max, preview: Some(preview) } = event.kind else { panic!() };
        assert_eq!((node.as_str(), value, max, preview.width, preview.height), ("5", 1, 4, 8, 4));
        assert_eq!(preview.rgb.len(), 8 * 4 * 3);

        let metadata = json!({"node_id": "7", "prompt_id": "q"}).to_string();
        let mut rich = [4u32.to_be_bytes(), (metadata.len() as u32).to_be_bytes()].concat();
        rich.extend(metadata.as_bytes());
        rich.extend(jpeg(2, 2));
        let event = reader.binary(&rich).expect("a preview with metadata");
        assert_eq!(&*event.prompt_id, "q");
        assert!(matches!(event.kind, EventKind::Progress { ref node, preview: Some(_), .. } if node == "7"));
        assert!(reader.binary(&[0, 0, 0, 4, 255, 255, 255, 255]).is_none(), "a length past the frame");
        assert!(reader.binary(&[0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3]).is_none(), "not a JPEG");
    }
}
