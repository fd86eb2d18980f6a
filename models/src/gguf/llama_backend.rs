//! Reading a llama.cpp text-encoder GGUF under the names the models ask for.
//!
//! [`LlamaCppBackend`] sits between a model and a [`WeightSource`] over the GGUF: each name the model asks for
//! becomes its llama.cpp name ([`super::llama_names`]); Gemma's norm weights get the 1 the converter added
//! taken off again, so that the model's `x̂·(1 + w)` sees the checkpoint's `w`; every other request, the
//! linear layers' requests for their weights' storage included, passes through unchanged, so that quantized
//! matrices stay quantized where the weight source keeps them so.
//!
//! [`open_text_gguf`] checks that a source is a llama.cpp GGUF of a text architecture kinograph reads and
//! names what it is otherwise (another architecture, a vision projector).

use super::file::GgufFile;
use super::header::MetadataValue;
use super::llama_names::{SUPPORTED_TEXT_ARCHITECTURES, TextArchitecture, gemma3_norm_shift};
use crate::fp8::linear_weight::Request;
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// A `VarBuilder` backend that reads a llama.cpp GGUF under transformers' names (see the module
/// documentation).
pub struct LlamaCppBackend {
    inner: VarBuilder<'static>,
    architecture: TextArchitecture,
}

impl LlamaCppBackend {
    /// A builder over `source` (a GGUF of `architecture`) whose names are transformers', rooted at the text
    /// model (`embed_tokens.weight`, `layers.0.…` for Gemma; `shared.weight`, `encoder.…` for T5).
    pub fn var_builder(
        source: &Arc<WeightSource>,
        architecture: TextArchitecture,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        let inner = source.var_builder("", dtype, device);
        VarBuilder::from_backend(Box::new(LlamaCppBackend { inner, architecture }), dtype, device.clone())
    }

    fn stored(&self, name: &str) -> Result<String> {
        self.architecture.stored_name(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{} has no tensor '{name}' in llama.cpp's layout (no llama.cpp name for it)",
                self.architecture.describe()
            ))
        })
    }

    /// Takes the converter's shift off a norm weight read as a plain tensor.
    fn unshift(&self, name: &str, hint: Option<Init>, tensor: Tensor) -> Result<Tensor> {
        let shift = match self.architecture {
            TextArchitecture::Gemma3 => gemma3_norm_shift(name),
            TextArchitecture::T5 => 0.0,
        };
        if shift == 0.0 || hint.and_then(Request::of).is_some() {
            return Ok(tensor);
        }
        let dtype = tensor.dtype();
        (tensor.to_dtype(DType::F32)? - shift)?.to_dtype(dtype)
    }
}

impl SimpleBackend for LlamaCppBackend {
    fn get(&self, shape: Shape, name: &str, hint: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let stored = self.stored(name)?;
        let tensor = self.inner.get_with_hints_dtype(shape, &stored, hint, dtype)?.to_device(device)?;
        self.unshift(name, Some(hint), tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let stored = self.stored(name)?;
        let tensor = self.inner.get_unchecked_dtype(&stored, dtype)?.to_device(device)?;
        self.unshift(name, None, tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.architecture.stored_name(name).is_some_and(|stored| self.inner.contains_tensor(&stored))
    }
}

/// The text architecture and GGUF header of `source`, a llama.cpp GGUF text encoder; `expected` is the
/// architecture the caller wants (`None`: any kinograph reads). A source that is not a GGUF, a vision
/// projector (`mmproj`) file, a diffusion model or another architecture is refused, naming what it is.
pub fn open_text_gguf(
    source: &WeightSource,
    expected: Option<TextArchitecture>,
) -> std::result::Result<(TextArchitecture, Arc<GgufFile>), WeightError> {
    let files = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    let invalid = |message: String| WeightError::Invalid { file: files.clone(), message };
    let gguf = source.gguf_files().next().cloned().ok_or_else(|| invalid("not a GGUF file".into()))?;
    let text = |key: &str| gguf.metadata(key).and_then(MetadataValue::as_str);
    let name = text("general.architecture").unwrap_or("");
    if text("general.type") == Some("mmproj") || name == "clip" {
        return Err(invalid(
            "this is a vision projector (mmproj) file, not a text encoder; choose the text model's GGUF".into(),
        ));
    }
    let architecture = TextArchitecture::from_name(name).ok_or_else(|| {
        let what = if name.is_empty() { "no general.architecture".to_string() } else { format!("'{name}'") };
        invalid(format!(
            "the GGUF's architecture is {what}; kinograph reads llama.cpp text encoders of the architectures \
             {SUPPORTED_TEXT_ARCHITECTURES}"
        ))
    })?;
    if let Some(expected) = expected
        && expected != architecture
    {
        return Err(invalid(format!(
            "this GGUF holds {} ('{name}'), not {}",
            architecture.describe(),
            expected.describe()
        )));
    }
    Ok((architecture, gguf))
}

/// A metadata number of `gguf` under `{architecture}.{key}` (`gemma3.block_count`), if present.
pub fn architecture_number(gguf: &GgufFile, key: &str) -> Option<f64> {
    let architecture = gguf.metadata("general.architecture").and_then(MetadataValue::as_str)?;
    gguf.metadata(&format!("{architecture}.{key}")).and_then(MetadataValue::as_f64)
}
