//! A blocking websocket client for `/ws`, as ComfyUI's example clients use it, whose reads give up
//! after [`super::WAIT`].

use super::WAIT;
use serde_json::Value as Json;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Error, Message, WebSocket};

/// A message from the server.
#[derive(Debug, Clone)]
pub enum Frame {
    Text(Json),
    Binary(Vec<u8>),
}

impl Frame {
    /// The JSON of a text message; `None` for a binary one.
    pub fn json(&self) -> Option<&Json> {
        match self {
            Frame::Text(json) => Some(json),
            Frame::Binary(_) => None,
        }
    }

    /// The `type` of a text message.
    pub fn kind(&self) -> Option<&str> {
        self.json().and_then(|json| json["type"].as_str())
    }
}

/// An open websocket.
pub struct Socket {
    websocket: WebSocket<TcpStream>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an open websocket")
    }
}

/// Why a websocket did not open: the server's HTTP status, or anything else in words.
#[derive(Debug)]
pub enum Refusal {
    Status(u16),
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Status(status) => write!(formatter, "refused with HTTP {status}"),
            Refusal::Other(reason) => formatter.write_str(reason),
        }
    }
}

/// Opens `ws://address{target}` (a path and query, `/ws?clientId=...`) with extra request `headers`.
pub fn connect(address: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Result<Socket, Refusal> {
    let mut request =
        format!("ws://{address}{target}").into_client_request().map_err(|error| Refusal::Other(error.to_string()))?;
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().expect("a header name");
        request.headers_mut().insert(name, value.parse().expect("a header value"));
    }
    let stream = TcpStream::connect_timeout(&address, WAIT).map_err(|error| Refusal::Other(error.to_string()))?;
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("a write timeout");
    match tungstenite::client(request, stream) {
        Ok((websocket, _)) => Ok(Socket { websocket }),
        Err(HandshakeError::Failure(Error::Http(response))) => Err(Refusal::Status(response.status().as_u16())),
        Err(error) => Err(Refusal::Other(error.to_string())),
    }
}

/// Opens a websocket for `client_id` and reads its `status` greeting, so that the server has
/// registered it when this returns.
pub fn connect_as(address: SocketAddr, client_id: &str) -> Socket {
    let mut socket = connect(address, &format!("/ws?clientId={client_id}"), &[])
        .unwrap_or_else(|refusal| panic!("the websocket of {client_id} did not open: {refusal}"));
    let greeting = socket.next_json();
    assert_eq!(greeting["type"], "status", "{greeting}");
    assert_eq!(greeting["data"]["sid"], client_id, "{greeting}");
    socket
}

impl Socket {
    /// The next message, or `None` when none came within `within`.
    pub fn try_next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.websocket.get_ref().set_read_timeout(Some(left)).expect("a read timeout");
            match self.websocket.read() {
                Ok(Message::Text(text)) => {
                    let json = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|error| panic!("a text message that is not JSON ({error}): {text}"));
                    return Some(Frame::Text(json));
                }
                Ok(Message::Binary(bytes)) => return Some(Frame::Binary(bytes.to_vec())),
                Ok(Message::Close(frame)) => panic!("the server closed the websocket: {frame:?}"),
                Ok(_) => {}
                Err(Error::Io(error)) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) => panic!("the websocket failed: {error}"),
            }
        }
    }

    /// The next message; panics when none came within [`WAIT`].
    pub fn next(&mut self) -> Frame {
        self.try_next(WAIT).unwrap_or_else(|| panic!("no websocket message within {WAIT:?}"))
    }

    /// The next text message, skipping binary ones.
    pub fn next_json(&mut self) -> Json {
        loop {
            if let Frame::Text(json) = self.next() {
                return json;
            }
        }
    }

    /// Every message up to and including the first text message for which `last` holds.
    pub fn until(&mut self, last: impl Fn(&Json) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next();
            let done = frame.json().is_some_and(&last);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Every message until the prompt's final `executing {node: null, prompt_id}`, which is included.
    pub fn until_finished(&mut self, prompt_id: &str) -> Vec<Frame> {
        self.until(|json| is_finished(json, prompt_id))
    }

    pub fn send_json(&mut self, message: &Json) {
        self.websocket.send(Message::text(message.to_string())).expect("the message was sent");
    }

    /// Closes the socket and waits for the server's close.
    pub fn close(mut self) {
        let _ = self.websocket.close(None);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.websocket.read() {
                Ok(_) => {}
                Err(Error::Io(error)) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }
}

/// Whether `json` is ComfyUI's "prompt finished" message for `prompt_id`.
pub fn is_finished(json: &Json, prompt_id: &str) -> bool {
    json["type"] == "executing" && json["data"]["node"].is_null() && json["data"]["prompt_id"] == prompt_id
}
