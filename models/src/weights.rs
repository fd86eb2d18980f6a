//! Weights read from safetensors files, with errors that name the file, the tensor and the expected shape.
//!
//! Tensors are read with positioned reads (`pread`) when a model asks for them, not through a memory map:
//! a model whose blocks are read, used and dropped one at a time then holds only the blocks in use, and
//! the file's pages stay in the kernel's page cache (reclaimable, not counted as the process' memory)
//! instead of accumulating as mapped pages of the process.
//!
//! [`WeightSource`] opens one or more files (a single-file checkpoint, or the shards of a diffusers
//! folder), checks that each is a complete safetensors file, and hands out candle `VarBuilder`s whose
//! lookups go through [`CheckedBackend`]: a missing tensor or a wrong shape becomes a [`WeightError`],
//! and every tensor fetched is recorded so that a loader can list the ones it did not expect.
//!
//! A model is built with the tensor names of one layout (the original code's, which ComfyUI single files
//! carry). A checkpoint in another layout (a diffusers folder) is read through [`RenamingBackend`], which
//! turns each name the model asks for into the name stored in the file; each model's loader says how
//! its names differ.
//!
//! GGUF files (ComfyUI-GGUF's diffusion models, llama.cpp's text encoders) open through the same API, told
//! apart from safetensors by their magic bytes: the names are the stored ones (ComfyUI's state-dict keys,
//! usually without `model.diffusion_model.`), shapes are torch's with ComfyUI-GGUF's
//! `comfy.gguf.orig_shape.*` records applied, every scalar metadata entry is a metadata string (LTX-2
//! files carry the checkpoint's `config` JSON that way), and a dense load widens the blocks to f32 (F32,
//! F16 and BF16 tensors come exactly as stored). Quantized matrices do not count towards
//! [`WeightSource::common_dtype`]: the linear layers keep them as blocks (see [`crate::fp8::linear_weight`]).

use crate::fp8::linear_weight::Request;
use crate::fp8::{Fp8Format, LinearStorage};
use crate::gguf::{GgmlType, GgufError, GgufFile, MetadataValue};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `name` with each dot-separated part that `table` lists as `(from, to)` replaced: the one way the loaders
/// turn a model's module names into another layout's (diffusers' `proj_in` for `patchify_proj`, …).
pub fn rename_parts(name: &str, table: &[(&str, &str)]) -> String {
    name.split('.')
        .map(|part| table.iter().find(|(from, _)| *from == part).map_or(part, |(_, to)| to))
        .collect::<Vec<_>>()
        .join(".")
}

/// A problem with a weight file, phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: cannot open: {reason}")]
    Open { file: String, reason: String },
    #[error("{file}: not a valid safetensors file ({reason}); is it truncated or of another format?")]
    Format { file: String, reason: String },
    #[error("{file}: not a readable GGUF file: {reason}")]
    GgufFormat { file: String, reason: String },
    #[error("{files}: tensor '{tensor}' is missing (expected shape {expected:?})")]
    Missing { files: String, tensor: String, expected: Vec<usize> },
    #[error("{file}: tensor '{tensor}' has shape {found:?}, expected {expected:?}")]
    Shape { file: String, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{file}: unexpected tensor{} {}", if .tensors.len() == 1 { "" } else { "s" }, .tensors.join(", "))]
    Unexpected { file: String, tensors: Vec<String> },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl From<GgufError> for WeightError {
    fn from(error: GgufError) -> Self {
        match error {
            GgufError::Open { file, reason } => WeightError::Open { file, reason },
            GgufError::Format { file, reason } => WeightError::GgufFormat { file, reason },
            GgufError::Missing { file, tensor } => WeightError::Missing { files: file, tensor, expected: Vec::new() },
            GgufError::Tensor { file, tensor, reason } => {
                WeightError::Invalid { file, message: format!("tensor '{tensor}': {reason}") }
            }
        }
    }
}

/// What a tensor's bytes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredAs {
    /// Values of a safetensors dtype.
    Safetensors(safetensors::Dtype),
    /// Data of a GGUF file: plain F32, F16 or BF16 values, or blocks of a quantized type.
    Gguf(GgmlType),
}

impl StoredAs {
    /// The safetensors dtype of the values, for GGUF's plain F32, F16 and BF16 too (stored the same way);
    /// `None` for quantized blocks.
    fn safetensors_dtype(self) -> Option<safetensors::Dtype> {
        match self {
            StoredAs::Safetensors(dtype) => Some(dtype),
            StoredAs::Gguf(GgmlType::F32) => Some(safetensors::Dtype::F32),
            StoredAs::Gguf(GgmlType::F16) => Some(safetensors::Dtype::F16),
            StoredAs::Gguf(GgmlType::BF16) => Some(safetensors::Dtype::BF16),
            StoredAs::Gguf(_) => None,
        }
    }

    /// The ggml type of quantized GGUF blocks (not F32, F16 or BF16).
    fn quantized(self) -> Option<GgmlType> {
        match self {
            StoredAs::Gguf(ty) if self.safetensors_dtype().is_none() => Some(ty),
            _ => None,
        }
    }
}

impl std::fmt::Display for StoredAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredAs::Safetensors(dtype) => write!(f, "{dtype:?}"),
            StoredAs::Gguf(ty) => write!(f, "GGUF {ty}"),
        }
    }
}

/// Where a tensor's data is and what it is.
#[derive(Debug, Clone)]
struct TensorEntry {
    /// Index of the file.
    file: usize,
    /// Absolute byte offset of the data in the file.
    offset: u64,
    /// Bytes of data.
    length: usize,
    stored: StoredAs,
    /// The torch shape (for GGUF, ComfyUI-GGUF's original shape where it recorded one).
    shape: Vec<usize>,
}

/// Tensors of one or more safetensors or GGUF files, read on demand.
pub struct WeightSource {
    files: Vec<PathBuf>,
    handles: Vec<std::fs::File>,
    /// The GGUF header of each file that is one.
    ggufs: Vec<Option<Arc<GgufFile>>>,
    /// Each tensor's file, place, dtype and shape.
    location: HashMap<String, TensorEntry>,
    /// `__metadata__` of each file.
    metadata: Vec<HashMap<String, String>>,
    /// ComfyUI's `scaled_fp8` marker tensors, by the prefix they sit at (`model.diffusion_model.`).
    markers: Vec<(String, String)>,
    used: Arc<Mutex<BTreeSet<String>>>,
    /// The last lookup error, kept because candle's error type carries only its text.
    last_error: Mutex<Option<WeightError>>,
}

impl WeightSource {
    /// Opens and checks `files`: safetensors, or GGUF (a file that starts with `GGUF`, or is named
    /// `*.gguf`).
    pub fn open<P: AsRef<Path>>(files: &[P]) -> Result<Self, WeightError> {
        let files: Vec<PathBuf> = files.iter().map(|f| f.as_ref().to_path_buf()).collect();
        let mut location = HashMap::new();
        let mut metadata = Vec::with_capacity(files.len());
        let mut handles = Vec::with_capacity(files.len());
        let mut ggufs = Vec::with_capacity(files.len());
        for (index, file) in files.iter().enumerate() {
            let (header, gguf) = if is_gguf(file)? {
                let gguf = Arc::new(GgufFile::open(file)?);
                (gguf_header(&gguf), Some(gguf))
            } else {
                (parse_header(file)?, None)
            };
            ggufs.push(gguf);
            for (name, mut entry) in header.tensors {
                entry.file = index;
                location.insert(name, entry);
            }
            metadata.push(header.metadata);
            handles.push(
                std::fs::File::open(file).map_err(|error| WeightError::Open {
                    file: file.display().to_string(),
                    reason: error.to_string(),
                })?,
            );
        }
        let markers = scaled_fp8_markers(&files, &location)?;
        Ok(WeightSource {
            files,
            handles,
            ggufs,
            location,
            metadata,
            markers,
            used: Arc::default(),
            last_error: Mutex::new(None),
        })
    }

    /// The files, in the order given.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// Whether `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.location.get(name).map(|entry| entry.shape.clone())
    }

    /// The bytes `name` takes in the file, if present.
    pub fn stored_bytes(&self, name: &str) -> Option<usize> {
        self.location.get(name).map(|entry| entry.length)
    }

    /// The stored dtype of `name`, if present and stored as values of a safetensors dtype: a GGUF's F32,
    /// F16 and BF16 tensors count; its quantized blocks do not (see [`Self::ggml_type`]).
    pub fn dtype(&self, name: &str) -> Option<safetensors::Dtype> {
        self.location.get(name).and_then(|entry| entry.stored.safetensors_dtype())
    }

    /// The ggml type of `name`, if it is a tensor of a GGUF file.
    pub fn ggml_type(&self, name: &str) -> Option<GgmlType> {
        match self.location.get(name)?.stored {
            StoredAs::Gguf(ty) => Some(ty),
            StoredAs::Safetensors(_) => None,
        }
    }

    /// The GGUF header of the file holding `name`, if that file is a GGUF (for metadata that is not a
    /// string or a scalar, such as a tokenizer's arrays).
    pub fn gguf_file(&self, name: &str) -> Option<&Arc<GgufFile>> {
        self.location.get(name).and_then(|entry| self.ggufs[entry.file].as_ref())
    }

    /// The GGUF files among the files, in the order given.
    pub fn gguf_files(&self) -> impl Iterator<Item = &Arc<GgufFile>> {
        self.ggufs.iter().flatten()
    }

    /// The dtype for a builder over the tensors `names`, whose linear layers read their weights with
    /// [`crate::fp8::read_linear_weight`] (so that fp8 weights stay fp8 there): the stored dtype the
    /// other tensors share (f32, f16 or bf16), f32 when they mix. When every tensor is fp8 of one format:
    /// `F8E4M3` for e4m3fn (kept narrow), f16 for e5m2 (whose values f16 holds exactly). Scales and the
    /// other companions of scaled fp8 weights do not count, nor do GGUF quantized blocks, which the linear
    /// layers keep as blocks (a GGUF of `Q4_K` matrices beside F32 norms and biases gives f32, for the norms
    /// only). Other dtypes (integers) are refused, naming the tensor; `what` names the weights in that
    /// message (`"T5 weights"`).
    pub fn common_dtype<'a>(&self, names: impl Iterator<Item = &'a str>, what: &str) -> Result<DType, WeightError> {
        let StoredKinds { dense, fp8, .. } = self.stored_kinds(names, what)?;
        Ok(match (dense.as_slice(), fp8.as_slice()) {
            ([only], _) => *only,
            ([], [Fp8Format::E4M3Fn]) => DType::F8E4M3,
            ([], [Fp8Format::E5M2]) => DType::F16,
            _ => DType::F32,
        })
    }

    /// The dtype to keep the tensors under `prefix` in when nothing reads them narrow (VAEs, vocoders):
    /// their common stored f32, f16 or bf16; f32 when they mix or any is fp8 (widened with its scale) or
    /// GGUF blocks (dequantized).
    pub fn dense_dtype_under(&self, prefix: &str, what: &str) -> Result<DType, WeightError> {
        let kinds = self.stored_kinds(self.names().filter(|name| name.starts_with(prefix)), what)?;
        Ok(match (kinds.dense.as_slice(), kinds.fp8.is_empty() && !kinds.quantized) {
            ([only], true) => *only,
            _ => DType::F32,
        })
    }

    /// The distinct dense dtypes and fp8 formats of `names`, and whether any is GGUF blocks; companions of
    /// scaled weights left out.
    fn stored_kinds<'a>(&self, names: impl Iterator<Item = &'a str>, what: &str) -> Result<StoredKinds, WeightError> {
        let (mut dense, mut fp8, mut quantized) = (Vec::new(), Vec::new(), false);
        for name in names.filter(|name| !is_quantization_companion(name)) {
            let Some(entry) = self.location.get(name) else { continue };
            if entry.stored.quantized().is_some() {
                quantized = true;
                continue;
            }
            let Some(dtype) = entry.stored.safetensors_dtype() else { continue };
            let dense_dtype = match dtype {
                safetensors::Dtype::F32 | safetensors::Dtype::F64 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                safetensors::Dtype::F8_E4M3 | safetensors::Dtype::F8_E5M2 => {
                    let format = Fp8Format::of_safetensors(dtype).unwrap_or(Fp8Format::E4M3Fn);
                    if !fp8.contains(&format) {
                        fp8.push(format);
                    }
                    continue;
                }
                other => {
                    return Err(WeightError::Invalid {
                        file: self.file_of(name),
                        message: format!(
                            "tensor '{name}' is stored as {other:?}; {what} must be f32, f16, bf16 or fp8 \
                             (float8_e4m3fn or float8_e5m2; other quantised files are not supported)"
                        ),
                    });
                }
            };
            if !dense.contains(&dense_dtype) {
                dense.push(dense_dtype);
            }
        }
        Ok(StoredKinds { dense, fp8, quantized })
    }

    /// The `__metadata__` entry `key` of the first file that has it (ComfyUI checkpoints keep their
    /// model configuration under `config`). For a GGUF file, every string, number and bool of its
    /// metadata, as ComfyUI-GGUF passes them on (`general.architecture`, LTX-2's `config`, …), numbers and
    /// bools written out as text; arrays are left out (see [`Self::gguf_file`]).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find_map(|meta| meta.get(key)).map(String::as_str)
    }

    /// The file holding `name` (or all files, for error messages).
    pub fn file_of(&self, name: &str) -> String {
        self.location
            .get(name)
            .map_or_else(|| describe(&self.files), |entry| self.files[entry.file].display().to_string())
    }

    /// Loads one tensor as `dtype`, dense. An fp8 tensor is decoded exactly, and a weight with a scale
    /// (`<layer>.weight_scale` or `<layer>.scale_weight`) is multiplied by it in f32 before it becomes
    /// `dtype`; an unscaled fp8 e4m3fn tensor asked for as `F8E4M3` comes as it is stored. GGUF blocks are
    /// widened to f32 (as `gguf`'s and ComfyUI-GGUF's dequantization does) before they become `dtype`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor, WeightError> {
        let scale = self.quantization(name)?;
        let entry = self.entry(name)?;
        let bytes = self.read(name, entry)?;
        let invalid = |message: String| WeightError::Invalid { file: self.file_of(name), message };
        let stored = entry.stored.safetensors_dtype();
        let quantized = entry.stored.quantized();
        let tensor = match stored.and_then(Fp8Format::of_safetensors) {
            _ if let Some(ty) = quantized => {
                let mut values = vec![0f32; entry.shape.iter().product()];
                crate::gguf::dequant::dequantize_parallel(ty, &bytes, &mut values)
                    .map_err(|error| invalid(format!("tensor '{name}': {error}")))?;
                Tensor::from_vec(values, entry.shape.as_slice(), &Device::Cpu)
            }
            Some(Fp8Format::E4M3Fn) if dtype == DType::F8E4M3 && scale.is_none() => {
                Tensor::from_raw_buffer(&bytes, DType::F8E4M3, &entry.shape, &Device::Cpu)
            }
            Some(format) => {
                let table = format.scaled_table(scale.unwrap_or(1.0));
                let mut values = vec![0f32; bytes.len()];
                crate::fp8::widen::widen_codes(&bytes, &table, &mut values, candle_core::utils::get_num_threads());
                Tensor::from_vec(values, entry.shape.as_slice(), &Device::Cpu)
            }
            None => {
                let stored = stored.and_then(stored_dtype).ok_or_else(|| {
                    invalid(format!("tensor '{name}' has dtype {}, which kinograph cannot read", entry.stored))
                })?;
                let tensor = Tensor::from_raw_buffer(&bytes, stored, &entry.shape, &Device::Cpu);
                match scale {
                    Some(scale) => tensor.and_then(|t| t.to_dtype(DType::F32)?.affine(f64::from(scale), 0.0)),
                    None => tensor,
                }
            }
        }
        .map_err(|error| invalid(format!("tensor '{name}': {error}")))?;
        drop(bytes);
        tensor.to_dtype(dtype).and_then(|t| t.to_device(device)).map_err(|error| invalid(error.to_string()))
    }

    /// The weight `name` of a linear layer as `storage` says to hold it: the stored fp8 codes in their
    /// carrier dtype (see [`crate::fp8::linear_weight`]), codes rounded from a wider weight, the marker of
    /// GGUF blocks (their ggml type id as a `U32` tensor `[1]`; blocks stored reshaped are widened instead),
    /// a GGUF F16 or BF16 weight in its own dtype, or dense as [`Self::load`] gives it.
    pub fn load_linear(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
        storage: LinearStorage,
    ) -> Result<Tensor, WeightError> {
        let entry = self.entry(name)?;
        let invalid = |message: String| WeightError::Invalid { file: self.file_of(name), message };
        if let StoredAs::Gguf(ty) = entry.stored
            && storage != LinearStorage::Widen
        {
            let kept_as_blocks = entry.stored.quantized().is_some() && !self.gguf_reshaped(name);
            if kept_as_blocks {
                return Tensor::new(&[ty.id()], device).map_err(|error| invalid(error.to_string()));
            }
            if let (LinearStorage::AsStored, GgmlType::F16 | GgmlType::BF16) = (storage, ty) {
                let dtype = if ty == GgmlType::F16 { DType::F16 } else { DType::BF16 };
                return self.load(name, dtype, device);
            }
        }
        match (entry.stored.safetensors_dtype().and_then(Fp8Format::of_safetensors), storage) {
            (_, LinearStorage::Widen) => self.load(name, dtype, device),
            (Some(format), _) => {
                self.quantization(name)?;
                let bytes = self.read(name, entry)?;
                Tensor::from_raw_buffer(&bytes, format.carrier(), &entry.shape, &Device::Cpu)
                    .and_then(|t| t.to_device(device))
                    .map_err(|error| invalid(format!("tensor '{name}': {error}")))
            }
            (None, LinearStorage::Fp8(format)) if self.quantization(name)?.is_none() => {
                let values = self.load(name, DType::F32, &Device::Cpu)?;
                let values =
                    values.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| invalid(e.to_string()))?;
                let codes: Vec<u8> = values.into_iter().map(|value| format.encode(value)).collect();
                Tensor::from_raw_buffer(&codes, format.carrier(), &entry.shape, &Device::Cpu)
                    .and_then(|t| t.to_device(device))
                    .map_err(|error| invalid(format!("tensor '{name}': {error}")))
            }
            (None, _) => self.load(name, dtype, device),
        }
    }

    /// The stored blocks of the GGUF tensor `name`, as a `U8` tensor: what a linear layer that keeps GGUF
    /// weights quantized builds its [`crate::gguf::QuantLinear`] from.
    pub fn gguf_blocks(&self, name: &str, device: &Device) -> Result<Tensor, WeightError> {
        let entry = self.entry(name)?;
        if entry.stored.quantized().is_none() {
            return Err(WeightError::Invalid {
                file: self.file_of(name),
                message: format!("tensor '{name}' is {}, not GGUF blocks of a quantized type", entry.stored),
            });
        }
        self.mark_used(name);
        let bytes = self.read(name, entry)?;
        let length = bytes.len();
        Tensor::from_vec(bytes, length, device)
            .map_err(|error| WeightError::Invalid { file: self.file_of(name), message: error.to_string() })
    }

    /// Whether the GGUF tensor `name` is stored reshaped (ComfyUI-GGUF's `comfy.gguf.orig_shape`): its
    /// blocks then do not run along the rows of its true shape.
    fn gguf_reshaped(&self, name: &str) -> bool {
        self.gguf_file(name).and_then(|gguf| gguf.tensor(name)).is_some_and(|info| info.shape() != info.stored_shape())
    }

    /// The per-tensor scale of the weight `name` (`<layer>.weight`), if it has one: `<layer>.weight_scale`
    /// or `<layer>.scale_weight`, one float. Checks the companions ComfyUI reads beside it and marks them
    /// used: the activation scale (`input_scale`, or the older `scale_input`; only an fp8 × fp8 matmul
    /// uses it, to quantise the layer's input, so it is checked and not applied: kinograph multiplies in
    /// f32, as ComfyUI does where it has no fp8 matmul), the per-layer `comfy_quant` description and the
    /// `_quantization_metadata` header entry (which must name the weight's own fp8 format), and the
    /// `scaled_fp8` markers above the weight.
    pub fn quantization(&self, name: &str) -> Result<Option<f32>, WeightError> {
        self.mark_used(name);
        let Some(layer) = name.strip_suffix(".weight") else { return Ok(None) };
        let entry = self.entry(name)?;
        let scales: Vec<String> = ["weight_scale", "scale_weight"]
            .iter()
            .map(|suffix| format!("{layer}.{suffix}"))
            .filter(|scale| self.contains(scale))
            .collect();
        if scales.len() > 1 {
            return Err(WeightError::Invalid {
                file: self.file_of(name),
                message: format!("weight '{name}' has two scales, '{}' and '{}'; keep one", scales[0], scales[1]),
            });
        }
        let scale = scales.first().map(|scale| self.scalar(scale, name)).transpose()?;
        for input_scale in ["input_scale", "scale_input"].map(|suffix| format!("{layer}.{suffix}")) {
            if self.contains(&input_scale) {
                self.scalar(&input_scale, name)?;
            }
        }
        self.check_quantization_format(layer, name, entry)?;
        if scale.is_some() || entry.stored.safetensors_dtype().and_then(Fp8Format::of_safetensors).is_some() {
            for (prefix, marker) in &self.markers {
                if name.starts_with(prefix.as_str()) {
                    self.mark_used(marker);
                }
            }
        }
        Ok(scale)
    }

    /// The one value of the per-tensor scale `scale` of `weight`, which must be a float scalar.
    fn scalar(&self, scale: &str, weight: &str) -> Result<f32, WeightError> {
        let entry = self.entry(scale)?;
        let float = matches!(
            entry.stored.safetensors_dtype(),
            Some(
                safetensors::Dtype::F32 | safetensors::Dtype::F64 | safetensors::Dtype::F16 | safetensors::Dtype::BF16
            )
        );
        if !float || entry.shape.iter().product::<usize>() != 1 {
            return Err(WeightError::Invalid {
                file: self.file_of(scale),
                message: format!(
                    "tensor '{scale}' (the scale of '{weight}') is {} of shape {:?}; a per-tensor scale is one \
                     float32 value (shape [] or [1])",
                    entry.stored, entry.shape
                ),
            });
        }
        let value = self.load(scale, DType::F32, &Device::Cpu)?;
        value.flatten_all().and_then(|v| v.to_vec1::<f32>()).map(|v| v[0]).map_err(|error| WeightError::Invalid {
            file: self.file_of(scale),
            message: format!("tensor '{scale}': {error}"),
        })
    }

    /// Checks ComfyUI's description of how `layer` is quantised, where the file has one: the layer's
    /// `comfy_quant` tensor (JSON bytes) or its entry in the `_quantization_metadata` header. Only the two
    /// fp8 formats with a per-tensor scale can be read, and the weight must be stored in the one named.
    fn check_quantization_format(&self, layer: &str, weight: &str, entry: &TensorEntry) -> Result<(), WeightError> {
        let comfy_quant = format!("{layer}.comfy_quant");
        let description: Option<(String, serde_json::Value)> = if self.contains(&comfy_quant) {
            self.mark_used(&comfy_quant);
            let bytes = self.read(&comfy_quant, self.entry(&comfy_quant)?)?;
            let json = serde_json::from_slice(&bytes).map_err(|error| WeightError::Invalid {
                file: self.file_of(&comfy_quant),
                message: format!("tensor '{comfy_quant}' is not the JSON ComfyUI writes there: {error}"),
            })?;
            Some((format!("tensor '{comfy_quant}'"), json))
        } else if let Some(text) = self.metadata("_quantization_metadata") {
            let json: serde_json::Value = serde_json::from_str(text).map_err(|error| WeightError::Invalid {
                file: self.file_of(weight),
                message: format!("the '_quantization_metadata' header entry is not valid JSON: {error}"),
            })?;
            json.get("layers")
                .and_then(|layers| layers.get(layer))
                .map(|entry| ("the '_quantization_metadata' header entry".to_string(), entry.clone()))
        } else {
            None
        };
        let Some((source, json)) = description else { return Ok(()) };
        let format = json.get("format").and_then(serde_json::Value::as_str).unwrap_or("(none)");
        let stored = entry.stored.safetensors_dtype().and_then(Fp8Format::of_safetensors);
        match Fp8Format::of_name(format) {
            Some(named) if Some(named) == stored => Ok(()),
            Some(named) => Err(WeightError::Invalid {
                file: self.file_of(weight),
                message: format!(
                    "{source} says layer '{layer}' is {named}, but '{weight}' is stored as {}",
                    entry.stored
                ),
            }),
            None => Err(WeightError::Invalid {
                file: self.file_of(weight),
                message: format!(
                    "{source} says layer '{layer}' is quantised as '{format}', which kinograph cannot read \
                     (it reads float8_e4m3fn and float8_e5m2 with a per-tensor scale)"
                ),
            }),
        }
    }

    /// Where `name` is; for a GGUF tensor, only if it can be used (a type kinograph can widen, a valid
    /// shape record).
    fn entry(&self, name: &str) -> Result<&TensorEntry, WeightError> {
        let entry = self.location.get(name).ok_or_else(|| WeightError::Missing {
            files: describe(&self.files),
            tensor: name.to_string(),
            expected: Vec::new(),
        })?;
        if let Some(gguf) = &self.ggufs[entry.file] {
            let info = gguf.usable_tensor(name)?;
            if !info.ggml_type().can_dequantize() {
                return Err(WeightError::Invalid {
                    file: self.file_of(name),
                    message: format!("tensor '{name}' is {}, which kinograph cannot widen", info.ggml_type()),
                });
            }
        }
        Ok(entry)
    }

    /// The stored bytes of `name`.
    fn read(&self, name: &str, entry: &TensorEntry) -> Result<Vec<u8>, WeightError> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0_u8; entry.length];
        self.handles[entry.file]
            .read_exact_at(&mut bytes, entry.offset)
            .map_err(|error| WeightError::Open { file: self.file_of(name), reason: error.to_string() })?;
        Ok(bytes)
    }

    /// A `VarBuilder` over these tensors under `prefix`, converting each tensor to `dtype` as it is
    /// fetched; linear layers keep fp8 weights as fp8 ([`LinearStorage::AsStored`]).
    pub fn var_builder(self: &Arc<Self>, prefix: &str, dtype: DType, device: &Device) -> VarBuilder<'static> {
        self.var_builder_with(prefix, dtype, device, LinearStorage::AsStored)
    }

    /// [`Self::var_builder`] with the linear layers' weights held as `storage` says.
    pub fn var_builder_with(
        self: &Arc<Self>,
        prefix: &str,
        dtype: DType,
        device: &Device,
        storage: LinearStorage,
    ) -> VarBuilder<'static> {
        let backend: Box<dyn candle_nn::var_builder::SimpleBackend> =
            Box::new(CheckedBackend { source: self.clone(), storage });
        let builder = VarBuilder::from_backend(backend, dtype, device.clone());
        if prefix.is_empty() { builder } else { builder.pp(prefix) }
    }

    /// [`Self::var_builder`] for a checkpoint whose names differ from the model's: a lookup of `name`
    /// (relative to `prefix`) fetches the tensor stored as `rename(name)`, and errors name the stored
    /// tensor.
    pub fn renamed_var_builder(
        self: &Arc<Self>,
        prefix: &str,
        dtype: DType,
        device: &Device,
        rename: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> VarBuilder<'static> {
        RenamingBackend::new(self.var_builder(prefix, dtype, device), rename).into_var_builder()
    }

    /// Names under `prefix` that were never fetched.
    pub fn unused(&self, prefix: &str) -> Vec<String> {
        let used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut unused: Vec<String> =
            self.location.keys().filter(|name| name.starts_with(prefix) && !used.contains(*name)).cloned().collect();
        unused.sort();
        unused
    }

    /// Checks on the headers alone that blocks `1..count` under `blocks` (`model.diffusion_model.transformer_blocks.`,
    /// with the dot) hold every tensor block 0 holds, with the same shapes, except the names in `only_first`
    /// (relative to the block: tensors only the first block has, such as T5's relative attention bias). A model
    /// that reads its blocks from the file as it uses them thus fails on a truncated or mixed file at load time,
    /// naming the tensor, not halfway through a run.
    pub fn check_repeated_blocks(&self, blocks: &str, count: usize, only_first: &[&str]) -> Result<(), WeightError> {
        let first = format!("{blocks}0.");
        let suffixes: Vec<&str> = self
            .names()
            .filter_map(|name| name.strip_prefix(&first))
            .filter(|suffix| !only_first.contains(suffix))
            .collect();
        for index in 1..count {
            for suffix in &suffixes {
                let expected = self.shape(&format!("{first}{suffix}")).unwrap_or_default();
                let name = format!("{blocks}{index}.{suffix}");
                match self.shape(&name) {
                    None => return Err(WeightError::Missing { files: describe(&self.files), tensor: name, expected }),
                    Some(found) if found != expected => {
                        return Err(WeightError::Shape { file: self.file_of(&name), tensor: name, expected, found });
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Fails if any tensor under `prefix` was not used by the model just built.
    pub fn reject_unused(&self, prefix: &str) -> Result<(), WeightError> {
        let unused = self.unused(prefix);
        if unused.is_empty() {
            Ok(())
        } else {
            Err(WeightError::Unexpected { file: self.file_of(&unused[0]), tensors: unused })
        }
    }

    /// The weight error behind a candle error raised while building a model from this source.
    pub fn explain(&self, error: &candle_core::Error) -> WeightError {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| WeightError::Invalid { file: describe(&self.files), message: error.to_string() })
    }

    fn fail(&self, error: WeightError) -> candle_core::Error {
        let wrapped = candle_core::Error::Msg(error.to_string());
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
        wrapped
    }

    fn mark_used(&self, name: &str) {
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_string());
    }
}

/// The candle backend behind [`WeightSource::var_builder`]. It also answers the requests of
/// [`crate::fp8::read_linear_weight`] (fp8 codes, scales).
pub struct CheckedBackend {
    source: Arc<WeightSource>,
    storage: LinearStorage,
}

impl candle_nn::var_builder::SimpleBackend for CheckedBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let source = &self.source;
        if !source.contains(name) {
            return Err(source.fail(WeightError::Missing {
                files: describe(&source.files),
                tensor: name.to_string(),
                expected: shape.dims().to_vec(),
            }));
        }
        let found = source.shape(name).unwrap_or_default();
        if found != shape.dims() {
            return Err(source.fail(WeightError::Shape {
                file: source.file_of(name),
                tensor: name.to_string(),
                expected: shape.dims().to_vec(),
                found,
            }));
        }
        match Request::of(init) {
            None => source.load(name, dtype, device),
            Some(Request::Codes) => source.load_linear(name, dtype, device, self.storage),
            Some(Request::Blocks) => source.gguf_blocks(name, device),
            Some(Request::Scale) => source.quantization(name).and_then(|scale| {
                Tensor::new(scale.unwrap_or(1.0), device)
                    .map_err(|error| WeightError::Invalid { file: source.file_of(name), message: error.to_string() })
            }),
        }
        .map_err(|error| source.fail(error))
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.source.load(name, dtype, device).map_err(|error| self.source.fail(error))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.source.contains(name)
    }
}

/// A candle backend that looks each name up under another name in an inner `VarBuilder`: the one way
/// kinograph reads a checkpoint whose layout names tensors differently from the model built over it.
pub struct RenamingBackend {
    inner: VarBuilder<'static>,
    rename: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl RenamingBackend {
    /// Looks `name` up as `rename(name)` in `inner` (whose prefix, if any, still applies).
    pub fn new(inner: VarBuilder<'static>, rename: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        RenamingBackend { inner, rename: Box::new(rename) }
    }

    /// Looks names up through `table` (model name → stored name); names not in it are looked up as
    /// they are.
    pub fn from_table(inner: VarBuilder<'static>, table: HashMap<String, String>) -> Self {
        Self::new(inner, move |name| table.get(name).map_or_else(|| name.to_string(), String::clone))
    }

    /// A `VarBuilder` over this backend, with the inner builder's dtype and device.
    pub fn into_var_builder(self) -> VarBuilder<'static> {
        let (dtype, device) = (self.inner.dtype(), self.inner.device().clone());
        VarBuilder::from_backend(Box::new(self), dtype, device)
    }
}

impl candle_nn::var_builder::SimpleBackend for RenamingBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.inner.get_with_hints_dtype(shape, &(self.rename)(name), init, dtype)?.to_device(device)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked_dtype(&(self.rename)(name), dtype)?.to_device(device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(&(self.rename)(name))
    }
}

/// The distinct kinds of stored values among some tensors.
struct StoredKinds {
    dense: Vec<DType>,
    fp8: Vec<Fp8Format>,
    /// Whether any is GGUF blocks of a quantized type.
    quantized: bool,
}

fn describe(files: &[PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A parsed safetensors header.
struct Header {
    tensors: Vec<(String, TensorEntry)>,
    metadata: HashMap<String, String>,
}

/// Reads and checks a safetensors header: the header length, the JSON, and that every tensor's data
/// lies inside the file. Returns the tensor names and the `__metadata__`.
pub fn read_header(file: &Path) -> Result<(Vec<String>, HashMap<String, String>), WeightError> {
    let header = parse_header(file)?;
    Ok((header.tensors.into_iter().map(|(name, _)| name).collect(), header.metadata))
}

/// Whether `name` is one of the tensors that describe a scaled fp8 weight rather than hold model
/// parameters: a scale (`weight_scale`, `scale_weight`, `input_scale`, `scale_input`), ComfyUI's per-layer
/// `comfy_quant`, or its `scaled_fp8` marker.
pub fn is_quantization_companion(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    matches!(last, "weight_scale" | "scale_weight" | "input_scale" | "scale_input" | "comfy_quant" | "scaled_fp8")
}

/// ComfyUI's `scaled_fp8` markers, as (prefix, name): a tensor whose dtype says which fp8 format the
/// layers under the prefix use (float32 meaning e4m3fn) and whose length says whether ComfyUI may
/// multiply in fp8; kinograph reads the format from each weight and always multiplies in f32.
fn scaled_fp8_markers(
    files: &[PathBuf],
    location: &HashMap<String, TensorEntry>,
) -> Result<Vec<(String, String)>, WeightError> {
    let mut markers = Vec::new();
    for (name, entry) in location {
        let Some(prefix) = name.strip_suffix("scaled_fp8") else { continue };
        if !(prefix.is_empty() || prefix.ends_with('.')) {
            continue;
        }
        let dtype = entry.stored.safetensors_dtype();
        let known = dtype.and_then(Fp8Format::of_safetensors).is_some() || dtype == Some(safetensors::Dtype::F32);
        if !known {
            return Err(WeightError::Invalid {
                file: files[entry.file].display().to_string(),
                message: format!(
                    "tensor '{name}' (ComfyUI's scaled-fp8 marker) is {}; it should be float8_e4m3fn, float8_e5m2 \
                     or float32",
                    entry.stored
                ),
            });
        }
        markers.push((prefix.to_string(), name.clone()));
    }
    Ok(markers)
}

/// The candle dtype of a stored safetensors dtype, if candle has it.
fn stored_dtype(dtype: safetensors::Dtype) -> Option<DType> {
    Some(match dtype {
        safetensors::Dtype::U8 => DType::U8,
        safetensors::Dtype::U32 => DType::U32,
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F64 => DType::F64,
        safetensors::Dtype::F8_E4M3 => DType::F8E4M3,
        _ => return None,
    })
}

/// Whether `file` is a GGUF file: it starts with `GGUF`, or (so that a broken download is reported as
/// the GGUF it was meant to be) its name ends in `.gguf`.
fn is_gguf(file: &Path) -> Result<bool, WeightError> {
    use std::io::Read;
    let named = file.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("gguf"));
    let mut magic = [0_u8; 4];
    let mut handle = std::fs::File::open(file)
        .map_err(|error| WeightError::Open { file: file.display().to_string(), reason: error.to_string() })?;
    let read = handle.read(&mut magic).unwrap_or(0);
    Ok(named || (read == 4 && &magic == b"GGUF"))
}

/// The tensors and metadata of a GGUF file. Every tensor is listed, those kinograph cannot use included
/// (they fail when loaded, naming the reason); only scalar metadata becomes text.
fn gguf_header(gguf: &GgufFile) -> Header {
    let tensors = gguf
        .tensors()
        .iter()
        .map(|info| {
            let range = info.byte_range().unwrap_or(0..0);
            let entry = TensorEntry {
                file: 0,
                offset: range.start as u64,
                length: range.len(),
                stored: StoredAs::Gguf(info.ggml_type()),
                shape: info.shape().to_vec(),
            };
            (info.name().to_string(), entry)
        })
        .collect();
    let metadata = gguf
        .metadata_entries()
        .filter_map(|(key, value)| {
            let text = match value {
                MetadataValue::String(text) => text.clone(),
                MetadataValue::Bool(value) => value.to_string(),
                MetadataValue::F32(value) => value.to_string(),
                MetadataValue::F64(value) => value.to_string(),
                MetadataValue::Array(_) => return None,
                integer => {
                    integer.as_i64().map(|v| v.to_string()).or_else(|| integer.as_u64().map(|v| v.to_string()))?
                }
            };
            Some((key.to_string(), text))
        })
        .collect();
    Header { tensors, metadata }
}

fn parse_header(file: &Path) -> Result<Header, WeightError> {
    use std::io::Read;
    let name = file.display().to_string();
    let open_error = |error: std::io::Error| WeightError::Open { file: name.clone(), reason: error.to_string() };
    let mut handle = std::fs::File::open(file).map_err(open_error)?;
    let length = handle.metadata().map_err(open_error)?.len();
    let format = |reason: String| WeightError::Format { file: name.clone(), reason };
    if length < 8 {
        return Err(format(format!("the file is {length} bytes long")));
    }
    let mut size = [0_u8; 8];
    handle.read_exact(&mut size).map_err(open_error)?;
    let header_length = u64::from_le_bytes(size);
    if header_length > 100 << 20 || 8 + header_length > length {
        return Err(format(format!("header of {header_length} bytes does not fit in a {length}-byte file")));
    }
    let mut header = vec![0_u8; header_length as usize];
    handle.read_exact(&mut header).map_err(open_error)?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|error| format(format!("header is not JSON: {error}")))?;
    let serde_json::Value::Object(entries) = json else { return Err(format("header is not a JSON object".into())) };
    let data_start = 8 + header_length;
    let data_length = length - data_start;
    let mut tensors = Vec::with_capacity(entries.len());
    let mut metadata = HashMap::new();
    for (key, value) in entries {
        if key == "__metadata__" {
            if let serde_json::Value::Object(meta) = value {
                for (k, v) in meta {
                    metadata.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
                }
            }
            continue;
        }
        let offsets = |index: usize| value["data_offsets"][index].as_u64();
        let (Some(start), Some(end)) = (offsets(0), offsets(1)) else {
            return Err(format(format!("tensor '{key}' has no data offsets")));
        };
        if end > data_length {
            return Err(format(format!(
                "tensor '{key}' ends at byte {end} of the data but the file holds only {data_length} bytes of data (truncated?)"
            )));
        }
        let dtype: safetensors::Dtype = serde_json::from_value(value["dtype"].clone())
            .map_err(|error| format(format!("tensor '{key}' has an unknown dtype: {error}")))?;
        let shape: Vec<usize> = serde_json::from_value(value["shape"].clone())
            .map_err(|error| format(format!("tensor '{key}' has no valid shape: {error}")))?;
        let elements: usize = shape.iter().product();
        let bits = dtype.bitsize();
        if start > end || (end - start) as u128 * 8 != elements as u128 * bits as u128 {
            return Err(format(format!(
                "tensor '{key}' has {} data bytes for shape {shape:?} of {dtype:?}",
                end.saturating_sub(start)
            )));
        }
        let entry = TensorEntry {
            file: 0,
            offset: data_start + start,
            length: (end - start) as usize,
            stored: StoredAs::Safetensors(dtype),
            shape,
        };
        tensors.push((key, entry));
    }
    Ok(Header { tensors, metadata })
}

/// Runs `visit` on blocks `0..count` in order, each read by `read` just before it is needed: block i + 1 is
/// read on another thread while block i computes (reading is mostly waiting for the disk, so the two
/// overlap), and at most two blocks are in memory. What every model that streams its blocks from the file
/// shares; `what` names a block in the error of a reading thread that died.
pub fn each_streamed_block<B: Send>(
    count: usize,
    what: &str,
    read: impl Fn(usize) -> candle_core::Result<B> + Sync,
    mut visit: impl FnMut(usize, B) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    std::thread::scope(|scope| {
        let read = &read;
        let mut next = (count > 0).then(|| read(0));
        for index in 0..count {
            let block = next.take().unwrap_or_else(|| read(index))?;
            let reader = (index + 1 < count).then(|| scope.spawn(move || read(index + 1)));
            visit(index, block)?;
            next = reader.map(|handle| {
                handle.join().unwrap_or_else(|_| Err(candle_core::Error::Msg(format!("reading {what} failed"))))
            });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(path: &Path) {
        let a = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap();
        let b = Tensor::ones(4, DType::BF16, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("block.a".to_string(), a), ("block.b".to_string(), b)]), path)
            .unwrap();
    }

    #[test]
    fn loads_checks_shapes_and_names_the_file_and_tensor() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("model.safetensors");
        write_file(&path);
        let source = Arc::new(WeightSource::open(&[&path]).unwrap());
        let builder = source.var_builder("block", DType::F32, &Device::Cpu);
        let a = builder.get((2, 3), "a").unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        assert_eq!(builder.get(4, "b").unwrap().dtype(), DType::F32, "bf16 is widened as it is fetched");

        let wrong = source.explain(&builder.get((3, 2), "a").unwrap_err());
        assert!(
            matches!(&wrong, WeightError::Shape { tensor, expected, found, .. }
            if tensor == "block.a" && expected == &vec![3, 2] && found == &vec![2, 3]),
            "{wrong}"
        );
        assert!(wrong.to_string().contains("model.safetensors"));

        let missing = source.explain(&builder.get(7, "c").unwrap_err());
        assert!(missing.to_string().contains("tensor 'block.c' is missing (expected shape [7])"), "{missing}");
        assert!(source.reject_unused("block").is_ok());
    }

    #[test]
    fn renamed_lookups_fetch_the_stored_tensor_and_name_it_in_errors() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("model.safetensors");
        write_file(&path);
        let source = Arc::new(WeightSource::open(&[&path]).unwrap());
        let builder = source.renamed_var_builder("block", DType::F32, &Device::Cpu, |name| name.replace("x.", ""));
        let a = builder.pp("x").get((2, 3), "a").unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        assert!(builder.contains_tensor("x.b") && !builder.contains_tensor("b.x"));
        let missing = source.explain(&builder.pp("x").get(7, "c").unwrap_err());
        assert!(missing.to_string().contains("tensor 'block.c' is missing (expected shape [7])"), "{missing}");

        let table = HashMap::from([("alias".to_string(), "b".to_string())]);
        let builder = RenamingBackend::from_table(source.var_builder("block", DType::F32, &Device::Cpu), table)
            .into_var_builder();
        assert_eq!(builder.get(4, "alias").unwrap().dims(), &[4]);
        assert_eq!(builder.get((2, 3), "a").unwrap().dims(), &[2, 3], "names not in the table are kept");
        assert!(source.reject_unused("block").is_ok());
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("model.safetensors");
        write_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let error = WeightSource::open(&[&path]).err().unwrap();
        assert!(error.to_string().contains("truncated"), "{error}");

        let text = folder.path().join("notes.safetensors");
        std::fs::write(&text, "this is not a model at all").unwrap();
        let error = WeightSource::open(&[&text]).err().unwrap();
        assert!(matches!(error, WeightError::Format { .. }), "{error}");
    }
}
