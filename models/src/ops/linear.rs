//! `torch.nn.Linear` for the transformer's projections, with the weight stored transposed (`[in, out]`,
//! contiguous) so that the CPU matmul reads it row-major, and the bias added in place. A layer can carry
//! LoRA updates ([`WeightDelta`]), applied on the fly next to the shared base weight.
//!
//! On this CPU gemm runs about 15 % faster on a row-major right-hand side than on the transposed view
//! `candle_nn::Linear` multiplies by; the transposition is paid once, at load time.
//!
//! The weight keeps the dtype of the builder it was read from, or its fp8 codes and scale
//! ([`crate::fp8::read_linear_weight`]): a bf16, f16 or fp8 model stays its file size in memory, and each
//! forward widens the weight to f32 a band of output columns at a time (16 MB of f32), multiplying each
//! band as soon as it is widened; fp8 bands go through the format's table with the scale folded in. GGUF
//! blocks stay blocks, as stored (`[out, in]`), and multiply through [`crate::gguf::QuantLinear`]. The
//! bias is always f32.

use crate::fp8::{LinearWeight, WeightStorage, read_linear_weight};
use crate::lora::{LayerPatch, WeightDelta};
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// How many weight elements a narrow-dtype [`Linear`] widens at once (16 MB of f32).
const WIDEN_BAND_ELEMENTS: usize = 4 << 20;

/// A linear layer `y = x Wᵀ + b` with weight `[out, in]` and bias `[out]` in the checkpoint.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight transposed, `[in, out]`; GGUF blocks as stored, `[out, in]`.
    weight_t: LinearWeight,
    bias: Tensor,
    bias_values: Option<Arc<Vec<f32>>>,
    deltas: Vec<WeightDelta>,
}

impl Linear {
    /// Reads `weight` `[out, in]` and `bias` `[out]` under `vb`. A scaled fp8 weight (ComfyUI's and
    /// Lightricks' `weight_scale`, or the older `scale_weight`) is multiplied by its scale: by the weight
    /// source when it widens the weight at load, or band by band as it is widened when it is kept fp8.
    pub fn new(in_features: usize, out_features: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let bias = vb.get(out_features, "bias")?.to_dtype(DType::F32)?;
        Self::with_bias_tensor(in_features, out_features, bias, vb)
    }

    /// Reads `weight` `[out, in]` under `vb`, for a layer without bias (the bias is zero).
    pub fn without_bias(in_features: usize, out_features: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let bias = Tensor::zeros(out_features, DType::F32, vb.device())?;
        Self::with_bias_tensor(in_features, out_features, bias, vb)
    }

    fn with_bias_tensor(in_features: usize, out_features: usize, bias: Tensor, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = read_linear_weight(vb, out_features, in_features)?;
        let weight_t = if matches!(weight, LinearWeight::Quantized(_)) { weight } else { weight.transposed()? };
        let bias_values = bias_values(&bias)?;
        Ok(Linear { weight_t, bias, bias_values, deltas: Vec::new() })
    }

    /// How the weight is kept: f32, the file's bf16/f16, fp8 codes or GGUF blocks.
    pub fn storage(&self) -> WeightStorage {
        self.weight_t.storage()
    }

    /// `(out, in)`, the shape of the weight in the checkpoint.
    pub fn shape(&self) -> Result<(usize, usize)> {
        let (inputs, outputs) = self.in_out()?;
        Ok((outputs, inputs))
    }

    /// `(in, out)`.
    fn in_out(&self) -> Result<(usize, usize)> {
        match &self.weight_t {
            LinearWeight::Quantized(layer) => {
                let (outputs, inputs) = layer.shape();
                Ok((inputs, outputs))
            }
            weight_t => weight_t.dims2(),
        }
    }

    /// The same layer with `patch` added: the weight update kept beside the (shared) weight, the bias
    /// update added to a new bias.
    pub fn patched(&self, patch: &LayerPatch) -> Result<Linear> {
        let mut layer = self.clone();
        if let Some(delta) = &patch.bias {
            layer.bias = (&layer.bias + delta.to_device(layer.bias.device())?)?;
            layer.bias_values = bias_values(&layer.bias)?;
        }
        if let Some(delta) = &patch.weight {
            layer.deltas.push(delta.to_device(self.weight_t.device())?);
        }
        Ok(layer)
    }

    /// `[…, in]` → `[…, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in_bands(x, WIDEN_BAND_ELEMENTS)
    }

    /// [`Self::forward`], widening a narrow weight `band_elements` elements at a time.
    fn forward_in_bands(&self, x: &Tensor, band_elements: usize) -> Result<Tensor> {
        let dims = x.dims();
        let (in_features, out_features) = self.in_out()?;
        let rows = x.elem_count() / in_features.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = out_features;
        }
        let x = x.to_dtype(DType::F32)?.contiguous()?.reshape((rows, in_features))?;
        let mut y = match &self.weight_t {
            LinearWeight::Dense(weight_t) if weight_t.dtype() == DType::F32 => x.matmul(weight_t)?,
            LinearWeight::Quantized(layer) => layer.forward(&x)?,
            weight_t => {
                let band = (band_elements / in_features.max(1)).clamp(1, out_features.max(1));
                let mut parts = Vec::with_capacity(out_features.div_ceil(band));
                for start in (0..out_features).step_by(band) {
                    parts.push(x.matmul(&weight_t.widen_columns(start, band.min(out_features - start))?)?);
                }
                Tensor::cat(&parts, 1)?
            }
        };
        for delta in &self.deltas {
            y = delta.add_to(&x, y)?;
        }
        let y = match &self.bias_values {
            Some(bias) if y.is_contiguous() && y.dtype() == DType::F32 => {
                y.inplace_op1(&AddBias(bias.as_slice()))?;
                y
            }
            _ => y.broadcast_add(&self.bias)?,
        };
        y.reshape(out_dims)
    }
}

fn bias_values(bias: &Tensor) -> Result<Option<Arc<Vec<f32>>>> {
    if bias.device().is_cpu() && bias.dtype() == DType::F32 { Ok(Some(Arc::new(bias.to_vec1()?))) } else { Ok(None) }
}

/// Adds a bias to every row, in place.
struct AddBias<'a>(&'a [f32]);

impl InplaceOp1 for AddBias<'_> {
    fn name(&self) -> &'static str {
        "ltxv-add-bias"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("ltxv-add-bias needs contiguous f32 input")
        };
        for row in data[start..end].chunks_exact_mut(self.0.len().max(1)) {
            for (value, bias) in row.iter_mut().zip(self.0) {
                *value += bias;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A bf16 layer widened in several bands gives the product of its weights widened whole.
    #[test]
    fn narrow_weights_are_widened_band_by_band() {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (7, 5), &device).unwrap().to_dtype(DType::BF16).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 7, &device).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5), &device).unwrap();
        let layer = Linear {
            weight_t: LinearWeight::Dense(weight.t().unwrap().contiguous().unwrap()),
            bias: bias.clone(),
            bias_values: bias_values(&bias).unwrap(),
            deltas: Vec::new(),
        };
        assert_eq!(layer.storage(), WeightStorage::Dense(DType::BF16));
        let wide = weight.to_dtype(DType::F32).unwrap();
        let expected = x.broadcast_matmul(&wide.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        // One band, bands of 2 columns, and one column at a time.
        for band_elements in [1 << 20, 10, 1] {
            let found = layer.forward_in_bands(&x, band_elements).unwrap();
            let error = (found - &expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(error < 1e-5, "band of {band_elements} elements: {error}");
        }
    }
}
