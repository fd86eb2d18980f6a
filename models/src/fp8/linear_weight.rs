//! A linear layer's weight as the layer keeps it: dense (f32, bf16, f16), fp8 codes with their format
//! and per-tensor scale, or GGUF blocks, and the one way a layer reads it, [`read_linear_weight`].
//!
//! Models are built through candle `VarBuilder`s, whose only channel to the weight file is "give me the
//! tensor `name` of this shape as this dtype" plus an initialisation hint. A linear layer uses the hint to
//! ask kinograph's weight source ([`crate::weights::WeightSource`]) for two things on the weight's own
//! name, so that the request follows the same renaming as the weight:
//! 1. the weight's codes, if it is fp8 and the source keeps fp8 weights narrow ([`LinearStorage`]);
//!    they come back in a carrier dtype: candle's `F8E4M3` for e4m3fn, `U8` for e5m2, which candle has no
//!    dtype for. Any other weight comes back dense, in the builder's dtype, scale already applied.
//! 2. for codes, the weight's scale, as an f32 scalar (1 when the file has none).
//!
//! A GGUF weight of a quantized type (`Q8_0`, `Q4_K`, …) answers the first request with a marker, a `U32`
//! tensor `[1]` holding its ggml type id, and the layer then asks for its blocks ([`Request::Blocks`]),
//! which come as the stored bytes (`U8`), and multiplies through [`QuantLinear`] (candle's quantized
//! matmul or widening a band of rows at a time, whichever is faster for the type on this CPU). GGUF's
//! F16 and BF16 weights come dense in their own dtype, widened as they are used like safetensors' bf16.
//!
//! A source that does not know these hints (a `VarBuilder` over a map of tensors) answers the first
//! with the tensor itself and the second with the weight again, not a scalar: the scale is then looked
//! up beside the weight (`weight_scale`, then `scale_weight`). Either way an fp8 weight never leaves
//! here without its scale.

use super::Fp8Format;
use super::widen::{widen_codes, widen_columns};
use crate::gguf::{GgmlType, MatmulKernel, QuantLinear};
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// How a weight source hands out the weights of linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearStorage {
    /// fp8 weights stay fp8 (codes and scale); any other weight comes in the builder's dtype.
    #[default]
    AsStored,
    /// Every weight is widened, and multiplied by its scale, into the builder's dtype at load (GGUF blocks
    /// dequantized).
    Widen,
    /// fp8 weights and GGUF blocks stay as they are stored; every other weight without a scale is rounded
    /// to this format at load, as PyTorch casts it (ComfyUI's `UNETLoader` `weight_dtype`).
    Fp8(Fp8Format),
}

/// How a weight is held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStorage {
    /// A candle dtype (f32, bf16, f16).
    Dense(DType),
    /// fp8 codes of this format, with a per-tensor scale.
    Fp8(Fp8Format),
    /// GGUF blocks of this quantized type.
    Gguf(GgmlType),
}

impl std::fmt::Display for WeightStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightStorage::Dense(dtype) => f.write_str(dtype.as_str()),
            WeightStorage::Fp8(format) => f.write_str(format.name()),
            WeightStorage::Gguf(ty) => write!(f, "{ty}"),
        }
    }
}

/// The requests a linear layer makes of the weight source, as `Init` hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The weight as fp8 codes if the source keeps it so, the marker of GGUF blocks, else dense.
    Codes,
    /// The per-tensor scale of the weight, as an f32 scalar.
    Scale,
    /// The stored bytes of a GGUF weight's blocks, as a `U8` tensor.
    Blocks,
}

/// The lower bound of the uniform initialisation that tags a [`Request`]; no model initialises a weight
/// from −2³³.
const REQUEST_TAG: f64 = -8_589_934_592.0;

impl Request {
    /// The hint that carries this request.
    pub(crate) fn hint(self) -> Init {
        let up = match self {
            Request::Codes => 1.0,
            Request::Scale => 2.0,
            Request::Blocks => 3.0,
        };
        Init::Uniform { lo: REQUEST_TAG, up }
    }

    /// The request a hint carries, if any.
    pub(crate) fn of(init: Init) -> Option<Self> {
        match init {
            Init::Uniform { lo, up } if lo == REQUEST_TAG && up == 1.0 => Some(Request::Codes),
            Init::Uniform { lo, up } if lo == REQUEST_TAG && up == 2.0 => Some(Request::Scale),
            Init::Uniform { lo, up } if lo == REQUEST_TAG && up == 3.0 => Some(Request::Blocks),
            _ => None,
        }
    }
}

impl Fp8Format {
    /// The candle dtype codes of this format travel in from the weight source to a layer.
    pub(crate) fn carrier(self) -> DType {
        match self {
            Fp8Format::E4M3Fn => DType::F8E4M3,
            Fp8Format::E5M2 => DType::U8,
        }
    }

    fn of_carrier(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F8E4M3 => Some(Fp8Format::E4M3Fn),
            DType::U8 => Some(Fp8Format::E5M2),
            _ => None,
        }
    }
}

/// A weight matrix kept as fp8 codes: `value = decode(code) · scale`.
#[derive(Debug, Clone)]
pub struct Fp8Weight {
    /// `U8` codes, contiguous.
    codes: Tensor,
    format: Fp8Format,
    scale: f32,
}

impl Fp8Weight {
    /// A weight over `codes` (a `U8` tensor of any shape).
    pub fn new(codes: Tensor, format: Fp8Format, scale: f32) -> Result<Self> {
        if codes.dtype() != DType::U8 {
            candle_core::bail!("fp8 codes must be a u8 tensor, not {:?}", codes.dtype());
        }
        let codes = if codes.is_contiguous() { codes } else { codes.contiguous()? };
        Ok(Fp8Weight { codes, format, scale })
    }

    /// `values` rounded to `format` as PyTorch casts them (no scale).
    pub fn quantize(values: &Tensor, format: Fp8Format) -> Result<Self> {
        let device = values.device().clone();
        let flat = values.to_dtype(DType::F32)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        let codes: Vec<u8> = flat.into_iter().map(|value| format.encode(value)).collect();
        let codes = Tensor::from_vec(codes, values.shape(), &Device::Cpu)?.to_device(&device)?;
        Self::new(codes, format, 1.0)
    }

    /// The codes.
    pub fn codes(&self) -> &Tensor {
        &self.codes
    }

    /// The format.
    pub fn format(&self) -> Fp8Format {
        self.format
    }

    /// The per-tensor scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// `(rows, columns)` of a matrix.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        self.codes.dims2()
    }

    /// The same weight transposed (codes copied).
    pub fn transposed(&self) -> Result<Self> {
        Self::new(self.codes.t()?.contiguous()?, self.format, self.scale)
    }

    /// Every value, scaled, as f32.
    pub fn widen(&self) -> Result<Tensor> {
        let (rows, columns) = match self.codes.dims() {
            [rows, columns] => (*rows, *columns),
            _ => (1, self.codes.elem_count()),
        };
        self.widen_columns(0, columns)?.reshape((rows, columns))?.reshape(self.codes.shape())
    }

    /// Rows `start..start + count` of a matrix, scaled, as an f32 `[count, columns]` matrix.
    pub fn widen_rows(&self, start: usize, count: usize) -> Result<Tensor> {
        let (_, columns) = self.codes.dims2()?;
        let band = self.codes.narrow(0, start, count)?;
        let table = self.format.scaled_table(self.scale);
        let widened = with_cpu_bytes(&band, |codes| {
            let mut out = vec![0f32; codes.len()];
            widen_codes(codes, &table, &mut out, candle_core::utils::get_num_threads());
            out
        });
        if let Some(out) = widened {
            return Tensor::from_vec(out, (count, columns), &Device::Cpu);
        }
        widen_on_device(&band, &table)
    }

    /// Columns `start..start + count` of a matrix, scaled, as an f32 `[rows, count]` matrix: a band of
    /// output features of a weight kept transposed.
    pub fn widen_columns(&self, start: usize, count: usize) -> Result<Tensor> {
        let (rows, columns) = match self.codes.dims() {
            [rows, columns] => (*rows, *columns),
            _ => (1, self.codes.elem_count()),
        };
        let table = self.format.scaled_table(self.scale);
        let widened = with_cpu_bytes(&self.codes, |codes| {
            widen_columns(codes, columns, start, count, &table, candle_core::utils::get_num_threads())
        });
        if let Some(out) = widened {
            return Tensor::from_vec(out, (rows, count), &Device::Cpu);
        }
        widen_on_device(&self.codes.reshape((rows, columns))?.narrow(1, start, count)?.contiguous()?, &table)
    }
}

/// `work` on the contiguous bytes of a `U8` CPU tensor (`None` on other devices).
fn with_cpu_bytes<R>(tensor: &Tensor, work: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::U8(data)), Some((start, end))) => Some(work(&data[start..end])),
        _ => None,
    }
}

/// The table lookup as a candle `index_select`, for devices other than the CPU. The indices go as `u32`:
/// candle's `index_select` reads the largest value of the index type as "no row" and gives zeros there,
/// which for `u8` indices would turn code 255 (e4m3fn's negative NaN) into 0.
fn widen_on_device(codes: &Tensor, table: &[f32; 256]) -> Result<Tensor> {
    let table = Tensor::from_slice(table, 256, codes.device())?;
    table.index_select(&codes.flatten_all()?.to_dtype(DType::U32)?, 0)?.reshape(codes.shape())
}

/// A linear layer's weight `[out, in]`.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// In a candle dtype, scale applied.
    Dense(Tensor),
    /// fp8 codes with their scale.
    Fp8(Fp8Weight),
    /// GGUF blocks, multiplied through [`QuantLinear`] (which holds no bias here: the layer adds its
    /// own). Always `[out, in]`: blocks run along a row and cannot be transposed.
    Quantized(Arc<QuantLinear>),
}

impl LinearWeight {
    /// How the weight is held.
    pub fn storage(&self) -> WeightStorage {
        match self {
            LinearWeight::Dense(tensor) => WeightStorage::Dense(tensor.dtype()),
            LinearWeight::Fp8(weight) => WeightStorage::Fp8(weight.format),
            LinearWeight::Quantized(layer) => WeightStorage::Gguf(layer.ggml_type()),
        }
    }

    /// `(rows, columns)`.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self {
            LinearWeight::Dense(tensor) => tensor.dims2(),
            LinearWeight::Fp8(weight) => weight.dims2(),
            LinearWeight::Quantized(layer) => Ok(layer.shape()),
        }
    }

    /// The same weight transposed, contiguous. GGUF blocks cannot be transposed: an error.
    pub fn transposed(&self) -> Result<Self> {
        Ok(match self {
            LinearWeight::Dense(tensor) => LinearWeight::Dense(tensor.t()?.contiguous()?),
            LinearWeight::Fp8(weight) => LinearWeight::Fp8(weight.transposed()?),
            LinearWeight::Quantized(layer) => {
                candle_core::bail!("a {} weight is multiplied as stored and cannot be transposed", layer.ggml_type())
            }
        })
    }

    /// The whole weight, scaled (or dequantized), in f32.
    pub fn widen(&self) -> Result<Tensor> {
        match self {
            LinearWeight::Dense(tensor) => tensor.to_dtype(DType::F32),
            LinearWeight::Fp8(weight) => weight.widen(),
            LinearWeight::Quantized(layer) => layer.dequantized_weight(),
        }
    }

    /// Rows `start..start + count`, scaled (or dequantized), in f32.
    pub fn widen_rows(&self, start: usize, count: usize) -> Result<Tensor> {
        match self {
            LinearWeight::Dense(tensor) => tensor.narrow(0, start, count)?.to_dtype(DType::F32),
            LinearWeight::Fp8(weight) => weight.widen_rows(start, count),
            LinearWeight::Quantized(layer) => layer.dequantized_rows(start, count),
        }
    }

    /// Columns `start..start + count`, scaled (or dequantized), in f32.
    pub fn widen_columns(&self, start: usize, count: usize) -> Result<Tensor> {
        match self {
            LinearWeight::Dense(tensor) => tensor.narrow(1, start, count)?.to_dtype(DType::F32),
            LinearWeight::Fp8(weight) => weight.widen_columns(start, count),
            LinearWeight::Quantized(layer) => layer.dequantized_weight()?.narrow(1, start, count)?.contiguous(),
        }
    }

    /// The device the weight lives on.
    pub fn device(&self) -> &Device {
        match self {
            LinearWeight::Dense(tensor) => tensor.device(),
            LinearWeight::Fp8(weight) => weight.codes.device(),
            LinearWeight::Quantized(layer) => layer.device(),
        }
    }

    /// Bytes the weight takes in memory (for GGUF blocks, the blocks; candle's repacked copy for its
    /// quantized matmul comes on top).
    pub fn bytes(&self) -> usize {
        match self {
            LinearWeight::Dense(tensor) => tensor.elem_count() * tensor.dtype().size_in_bytes(),
            LinearWeight::Fp8(weight) => weight.codes.elem_count(),
            LinearWeight::Quantized(layer) => layer.stored_bytes(),
        }
    }
}

/// Reads the weight `[outputs, inputs]` of the linear layer under `vb` (its `weight` and, for fp8, its
/// scale): fp8 codes when the weight source keeps them, GGUF blocks, else dense in the builder's dtype
/// with any scale applied.
pub fn read_linear_weight(vb: &VarBuilder<'_>, outputs: usize, inputs: usize) -> Result<LinearWeight> {
    let tensor = vb.get_with_hints_dtype((outputs, inputs), "weight", Request::Codes.hint(), vb.dtype())?;
    if tensor.dtype() == DType::U32 && tensor.dims() == [1] {
        let ty = GgmlType::from_id(tensor.to_vec1::<u32>()?[0]);
        let blocks = vb.get_with_hints_dtype((outputs, inputs), "weight", Request::Blocks.hint(), DType::U8)?;
        let bytes = blocks.to_device(&Device::Cpu)?.to_vec1::<u8>()?;
        let layer = QuantLinear::from_bytes(ty, outputs, inputs, bytes, None, MatmulKernel::Auto, vb.device())?;
        return Ok(LinearWeight::Quantized(Arc::new(layer)));
    }
    let Some(format) = Fp8Format::of_carrier(tensor.dtype()) else { return Ok(LinearWeight::Dense(tensor)) };
    let answer = vb.get_with_hints_dtype((outputs, inputs), "weight", Request::Scale.hint(), DType::F32)?;
    let scale = if answer.rank() == 0 { answer.to_scalar::<f32>()? } else { scale_beside(vb)? };
    let codes = if tensor.dtype() == DType::U8 { tensor } else { e4m3_codes(&tensor)? };
    Ok(LinearWeight::Fp8(Fp8Weight::new(codes, format, scale)?))
}

/// The bytes of a candle `F8E4M3` tensor as a `U8` tensor on the same device.
// The `float8` type's `to_bits` cannot be named here without depending on its crate, hence the closure.
#[allow(clippy::redundant_closure_for_method_calls)]
fn e4m3_codes(tensor: &Tensor) -> Result<Tensor> {
    let on_cpu = tensor.to_device(&Device::Cpu)?.contiguous()?;
    let bytes: Vec<u8> = {
        let (storage, layout) = on_cpu.storage_and_layout();
        let (Storage::Cpu(CpuStorage::F8E4M3(values)), Some((start, end))) = (&*storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("fp8 e4m3 codes expected, got {:?}", on_cpu.dtype())
        };
        values[start..end].iter().map(|value| value.to_bits()).collect()
    };
    Tensor::from_vec(bytes, tensor.shape(), &Device::Cpu)?.to_device(tensor.device())
}

/// The scale stored beside the weight under `vb` (`weight_scale`, ComfyUI's and Lightricks' name, or the
/// older `scale_weight`), 1 when there is none.
fn scale_beside(vb: &VarBuilder<'_>) -> Result<f32> {
    let Some(name) = ["weight_scale", "scale_weight"].into_iter().find(|name| vb.contains_tensor(name)) else {
        return Ok(1.0);
    };
    let value = vb.get_unchecked_dtype(name, DType::F32)?.flatten_all()?;
    if value.elem_count() != 1 {
        candle_core::bail!("'{name}' has {} values; a per-tensor scale has one", value.elem_count());
    }
    Ok(value.to_vec1::<f32>()?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `index_select` path other devices take gives what the CPU table lookup gives (run here on the
    /// CPU, the only device the tests have).
    #[test]
    fn the_device_path_looks_up_the_same_values() {
        let codes: Vec<u8> = (0..=255u8).chain(0..=255u8).rev().collect();
        let codes = Tensor::from_vec(codes, (16, 32), &Device::Cpu).unwrap();
        for format in Fp8Format::ALL {
            let weight = Fp8Weight::new(codes.clone(), format, 0.25).unwrap();
            let table = format.scaled_table(0.25);
            for (found, expected) in [
                (widen_on_device(&codes, &table).unwrap(), weight.widen().unwrap()),
                (
                    widen_on_device(&codes.narrow(1, 5, 7).unwrap().contiguous().unwrap(), &table).unwrap(),
                    weight.widen_columns(5, 7).unwrap(),
                ),
            ] {
                let found: Vec<f32> = found.flatten_all().unwrap().to_vec1().unwrap();
                let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
                let first = found
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()));
                assert!(first.is_none(), "{format} at {first:?}: {found:?} against {expected:?}");
            }
        }
    }

    #[test]
    fn hints_round_trip_and_do_not_match_ordinary_initialisations() {
        for request in [Request::Codes, Request::Scale, Request::Blocks] {
            assert_eq!(Request::of(request.hint()), Some(request));
        }
        assert_eq!(Request::of(Init::Const(0.0)), None);
        assert_eq!(Request::of(Init::Uniform { lo: -1.0, up: 1.0 }), None);
    }
}
