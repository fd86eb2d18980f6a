//! [`QuantLinear`]: `y = x Wᵀ + b` over a GGUF weight `W` `[out, in]`, with f32 inputs and outputs.
//!
//! Three kernels, chosen per type and per CPU ([`MatmulKernel::Auto`]):
//! - **Tiles**: on CPUs with Intel AMX (Xeon since Sapphire Rapids), the weight is widened a band at a time
//!   and rounded to bf16 with the activations, and the product runs on AMX tiles with f32 sums
//!   ([`crate::ops::tiles`]). This is ComfyUI-GGUF's arithmetic on a GPU that computes in bf16 (blocks
//!   dequantized to the compute dtype before each matmul); it adds about 0.3 % relative error per product.
//! - **Quantized**: candle's `QMatMul` on a `QTensor` copy of the blocks. On x86 candle repacks `Q4_K`,
//!   `Q6_K` and `Q8_0` weights into 16-row tiles on the first forward (a second copy: +6 bits per weight for
//!   `Q4_K`, +8.5 for `Q8_0`, +10 for `Q6_K`) and multiplies with VNNI integer dot products after quantizing
//!   the activations to 8 bits (about 0.5–1 % relative error on top of the weight's own).
//! - **Dequantize**: the weight stays as bytes (in the file's memory map when it comes from a
//!   [`GgufFile`]) and is widened to f32 a band of rows at a time, each band multiplied as soon as it is
//!   widened, in the bands [`crate::ops::stored_linear::StoredLinear`] uses for bf16 and fp8: the f32 copy
//!   in flight stays at 16 MB, and the result is the f32 product of the dequantized weight.
//!
//! The choice. Measured with `kinograph bench --only gguf-linear` (candle 0.11.1) on the 2-vCPU Intel Xeon
//! development machine (AVX-512 with VNNI, AMX), random N(0, 0.02²) weights. Best wall seconds of 2 forwards
//! at 4096 → 4096 / 4096 → 16384 on 4992 tokens (an LTX-2 block's video at 768×512×97):
//!
//! | weight | dense f32 | `QMatMul` | widened in bands | tiles | error vs f32 (`QMatMul` / widened / tiles) |
//! |---|---|---|---|---|---|
//! | `Q8_0` | 1.07 / 3.95 | 0.64 / 2.98 | 1.21 / 4.23 | 0.37 / 1.13 | 8.8e-3 / 5.4e-3 / 5.8e-3 |
//!
//! and earlier, without tiles, in CPU seconds per forward at 256 / 1024 tokens (dense f32 0.20 / 0.73 s):
//!
//! | weight | `QMatMul` | widened in bands | error vs f32 (`QMatMul` / widened) |
//! |---|---|---|---|
//! | `Q4_K` | 0.12 / 0.51 | 0.26 / 0.80 | 7.5e-2 / 7.5e-2 |
//! | `Q8_0` | 0.11 / 0.54 | 0.28 / 0.81 | 8.8e-3 / 5.4e-3 |
//! | `Q6_K` | 0.17 / 0.69 | 0.31 / 0.80 | 2.0e-2 / 1.8e-2 |
//! | `Q5_K` | 0.75 / – | 0.28 / – | 3.8e-2 / 3.7e-2 |
//! | `Q3_K` | 0.66 / – | 0.25 / – | 1.5e-1 |
//! | `Q2_K` | 0.53 / – | 0.28 / – | 2.9e-1 |
//! | `Q4_0` | 1.41 / – | 0.26 / – | 8.6e-2 |
//! | `Q4_1` | 7.11 / – | 0.25 / – | 7.8e-2 |
//! | `Q5_0` | 12.87 / – | 0.27 / – | 4.3e-2 |
//!
//! Widening itself is 0.3–0.6 ns per weight on one thread (candle's `QTensor::dequantize`: 2.1–2.7), so the
//! widened kernel costs about the f32 matmul plus 10–40 %, and the tiles kernel, which widens the same way,
//! is bound by that widening more than by the tiles. So:
//!
//! - With AMX every type but F32 multiplies on tiles (inputs a multiple of 32; products of fewer than
//!   [`TILE_MIN_ROWS`] rows are widened).
//! - Without it, `Q4_K` and `Q6_K` take `QMatMul` on any x86 CPU with AVX2 (repacked tiles; with AVX2 alone
//!   they were still 1.3× f32 on an AMD EPYC in earlier measurements).
//! - `Q8_0` takes `QMatMul` only with AVX-512 VNNI or AVX-VNNI: without them candle does not repack it
//!   and it runs at a fifth of f32.
//! - Every other type (`Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q2_K`, `Q3_K`, `Q5_K`, `IQ4_NL`, `IQ4_XS`, F16, BF16,
//!   F32) is widened: candle's kernels for them ran at 0.02–0.4× f32 above, and the IQ types have none.
//! - The repacked tiles need `out % 16 == 0` and `in % 256 == 0`; other shapes are widened.
//! - On CUDA and Metal every type candle has goes through `QMatMul`; the rest is widened.

use super::dequant::dequantize_parallel;
use super::file::{GgufError, GgufFile, with_aligned_bytes};
use super::types::GgmlType;
use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// How many weight values the dequantize kernel widens at once (16 MB of f32).
const WIDEN_BAND_ELEMENTS: usize = 4 << 20;

/// Which matmul a [`QuantLinear`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    /// The faster of the two for this type, shape and CPU (the table in the module documentation).
    Auto,
    /// candle's `QMatMul` (types candle has only).
    Quantized,
    /// Widen the weight to f32 a band of rows at a time and multiply in f32.
    Dequantize,
    /// Widen the weight a band at a time, round it and the activations to bf16 and multiply on AMX tiles
    /// with f32 sums ([`crate::ops::tiles`]; x86-64 Linux CPUs with AMX, inputs a multiple of 32). Products
    /// of fewer than [`TILE_MIN_ROWS`] rows are widened instead.
    Tiles,
}

/// Rows below which a [`MatmulKernel::Tiles`] layer widens in f32: padding a few rows to a 32-row tile
/// block is not worth it.
pub const TILE_MIN_ROWS: usize = 16;

/// The stored blocks of a weight.
#[derive(Debug, Clone)]
enum WeightBytes {
    /// A range of a mapped GGUF file.
    Mapped { file: Arc<GgufFile>, range: Range<usize> },
    /// Bytes held in memory.
    Owned(Arc<[u8]>),
}

impl WeightBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            WeightBytes::Mapped { file, range } => &file.mapped_bytes()[range.clone()],
            WeightBytes::Owned(bytes) => bytes,
        }
    }
}

/// A linear layer over a GGUF weight `[out, in]` of any type kinograph can dequantize, and an optional
/// f32 bias `[out]`.
#[derive(Debug, Clone)]
pub struct QuantLinear {
    weight: WeightBytes,
    ty: GgmlType,
    outputs: usize,
    inputs: usize,
    /// Set when the quantized kernel was chosen.
    quantized: Option<QMatMul>,
    /// Whether the AMX tile kernel was chosen.
    tiles: bool,
    bias: Option<Tensor>,
    device: Device,
}

impl QuantLinear {
    /// The layer over tensor `weight` of `file` (torch shape `[out, in]`) and, if named, tensor `bias`
    /// `[out]` (widened to f32), on `device`.
    pub fn from_gguf(
        file: &Arc<GgufFile>,
        weight: &str,
        bias: Option<&str>,
        kernel: MatmulKernel,
        device: &Device,
    ) -> std::result::Result<Self, GgufError> {
        let info = file.usable_tensor(weight)?;
        let tensor_error = |reason: String| GgufError::Tensor {
            file: file.path().display().to_string(),
            tensor: weight.to_string(),
            reason,
        };
        let &[outputs, inputs] = info.shape() else {
            return Err(tensor_error(format!("has shape {:?}; a linear weight is [out, in]", info.shape())));
        };
        if info.shape() != info.stored_shape() {
            return Err(tensor_error(format!(
                "is stored reshaped as {:?}; a linear weight is not",
                info.stored_shape()
            )));
        }
        if !info.ggml_type().can_dequantize() {
            return Err(tensor_error(format!("kinograph cannot compute with {} weights", info.ggml_type())));
        }
        let range = info.byte_range().ok_or_else(|| tensor_error("has no known size".into()))?;
        let bias = match bias {
            None => None,
            Some(name) => {
                let values = file.dequantize(name)?;
                if values.dims() != [outputs] {
                    return Err(GgufError::Tensor {
                        file: file.path().display().to_string(),
                        tensor: name.to_string(),
                        reason: format!("has shape {:?}; the bias of '{weight}' is [{outputs}]", values.dims()),
                    });
                }
                Some(values.to_device(device).map_err(|error| tensor_error(error.to_string()))?)
            }
        };
        let bytes = WeightBytes::Mapped { file: file.clone(), range };
        Self::build(bytes, info.ggml_type(), outputs, inputs, bias, kernel, device)
            .map_err(|error| tensor_error(error.to_string()))
    }

    /// The layer over `bytes`, whole blocks of `ty` holding the `[outputs, inputs]` weight row by row, and
    /// an optional f32 `bias` `[outputs]`.
    pub fn from_bytes(
        ty: GgmlType,
        outputs: usize,
        inputs: usize,
        bytes: impl Into<Arc<[u8]>>,
        bias: Option<Tensor>,
        kernel: MatmulKernel,
        device: &Device,
    ) -> Result<Self> {
        let bytes: Arc<[u8]> = bytes.into();
        let (Some(block_elements), Some(block_bytes)) = (ty.block_elements(), ty.block_bytes()) else {
            candle_core::bail!("a linear weight cannot be of {ty}");
        };
        if !ty.can_dequantize() {
            candle_core::bail!("kinograph cannot compute with {ty} weights");
        }
        if !inputs.is_multiple_of(block_elements) || bytes.len() != outputs * (inputs / block_elements) * block_bytes {
            candle_core::bail!(
                "{} bytes of {ty} do not hold a [{outputs}, {inputs}] weight (rows must be whole blocks of {block_elements})",
                bytes.len()
            );
        }
        if let Some(bias) = &bias
            && bias.dims() != [outputs]
        {
            candle_core::bail!("the bias has shape {:?}, expected [{outputs}]", bias.dims());
        }
        let bias = bias.map(|bias| bias.to_dtype(DType::F32)?.to_device(device)).transpose()?;
        Self::build(WeightBytes::Owned(bytes), ty, outputs, inputs, bias, kernel, device)
    }

    fn build(
        weight: WeightBytes,
        ty: GgmlType,
        outputs: usize,
        inputs: usize,
        bias: Option<Tensor>,
        kernel: MatmulKernel,
        device: &Device,
    ) -> Result<Self> {
        let kernel = match kernel {
            MatmulKernel::Auto => auto_kernel(ty, outputs, inputs, device),
            chosen => chosen,
        };
        let tiles = kernel == MatmulKernel::Tiles;
        if tiles && !(device.is_cpu() && crate::ops::tiles::fits(inputs)) {
            candle_core::bail!("AMX bf16 tiles are not available here for a weight of {inputs} inputs on {device:?}");
        }
        let quantized = if kernel == MatmulKernel::Quantized {
            let Some(dtype) = ty.candle_dtype() else {
                candle_core::bail!("candle has no quantized matmul for {ty} weights; use the dequantize kernel");
            };
            let storage =
                with_aligned_bytes(weight.bytes(), |bytes| QStorage::from_data(Cow::Borrowed(bytes), device, dtype))?;
            Some(QMatMul::from_qtensor(QTensor::new(storage, (outputs, inputs))?)?)
        } else {
            None
        };
        Ok(QuantLinear { weight, ty, outputs, inputs, quantized, tiles, bias, device: device.clone() })
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.outputs, self.inputs)
    }

    /// The weight's ggml type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// The kernel this layer runs.
    pub fn kernel(&self) -> MatmulKernel {
        match (&self.quantized, self.tiles) {
            (Some(_), _) => MatmulKernel::Quantized,
            (None, true) => MatmulKernel::Tiles,
            (None, false) => MatmulKernel::Dequantize,
        }
    }

    /// The device the layer computes on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of the stored blocks.
    pub fn stored_bytes(&self) -> usize {
        self.weight.bytes().len()
    }

    /// Rows `start..start + count` of the weight widened to f32, `[count, in]`.
    pub fn dequantized_rows(&self, start: usize, count: usize) -> Result<Tensor> {
        if start + count > self.outputs {
            candle_core::bail!("rows {start}..{} of a weight of {} rows", start + count, self.outputs);
        }
        let bytes = self.weight.bytes();
        let row_bytes = bytes.len() / self.outputs.max(1);
        let mut values = vec![0_f32; count * self.inputs];
        dequantize_parallel(self.ty, &bytes[start * row_bytes..(start + count) * row_bytes], &mut values)
            .map_err(candle_core::Error::wrap)?;
        Tensor::from_vec(values, (count, self.inputs), &self.device)
    }

    /// The whole weight widened to f32, `[out, in]`.
    pub fn dequantized_weight(&self) -> Result<Tensor> {
        let mut values = vec![0_f32; self.outputs * self.inputs];
        dequantize_parallel(self.ty, self.weight.bytes(), &mut values).map_err(candle_core::Error::wrap)?;
        Tensor::from_vec(values, (self.outputs, self.inputs), &self.device)
    }

    /// `[…, in]` → `[…, out]`, in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in_bands(x, WIDEN_BAND_ELEMENTS)
    }

    /// [`Self::forward`], the dequantize kernel widening `band_elements` weight values at a time.
    pub fn forward_in_bands(&self, x: &Tensor, band_elements: usize) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.inputs => *last = self.outputs,
            _ => candle_core::bail!("a linear layer of {} inputs was given shape {:?}", self.inputs, x.dims()),
        }
        let rows = x.elem_count() / self.inputs.max(1);
        let x = x.to_dtype(DType::F32)?.reshape((rows, self.inputs))?;
        let mut product = match &self.quantized {
            Some(matmul) => matmul.forward(&x)?,
            None if self.tiles && rows >= TILE_MIN_ROWS => x.apply_op1_no_bwd(&TileProduct(self))?,
            None => self.widened_product(&x, band_elements)?,
        };
        if let Some(bias) = &self.bias {
            product = product.broadcast_add(bias)?;
        }
        product.reshape(dims)
    }

    /// `x Wᵀ` with `W` widened a band of rows at a time, each band's product `x W_bandᵀ` giving a band of
    /// output columns. On this CPU (measured with `--gguf-types F32` in the benchmark) this costs about the
    /// CPU time of the dense f32 linear, where forming `W_band xᵀ` and transposing the result, as
    /// `StoredLinear` does, cost 35–45 % more.
    fn widened_product(&self, x: &Tensor, band_elements: usize) -> Result<Tensor> {
        let bytes = self.weight.bytes();
        let row_bytes = bytes.len() / self.outputs.max(1);
        let band = (band_elements / self.inputs.max(1)).clamp(1, self.outputs.max(1));
        let mut parts = Vec::with_capacity(self.outputs.div_ceil(band));
        for start in (0..self.outputs).step_by(band) {
            let count = band.min(self.outputs - start);
            let mut values = vec![0_f32; count * self.inputs];
            dequantize_parallel(self.ty, &bytes[start * row_bytes..(start + count) * row_bytes], &mut values)
                .map_err(candle_core::Error::wrap)?;
            let widened = Tensor::from_vec(values, (count, self.inputs), &self.device)?;
            parts.push(x.matmul(&widened.t()?)?);
        }
        if parts.len() == 1 { Ok(parts.remove(0)) } else { Tensor::cat(&parts, 1) }
    }
}

/// `x Wᵀ` for a contiguous f32 `x` `[rows, in]` on AMX tiles, the layer's rows widened as the tile kernel
/// asks for them.
struct TileProduct<'a>(&'a QuantLinear);

impl candle_core::CustomOp1 for TileProduct<'_> {
    fn name(&self) -> &'static str {
        "kinograph-quant-linear-tiles"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let layer = self.0;
        let (candle_core::CpuStorage::F32(values), Some((start, end)), &[rows, inputs]) =
            (storage, layout.contiguous_offsets(), layout.dims())
        else {
            candle_core::bail!("the tile kernel needs a contiguous f32 matrix, got {:?}", layout.dims())
        };
        let bytes = layer.weight.bytes();
        let row_bytes = bytes.len() / layer.outputs.max(1);
        let widen = |range: Range<usize>, out: &mut [f32]| -> Result<()> {
            super::dequant::dequantize_into(layer.ty, &bytes[range.start * row_bytes..range.end * row_bytes], out)
                .map_err(candle_core::Error::wrap)
        };
        let product = crate::ops::tiles::matmul(&values[start..end], rows, inputs, layer.outputs, &widen)?;
        Ok((candle_core::CpuStorage::F32(product), (rows, layer.outputs).into()))
    }
}

/// The kernel [`MatmulKernel::Auto`] picks (see the module documentation for the measurements).
fn auto_kernel(ty: GgmlType, outputs: usize, inputs: usize, device: &Device) -> MatmulKernel {
    let quantized_type = ty.candle_dtype().is_some() && !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    if !device.is_cpu() {
        return if quantized_type { MatmulKernel::Quantized } else { MatmulKernel::Dequantize };
    }
    if ty != GgmlType::F32 && crate::ops::tiles::fits(inputs) {
        return MatmulKernel::Tiles;
    }
    let repacked = outputs.is_multiple_of(16) && inputs.is_multiple_of(256);
    let cpu = CpuTier::detect();
    match ty {
        GgmlType::Q4_K | GgmlType::Q6_K if repacked && cpu >= CpuTier::Avx2 => MatmulKernel::Quantized,
        GgmlType::Q8_0 if repacked && cpu >= CpuTier::Vnni => MatmulKernel::Quantized,
        _ => MatmulKernel::Dequantize,
    }
}

/// What candle's repacked x86 kernels can use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CpuTier {
    /// Neither: candle's generic kernels only.
    Other,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 VNNI or AVX-VNNI integer dot products.
    Vnni,
}

impl CpuTier {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected;
            if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
                CpuTier::Other
            } else if is_x86_feature_detected!("avx512vnni") || is_x86_feature_detected!("avxvnni") {
                CpuTier::Vnni
            } else {
                CpuTier::Avx2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuTier::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    fn relative_error(found: &Tensor, expected: &Tensor) -> f32 {
        let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        let norm = expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        (difference / norm).sqrt()
    }

    #[test]
    fn both_kernels_match_the_dequantized_product() {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.02, (32, 256), &device).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 32, &device).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 256), &device).unwrap();
        let blocks = QTensor::quantize(&weight, GgmlDType::Q8_0).unwrap().data().unwrap().into_owned();
        let build = |kernel| {
            QuantLinear::from_bytes(GgmlType::Q8_0, 32, 256, blocks.clone(), Some(bias.clone()), kernel, &device)
                .unwrap()
        };
        let widened = build(MatmulKernel::Dequantize);
        let expected = x
            .broadcast_matmul(&widened.dequantized_weight().unwrap().t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        for band_elements in [1 << 20, 256 * 5, 1] {
            let found = widened.forward_in_bands(&x, band_elements).unwrap();
            assert_eq!(found.dims(), [2, 5, 32]);
            assert!(relative_error(&found, &expected) < 1e-6, "band of {band_elements}");
        }
        let quantized = build(MatmulKernel::Quantized);
        assert_eq!(quantized.kernel(), MatmulKernel::Quantized);
        let error = relative_error(&quantized.forward(&x).unwrap(), &expected);
        assert!(error < 2e-2, "{error}");
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let device = Device::Cpu;
        let error = QuantLinear::from_bytes(GgmlType::Q8_0, 2, 32, vec![0_u8; 34], None, MatmulKernel::Auto, &device);
        assert!(error.unwrap_err().to_string().contains("do not hold a [2, 32] weight"));
        let error =
            QuantLinear::from_bytes(GgmlType::IQ4_XS, 1, 256, vec![0_u8; 136], None, MatmulKernel::Quantized, &device);
        assert!(error.unwrap_err().to_string().contains("no quantized matmul for IQ4_XS"));
        let layer =
            QuantLinear::from_bytes(GgmlType::F32, 1, 2, vec![0_u8; 8], None, MatmulKernel::Auto, &device).unwrap();
        assert!(layer.forward(&Tensor::zeros((1, 3), DType::F32, &device).unwrap()).is_err());
    }
}
