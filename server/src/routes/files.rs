//! `GET /view` and `POST /upload/image`, `/upload/mask`: files in the output, input and temp folders,
//! never outside them ([`crate::files`]), HTML and scripts only ever as downloads.

use crate::files::{self, FileError, FileKind};
use crate::state::Shared;
use axum::Json as JsonBody;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file error as a JSON answer with its status.
fn file_error(error: &FileError) -> Response {
    (error.status(), JsonBody(json!({"error": {"type": "bad_file", "message": error.to_string()}}))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, JsonBody(json!({"error": {"type": "bad_request", "message": message.into()}})))
        .into_response()
}

/// ComfyUI's `name.png [output]` form: the name and the folder kind written after it.
fn split_annotation(filename: &str) -> (&str, Option<&str>) {
    for kind in ["output", "input", "temp"] {
        if let Some(name) = filename.strip_suffix(&format!(" [{kind}]")) {
            return (name, Some(kind));
        }
    }
    (filename, None)
}

/// `GET /view?filename=&subfolder=&type=[&preview=jpeg;90|webp;90][&channel=rgba|rgb|a]`.
pub async fn view(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let raw_name = query.get("filename").map_or("", String::as_str);
    let (filename, annotated) = split_annotation(raw_name);
    let kind = match FileKind::for_view(query.get("type").map(String::as_str).or(annotated)) {
        Ok(kind) => kind,
        Err(error) => return file_error(&error),
    };
    let subfolder = query.get("subfolder").map_or("", String::as_str);
    let path = match files::resolve_existing(&shared.folders, kind, subfolder, filename) {
        Ok(path) => path,
        Err(error) => return file_error(&error),
    };
    let preview = query.get("preview").cloned();
    let channel = query.get("channel").cloned();
    if (preview.is_some() || channel.is_some()) && is_image(&path) {
        let converted =
            tokio::task::spawn_blocking(move || convert_image(&path, preview.as_deref(), channel.as_deref())).await;
        return match converted {
            Ok(Ok((bytes, content_type))) => {
                let mut response = Response::new(Body::from(bytes));
                set_headers(&mut response, content_type, None);
                response
            }
            Ok(Err(message)) => bad_request(message),
            Err(panic) => super::internal("converting the image failed", panic),
        };
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => return super::internal("the file could not be opened", error),
    };
    let length = file.metadata().await.ok().map(|metadata| metadata.len());
    let (content_type, disposition) = files::content_headers(&path);
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    set_headers(&mut response, content_type, disposition);
    if let Some(length) = length {
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn set_headers(response: &mut Response, content_type: &'static str, disposition: Option<String>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = disposition.and_then(|d| HeaderValue::from_str(&d).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
}

fn is_image(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(extension.as_str(), "png" | "jpg" | "jpeg" | "webp")
}

/// The image at `path` re-encoded as `preview` asks (`jpeg;Q` or `webp;Q`; PNG otherwise) with the
/// channels `channel` asks for (`rgba`, `rgb` or `a`, the alpha as grey).
fn convert_image(path: &Path, preview: Option<&str>, channel: Option<&str>) -> Result<(Vec<u8>, &'static str), String> {
    let image =
        image::open(path).map_err(|error| format!("{} is not an image this server reads: {error}", path.display()))?;
    let image = match channel.unwrap_or("rgba") {
        "rgba" => image::DynamicImage::ImageRgba8(image.to_rgba8()),
        "rgb" => image::DynamicImage::ImageRgb8(image.to_rgb8()),
        "a" => {
            let rgba = image.to_rgba8();
            let alpha =
                image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| image::Luma([rgba.get_pixel(x, y)[3]]));
            image::DynamicImage::ImageLuma8(alpha)
        }
        other => return Err(format!("channel must be rgba, rgb or a, not '{other}'")),
    };
    let (format, quality) = match preview {
        Some(spec) => {
            let mut parts = spec.split(';');
            let format = parts.next().unwrap_or("").to_ascii_lowercase();
            let quality = parts.next().and_then(|q| q.trim().parse::<u8>().ok()).unwrap_or(90).clamp(1, 100);
            (format, quality)
        }
        None => ("png".to_string(), 100),
    };
    let mut bytes = Vec::new();
    let content_type = match format.as_str() {
        "jpeg" | "jpg" => {
            let rgb = image::DynamicImage::ImageRgb8(image.to_rgb8());
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
            rgb.write_with_encoder(encoder).map_err(|e| e.to_string())?;
            "image/jpeg"
        }
        "webp" => {
            // Lossless: the only WebP encoder without a C library; the quality is ignored.
            let rgba = image::DynamicImage::ImageRgba8(image.to_rgba8());
            rgba.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut bytes))
                .map_err(|e| e.to_string())?;
            "image/webp"
        }
        "png" => {
            image.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes)).map_err(|e| e.to_string())?;
            "image/png"
        }
        other => return Err(format!("preview must be jpeg;QUALITY or webp;QUALITY, not '{other}'")),
    };
    Ok((bytes, content_type))
}

/// A multipart form: its file field (`image`) and its text fields.
struct UploadForm {
    file: Option<(String, Bytes)>,
    fields: HashMap<String, String>,
}

async fn read_form(multipart: Result<Multipart, MultipartRejection>, limit: usize) -> Result<UploadForm, Response> {
    let mut multipart = multipart.map_err(|rejection| bad_request(format!("not a multipart form: {rejection}")))?;
    let mut form = UploadForm { file: None, fields: HashMap::new() };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => return Err(multipart_error(&error, limit)),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(|error| multipart_error(&error, limit))?;
        if name == "image" {
            form.file = Some((file_name.unwrap_or_default(), bytes));
        } else if let Ok(text) = String::from_utf8(bytes.to_vec()) {
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

fn multipart_error(error: &axum::extract::multipart::MultipartError, limit: usize) -> Response {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let message = format!("the upload is larger than the server's limit of {limit} bytes");
        return super::error(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", message);
    }
    bad_request(format!("the form could not be read: {error}"))
}

/// An upload form with its `image` file: the form, the file's name and its bytes.
async fn read_upload(
    shared: &Shared,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(UploadForm, String, Bytes), Response> {
    let form = read_form(multipart, shared.limits.max_upload_bytes).await?;
    let (name, contents) = form.file.clone().ok_or_else(|| bad_request("the form has no 'image' file"))?;
    Ok((form, name, contents))
}

/// Stores an upload as ComfyUI does (same name and bytes: reused; same name, other bytes: numbered) and
/// answers `{"name", "subfolder", "type"}`.
async fn store_upload(shared: &Arc<Shared>, form: &UploadForm, name: String, contents: Bytes) -> Response {
    let kind = match FileKind::for_upload(form.fields.get("type").map(String::as_str)) {
        Ok(kind) => kind,
        Err(error) => return file_error(&error),
    };
    let overwrite = matches!(form.fields.get("overwrite").map(String::as_str), Some("true" | "1"));
    let subfolder = form.fields.get("subfolder").cloned().unwrap_or_default();
    let folders = shared.folders.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let target = files::upload_target(&folders, kind, &subfolder, &name, overwrite, &contents)?;
        if target.needs_write {
            files::write_upload(&target, &contents)?;
        }
        Ok::<_, FileError>(target.response_json())
    })
    .await;
    match stored {
        Ok(Ok(answer)) => JsonBody(answer).into_response(),
        Ok(Err(error)) => file_error(&error),
        Err(panic) => super::internal("storing the upload failed", panic),
    }
}

/// `POST /upload/image`: multipart `image`, `overwrite`, `type` (default input), `subfolder`.
pub async fn upload_image(
    State(shared): State<Arc<Shared>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match read_upload(&shared, multipart).await {
        Ok((form, name, contents)) => store_upload(&shared, &form, name, contents).await,
        Err(response) => response,
    }
}

/// `POST /upload/mask`: as `/upload/image`, with `original_ref` (`{"filename", "subfolder", "type"}`):
/// the stored image is the original with the mask's alpha channel as its own.
pub async fn upload_mask(
    State(shared): State<Arc<Shared>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let (form, name, mask) = match read_upload(&shared, multipart).await {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    let Some(reference) = form.fields.get("original_ref").and_then(|text| serde_json::from_str::<Json>(text).ok())
    else {
        return bad_request(
            "original_ref must be JSON naming the original image ({\"filename\", \"subfolder\", \"type\"})",
        );
    };
    let text = |key: &str| reference.get(key).and_then(Json::as_str).unwrap_or("").to_string();
    let kind = match FileKind::for_upload(Some(&text("type"))) {
        Ok(kind) => kind,
        Err(error) => return file_error(&error),
    };
    let annotated_name = text("filename");
    let (filename, _) = split_annotation(&annotated_name);
    let original = match files::resolve_existing(&shared.folders, kind, &text("subfolder"), filename) {
        Ok(path) => path,
        Err(error) => return file_error(&error),
    };
    let merged = tokio::task::spawn_blocking(move || merge_mask(&original, &mask)).await;
    match merged {
        Ok(Ok(png)) => store_upload(&shared, &form, name, png.into()).await,
        Ok(Err(message)) => bad_request(message),
        Err(panic) => super::internal("merging the mask failed", panic),
    }
}

/// The original image as PNG with the mask's alpha (scaled to the original's size) as its alpha.
fn merge_mask(original: &PathBuf, mask: &[u8]) -> Result<Vec<u8>, String> {
    let original = image::open(original).map_err(|e| format!("the original image cannot be read: {e}"))?.to_rgba8();
    let mask = image::load_from_memory(mask).map_err(|e| format!("the mask is not an image: {e}"))?.to_rgba8();
    let mask = if mask.dimensions() == original.dimensions() {
        mask
    } else {
        image::imageops::resize(&mask, original.width(), original.height(), image::imageops::FilterType::Triangle)
    };
    let mut merged = original;
    for (pixel, mask_pixel) in merged.pixels_mut().zip(mask.pixels()) {
        pixel[3] = mask_pixel[3];
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgba8(merged)
        .write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::split_annotation;

    #[test]
    fn annotated_names_give_their_folder() {
        assert_eq!(split_annotation("a.png [input]"), ("a.png", Some("input")));
        assert_eq!(split_annotation("a.png"), ("a.png", None));
        assert_eq!(split_annotation("a [x].png"), ("a [x].png", None));
    }
}
