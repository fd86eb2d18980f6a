//! `/prompt`, `/queue`, `/history`, `/interrupt` and `/free`, with ComfyUI's shapes (comfyui.md §2.10 and §4).

use super::{body_error, error, internal, node_count};
use crate::state::{FreeRequest, Shared};
use crate::store::StoreError;
use axum::Json as JsonBody;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kinograph_engine::ModelUse;
use kinograph_engine::queue::QueueItem;
use kinograph_engine::validation::{validate, validate_targets};
use kinograph_engine::{ConvertOptions, WorkflowFile};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `GET /prompt`: how many prompts remain.
pub async fn queue_info(State(shared): State<Arc<Shared>>) -> Response {
    let remaining = tokio::task::spawn_blocking(move || shared.queue_remaining()).await.unwrap_or(0);
    JsonBody(json!({"exec_info": {"queue_remaining": remaining}})).into_response()
}

/// `POST /prompt`: validates the prompt (an API prompt or a UI workflow) and queues it; on disk before
/// the answer.
pub async fn submit(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection, shared.limits.max_body_bytes),
    };
    // Counted before the body is parsed into a tree, which for a huge prompt is most of the cost.
    let nodes = node_count::prompt_nodes(&body).unwrap_or(0);
    if nodes > shared.limits.max_prompt_nodes {
        let message =
            format!("the prompt has {nodes} nodes; this server takes at most {}", shared.limits.max_prompt_nodes);
        return error(StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_large", message);
    }
    let request: Json = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(parse) => return error(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {parse}")),
    };
    let Some(prompt) = request.get("prompt").filter(|prompt| !prompt.is_null()) else {
        return error(StatusCode::BAD_REQUEST, "no_prompt", "No prompt provided");
    };
    let prompt_id = match request.get("prompt_id") {
        None | Some(Json::Null) => new_prompt_id(),
        Some(Json::String(id)) if !id.is_empty() && id.len() <= 200 => id.clone(),
        Some(other) => {
            let message = format!("prompt_id must be a non-empty string of at most 200 characters, not {other}");
            return error(StatusCode::BAD_REQUEST, "invalid_prompt_id", message);
        }
    };
    let mut extra_data = match request.get("extra_data") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(extra)) => extra.clone(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid_extra_data", "extra_data must be an object"),
    };
    match request.get("client_id") {
        Some(Json::String(client)) => {
            extra_data.insert("client_id".into(), json!(client));
        }
        None | Some(Json::Null) => {}
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid_client_id", "client_id must be a string"),
    }
    let targets: Option<Vec<String>> = match request.get("partial_execution_targets") {
        None | Some(Json::Null) => None,
        Some(Json::Array(targets)) if targets.iter().all(Json::is_string) => {
            Some(targets.iter().filter_map(Json::as_str).map(str::to_string).collect())
        }
        Some(_) => {
            return error(StatusCode::BAD_REQUEST, "invalid_targets", "partial_execution_targets must be node ids");
        }
    };
    let number = request.get("number").and_then(Json::as_f64);
    let front = request.get("front").and_then(Json::as_bool).unwrap_or(false);

    let checked = {
        let (shared, prompt) = (shared.clone(), prompt.clone());
        tokio::task::spawn_blocking(move || check_prompt(&shared, prompt, targets.as_deref())).await
    };
    let (prompt, outputs_to_execute, models) = match checked {
        Ok(Ok(checked)) => checked,
        Ok(Err(response)) => return response,
        Err(panic) => return internal("validating the prompt failed", panic),
    };
    let item = QueueItem {
        number: number.unwrap_or(0.0),
        prompt_id,
        prompt,
        extra_data: Json::Object(extra_data),
        outputs_to_execute,
    };
    let queued = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            if shared.store.pending_count()? >= shared.limits.max_queue {
                return Ok(None);
            }
            let item = match number {
                Some(_) => shared.store.push(&item).map(|()| item)?,
                None => shared.store.push_numbered(item, front)?,
            };
            Ok::<_, StoreError>(Some(item))
        })
        .await
    };
    let item = match queued {
        Ok(Ok(Some(item))) => item,
        Ok(Ok(None)) => {
            let message = format!(
                "the queue holds {} prompts, the most this server takes; try again later",
                shared.limits.max_queue
            );
            return error(StatusCode::TOO_MANY_REQUESTS, "queue_full", message);
        }
        Ok(Err(StoreError::DuplicateId(id))) => {
            return error(
                StatusCode::BAD_REQUEST,
                "duplicate_prompt_id",
                format!("a prompt with id '{id}' was already queued"),
            );
        }
        Ok(Err(store)) => return internal("the prompt could not be queued", store),
        Err(panic) => return internal("queueing the prompt failed", panic),
    };
    if let Err(handing_over) = shared.backend.submitted(&shared, &item, &models, front).await {
        // Not queued after all: the database lets go of it, so that its id may be sent again.
        let (store, ids) = (shared.store.clone(), vec![item.prompt_id.clone()]);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || store.delete_pending(&ids)).await {
            tracing::error!("prompt {} could not be taken back from the database: {error}", item.prompt_id);
        }
        tracing::error!("prompt {} could not be handed to the workers: {handing_over}", item.prompt_id);
        let message = format!("the prompt could not be handed to the workers: {handing_over}");
        return error(StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable", message);
    }
    shared.broadcast_status();
    JsonBody(json!({"prompt_id": item.prompt_id, "number": item.number, "node_errors": {}})).into_response()
}

/// The API prompt (a UI workflow converted), its output nodes and the model files it reads (`folder/name`),
/// or ComfyUI's 400 answer.
fn check_prompt(
    shared: &Shared,
    prompt: Json,
    targets: Option<&[String]>,
) -> Result<(Json, Vec<String>, Vec<String>), Response> {
    let executor = &shared.executor;
    let invalid = |message: String| error(StatusCode::BAD_REQUEST, "invalid_prompt", message);
    let workflow = WorkflowFile::from_json(prompt, "the prompt").map_err(|e| invalid(e.to_string()))?;
    let conversion = workflow
        .into_prompt(executor.registry(), executor.env(), &ConvertOptions::default())
        .map_err(|e| invalid(e.to_string()))?;
    let prompt = conversion.prompt;
    let checked = match targets {
        Some(targets) => validate_targets(&prompt, executor.registry(), executor.env(), targets),
        None => validate(&prompt, executor.registry(), executor.env()),
    };
    let graph =
        checked.map_err(|report| (StatusCode::BAD_REQUEST, JsonBody(report.to_comfy_json())).into_response())?;
    let outputs = graph.outputs.iter().map(|&index| graph.nodes[index].id.clone()).collect();
    let models = graph.model_files().iter().map(ModelUse::key).collect();
    Ok((prompt.to_json(), outputs, models))
}

/// A new prompt id in uuid4's form.
fn new_prompt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `GET /queue`: the running prompt and the waiting ones, as 5-tuples.
pub async fn queue(State(shared): State<Arc<Shared>>) -> Response {
    let listed = tokio::task::spawn_blocking(move || {
        let running: Vec<Json> = shared.store.running()?.iter().map(QueueItem::to_comfy_json).collect();
        let pending: Vec<Json> = shared.store.pending()?.iter().map(QueueItem::to_comfy_json).collect();
        Ok::<_, StoreError>(json!({"queue_running": running, "queue_pending": pending}))
    })
    .await;
    match listed {
        Ok(Ok(body)) => JsonBody(body).into_response(),
        Ok(Err(store)) => internal("the queue could not be read", store),
        Err(panic) => internal("reading the queue failed", panic),
    }
}

/// The ids of a `{"delete": [...]}` body.
fn ids_to_delete(request: &Json) -> Vec<String> {
    request
        .get("delete")
        .and_then(Json::as_array)
        .map_or_else(Vec::new, |ids| ids.iter().filter_map(Json::as_str).map(str::to_string).collect())
}

fn clears(request: &Json) -> bool {
    request.get("clear").and_then(Json::as_bool).unwrap_or(false)
}

/// A JSON body, or `{}` for an empty one.
fn parse_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Json, Response> {
    let body = body.map_err(|rejection| body_error(&rejection, limit))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body)
        .map_err(|parse| error(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {parse}")))
}

/// `POST /queue`: `{"clear": true}` and/or `{"delete": [ids]}`, waiting prompts only.
pub async fn edit_queue(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = match parse_body(body, shared.limits.max_body_bytes) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let store = shared.store.clone();
    let edited = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        if clears(&request) {
            let waiting: Vec<String> = store.pending()?.into_iter().map(|item| item.prompt_id).collect();
            removed.extend(store.delete_pending(&waiting)?);
        }
        let ids = ids_to_delete(&request);
        if !ids.is_empty() {
            removed.extend(store.delete_pending(&ids)?);
        }
        Ok::<_, StoreError>(removed)
    })
    .await;
    match edited {
        Ok(Ok(removed)) => {
            shared.backend.removed(&removed).await;
            shared.broadcast_status();
            StatusCode::OK.into_response()
        }
        Ok(Err(store)) => internal("the queue could not be changed", store),
        Err(panic) => internal("changing the queue failed", panic),
    }
}

/// `GET /history?max_items=&offset=`: finished prompts by id, oldest first.
pub async fn history(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let number = |key: &str| query.get(key).and_then(|value| value.parse::<usize>().ok());
    let (max_items, offset) = (number("max_items"), number("offset"));
    let listed = tokio::task::spawn_blocking(move || shared.store.history(max_items, offset)).await;
    match listed {
        Ok(Ok(entries)) => {
            let body: Map<String, Json> =
                entries.iter().map(|entry| (entry.item.prompt_id.clone(), entry.to_comfy_json())).collect();
            JsonBody(Json::Object(body)).into_response()
        }
        Ok(Err(store)) => internal("the history could not be read", store),
        Err(panic) => internal("reading the history failed", panic),
    }
}

/// `GET /history/{prompt_id}`: `{id: entry}`, or `{}` for an id not (or not yet) in the history.
pub async fn history_entry(State(shared): State<Arc<Shared>>, Path(prompt_id): Path<String>) -> Response {
    let id = prompt_id.clone();
    match tokio::task::spawn_blocking(move || shared.store.history_entry(&id)).await {
        Ok(Ok(Some(entry))) => JsonBody(json!({prompt_id: entry.to_comfy_json()})).into_response(),
        Ok(Ok(None)) => JsonBody(json!({})).into_response(),
        Ok(Err(store)) => internal("the history could not be read", store),
        Err(panic) => internal("reading the history failed", panic),
    }
}

/// `POST /history`: `{"clear": true}` and/or `{"delete": [ids]}`. Output files stay.
pub async fn edit_history(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = match parse_body(body, shared.limits.max_body_bytes) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let edited = tokio::task::spawn_blocking(move || {
        if clears(&request) {
            shared.store.clear_history()?;
        }
        let ids = ids_to_delete(&request);
        if !ids.is_empty() {
            shared.store.delete_history(&ids)?;
        }
        Ok::<_, StoreError>(())
    })
    .await;
    match edited {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(store)) => internal("the history could not be changed", store),
        Err(panic) => internal("changing the history failed", panic),
    }
}

/// `POST /interrupt`: stops the running prompt, only if it is the body's `prompt_id` when one is given.
pub async fn interrupt(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = match parse_body(body, shared.limits.max_body_bytes) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let prompt_id = request.get("prompt_id").and_then(Json::as_str);
    if shared.backend.interrupt(&shared, prompt_id).await {
        tracing::info!("interrupted the running prompt{}", prompt_id.map(|id| format!(" {id}")).unwrap_or_default());
    }
    StatusCode::OK.into_response()
}

/// `POST /free`: `{"unload_models": bool, "free_memory": bool}`, applied between prompts.
pub async fn free(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request = match parse_body(body, shared.limits.max_body_bytes) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let flag = |key: &str| request.get(key).and_then(Json::as_bool).unwrap_or(false);
    let free = FreeRequest { unload_models: flag("unload_models"), free_memory: flag("free_memory") };
    shared.request_free(free);
    shared.backend.free(free).await;
    StatusCode::OK.into_response()
}
