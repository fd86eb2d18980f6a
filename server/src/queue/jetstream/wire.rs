//! What travels between workers and the front end, and how it is read back without trusting it: a message
//! that does not parse is dropped with a log line, never a panic.
//!
//! - An event: a 4-byte big-endian length, that many bytes of a JSON envelope
//!   `{"prompt_id", "client": id or null, "message": {...}}` for a websocket text message or
//!   `{"prompt_id", "client", "preview_node": id}` for a preview, then the preview's JPEG bytes (none for a
//!   text message), or `{"prompt_id", "client", "started": true}` when a worker starts the prompt.
//!   `client: null` means every socket, as the worker's routing decided.
//! - A history entry: `{"entry": ComfyUI's history entry, "finished_at": milliseconds}`.

use crate::hub::PreviewFrame;
use axum::body::Bytes;
use kinograph_engine::queue::{HistoryEntry, HistoryStatus, QueueItem};
use serde_json::{Value as Json, json};

/// One websocket message of a remote prompt, with who gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEvent {
    pub prompt_id: String,
    /// The client whose sockets get it; `None` for every socket.
    pub client: Option<String>,
    pub payload: EventPayload,
}

/// A text message or a preview frame, or word that the prompt started on a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    /// A worker took the prompt and starts it (the front end marks it running and tells every socket the
    /// queue's new length, as the local worker does).
    Started,
    Message(Json),
    Preview {
        node: String,
        jpeg: Bytes,
    },
}

impl RemoteEvent {
    /// The bytes published on NATS.
    pub fn encode(&self) -> Bytes {
        let (envelope, tail) = match &self.payload {
            EventPayload::Started => {
                (json!({"prompt_id": self.prompt_id, "client": self.client, "started": true}), Bytes::new())
            }
            EventPayload::Message(message) => {
                (json!({"prompt_id": self.prompt_id, "client": self.client, "message": message}), Bytes::new())
            }
            EventPayload::Preview { node, jpeg } => {
                (json!({"prompt_id": self.prompt_id, "client": self.client, "preview_node": node}), jpeg.clone())
            }
        };
        let envelope = envelope.to_string();
        let mut bytes = Vec::with_capacity(4 + envelope.len() + tail.len());
        bytes.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        bytes.extend_from_slice(envelope.as_bytes());
        bytes.extend_from_slice(&tail);
        bytes.into()
    }

    /// Reads what [`Self::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &Bytes) -> Option<Self> {
        let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let end = 4usize.checked_add(length)?;
        let envelope: Json = serde_json::from_slice(bytes.get(4..end)?).ok()?;
        let prompt_id = envelope.get("prompt_id")?.as_str()?.to_string();
        let client = match envelope.get("client")? {
            Json::Null => None,
            Json::String(client) => Some(client.clone()),
            _ => return None,
        };
        let message = envelope.get("message");
        let node = envelope.get("preview_node").and_then(Json::as_str);
        let started = envelope.get("started").and_then(Json::as_bool) == Some(true);
        let payload = match (message, node, started) {
            (Some(message), None, false) if message.is_object() => EventPayload::Message(message.clone()),
            (None, Some(node), false) => EventPayload::Preview { node: node.to_string(), jpeg: bytes.slice(end..) },
            (None, None, true) => EventPayload::Started,
            _ => return None,
        };
        Some(RemoteEvent { prompt_id, client, payload })
    }

    /// The preview frame for the hub, for a preview.
    pub fn preview_frame(&self) -> Option<PreviewFrame> {
        match &self.payload {
            EventPayload::Preview { node, jpeg } => {
                Some(PreviewFrame { node: node.clone(), prompt_id: self.prompt_id.clone(), jpeg: jpeg.clone() })
            }
            EventPayload::Message(_) | EventPayload::Started => None,
        }
    }
}

/// The bytes of a history entry on the history stream.
pub fn encode_entry(entry: &HistoryEntry) -> Bytes {
    json!({"entry": entry.to_comfy_json(), "finished_at": entry.finished_at}).to_string().into()
}

/// Reads what [`encode_entry`] wrote; `None` for anything else.
pub fn decode_entry(bytes: &[u8]) -> Option<HistoryEntry> {
    let value: Json = serde_json::from_slice(bytes).ok()?;
    let entry = value.get("entry")?;
    Some(HistoryEntry {
        item: QueueItem::from_comfy_json(entry.get("prompt")?)?,
        outputs: entry.get("outputs")?.as_object()?.clone(),
        status: HistoryStatus::from_comfy_json(entry.get("status")?)?,
        meta: entry.get("meta")?.as_object()?.clone(),
        finished_at: value.get("finished_at")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let text = RemoteEvent {
            prompt_id: "p".into(),
            client: Some("c".into()),
            payload: EventPayload::Message(json!({"type": "executing", "data": {"node": "1"}})),
        };
        assert_eq!(RemoteEvent::decode(&text.encode()), Some(text));
        let preview = RemoteEvent {
            prompt_id: "p".into(),
            client: None,
            payload: EventPayload::Preview { node: "3".into(), jpeg: Bytes::from_static(b"\xff\xd8jpeg") },
        };
        assert_eq!(RemoteEvent::decode(&preview.encode()), Some(preview));
        let started = RemoteEvent { prompt_id: "p".into(), client: None, payload: EventPayload::Started };
        assert_eq!(RemoteEvent::decode(&started.encode()), Some(started));
        for garbage in [&b""[..], b"\xff\xff\xff\xff{}", b"\x00\x00\x00\x02{}", b"\x00\x00\x00\x04null"] {
            assert_eq!(RemoteEvent::decode(&Bytes::copy_from_slice(garbage)), None);
        }
    }

    #[test]
    fn entries_round_trip() {
        let item = QueueItem {
            number: 2.0,
            prompt_id: "p".into(),
            prompt: json!({}),
            extra_data: json!({"client_id": "c"}),
            outputs_to_execute: vec!["1".into()],
        };
        let outputs: Map<String, Json> = [("1".to_string(), json!({"images": []}))].into_iter().collect();
        let entry = HistoryEntry {
            item,
            meta: HistoryEntry::meta_for(&outputs),
            outputs,
            status: HistoryStatus { status_str: "success".into(), completed: true, messages: Vec::new() },
            finished_at: 7,
        };
        assert_eq!(decode_entry(&encode_entry(&entry)), Some(entry));
        assert_eq!(decode_entry(b"{\"entry\": 1}"), None);
    }
}
