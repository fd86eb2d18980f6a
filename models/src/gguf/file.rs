//! [`GgufFile`]: a GGUF file opened over a memory map, its metadata and its tensors.
//!
//! Opening reads only the header; the data section stays mapped and is read when a tensor is used, so a
//! 12 GB file opens in milliseconds and a tensor that is never used is never paged in. The mapped pages
//! are the kernel's page cache: clean and reclaimable, not memory the process owns.
//!
//! The reader is tolerant in the way real files need: a tensor of a type kinograph cannot widen (the
//! IQ2/IQ3/TQ types) or does not know (an id from a newer ggml), with a row length that does not divide
//! into blocks, or with a bad ComfyUI shape record does not stop the file from opening; it is refused,
//! naming the tensor and the reason, only when it is used. A header that cannot be read, or a tensor whose data lies
//! past the end of the file (a truncated download), fails the open.

use super::dequant::dequantize_parallel;
use super::header::{self, DEFAULT_ALIGNMENT, MetadataValue, RawTensorInfo};
use super::types::GgmlType;
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The metadata key prefix under which ComfyUI-GGUF records the true shape of a tensor it flattened to
/// `(n / 256, 256)` before quantizing (an array of i32, torch order).
pub const ORIG_SHAPE_PREFIX: &str = "comfy.gguf.orig_shape.";

/// A problem with a GGUF file, phrased for the user: the file, the tensor, what was expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{file}: cannot open: {reason}")]
    Open { file: String, reason: String },
    /// The header is not a GGUF header kinograph can read.
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },
    /// No tensor of that name.
    #[error("{file}: no tensor '{tensor}' in this GGUF file")]
    Missing { file: String, tensor: String },
    /// A tensor that cannot be used as asked.
    #[error("{file}: tensor '{tensor}': {reason}")]
    Tensor { file: String, tensor: String, reason: String },
}

impl From<GgufError> for candle_core::Error {
    fn from(error: GgufError) -> Self {
        candle_core::Error::wrap(error)
    }
}

/// One tensor of a GGUF file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    name: String,
    ty: GgmlType,
    /// ggml order: `ggml_dims[0]` is the fastest-varying axis (a row of a matrix).
    ggml_dims: Vec<u64>,
    /// The torch shape of the stored data: `ggml_dims` reversed.
    stored_shape: Vec<usize>,
    /// ComfyUI-GGUF's record of the shape before it flattened the tensor, if any.
    orig_shape: Option<Vec<usize>>,
    /// Absolute byte range in the file; `None` for a type whose block size is unknown.
    range: Option<Range<usize>>,
    /// Why the tensor cannot be used, found while opening.
    problem: Option<String>,
}

impl TensorInfo {
    /// The tensor's name: ComfyUI's state-dict key for diffusion models (`transformer_blocks.0.attn1.to_q.weight`),
    /// llama.cpp's for text encoders (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ggml type of the stored data.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// The torch shape: ComfyUI-GGUF's recorded original shape if there is one, else the stored dims
    /// reversed (`[out, in]` for a linear weight).
    pub fn shape(&self) -> &[usize] {
        self.orig_shape.as_deref().unwrap_or(&self.stored_shape)
    }

    /// The torch shape of the data as stored (the reversed ggml dims), before any ComfyUI reshape.
    pub fn stored_shape(&self) -> &[usize] {
        &self.stored_shape
    }

    /// The dims as GGUF stores them, fastest-varying first.
    pub fn ggml_dims(&self) -> &[u64] {
        &self.ggml_dims
    }

    /// The number of values.
    pub fn element_count(&self) -> usize {
        self.stored_shape.iter().product()
    }

    /// The absolute byte range of the data in the file, where the type's block size is known.
    pub fn byte_range(&self) -> Option<Range<usize>> {
        self.range.clone()
    }
}

/// A GGUF file (version 2 or 3), memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    version: u32,
    alignment: u64,
    data_start: usize,
    metadata: Vec<(String, MetadataValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .field("metadata", &self.metadata.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens `path`, reads its header and checks that every tensor of a known type lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let file_name = path.display().to_string();
        let open_error = |error: std::io::Error| GgufError::Open { file: file_name.clone(), reason: error.to_string() };
        let handle = std::fs::File::open(&path).map_err(open_error)?;
        let length = handle.metadata().map_err(open_error)?.len();
        let format = |reason: String| GgufError::Format { file: file_name.clone(), reason };
        if length < 24 {
            return Err(format(format!("the file is {length} bytes long, too short to be a GGUF file")));
        }
        // SAFETY: the map is read-only and private to this value. Like every memory-mapped reader
        // (candle's, safetensors'), it relies on the file not being truncated or rewritten by another
        // process while it is open; model files are not.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(open_error)?;
        let header = header::parse(&map).map_err(format)?;
        Self::from_header(path, map, header)
    }

    fn from_header(path: PathBuf, map: memmap2::Mmap, header: header::Header) -> Result<Self, GgufError> {
        let file_name = path.display().to_string();
        let format = |reason: String| GgufError::Format { file: file_name.clone(), reason };
        let mut metadata_index = HashMap::with_capacity(header.metadata.len());
        for (index, (key, _)) in header.metadata.iter().enumerate() {
            if metadata_index.insert(key.clone(), index).is_some() {
                return Err(format(format!("metadata key '{key}' appears twice")));
            }
        }
        let alignment = match metadata_index.get("general.alignment").map(|&i| &header.metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(value) => match value.as_u64() {
                Some(alignment) if alignment.is_power_of_two() && alignment <= 1 << 20 => alignment,
                _ => {
                    return Err(format(format!(
                        "general.alignment is {value:?}; expected a power of two up to 1 MiB (default {DEFAULT_ALIGNMENT})"
                    )));
                }
            },
        };
        let data_start = (header.end as u64).div_ceil(alignment) * alignment;
        let file_length = map.len() as u64;
        let mut tensors = Vec::with_capacity(header.tensors.len());
        let mut tensor_index = HashMap::with_capacity(header.tensors.len());
        for raw in header.tensors {
            if tensor_index.insert(raw.name.clone(), tensors.len()).is_some() {
                return Err(format(format!("tensor '{}' appears twice", raw.name)));
            }
            let orig_shape =
                metadata_index.get(&format!("{ORIG_SHAPE_PREFIX}{}", raw.name)).map(|&i| &header.metadata[i].1);
            tensors.push(tensor_info(raw, orig_shape, data_start, file_length).map_err(format)?);
        }
        Ok(GgufFile {
            path,
            map,
            version: header.version,
            alignment,
            data_start: data_start as usize,
            metadata: header.metadata,
            metadata_index,
            tensors,
            tensor_index,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data-section alignment (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// `general.architecture` (`ltxv` for LTX-Video and LTX-2 diffusion models as ComfyUI-GGUF writes
    /// them, `gemma3`, `t5`, …), if present.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata("general.architecture").and_then(MetadataValue::as_str)
    }

    /// The metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index.get(key).map(|&index| &self.metadata[index].1)
    }

    /// Every metadata entry, in file order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.metadata.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&index| &self.tensors[index])
    }

    /// The tensor `name` if it is present and usable.
    pub fn usable_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        let info =
            self.tensor(name).ok_or_else(|| GgufError::Missing { file: self.file_name(), tensor: name.into() })?;
        if let Some(problem) = &info.problem {
            return Err(self.tensor_error(name, problem.clone()));
        }
        Ok(info)
    }

    /// The stored bytes of tensor `name` (whole blocks of its type), borrowed from the map.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.usable_tensor(name)?;
        let range =
            info.range.clone().ok_or_else(|| self.tensor_error(name, format!("{} has no known size", info.ty)))?;
        Ok(&self.map[range])
    }

    /// Tensor `name` widened to f32 on the CPU, in its torch shape (ComfyUI's original shape restored).
    pub fn dequantize(&self, name: &str) -> Result<Tensor, GgufError> {
        let info = self.usable_tensor(name)?;
        let bytes = self.tensor_data(name)?;
        let mut values = vec![0_f32; info.element_count()];
        dequantize_parallel(info.ty, bytes, &mut values).map_err(|error| self.tensor_error(name, error.to_string()))?;
        Tensor::from_vec(values, info.shape(), &Device::Cpu).map_err(|error| self.tensor_error(name, error.to_string()))
    }

    /// Tensor `name` as a candle `QTensor` on `device` (for `QMatMul`), in its stored torch shape; the
    /// bytes are copied from the map into candle's storage. Refused for types candle lacks (`IQ4_NL`,
    /// `IQ4_XS`, …): dequantize those.
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor, GgufError> {
        let info = self.usable_tensor(name)?;
        let dtype = info.ty.candle_dtype().ok_or_else(|| {
            self.tensor_error(
                name,
                format!("candle has no quantized tensor of type {}; dequantize it instead", info.ty),
            )
        })?;
        let bytes = self.tensor_data(name)?;
        let storage = with_aligned_bytes(bytes, |bytes| QStorage::from_data(Cow::Borrowed(bytes), device, dtype))
            .map_err(|error| self.tensor_error(name, error.to_string()))?;
        QTensor::new(storage, info.stored_shape()).map_err(|error| self.tensor_error(name, error.to_string()))
    }

    /// The whole mapped file.
    pub(crate) fn mapped_bytes(&self) -> &[u8] {
        &self.map
    }

    fn file_name(&self) -> String {
        self.path.display().to_string()
    }

    fn tensor_error(&self, tensor: &str, reason: String) -> GgufError {
        GgufError::Tensor { file: self.file_name(), tensor: tensor.into(), reason }
    }
}

/// Calls `use_bytes` with `bytes` as they are when their address suits every candle block type (4 bytes
/// covers f32 and the f16-scaled blocks; candle asserts it), else with an aligned copy. GGUF's 32-byte
/// alignment makes the copy a corner case.
pub(crate) fn with_aligned_bytes<R>(bytes: &[u8], use_bytes: impl FnOnce(&[u8]) -> R) -> R {
    if (bytes.as_ptr() as usize).is_multiple_of(4) {
        return use_bytes(bytes);
    }
    let mut words = vec![0_u32; bytes.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    use_bytes(&bytemuck::cast_slice::<u32, u8>(&words)[..bytes.len()])
}

/// Checks one tensor info and works out its shapes and byte range. Structural errors (sizes that
/// overflow, data past the end of the file) fail the open; the rest are kept as the tensor's problem.
fn tensor_info(
    raw: RawTensorInfo,
    orig_shape: Option<&MetadataValue>,
    data_start: u64,
    file_length: u64,
) -> Result<TensorInfo, String> {
    let RawTensorInfo { name, dims, ty, offset } = raw;
    let overflow = || format!("tensor '{name}' has dims {dims:?}, too large to address");
    let mut elements: u64 = 1;
    for &dim in &dims {
        elements = elements.checked_mul(dim).ok_or_else(overflow)?;
    }
    let elements = usize::try_from(elements).map_err(|_| overflow())?;
    let stored_shape: Vec<usize> = dims.iter().rev().map(|&dim| dim as usize).collect();
    let mut problem = None;
    let mut range = None;
    match (ty.block_elements(), ty.block_bytes()) {
        (Some(block_elements), Some(block_bytes)) => {
            let row = dims.first().copied().unwrap_or(1);
            if row.is_multiple_of(block_elements as u64) {
                let bytes = (elements / block_elements) as u64 * block_bytes as u64;
                let start = data_start.checked_add(offset).ok_or_else(overflow)?;
                let end = start.checked_add(bytes).ok_or_else(overflow)?;
                if end > file_length {
                    return Err(format!(
                        "tensor '{name}' ({ty}, shape {stored_shape:?}) needs bytes {start}..{end} but the file is \
                         {file_length} bytes long; is it truncated (an interrupted download)?"
                    ));
                }
                range = Some(start as usize..end as usize);
            } else {
                problem = Some(format!(
                    "its rows of {row} values do not divide into {ty} blocks of {block_elements} (corrupt header?)"
                ));
            }
        }
        _ => problem = Some(format!("its ggml type id {} is not one kinograph knows", ty.id())),
    }
    let orig_shape = match orig_shape {
        None => None,
        Some(value) => match parse_orig_shape(value, elements) {
            Ok(shape) => Some(shape),
            Err(reason) => {
                problem.get_or_insert(format!("{ORIG_SHAPE_PREFIX}{name} {reason}"));
                None
            }
        },
    };
    Ok(TensorInfo { name, ty, ggml_dims: dims, stored_shape, orig_shape, range, problem })
}

/// ComfyUI-GGUF's original-shape record: an array of non-negative integers (it writes i32) whose product
/// is the stored element count.
fn parse_orig_shape(value: &MetadataValue, elements: usize) -> Result<Vec<usize>, String> {
    let items = value.as_array().ok_or_else(|| format!("is a {}, expected an array of integers", value.kind()))?;
    let shape = items
        .iter()
        .map(|item| item.as_u64().and_then(|v| usize::try_from(v).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| format!("is {value:?}, expected an array of non-negative integers"))?;
    if shape.iter().try_fold(1_usize, |product, &dim| product.checked_mul(dim)) != Some(elements) {
        return Err(format!("is {shape:?}, which does not hold the {elements} stored values"));
    }
    Ok(shape)
}
