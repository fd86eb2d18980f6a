//! `LoadImage`: an image file from the input folder as IMAGE and MASK.

use super::{media_error, temp_dir};
use crate::media::png::load_image;
use crate::values::{Image, Mask, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::content_hash;
use kinograph_engine::prelude::*;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Extensions listed in the `image` combo: the formats [`load_image`] reads.
const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// Loads an image (every frame of an animated one) with its alpha channel as a mask.
pub struct LoadImage;

impl Node for LoadImage {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoadImage")
            .display_name("Load Image")
            .category("image")
            .input(InputSpec::combo("image", input_images(&env.input_dir)).image_upload().node_validated())
            .output("IMAGE", "IMAGE")
            .output("MASK", "MASK")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("image")?;
        let path = resolve_image(name, context.env()).map_err(|message| NodeError::input("image", message))?;
        let bytes = std::fs::read(&path)
            .map_err(|error| NodeError::input("image", format!("cannot read {}: {error}", path.display())))?;
        let loaded = load_image(&bytes).map_err(|error| media_error(&format!("loading {}", path.display()), &error))?;
        let (frames, width, height) = (loaded.frames.len(), loaded.width, loaded.height);
        let mut pixels = Vec::with_capacity(frames * width * height * 3);
        let mut alpha = Vec::with_capacity(if loaded.has_alpha { frames * width * height } else { 0 });
        for frame in &loaded.frames {
            for pixel in frame.chunks_exact(4) {
                pixels.extend(pixel[..3].iter().map(|&value| f32::from(value) / 255.0));
                if loaded.has_alpha {
                    alpha.push(1.0 - f32::from(pixel[3]) / 255.0);
                }
            }
        }
        let image = Tensor::from_vec(pixels, (frames, height, width, 3), &Device::Cpu)
            .map_err(|error| tensor_error("building the IMAGE", &error))?;
        // Without alpha ComfyUI gives a 64×64 zero mask per frame.
        let mask = if loaded.has_alpha {
            Tensor::from_vec(alpha, (frames, height, width), &Device::Cpu)
        } else {
            Tensor::zeros((frames, 64, 64), candle_core::DType::F32, &Device::Cpu)
        }
        .map_err(|error| tensor_error("building the MASK", &error))?;
        Ok(NodeOutput::new(vec![
            Value::Object(Arc::new(Image::new(image))),
            Value::Object(Arc::new(Mask { values: mask })),
        ]))
    }

    fn validate(&self, constants: &NodeInputs, env: &Environment) -> Vec<(String, String)> {
        validate_input_file(constants, env, "image", "image")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        input_file_fingerprint(constants, env, "image")
    }
}

/// The loadable images directly in `folder`, sorted by name.
fn input_images(folder: &Path) -> Vec<String> {
    input_files(folder, &IMAGE_EXTENSIONS)
}

/// The files directly in `folder` whose extension (any case) is one of `extensions`, sorted by name.
pub(crate) fn input_files(folder: &Path, extensions: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    Path::new(name).extension().is_some_and(|extension| {
                        extensions.contains(&extension.to_string_lossy().to_ascii_lowercase().as_str())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The check of a file-picking `input` before a run: the named input file must exist; ComfyUI's "Invalid
/// image file: …" wording, with `kind` (`image`, `audio`, `video`) for the kind of file.
pub(crate) fn validate_input_file(
    constants: &NodeInputs,
    env: &Environment,
    input: &str,
    kind: &str,
) -> Vec<(String, String)> {
    let Ok(name) = constants.string(input) else { return Vec::new() };
    match resolve_image(name, env) {
        Ok(path) if path.is_file() => Vec::new(),
        Ok(path) => vec![(input.into(), format!("Invalid {kind} file: {name} ({} does not exist)", path.display()))],
        Err(message) => vec![(input.into(), message)],
    }
}

/// The content hash of the input file `input` names, so that a changed file runs again.
pub(crate) fn input_file_fingerprint(constants: &NodeInputs, env: &Environment, input: &str) -> Option<Vec<u8>> {
    let path = resolve_image(constants.string(input).ok()?, env).ok()?;
    Some(content_hash::hash_file(&path).ok()?.to_vec())
}

/// The file an `image` value names. A trailing ` [input]`, ` [output]` or ` [temp]` picks the folder
/// (input by default); the name may hold subfolders but must stay inside that folder.
pub fn resolve_image(name: &str, env: &Environment) -> Result<PathBuf, String> {
    let (relative, folder) = if let Some(stripped) = name.strip_suffix(" [output]") {
        (stripped, env.output_dir.clone())
    } else if let Some(stripped) = name.strip_suffix(" [temp]") {
        (stripped, temp_dir(env))
    } else {
        (name.strip_suffix(" [input]").unwrap_or(name), env.input_dir.clone())
    };
    if relative.is_empty() || Path::new(relative).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("'{name}' must name a file inside the folder (no '..', not absolute)"));
    }
    Ok(folder.join(relative))
}
