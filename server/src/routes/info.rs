//! What the server has: node schemas (`/object_info`), model files (`/models`), the machine
//! (`/system_stats`) and features (`/features`), in ComfyUI's shapes.

use crate::state::Shared;
use axum::Json as JsonBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// `GET /object_info`: every node's schema (model lists read now, so new files show up).
pub async fn object_info(State(shared): State<Arc<Shared>>) -> Response {
    let info = tokio::task::spawn_blocking(move || {
        let executor = &shared.executor;
        executor.registry().object_info(executor.env())
    })
    .await;
    match info {
        Ok(info) => JsonBody(info).into_response(),
        Err(panic) => super::internal("listing the nodes failed", panic),
    }
}

/// `GET /object_info/{class}`: one node's schema as `{class: schema}`, or `{}` for an unknown class.
pub async fn object_info_of(State(shared): State<Arc<Shared>>, Path(class): Path<String>) -> Response {
    let info = tokio::task::spawn_blocking(move || {
        let executor = &shared.executor;
        executor.registry().get(&class).map(|node| json!({class: node.schema(executor.env()).object_info()}))
    })
    .await;
    match info {
        Ok(info) => JsonBody(info.unwrap_or_else(|| json!({}))).into_response(),
        Err(panic) => super::internal("describing the node failed", panic),
    }
}

/// `GET /models`: the model folder kinds.
pub async fn model_folders(State(shared): State<Arc<Shared>>) -> Response {
    let kinds: Vec<&str> = shared.executor.env().models.kinds().collect();
    JsonBody(json!(kinds)).into_response()
}

/// `GET /models/{folder}`: the files of one kind, or 404 for a kind the server does not know.
pub async fn models_in(State(shared): State<Arc<Shared>>, Path(folder): Path<String>) -> Response {
    if !shared.executor.env().models.is_known(&folder) {
        return (StatusCode::NOT_FOUND, JsonBody(json!({"error": format!("no model folder '{folder}'")})))
            .into_response();
    }
    match tokio::task::spawn_blocking(move || shared.executor.env().models.list(&folder)).await {
        Ok(files) => JsonBody(json!(files)).into_response(),
        Err(panic) => super::internal("listing the models failed", panic),
    }
}

/// `GET /embeddings`: textual-inversion embeddings (the LTX models take none).
pub async fn embeddings() -> Response {
    JsonBody(json!([])).into_response()
}

/// `GET /extensions`: front-end extension scripts (kinograph serves none).
pub async fn extensions() -> Response {
    JsonBody(json!([])).into_response()
}

/// `GET /features`: what the server supports, as ComfyUI reports it.
pub async fn features(State(shared): State<Arc<Shared>>) -> Response {
    JsonBody(features_json(&shared)).into_response()
}

/// The server's feature flags (also the websocket's `feature_flags` answer).
pub fn features_json(shared: &Shared) -> Json {
    json!({"supports_preview_metadata": true, "max_upload_size": shared.limits.max_upload_bytes})
}

/// `GET /system_stats`: the host's report (system and devices), with every remote worker's status (name,
/// device, current prompt, started, last seen) under `workers` when prompts run on workers.
pub async fn system_stats(State(shared): State<Arc<Shared>>) -> Response {
    let mut stats = (shared.system_stats)();
    if let Some(object) = stats.as_object_mut() {
        object.entry("devices").or_insert_with(|| json!([]));
        // With workers on other machines, what each of them is and does.
        if let crate::queue::Backend::JetStream(front_end) = &shared.backend {
            object.insert("workers".into(), json!(front_end.workers()));
        }
    }
    JsonBody(stats).into_response()
}
