//! `GET /ws?clientId=`: ComfyUI's websocket. On connect the client gets `status` with its `sid`; then the
//! messages of the prompts it queued under that id, `status` on every queue change and preview frames. A
//! client's first message may be `{"type": "feature_flags", "data": {...}}`; it is answered with the
//! server's flags, and `supports_preview_metadata` there selects the preview frames with metadata.

use crate::hub::{Hub, Outgoing, Slot};
use crate::state::Shared;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest message a client may send (clients send only small JSON).
const MAX_INCOMING: usize = 64 << 10;

/// Opens a websocket, unless as many as the server allows are open already (429).
pub async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = shared.hub.reserve(shared.limits.max_websockets) else {
        let message = format!("{} websockets are open, the most this server takes", shared.limits.max_websockets);
        return super::error(StatusCode::TOO_MANY_REQUESTS, "too_many_websockets", message);
    };
    let client_id = query
        .get("clientId")
        .filter(|id| !id.is_empty() && id.len() <= 200)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| session(shared, socket, client_id, slot))
}

/// Serves one socket; its slot is freed when this returns (or, should the upgrade fail, when the
/// closure holding it is dropped).
async fn session(shared: Arc<Shared>, mut socket: WebSocket, client_id: String, _slot: Slot) {
    let (registration, mut outbox) = shared.hub.register(&client_id);
    let remaining = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.queue_remaining()).await.unwrap_or(0)
    };
    let hello = Hub::status_message(remaining, Some(&client_id)).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            outgoing = outbox.recv() => {
                let message = match outgoing {
                    Some(Outgoing::Text(text)) => Message::Text(text.as_ref().into()),
                    Some(Outgoing::Binary(bytes)) => Message::Binary(bytes),
                    None => break,
                };
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(supports) = feature_flags(text.as_str()) {
                        registration.set_preview_metadata(supports);
                        let reply = json!({"type": "feature_flags", "data": super::info::features_json(&shared)});
                        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Whether a client message is `feature_flags`, and if so whether it asks for previews with metadata.
fn feature_flags(text: &str) -> Option<bool> {
    let message: Json = serde_json::from_str(text).ok()?;
    (message.get("type")?.as_str()? == "feature_flags")
        .then(|| message["data"].get("supports_preview_metadata").and_then(Json::as_bool).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::feature_flags;

    #[test]
    fn feature_flags_are_read_from_the_clients_message() {
        let flags = r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#;
        assert_eq!(feature_flags(flags), Some(true));
        assert_eq!(feature_flags(r#"{"type": "feature_flags", "data": {}}"#), Some(false));
        assert_eq!(feature_flags(r#"{"type": "other"}"#), None);
        assert_eq!(feature_flags("not json"), None);
    }
}
