//! The open websockets and who gets which message, as ComfyUI sends them: a prompt's messages go to the
//! client that queued it (`client_id`), `status` to everyone, `execution_interrupted` to everyone, and
//! progress and previews to everyone when the prompt named no client. Each socket has a bounded outbox: a
//! client that stops reading loses messages rather than growing the server's memory. A socket holds a
//! [`Slot`] from its handshake on, so that handshakes racing each other cannot open more than the limit.

use axum::body::Bytes;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Messages a socket may have waiting before further ones are dropped.
const OUTBOX: usize = 1024;

/// One message for a socket.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Text(Arc<str>),
    Binary(Bytes),
}

/// A preview image for the websocket's binary frames.
#[derive(Debug, Clone)]
pub struct PreviewFrame {
    pub node: String,
    pub prompt_id: String,
    /// JPEG bytes.
    pub jpeg: Bytes,
}

impl PreviewFrame {
    /// ComfyUI's `PREVIEW_IMAGE` frame: event 1, image type 1 (JPEG), the bytes.
    fn plain(&self) -> Bytes {
        let mut frame = Vec::with_capacity(8 + self.jpeg.len());
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&self.jpeg);
        frame.into()
    }

    /// ComfyUI's `PREVIEW_IMAGE_WITH_METADATA` frame: event 4, the metadata's length and JSON, the bytes.
    fn with_metadata(&self) -> Bytes {
        let metadata = json!({
            "node_id": self.node,
            "prompt_id": self.prompt_id,
            "display_node_id": self.node,
            "parent_node_id": null,
            "real_node_id": self.node,
            "image_type": "image/jpeg",
        })
        .to_string();
        let mut frame = Vec::with_capacity(8 + metadata.len() + self.jpeg.len());
        frame.extend_from_slice(&4u32.to_be_bytes());
        frame.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
        frame.extend_from_slice(metadata.as_bytes());
        frame.extend_from_slice(&self.jpeg);
        frame.into()
    }
}

/// Where a running prompt's websocket messages go: the [`Hub`] when the prompt runs in this process, a
/// NATS subject when it runs on a remote worker (whose front end hands them to its hub).
pub trait Outlet: Send + Sync {
    /// Sends `message` to `client_id`'s sockets, or to every socket when `None`.
    fn send_json(&self, client_id: Option<&str>, message: &Json);
    /// Sends a preview frame to `client_id`'s sockets, or to every socket when `None`.
    fn send_preview(&self, client_id: Option<&str>, frame: &PreviewFrame);
}

impl Outlet for Hub {
    fn send_json(&self, client_id: Option<&str>, message: &Json) {
        Hub::send_json(self, client_id, message);
    }

    fn send_preview(&self, client_id: Option<&str>, frame: &PreviewFrame) {
        Hub::send_preview(self, client_id, frame);
    }
}

struct Socket {
    client_id: String,
    outbox: mpsc::Sender<Outgoing>,
    /// Whether it asked for previews with metadata (its `feature_flags`).
    preview_metadata: bool,
}

/// The open websockets.
#[derive(Default)]
pub struct Hub {
    sockets: Mutex<HashMap<u64, Socket>>,
    next_id: AtomicU64,
    /// Messages dropped because a socket's outbox was full.
    dropped: AtomicU64,
    /// Slots taken: sockets open or being opened.
    slots: AtomicUsize,
}

/// A socket's place among the most the server takes, from its handshake until it closes; dropping it
/// frees the place.
pub struct Slot {
    hub: Arc<Hub>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.hub.slots.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A registered socket; dropping it unregisters the socket.
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

impl Registration {
    /// Records the socket's `feature_flags`.
    pub fn set_preview_metadata(&self, supported: bool) {
        if let Some(socket) = self.hub.lock().get_mut(&self.id) {
            socket.preview_metadata = supported;
        }
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Socket>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sockets are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes one of `max` slots for a socket about to open; `None` when all are taken. Taken before the
    /// handshake is answered, so a socket counts from then on, not only once it is registered.
    pub fn reserve(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| (taken < max).then_some(taken + 1))
            .ok()
            .map(|_| Slot { hub: self.clone() })
    }

    /// Messages dropped so far because a client did not read them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Registers a socket of `client_id`; its messages arrive on the returned receiver.
    pub fn register(self: &Arc<Self>, client_id: &str) -> (Registration, mpsc::Receiver<Outgoing>) {
        let (sender, receiver) = mpsc::channel(OUTBOX);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let socket = Socket { client_id: client_id.to_string(), outbox: sender, preview_metadata: false };
        self.lock().insert(id, socket);
        (Registration { hub: self.clone(), id }, receiver)
    }

    fn deliver(&self, socket: &Socket, message: Outgoing) {
        if socket.outbox.try_send(message).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `message` to every socket of `client_id`, or to every socket when `client_id` is `None`.
    pub fn send_json(&self, client_id: Option<&str>, message: &Json) {
        let text: Arc<str> = Arc::from(message.to_string());
        for socket in self.lock().values() {
            if client_id.is_none_or(|client| client == socket.client_id) {
                self.deliver(socket, Outgoing::Text(text.clone()));
            }
        }
    }

    /// Sends a preview frame to `client_id`'s sockets (every socket when `None`), in the form each asked for.
    pub fn send_preview(&self, client_id: Option<&str>, frame: &PreviewFrame) {
        let (mut plain, mut with_metadata) = (None, None);
        for socket in self.lock().values() {
            if client_id.is_none_or(|client| client == socket.client_id) {
                let bytes = if socket.preview_metadata {
                    with_metadata.get_or_insert_with(|| frame.with_metadata()).clone()
                } else {
                    plain.get_or_insert_with(|| frame.plain()).clone()
                };
                self.deliver(socket, Outgoing::Binary(bytes));
            }
        }
    }

    /// ComfyUI's `status` message: the number of prompts queued or running, with `sid` on connect.
    pub fn status_message(queue_remaining: usize, sid: Option<&str>) -> Json {
        let mut data = json!({"status": {"exec_info": {"queue_remaining": queue_remaining}}});
        if let Some(sid) = sid {
            data["sid"] = json!(sid);
        }
        json!({"type": "status", "data": data})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Outgoing) -> String {
        match message {
            Outgoing::Text(text) => text.to_string(),
            Outgoing::Binary(_) => panic!("expected text"),
        }
    }

    #[tokio::test]
    async fn messages_reach_their_client_or_everyone() {
        let hub = Arc::new(Hub::default());
        let (_a, mut to_a) = hub.register("a");
        let (_b, mut to_b) = hub.register("b");
        hub.send_json(Some("a"), &json!({"type": "executing"}));
        hub.send_json(None, &Hub::status_message(3, None));
        assert_eq!(text(to_a.recv().await.unwrap()), r#"{"type":"executing"}"#);
        assert!(text(to_a.recv().await.unwrap()).contains(r#""queue_remaining":3"#));
        assert!(text(to_b.recv().await.unwrap()).contains("status"), "b gets only the broadcast");
        assert!(to_b.try_recv().is_err());
    }

    #[tokio::test]
    async fn previews_come_plain_or_with_metadata_as_each_socket_asked() {
        let hub = Arc::new(Hub::default());
        let (_plain, mut plain) = hub.register("c");
        let (rich, mut with_metadata) = hub.register("c");
        rich.set_preview_metadata(true);
        let frame = PreviewFrame { node: "3".into(), prompt_id: "p".into(), jpeg: Bytes::from_static(b"\xff\xd8jpeg") };
        hub.send_preview(Some("c"), &frame);
        let Outgoing::Binary(bytes) = plain.recv().await.unwrap() else { panic!() };
        assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&bytes[8..], b"\xff\xd8jpeg");
        let Outgoing::Binary(bytes) = with_metadata.recv().await.unwrap() else { panic!() };
        assert_eq!(&bytes[..4], &[0, 0, 0, 4]);
        let length = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let metadata: Json = serde_json::from_slice(&bytes[8..8 + length]).unwrap();
        assert_eq!(metadata["node_id"], "3");
        assert_eq!(metadata["image_type"], "image/jpeg");
        assert_eq!(&bytes[8 + length..], b"\xff\xd8jpeg");
    }

    #[test]
    fn slots_are_bounded_and_freed_when_dropped() {
        let hub = Arc::new(Hub::default());
        let first = hub.reserve(2).unwrap();
        let _second = hub.reserve(2).unwrap();
        assert!(hub.reserve(2).is_none());
        drop(first);
        assert!(hub.reserve(2).is_some());
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_loses_messages_not_memory() {
        let hub = Arc::new(Hub::default());
        let (registration, _never_read) = hub.register("slow");
        for _ in 0..OUTBOX + 10 {
            hub.send_json(None, &json!({}));
        }
        assert_eq!(hub.dropped(), 10);
        drop(registration);
        assert!(hub.is_empty());
    }
}
