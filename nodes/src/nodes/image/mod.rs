//! Image nodes: `LoadImage`, `SaveImage`, `PreviewImage`, `SaveAnimatedWEBP` and `LTXVPreprocess`,
//! with ComfyUI's class names, inputs and UI results.

mod batch;
mod canny;
mod empty_image;
mod invert_and_size;
mod load_image;
mod pil_lanczos;
mod preprocess;
pub mod resample;
mod resize;
mod resize_image_mask;
mod save_animated_webp;
mod save_image;

pub use load_image::{LoadImage, resolve_image};
pub(crate) use load_image::{input_file_fingerprint, input_files, validate_input_file};
pub use preprocess::LTXVPreprocess;
pub use save_animated_webp::SaveAnimatedWEBP;
pub use save_image::{PreviewImage, SaveImage};

use kinograph_engine::prelude::*;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The image nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(LoadImage),
        Arc::new(SaveImage),
        Arc::new(PreviewImage),
        Arc::new(SaveAnimatedWEBP),
        Arc::new(LTXVPreprocess),
        Arc::new(empty_image::EmptyImage),
        Arc::new(resize::ImageScale),
        Arc::new(resize::ImageScaleBy),
        Arc::new(resize::ImageScaleToMaxDimension),
        Arc::new(resize::ResizeImagesByLongerEdge),
        Arc::new(resize::ResizeAndPadImage),
        Arc::new(resize_image_mask::ResizeImageMaskNode),
        Arc::new(batch::ImageFromBatch),
        Arc::new(batch::RepeatImageBatch),
        Arc::new(invert_and_size::ImageInvert),
        Arc::new(invert_and_size::GetImageSize),
        Arc::new(canny::Canny),
    ]
}

/// Where previews go: `temp/` beside the output folder, as ComfyUI lays out `output/` and `temp/`.
pub fn temp_dir(env: &Environment) -> PathBuf {
    temp_dir_beside(&env.output_dir)
}

/// The `temp/` folder beside `output_dir`.
pub fn temp_dir_beside(output_dir: &Path) -> PathBuf {
    output_dir.parent().unwrap_or(Path::new("")).join("temp")
}

/// Checks that a `filename_prefix` stays inside the output folder.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), NodeError> {
    if prefix.is_empty() || Path::new(prefix).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(NodeError::input(
            "filename_prefix",
            format!("'{prefix}' must be a relative name inside the output folder (no '..', not absolute)"),
        ));
    }
    Ok(())
}

/// The metadata ComfyUI embeds in outputs: `prompt` (the API prompt) and each key of the client's extra
/// PNG info (usually `workflow`), as JSON text.
pub(crate) fn output_metadata(context: &ExecutionContext) -> Vec<(String, String)> {
    let mut metadata = Vec::new();
    if !context.prompt().is_null() {
        metadata.push(("prompt".to_string(), context.prompt().to_string()));
    }
    if let Some(extra) = context.extra_pnginfo().as_object() {
        for (key, value) in extra {
            metadata.push((key.clone(), value.to_string()));
        }
    }
    metadata
}

/// A media error on the running node, naming what it was doing.
pub(crate) fn media_error(what: &str, error: &crate::media::MediaError) -> NodeError {
    NodeError::msg(format!("{what}: {error}"))
}
