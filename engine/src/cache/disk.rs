//! The on-disk tier: one safetensors file per entry, so a later process can reuse what an earlier one
//! computed. Primitive outputs and the UI result live in the file's JSON metadata; node values that can
//! be stored ([`crate::NodeValue::to_stored`]) are written as tensors. A checksum
//! ([`crate::content_hash`], blake3) over the description and every tensor byte is checked on load: a
//! truncated, corrupt or foreign file is deleted and treated as a miss, never trusted.

use super::CacheEntry;
use crate::content_hash;
use crate::registry::Registry;
use crate::signature::Signature;
use crate::value::{StoredObject, StoredTensor, Value};
use safetensors::tensor::TensorView;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FORMAT: u64 = 1;
const DESCRIPTION_KEY: &str = "kinograph.cache";
const CHECKSUM_KEY: &str = "kinograph.checksum";

/// A folder of cache entries.
#[derive(Debug, Clone)]
pub struct DiskCache {
    root: PathBuf,
}

/// A disk entry that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

struct Encoded {
    description: String,
    tensors: Vec<(String, StoredTensor)>,
}

impl DiskCache {
    /// Uses (and creates) `folder`. Entries of other kinograph versions live in other subfolders.
    pub fn open(folder: &Path, namespace: &str) -> Result<Self, DiskCacheError> {
        let root = folder.join(format!("v{FORMAT}-{namespace}"));
        std::fs::create_dir_all(&root)
            .map_err(|source| DiskCacheError::Io { path: root.display().to_string(), source })?;
        Ok(DiskCache { root })
    }

    /// The file of `signature`.
    pub fn path_of(&self, signature: &Signature) -> PathBuf {
        let hex = signature.to_hex();
        self.root.join(&hex[..2]).join(format!("{hex}.safetensors"))
    }

    /// Whether every output of `entry` can be stored and read back with `registry`'s decoders.
    pub fn can_store(entry: &CacheEntry, registry: &Registry) -> bool {
        encode(entry, registry).is_some()
    }

    /// Writes `entry`; returns `Ok(false)` when some output cannot be stored. Atomic: a reader sees the
    /// whole file or none.
    pub fn store(
        &self,
        signature: &Signature,
        entry: &CacheEntry,
        registry: &Registry,
    ) -> Result<bool, DiskCacheError> {
        let Some(encoded) = encode(entry, registry) else { return Ok(false) };
        let path = self.path_of(signature);
        let folder = path.parent().expect("entry paths have a folder");
        std::fs::create_dir_all(folder)
            .map_err(|source| DiskCacheError::Io { path: folder.display().to_string(), source })?;
        let mut metadata = HashMap::new();
        metadata.insert(
            CHECKSUM_KEY.to_string(),
            checksum(&encoded.description, encoded.tensors.iter().map(|(_, t)| &t.data[..])),
        );
        metadata.insert(DESCRIPTION_KEY.to_string(), encoded.description);
        let views = encoded
            .tensors
            .iter()
            .map(|(key, tensor)| {
                TensorView::new(tensor.dtype, tensor.shape.clone(), &tensor.data)
                    .map(|view| (key.clone(), view))
                    .map_err(|error| DiskCacheError::Invalid {
                        path: path.display().to_string(),
                        reason: error.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let temporary = folder.join(format!(".{}.{}.partial", signature.to_hex(), std::process::id()));
        safetensors::serialize_to_file(views, Some(metadata), &temporary).map_err(|error| DiskCacheError::Invalid {
            path: temporary.display().to_string(),
            reason: error.to_string(),
        })?;
        std::fs::rename(&temporary, &path).map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            DiskCacheError::Io { path: path.display().to_string(), source }
        })?;
        Ok(true)
    }

    /// Reads the entry of `signature`: `Ok(None)` if there is none; an invalid file is deleted and
    /// reported as an error (the caller treats it as a miss).
    pub fn load(&self, signature: &Signature, registry: &Registry) -> Result<Option<CacheEntry>, DiskCacheError> {
        let path = self.path_of(signature);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DiskCacheError::Io { path: path.display().to_string(), source }),
        };
        match decode(&bytes, registry) {
            Ok(entry) => Ok(Some(entry)),
            // Written by a build with node types this one lacks: not ours to delete.
            Err(Undecodable::Unsupported(reason)) => {
                Err(DiskCacheError::Invalid { path: path.display().to_string(), reason })
            }
            Err(Undecodable::Corrupt(reason)) => {
                let _ = std::fs::remove_file(&path);
                Err(DiskCacheError::Invalid { path: path.display().to_string(), reason })
            }
        }
    }
}

fn checksum<'a>(description: &str, tensors: impl Iterator<Item = &'a [u8]>) -> String {
    let mut hasher = content_hash::Hasher::new();
    hasher.update(&(description.len() as u64).to_le_bytes());
    hasher.update(description.as_bytes());
    for data in tensors {
        hasher.update(&(data.len() as u64).to_le_bytes());
        hasher.update(data);
    }
    content_hash::to_hex(&hasher.finalize())
}

fn encode(entry: &CacheEntry, registry: &Registry) -> Option<Encoded> {
    let mut tensors = Vec::new();
    let mut outputs = Vec::with_capacity(entry.outputs.len());
    for (slot, value) in entry.outputs.iter().enumerate() {
        outputs.push(match value {
            Value::Int(int) => json!({"type": "int", "value": int.to_string()}),
            Value::Float(float) => json!({"type": "float", "bits": float.to_bits().to_string()}),
            Value::String(text) => json!({"type": "string", "value": &**text}),
            Value::Bool(flag) => json!({"type": "bool", "value": flag}),
            Value::Json(json) => json!({"type": "json", "value": &**json}),
            Value::Object(object) => {
                let stored = object.to_stored()?;
                registry.decoder(&stored.kind)?;
                let mut names = Vec::with_capacity(stored.tensors.len());
                for tensor in stored.tensors {
                    names.push(tensor.name.clone());
                    tensors.push((format!("{slot}/{}", tensor.name), tensor));
                }
                json!({"type": "object", "kind": stored.kind, "metadata": stored.metadata, "tensors": names})
            }
        });
    }
    let description = json!({"format": FORMAT, "outputs": outputs, "ui": entry.ui}).to_string();
    Some(Encoded { description, tensors })
}

/// Why an entry could not be read back.
enum Undecodable {
    /// The file is damaged or not an entry: it is deleted.
    Corrupt(String),
    /// A value kind this build has no decoder for: the file is left alone.
    Unsupported(String),
}

impl From<String> for Undecodable {
    fn from(reason: String) -> Self {
        Undecodable::Corrupt(reason)
    }
}

impl From<&str> for Undecodable {
    fn from(reason: &str) -> Self {
        Undecodable::Corrupt(reason.to_string())
    }
}

fn decode(bytes: &[u8], registry: &Registry) -> Result<CacheEntry, Undecodable> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|error| format!("not a valid safetensors file ({error})"))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|error| Undecodable::Corrupt(error.to_string()))?;
    let metadata = header.metadata().as_ref().ok_or("no kinograph metadata")?;
    let description = metadata.get(DESCRIPTION_KEY).ok_or("no kinograph description")?;
    let expected = metadata.get(CHECKSUM_KEY).ok_or("no checksum")?;
    let parsed: Json = serde_json::from_str(description).map_err(|error| format!("bad description: {error}"))?;
    if parsed["format"].as_u64() != Some(FORMAT) {
        return Err(Undecodable::Unsupported("written by another cache format".into()));
    }
    let outputs_json = parsed["outputs"].as_array().ok_or("description has no outputs")?;
    // Gather tensor bytes in description order, both for the checksum and for decoding.
    let mut tensor_data: Vec<(usize, String, StoredTensor)> = Vec::new();
    for (slot, output) in outputs_json.iter().enumerate() {
        if output["type"] == "object" {
            for name in output["tensors"].as_array().ok_or("object without tensor list")? {
                let name = name.as_str().ok_or("tensor name is not a string")?;
                let view =
                    file.tensor(&format!("{slot}/{name}")).map_err(|error| Undecodable::Corrupt(error.to_string()))?;
                let tensor = StoredTensor {
                    name: name.to_string(),
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                tensor_data.push((slot, name.to_string(), tensor));
            }
        }
    }
    if &checksum(description, tensor_data.iter().map(|(_, _, t)| &t.data[..])) != expected {
        return Err(Undecodable::Corrupt("checksum mismatch: the file is corrupt".into()));
    }
    let mut bytes_held = 0;
    let mut outputs = Vec::with_capacity(outputs_json.len());
    let mut tensors = tensor_data.into_iter().peekable();
    for (slot, output) in outputs_json.iter().enumerate() {
        let value = match output["type"].as_str() {
            Some("int") => Value::Int(output["value"].as_str().and_then(|v| v.parse().ok()).ok_or("bad int")?),
            Some("float") => {
                Value::Float(f64::from_bits(output["bits"].as_str().and_then(|v| v.parse().ok()).ok_or("bad float")?))
            }
            Some("string") => Value::String(output["value"].as_str().ok_or("bad string")?.into()),
            Some("bool") => Value::Bool(output["value"].as_bool().ok_or("bad bool")?),
            Some("json") => Value::Json(Arc::new(output["value"].clone())),
            Some("object") => {
                let kind = output["kind"].as_str().ok_or("object without kind")?;
                let decoder = registry
                    .decoder(kind)
                    .ok_or_else(|| Undecodable::Unsupported(format!("no decoder for values of kind '{kind}'")))?;
                let mut object_tensors = Vec::new();
                while tensors.peek().is_some_and(|(s, _, _)| *s == slot) {
                    object_tensors.push(tensors.next().expect("peeked").2);
                }
                let stored = StoredObject {
                    kind: kind.to_string(),
                    metadata: output["metadata"].clone(),
                    tensors: object_tensors,
                };
                Value::Object(decoder(stored)?)
            }
            _ => return Err(Undecodable::Corrupt(format!("unknown output type in slot {slot}"))),
        };
        bytes_held += value.byte_size();
        outputs.push(value);
    }
    let ui = if parsed["ui"].is_null() { None } else { Some(parsed["ui"].clone()) };
    let model_bytes = outputs.iter().map(Value::model_bytes).sum();
    Ok(CacheEntry { outputs, ui, bytes: bytes_held, model_bytes })
}
