//! Who may talk to the server.
//!
//! ComfyUI has no authentication, and people expose it on their LAN (or further) with `--listen`; then
//! anyone who reaches the port can run arbitrary workflows and read every output. `kinograph serve`
//! therefore refuses to listen beyond loopback without an access token ([`check_bind`]), and with a
//! token every request must present it ([`guard`]).
//!
//! Loopback is not safe on its own either: any web page open in the user's browser can send requests to
//! `http://127.0.0.1:8188`. Browsers mark such requests with an `Origin` header naming the page's site,
//! so, like ComfyUI's loopback middleware, [`origin_allowed`] refuses a request whose `Origin` differs
//! from the `Host` it was sent to.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the server will not start as asked, or a token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Listening beyond loopback without a token.
    #[error(
        "refusing to listen on {listen} without an access token: anyone who can reach that address could run \
         workflows and read every output. Pass --auth-token <secret> or --auth-token-file <path>, or listen on \
         127.0.0.1"
    )]
    ExposedWithoutToken { listen: IpAddr },
    /// The token file could not be read.
    #[error("could not read the access token file {}: {source}", .path.display())]
    TokenFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token file holds only whitespace.
    #[error("the access token file {} is empty", .path.display())]
    TokenFileEmpty { path: PathBuf },
    /// A token given on the command line is empty.
    #[error("the access token is empty")]
    EmptyToken,
}

/// Whether `addr` is a loopback address: `127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`, the form an IPv4
/// loopback address takes on a dual-stack socket. The unspecified address (`0.0.0.0`, `::`) listens on
/// every interface and is not loopback.
pub fn is_loopback(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Refuses to listen on `listen` when it is not loopback and there is no token ([`AuthToken`] is never
/// empty).
pub fn check_bind(listen: IpAddr, token: Option<&AuthToken>) -> Result<(), SecurityError> {
    if is_loopback(&listen) || token.is_some() { Ok(()) } else { Err(SecurityError::ExposedWithoutToken { listen }) }
}

/// The secret every request must present. It is never printed: `Debug` shows `AuthToken(<redacted>)`
/// and there is no `Display`, so a logged policy or error cannot leak it.
#[derive(Clone)]
pub struct AuthToken(String);

impl AuthToken {
    /// A token from the command line (`--auth-token`), without surrounding whitespace; empty is refused,
    /// since an empty token would admit every request that sends an empty `Bearer`.
    pub fn new(value: &str) -> Result<AuthToken, SecurityError> {
        let trimmed = value.trim();
        if trimmed.is_empty() { Err(SecurityError::EmptyToken) } else { Ok(AuthToken(trimmed.to_owned())) }
    }

    /// A token from a file (`--auth-token-file`), without the surrounding whitespace and final newline
    /// editors add. A file keeps the secret out of the process list and shell history.
    pub fn from_file(path: &Path) -> Result<AuthToken, SecurityError> {
        let contents = std::fs::read_to_string(path)
            .map_err(|source| SecurityError::TokenFileUnreadable { path: path.to_owned(), source })?;
        AuthToken::new(&contents).map_err(|_| SecurityError::TokenFileEmpty { path: path.to_owned() })
    }

    /// Whether `presented` is the token, in time that depends only on the token's length: every byte is
    /// compared and the differences are folded together, with no early exit that would let a client
    /// find the token one byte at a time by timing.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.as_bytes();
        let presented = presented.as_bytes();
        let mut difference = expected.len() ^ presented.len();
        for (index, byte) in expected.iter().enumerate() {
            difference |= usize::from(byte ^ presented.get(index).copied().unwrap_or(0));
        }
        // Keeps the optimiser from turning the fold into a comparison that stops at the first difference.
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AuthToken(<redacted>)")
    }
}

/// The token a request presents: `Authorization: Bearer <token>` (the scheme in any case, spaces around
/// the token ignored), else a `token=` parameter in the raw query string, since browsers cannot set
/// headers on a websocket upgrade. The parameter is percent-decoded; a `+` stays a `+`, because tokens
/// have no spaces and base64 tokens do have pluses. A query token may end up in proxy logs and browser
/// history, so clients that can send the header should.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| {
        let (scheme, token) = value.trim().split_once([' ', '\t'])?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    });
    from_header.or_else(|| {
        query?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "token")
            .and_then(|(_, value)| percent_decode(value))
            .filter(|token| !token.is_empty())
    })
}

/// `%XX` sequences as bytes; a malformed sequence is kept as written. `None` when the bytes are not
/// UTF-8 (such a value cannot match a token read as text).
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Whether a request may proceed as far as its origin goes: with an `Origin` header, the origin's
/// `host[:port]` must equal the `Host` header (case-insensitively, a default port written or not); an
/// `Origin: null` (sandboxed frames, `file:` pages), an unparsable origin or a missing `Host` is refused.
/// Without an `Origin` header the request is allowed: browsers always send one on cross-site requests
/// that could change anything, while scripts and `curl` send none.
///
/// This is what keeps a page open in the user's browser, on any site, from queueing workflows or
/// reading outputs on a server bound to loopback, which the browser can reach even though the
/// internet cannot.
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Some((scheme, origin_authority)) = origin.to_str().ok().and_then(parse_origin) else { return false };
    let Some(host) = headers.get(header::HOST).and_then(|value| value.to_str().ok()) else { return false };
    let host = host.trim();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let strip_default = |authority: &str| -> String {
        let lower = authority.to_ascii_lowercase();
        match default_port.and_then(|port| lower.strip_suffix(port)) {
            Some(without_port) => without_port.to_owned(),
            None => lower,
        }
    };
    !host.is_empty() && strip_default(origin_authority) == strip_default(host)
}

/// `scheme://authority` of an `Origin` header; `None` for `null` and anything else that is not a
/// serialised origin (a path, user information or an empty host).
fn parse_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let valid_scheme = !scheme.is_empty()
        && scheme.chars().all(|character| character.is_ascii_alphanumeric() || "+-.".contains(character));
    let valid_authority =
        !authority.is_empty() && !authority.starts_with(':') && !authority.contains(['/', '@', '?', '#', ' ', '\\']);
    (valid_scheme && valid_authority).then_some((scheme, authority))
}

/// What [`guard`] enforces.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// When set, every request must present this token.
    pub token: Option<AuthToken>,
    /// When true, a request from another site's page is refused ([`origin_allowed`]).
    pub check_origin: bool,
}

/// Middleware enforcing an [`AccessPolicy`], for `axum::middleware::from_fn_with_state`. A cross-site
/// request is refused with 403 and a request without the token with 401 and `WWW-Authenticate: Bearer`,
/// both with a JSON body `{"error": {"type", "message"}}`. Refusals are logged at debug level with the
/// method and path only: the query string may hold a token.
pub async fn guard(State(policy): State<Arc<AccessPolicy>>, request: Request, next: Next) -> Response {
    if policy.check_origin && !origin_allowed(request.headers()) {
        let origin = request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok());
        tracing::debug!(method = %request.method(), path = request.uri().path(), ?origin, "refused a cross-site request");
        return refusal(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "requests from another site's page are refused: the Origin header does not match the Host",
        );
    }
    if let Some(token) = &policy.token {
        let presented = presented_token(request.headers(), request.uri().query());
        if !presented.is_some_and(|presented| token.matches(&presented)) {
            tracing::debug!(method = %request.method(), path = request.uri().path(), "refused a request without a valid access token");
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs an access token: send 'Authorization: Bearer <token>' or add '?token=<token>'",
            );
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// A refusal with ComfyUI-style JSON error body.
fn refusal(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "type": kind, "message": message } });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests;
