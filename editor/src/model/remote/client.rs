//! The server's address and its HTTP API: JSON requests and file downloads over blocking ureq, plain
//! HTTP only, with the access token on every request.

use serde_json::Value as Json;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// How long connecting to the server may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a JSON request may take in all (`/object_info` lists every model folder; it is still quick).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download may wait for its next bytes; the whole file may take as long as it takes.
const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_mins(1);
/// The largest JSON answer read (a big `/object_info` is a few megabytes).
const MAX_JSON_BYTES: u64 = 64 << 20;

/// A kinograph (or ComfyUI) server to run on: `http://host:port`, optionally under a path, and the
/// access token it asks for.
#[derive(Clone)]
pub struct ServerAddress {
    /// The URL as shown to people, without a trailing slash.
    url: String,
    /// `host:port`, for the websocket's own connection.
    authority: String,
    /// The path the API sits under (empty, or `/prefix` without a trailing slash).
    base_path: String,
    token: Option<String>,
}

impl std::fmt::Debug for ServerAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        formatter.debug_struct("ServerAddress").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ServerAddress {
    /// Reads `http://host[:port][/path]`; `token` (surrounding whitespace trimmed, empty refused) is sent
    /// as `Authorization: Bearer` and as the websocket's `token` parameter. The error is a sentence.
    pub fn parse(url: &str, token: Option<&str>) -> Result<Self, String> {
        let trimmed = url.trim();
        let Some(rest) = trimmed.strip_prefix("http://") else {
            return Err(if trimmed.starts_with("https://") {
                format!("{trimmed}: the editor talks to servers over plain HTTP only (no TLS); use an http:// URL")
            } else {
                format!("{trimmed}: a server URL starts with http:// (for example http://127.0.0.1:8188)")
            });
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{trimmed}: the URL names no host (http://host:port)"));
        }
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']'))
        });
        let authority = if has_port { authority.to_string() } else { format!("{authority}:80") };
        let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
        let base_path = if path.is_empty() { String::new() } else { format!("/{path}") };
        let token = match token.map(str::trim) {
            Some("") => return Err("the server token is empty".into()),
            token => token.map(str::to_string),
        };
        let url = format!("http://{}{base_path}", rest.split_once('/').map_or(rest, |(authority, _)| authority));
        Ok(ServerAddress { url, authority, base_path, token })
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full URL of an API path (`/prompt`).
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The websocket's URL for `client_id`, with the token as a parameter (for servers behind proxies
    /// that drop the header on upgrades).
    pub(crate) fn websocket_url(&self, client_id: &str) -> String {
        let mut url = format!("ws://{}{}/ws?clientId={}", self.authority, self.base_path, percent_encode(client_id));
        if let Some(token) = &self.token {
            url.push_str("&token=");
            url.push_str(&percent_encode(token));
        }
        url
    }

    /// The `Authorization` header's value, when there is a token.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// A TCP connection to the server, for the websocket.
    pub(crate) fn connect(&self) -> std::io::Result<TcpStream> {
        let addresses: Vec<SocketAddr> = self.authority.to_socket_addrs()?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} has no address", self.authority));
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

/// Escapes everything but unreserved characters for a query parameter.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// No answer at all: refused, timed out, reset. The reason in words.
    Unreachable(String),
    /// An answer other than 200: the status and the body (JSON when it was).
    Status { status: u16, body: Json },
    /// A 200 answer whose body could not be read or was not what was asked for.
    Unreadable(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Unreachable(reason) | RequestError::Unreadable(reason) => formatter.write_str(reason),
            RequestError::Status { status, body } => {
                let message = body["error"]["message"].as_str().or_else(|| body.as_str()).unwrap_or_default();
                write!(formatter, "HTTP {status}")?;
                if !message.is_empty() {
                    write!(formatter, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

/// The server's HTTP API.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    downloads: ureq::Agent,
    server: ServerAddress,
}

impl Http {
    /// A client of `server`; every status is an answer, not an error, so that a refusal's body is read.
    pub fn new(server: ServerAddress) -> Self {
        let config =
            || ureq::Agent::config_builder().http_status_as_error(false).timeout_connect(Some(CONNECT_TIMEOUT));
        let agent = config().timeout_global(Some(REQUEST_TIMEOUT)).build().new_agent();
        let downloads = config().timeout_per_read(Some(DOWNLOAD_READ_TIMEOUT)).build().new_agent();
        Http { agent, downloads, server }
    }

    /// The server it talks to.
    pub fn server(&self) -> &ServerAddress {
        &self.server
    }

    /// `GET path`, answered with JSON.
    pub fn get_json(&self, path: &str) -> Result<Json, RequestError> {
        let mut request = self.agent.get(self.server.endpoint(path));
        if let Some(authorization) = self.server.authorization() {
            request = request.header("Authorization", authorization);
        }
        read_json(request.call())
    }

    /// `POST path` with a JSON body; the answer's JSON (`null` for an empty body).
    pub fn post_json(&self, path: &str, body: &Json) -> Result<Json, RequestError> {
        let mut request = self.agent.post(self.server.endpoint(path)).header("Content-Type", "application/json");
        if let Some(authorization) = self.server.authorization() {
            request = request.header("Authorization", authorization);
        }
        read_json(request.send(body.to_string()))
    }

    /// Downloads an output file (`GET /view?filename&subfolder&type`) to `destination`, through a
    /// `.part` file beside it so that a broken download never looks like a file.
    pub fn download(&self, file: &RemoteFile, destination: &Path) -> Result<(), RequestError> {
        let mut request = self
            .downloads
            .get(self.server.endpoint("/view"))
            .query("filename", &file.filename)
            .query("subfolder", &file.subfolder)
            .query("type", &file.kind);
        if let Some(authorization) = self.server.authorization() {
            request = request.header("Authorization", authorization);
        }
        let mut response = request.call().map_err(|error| RequestError::Unreachable(error.to_string()))?;
        if response.status().as_u16() != 200 {
            let text = response.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
            return Err(RequestError::Status { status: response.status().as_u16(), body });
        }
        let unwritable = |error: std::io::Error| {
            RequestError::Unreadable(format!("cannot write {}: {error}", destination.display()))
        };
        if let Some(folder) = destination.parent() {
            std::fs::create_dir_all(folder).map_err(unwritable)?;
        }
        let partial = destination.with_extension(match destination.extension() {
            Some(extension) => format!("{}.part", extension.to_string_lossy()),
            None => "part".into(),
        });
        let copied = (|| {
            let mut output = std::fs::File::create(&partial)?;
            std::io::copy(&mut response.body_mut().as_reader(), &mut output)?;
            output.flush()?;
            std::fs::rename(&partial, destination)
        })();
        if let Err(error) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(RequestError::Unreadable(format!("{} did not arrive: {error}", file.filename)));
        }
        Ok(())
    }
}

/// The JSON of a 200 answer; anything else as a [`RequestError`].
fn read_json(answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Json, RequestError> {
    let mut response = answer.map_err(|error| RequestError::Unreachable(error.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_JSON_BYTES)
        .read_to_string()
        .map_err(|error| RequestError::Unreadable(format!("the answer could not be read: {error}")))?;
    let body = if text.trim().is_empty() {
        Json::Null
    } else {
        match serde_json::from_str(&text) {
            Ok(json) => json,
            Err(_) if status != 200 => Json::String(text),
            Err(error) => return Err(RequestError::Unreadable(format!("the answer is not JSON: {error}"))),
        }
    };
    if status == 200 { Ok(body) } else { Err(RequestError::Status { status, body }) }
}

/// One file of an output node's UI result, as the server names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub filename: String,
    pub subfolder: String,
    /// `output` or `temp` (or `input`).
    pub kind: String,
}

impl RemoteFile {
    /// The files of a UI result's `images` and `audio` lists, in order. Entries with a missing name are
    /// left out.
    pub fn list(output: &Json) -> Vec<RemoteFile> {
        let entries = |key: &str| output.get(key).and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
        entries("images")
            .iter()
            .chain(entries("audio"))
            .filter_map(|entry| {
                let text = |key: &str| entry.get(key).and_then(Json::as_str).map(str::to_string);
                Some(RemoteFile {
                    filename: text("filename")?,
                    subfolder: text("subfolder").unwrap_or_default(),
                    kind: text("type").unwrap_or_else(|| "output".into()),
                })
            })
            .collect()
    }

    /// Where the file goes under `folder`: `<kind>/<subfolder>/<filename>`, or `None` when a name would
    /// leave the folder (`..`, an absolute path, a separator in the file name): the names come from the
    /// network.
    pub fn local_path(&self, folder: &Path) -> Option<PathBuf> {
        let plain = |name: &str| {
            let mut components = Path::new(name).components();
            matches!((components.next(), components.next()), (Some(Component::Normal(_)), None))
        };
        if !plain(&self.kind) || !plain(&self.filename) || self.filename.contains(['/', '\\']) {
            return None;
        }
        let mut path = folder.join(&self.kind);
        for part in self.subfolder.split(['/', '\\']).filter(|part| !part.is_empty()) {
            if !plain(part) {
                return None;
            }
            path.push(part);
        }
        Some(path.join(&self.filename))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_are_read_with_their_port_path_and_token() {
        let server = ServerAddress::parse(" http://127.0.0.1:8188/ ", Some(" secret+/= \n")).unwrap();
        assert_eq!(server.url(), "http://127.0.0.1:8188");
        assert_eq!(server.endpoint("/prompt"), "http://127.0.0.1:8188/prompt");
        assert_eq!(server.websocket_url("c 1"), "ws://127.0.0.1:8188/ws?clientId=c%201&token=secret%2B%2F%3D");
        assert_eq!(server.authorization().as_deref(), Some("Bearer secret+/="));
        assert!(!format!("{server:?}").contains("secret"));
        let proxied = ServerAddress::parse("http://gpu-box/comfy/", None).unwrap();
        assert_eq!(proxied.endpoint("/queue"), "http://gpu-box/comfy/queue");
        assert_eq!(proxied.websocket_url("c"), "ws://gpu-box:80/comfy/ws?clientId=c");
        assert_eq!(ServerAddress::parse("http://[::1]:9000", None).unwrap().authority, "[::1]:9000");
        assert!(ServerAddress::parse("https://host", None).unwrap_err().contains("plain HTTP"));
        assert!(ServerAddress::parse("host:8188", None).unwrap_err().contains("http://"));
        assert!(ServerAddress::parse("http://host", Some(" ")).is_err());
    }

    #[test]
    fn output_files_stay_inside_their_folder() {
        let output = json!({"images": [
            {"filename": "clip_00001.mp4", "subfolder": "video/a", "type": "output"},
            {"filename": "../escape.png", "subfolder": "", "type": "output"},
            {"filename": "x.png", "subfolder": "../..", "type": "temp"},
            {"filename": "y.png", "subfolder": "", "type": "/etc"},
            {"subfolder": "no name"},
        ], "audio": [{"filename": "s.flac", "subfolder": "", "type": "temp"}]});
        let files = RemoteFile::list(&output);
        assert_eq!(files.len(), 5);
        let folder = Path::new("/cache/p1");
        let paths: Vec<Option<PathBuf>> = files.iter().map(|file| file.local_path(folder)).collect();
        assert_eq!(
            paths,
            vec![
                Some(PathBuf::from("/cache/p1/output/video/a/clip_00001.mp4")),
                None,
                None,
                None,
                Some(PathBuf::from("/cache/p1/temp/s.flac")),
            ]
        );
    }
}
