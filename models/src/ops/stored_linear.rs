//! A linear layer whose weight keeps the dtype it is stored in (bf16, f16, f32, fp8 e4m3fn/e5m2 codes
//! with their per-tensor scale, or GGUF blocks, multiplied through [`crate::gguf::QuantLinear`]), so that a big text encoder or projection takes its file size in memory,
//! not twice or four times that: the weight is widened to f32 a band of rows at a time, just before that
//! band's matmul (fp8 through the format's table with the scale folded in). LoRA updates ride along as in
//! [`super::linear::Linear`].

use crate::fp8::{LinearWeight, WeightStorage, read_linear_weight};
use crate::lora::{LayerPatch, WeightDelta};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// How many weight elements [`StoredLinear`] widens at once (16 MB of f32).
const WIDEN_BAND_ELEMENTS: usize = 4 << 20;

/// `y = x Wᵀ (+ b)` with `W` `[out, in]` in its storage dtype and `b` (if any) in f32.
#[derive(Debug, Clone)]
pub struct StoredLinear {
    /// `[out, in]`, as PyTorch stores it.
    weight: LinearWeight,
    bias: Option<Tensor>,
    deltas: Vec<WeightDelta>,
}

impl StoredLinear {
    /// Reads `weight` `[outputs, inputs]` under `vb` (in the builder's dtype, or fp8 codes with their
    /// scale); no bias.
    pub fn new(vb: &VarBuilder<'_>, inputs: usize, outputs: usize) -> Result<Self> {
        Ok(StoredLinear { weight: read_linear_weight(vb, outputs, inputs)?, bias: None, deltas: Vec::new() })
    }

    /// Reads `weight` and `bias` `[outputs]` (the bias widened to f32).
    pub fn with_bias(vb: &VarBuilder<'_>, inputs: usize, outputs: usize) -> Result<Self> {
        let bias = vb.get(outputs, "bias")?.to_dtype(DType::F32)?;
        Ok(StoredLinear { weight: read_linear_weight(vb, outputs, inputs)?, bias: Some(bias), deltas: Vec::new() })
    }

    /// A layer over an existing weight `[out, in]` (and bias).
    pub fn from_weight(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self::from_linear_weight(LinearWeight::Dense(weight), bias)
    }

    /// A layer over an existing weight `[out, in]`, dense or fp8 (and bias).
    pub fn from_linear_weight(weight: LinearWeight, bias: Option<Tensor>) -> Self {
        StoredLinear { weight, bias, deltas: Vec::new() }
    }

    /// `(out, in)`.
    pub fn shape(&self) -> Result<(usize, usize)> {
        self.weight.dims2()
    }

    /// How the weight is kept.
    pub fn storage(&self) -> WeightStorage {
        self.weight.storage()
    }

    /// The same layer with `patch` added (the weight update kept beside the shared weight).
    pub fn patched(&self, patch: &LayerPatch) -> Result<Self> {
        let mut layer = self.clone();
        if let Some(delta) = &patch.bias {
            let Some(bias) = &layer.bias else { candle_core::bail!("this projection has no bias to update") };
            layer.bias = Some((bias + delta.to_device(bias.device())?)?);
        }
        if let Some(delta) = &patch.weight {
            layer.deltas.push(delta.to_device(self.weight.device())?);
        }
        Ok(layer)
    }

    /// `x @ weightᵀ (+ bias)` over the last dimension, in f32.
    ///
    /// A weight stored narrower than f32 is widened a band of rows at a time, each band multiplied as
    /// soon as it is widened: the f32 copy in flight stays small (16 MB), comes back from the allocator
    /// warm instead of as fresh pages, and is still in cache for its matmul. On two cores this made a
    /// T5-XXL block about twice as fast as widening each whole matrix first. The product is formed as
    /// `weight @ xᵀ`, which gemm runs faster than `x @ weightᵀ` with a transposed weight.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in_bands(x, WIDEN_BAND_ELEMENTS)
    }

    /// [`Self::forward`] widening `band_elements` weight elements at a time.
    pub fn forward_in_bands(&self, x: &Tensor, band_elements: usize) -> Result<Tensor> {
        let (outputs, inputs) = self.weight.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / inputs.max(1);
        let x = x.to_dtype(DType::F32)?;
        let inputs_by_rows = x.reshape((rows, inputs))?.t()?;
        let product = match &self.weight {
            LinearWeight::Quantized(layer) => layer.forward(&x.reshape((rows, inputs))?)?.t()?,
            LinearWeight::Dense(weight) if weight.dtype() == DType::F32 => weight.matmul(&inputs_by_rows)?,
            weight => {
                let band = (band_elements / inputs.max(1)).clamp(1, outputs.max(1));
                let mut parts = Vec::with_capacity(outputs.div_ceil(band));
                for start in (0..outputs).step_by(band) {
                    parts.push(weight.widen_rows(start, band.min(outputs - start))?.matmul(&inputs_by_rows)?);
                }
                Tensor::cat(&parts, 0)?
            }
        };
        if let Some(last) = dims.last_mut() {
            *last = outputs;
        }
        // `[out, rows]` → `[rows, out]` (for GGUF blocks, undoing the transposition above: no copy).
        let mut product = product.t()?.contiguous()?;
        if !self.deltas.is_empty() {
            let x = x.reshape((rows, inputs))?;
            for delta in &self.deltas {
                product = delta.add_to(&x, product)?;
            }
        }
        if let Some(bias) = &self.bias {
            product = product.broadcast_add(bias)?;
        }
        product.reshape(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn stored_linear_widens_and_keeps_leading_dimensions() {
        let weight = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu).unwrap();
        let linear = StoredLinear::from_weight(weight.to_dtype(DType::BF16).unwrap(), None);
        let x = Tensor::new(&[[[1f32, 1.0]], [[0.0, 2.0]]], &Device::Cpu).unwrap();
        let y = linear.forward(&x).unwrap();
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(y.to_vec3::<f32>().unwrap(), vec![vec![vec![3.0, 7.0, 11.0]], vec![vec![4.0, 8.0, 12.0]]]);
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let with_bias = StoredLinear::from_weight(weight.to_dtype(DType::BF16).unwrap(), Some(bias));
        let y = with_bias.forward(&x).unwrap();
        assert_eq!(y.to_vec3::<f32>().unwrap(), vec![vec![vec![3.5, 6.0, 13.0]], vec![vec![4.5, 7.0, 14.0]]]);
    }

    /// GGUF blocks multiply through `QuantLinear`; the bias and a LoRA update come on top, as on a dense
    /// weight holding the dequantized values.
    #[test]
    fn gguf_blocks_multiply_with_bias_and_lora_like_their_dequantized_weight() {
        use crate::gguf::{GgmlType, MatmulKernel, QuantLinear};
        use candle_core::quantized::{GgmlDType, QTensor};
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.1, (48, 64), &device).unwrap();
        let blocks = QTensor::quantize(&weight, GgmlDType::Q8_0).unwrap().data().unwrap().into_owned();
        let layer =
            QuantLinear::from_bytes(GgmlType::Q8_0, 48, 64, blocks, None, MatmulKernel::Dequantize, &device).unwrap();
        let dequantized = layer.dequantized_weight().unwrap();
        let bias = Tensor::randn(0f32, 1.0, 48, &device).unwrap();
        let quantized = StoredLinear::from_linear_weight(LinearWeight::Quantized(layer.into()), Some(bias.clone()));
        assert_eq!(quantized.storage(), WeightStorage::Gguf(GgmlType::Q8_0));
        assert_eq!(quantized.shape().unwrap(), (48, 64));
        let dense = StoredLinear::from_weight(dequantized, Some(bias));
        let patch = LayerPatch {
            weight: Some(WeightDelta::LowRank {
                down_t: Tensor::randn(0f32, 0.3, (64, 4), &device).unwrap(),
                up_t: Tensor::randn(0f32, 0.3, (4, 48), &device).unwrap(),
                scale: 0.7,
            }),
            bias: None,
            vector: None,
        };
        let x = Tensor::randn(0f32, 1.0, (2, 5, 64), &device).unwrap();
        for (quantized, dense) in
            [(quantized.clone(), dense.clone()), (quantized.patched(&patch).unwrap(), dense.patched(&patch).unwrap())]
        {
            let (found, expected) = (quantized.forward(&x).unwrap(), dense.forward(&x).unwrap());
            assert_eq!(found.dims(), [2, 5, 48]);
            let error = (found - expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(error < 1e-5, "{error}");
        }
    }

    #[test]
    fn widening_in_bands_gives_the_whole_product() {
        let weight = Tensor::randn(0f32, 1.0, (11, 6), &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6), &Device::Cpu).unwrap();
        let linear = StoredLinear::from_weight(weight.clone(), None);
        let whole = linear.forward(&x).unwrap();
        let banded = linear.forward_in_bands(&x, 12).unwrap();
        let expected = x.broadcast_matmul(&weight.to_dtype(DType::F32).unwrap().t().unwrap()).unwrap();
        for result in [&whole, &banded] {
            assert_eq!(result.dims(), [2, 3, 11]);
            let error = (result - &expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(error < 1e-5, "{error}");
        }
    }
}
