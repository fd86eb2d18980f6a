//! Values that flow along links.
//!
//! The engine knows nothing about diffusion: primitives are built in, everything else (models, latents,
//! images) is an opaque [`NodeValue`] that reports its socket type and its size in bytes, and may say how
//! to store itself so the on-disk cache can keep it.

use serde_json::Value as Json;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A value on a link or a resolved constant input.
#[derive(Clone)]
pub enum Value {
    /// INT. Wide enough for ComfyUI's seeds, which go up to 2^64 − 1.
    Int(i128),
    /// FLOAT.
    Float(f64),
    /// STRING, and the selected option of a COMBO.
    String(Arc<str>),
    /// BOOLEAN.
    Bool(bool),
    /// A literal that is none of the above (a list or object given to a `*` input).
    Json(Arc<Json>),
    /// Anything a node defines: a model, a latent, an image.
    Object(Arc<dyn NodeValue>),
}

/// A value type defined by a node library.
///
/// Implement it for every type that travels between nodes. `type_name` is the socket type it is sent
/// through (`"LATENT"`, `"MODEL"`), `byte_size` feeds the cache's memory bound.
pub trait NodeValue: Any + Send + Sync + fmt::Debug {
    /// The socket type this value travels through.
    fn type_name(&self) -> &str;
    /// Bytes of memory held by this value (an estimate is fine; shared buffers may count once).
    fn byte_size(&self) -> usize;
    /// Bytes of a loaded model this value holds, which the memory budget already counts as resident
    /// ([`crate::memory::MemoryBudget::register`]); 0 (the default) for everything else. The cache counts
    /// them apart, so that a model it holds is counted once.
    fn model_bytes(&self) -> usize {
        0
    }
    /// A short description for error reports (`current_inputs`).
    fn describe(&self) -> String {
        format!("{} ({} bytes)", self.type_name(), self.byte_size())
    }
    /// How to write this value to the disk cache; `None` (the default) keeps it in memory only.
    /// A stored value is read back by the decoder registered for [`StoredObject::kind`].
    fn to_stored(&self) -> Option<StoredObject> {
        None
    }
}

/// A value in storable form: named tensors (written as safetensors) plus JSON metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// Names the decoder that turns this back into a value (see `Registry::register_decoder`).
    pub kind: String,
    pub metadata: Json,
    pub tensors: Vec<StoredTensor>,
}

/// One tensor of a [`StoredObject`]: little-endian element bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Rebuilds a value from its stored form; an `Err` makes the cache entry a miss.
pub type ValueDecoder = fn(StoredObject) -> Result<Arc<dyn NodeValue>, String>;

impl Value {
    /// The socket type of this value.
    pub fn type_name(&self) -> &str {
        match self {
            Value::Int(_) => "INT",
            Value::Float(_) => "FLOAT",
            Value::String(_) => "STRING",
            Value::Bool(_) => "BOOLEAN",
            Value::Json(_) => "*",
            Value::Object(object) => object.type_name(),
        }
    }

    /// Bytes of loaded models held (see [`NodeValue::model_bytes`]).
    pub fn model_bytes(&self) -> usize {
        match self {
            Value::Object(object) => object.model_bytes(),
            _ => 0,
        }
    }

    /// Bytes held, for the cache bound.
    pub fn byte_size(&self) -> usize {
        let own = std::mem::size_of::<Value>();
        match self {
            Value::String(text) => own + text.len(),
            Value::Json(json) => own + json.to_string().len(),
            Value::Object(object) => own + object.byte_size(),
            _ => own,
        }
    }

    /// The value as a node object of type `T`, if it is one.
    pub fn downcast<T: NodeValue>(&self) -> Option<Arc<T>> {
        match self {
            Value::Object(object) => {
                let any: Arc<dyn Any + Send + Sync> = object.clone();
                any.downcast::<T>().ok()
            }
            _ => None,
        }
    }

    /// A literal JSON value as a primitive where it is one.
    pub fn from_json(json: &Json) -> Value {
        match json {
            Json::Bool(flag) => Value::Bool(*flag),
            Json::String(text) => Value::String(text.as_str().into()),
            Json::Number(number) => {
                if let Some(int) = number.as_i64() {
                    Value::Int(int.into())
                } else if let Some(int) = number.as_u64() {
                    Value::Int(int.into())
                } else {
                    Value::Float(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            other => Value::Json(Arc::new(other.clone())),
        }
    }

    /// JSON for primitives; a description for objects. Used in reports and UI outputs.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Int(int) => int_to_json(*int),
            Value::Float(float) => serde_json::Number::from_f64(*float).map_or(Json::Null, Json::Number),
            Value::String(text) => Json::String(text.to_string()),
            Value::Bool(flag) => Json::Bool(*flag),
            Value::Json(json) => (**json).clone(),
            Value::Object(object) => Json::String(object.describe()),
        }
    }

    /// Human-readable text, as `PreviewAny` shows it.
    pub fn display_text(&self) -> String {
        match self {
            Value::String(text) => text.to_string(),
            Value::Object(object) => object.describe(),
            other => other.to_json().to_string(),
        }
    }
}

/// An integer as JSON: exact where it fits in 64 bits, else as a string.
pub fn int_to_json(int: i128) -> Json {
    if let Ok(small) = i64::try_from(int) {
        Json::from(small)
    } else if let Ok(unsigned) = u64::try_from(int) {
        Json::from(unsigned)
    } else {
        Json::String(int.to_string())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(int) => write!(f, "Int({int})"),
            Value::Float(float) => write!(f, "Float({float})"),
            Value::String(text) => write!(f, "String({text:?})"),
            Value::Bool(flag) => write!(f, "Bool({flag})"),
            Value::Json(json) => write!(f, "Json({json})"),
            Value::Object(object) => write!(f, "Object({object:?})"),
        }
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value.into())
    }
}
impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.into())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value.into())
    }
}
impl<T: NodeValue> From<Arc<T>> for Value {
    fn from(value: Arc<T>) -> Self {
        Value::Object(value)
    }
}
