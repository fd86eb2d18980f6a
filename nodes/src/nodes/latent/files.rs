//! `SaveLatent` and `LoadLatent`: ComfyUI's `.latent` files, safetensors holding `latent_tensor` and the
//! empty marker `latent_format_version_0`, with the prompt and workflow as JSON metadata.

use crate::values::{Latent, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Scale of latents saved before the format marker existed (ComfyUI divides them by 0.18215).
const LEGACY_SCALE: f32 = 1.0 / 0.18215;

/// `SaveLatent`.
pub struct SaveLatent;

impl Node for SaveLatent {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveLatent")
            .category("_for_testing")
            .input(InputSpec::socket("samples", "LATENT"))
            .input(InputSpec::string("filename_prefix", "latents/ComfyUI"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let prefix = inputs.string("filename_prefix")?;
        if prefix.is_empty() || Path::new(prefix).components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(NodeError::input(
                "filename_prefix",
                format!("'{prefix}' must be a relative name inside the output folder"),
            ));
        }
        let samples: Vec<f32> = latent
            .samples
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| tensor_error("reading the latent", &e))?;
        let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = latent.samples.dims().to_vec();
        let tensor =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).map_err(NodeError::other)?;
        let marker =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![0], &[]).map_err(NodeError::other)?;
        let mut metadata = HashMap::new();
        if !context.prompt().is_null() {
            metadata.insert("prompt".to_string(), context.prompt().to_string());
        }
        if let Some(extra) = context.extra_pnginfo().as_object() {
            for (key, value) in extra {
                metadata.insert(key.clone(), value.to_string());
            }
        }
        let data =
            safetensors::serialize([("latent_tensor", tensor), ("latent_format_version_0", marker)], Some(metadata))
                .map_err(NodeError::other)?;
        let mut file = context.create_numbered_output(prefix, "latent")?;
        file.write_all(&data)?;
        context.check_interrupted()?;
        let written = file.commit()?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"latents": [context.output_file_entry(&written)]})))
    }
}

/// `.latent` files in the input folder (top level, as ComfyUI lists them).
fn latent_files(env: &Environment) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&env.input_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".latent"))
        .collect();
    names.sort();
    names
}

/// The file a `latent` value names (` [input]`/` [output]`/` [temp]` annotations, subfolders), which must exist.
fn latent_path(env: &Environment, name: &str) -> Result<PathBuf, String> {
    let path = crate::nodes::image::resolve_image(name, env)?;
    if path.is_file() { Ok(path) } else { Err(format!("latent file '{name}' does not exist ({})", path.display())) }
}

/// Reads a `.latent` file.
pub fn read_latent_file(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{} is not a latent file (safetensors): {e}", path.display()))?;
    let tensor = file.tensor("latent_tensor").map_err(|_| format!("{} holds no 'latent_tensor'", path.display()))?;
    let values: Vec<f32> = match tensor.dtype() {
        safetensors::Dtype::F32 => {
            tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        safetensors::Dtype::F16 => {
            tensor.data().chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        safetensors::Dtype::BF16 => {
            tensor.data().chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        other => return Err(format!("{}: latent_tensor has unsupported type {other:?}", path.display())),
    };
    let legacy = file.tensor("latent_format_version_0").is_err();
    let values = if legacy { values.into_iter().map(|v| v * LEGACY_SCALE).collect() } else { values };
    Tensor::from_vec(values, tensor.shape().to_vec(), &Device::Cpu).map_err(|e| e.to_string())
}

/// `LoadLatent`.
pub struct LoadLatent;

impl Node for LoadLatent {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoadLatent")
            .category("_for_testing")
            .input(InputSpec::combo("latent", latent_files(env)))
            .output("LATENT", "LATENT")
    }

    fn validate(&self, constants: &NodeInputs, env: &Environment) -> Vec<(String, String)> {
        match constants.optional_string("latent") {
            Ok(Some(name)) => latent_path(env, name).err().map(|e| ("latent".to_string(), e)).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        let path = latent_path(env, constants.optional_string("latent").ok()??).ok()?;
        Some(kinograph_engine::content_hash::hash_file(&path).ok()?.to_vec())
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let path = latent_path(context.env(), inputs.string("latent")?).map_err(|e| NodeError::input("latent", e))?;
        let samples = read_latent_file(&path).map_err(|e| NodeError::input("latent", e))?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Latent::new(samples)))]))
    }
}
