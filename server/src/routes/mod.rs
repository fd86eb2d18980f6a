//! ComfyUI's routes, each also under `/api/...`: prompts and the queue ([`prompts`]), what the server has
//! ([`info`]), files ([`files`]) and the websocket ([`websocket`]).

pub mod files;
pub mod info;
mod node_count;
pub mod prompts;
pub mod websocket;

use axum::Json as JsonBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as ComfyUI's prompt route answers one: `{"error": {type, message, details, extra_info},
/// "node_errors": {}}` with `status`.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = json!({
        "error": {"type": kind, "message": message, "details": message, "extra_info": {}},
        "node_errors": {},
    });
    (status, JsonBody(body)).into_response()
}

/// A request body that could not be read: too large (413, naming the limit) or broken (400).
pub fn body_error(rejection: &axum::extract::rejection::BytesRejection, limit: usize) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(
            status,
            "request_too_large",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
    } else {
        error(status, "bad_request", format!("the request body could not be read: {rejection}"))
    }
}

/// An internal failure (the queue database), logged and answered with 500.
pub fn internal(what: &str, cause: impl std::fmt::Display) -> Response {
    tracing::error!("{what}: {cause}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{what}: {cause}"))
}
