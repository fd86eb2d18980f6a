//! `torch.nn.Linear` for the transformer's projections, with the weight stored transposed (`[in, out]`,
//! contiguous) so that the CPU matmul reads it row-major, and the bias added in place. A layer can carry
//! LoRA updates ([`WeightDelta`]), applied on the fly next to the shared base weight.
//!
//! On this CPU gemm runs about 15 % faster on a row-major right-hand side than on the transposed view
//! `candle_nn::Linear` multiplies by; the transposition is paid once, at load time.

use crate::lora::{LayerPatch, WeightDelta};
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// A linear layer `y = x Wᵀ + b` with weight `[out, in]` and bias `[out]` in the checkpoint.
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Tensor,
    bias_values: Option<Arc<Vec<f32>>>,
    deltas: Vec<WeightDelta>,
}

impl Linear {
    /// Reads `weight` `[out, in]` and `bias` `[out]` under `vb`.
    pub fn new(in_features: usize, out_features: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get((out_features, in_features), "weight")?;
        let bias = vb.get(out_features, "bias")?;
        let bias_values = bias_values(&bias)?;
        Ok(Linear { weight_t: weight.t()?.contiguous()?, bias, bias_values, deltas: Vec::new() })
    }

    /// Reads `weight` `[out, in]` under `vb`, for a layer without bias (the bias is zero).
    pub fn without_bias(in_features: usize, out_features: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get((out_features, in_features), "weight")?;
        let bias = Tensor::zeros(out_features, weight.dtype(), weight.device())?;
        let bias_values = bias_values(&bias)?;
        Ok(Linear { weight_t: weight.t()?.contiguous()?, bias, bias_values, deltas: Vec::new() })
    }

    /// `(out, in)`, the shape of the weight in the checkpoint.
    pub fn shape(&self) -> Result<(usize, usize)> {
        let (inputs, outputs) = self.weight_t.dims2()?;
        Ok((outputs, inputs))
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
        let dims = x.dims();
        let (in_features, out_features) = self.weight_t.dims2()?;
        let rows = x.elem_count() / in_features.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = out_features;
        }
        let x = x.contiguous()?.reshape((rows, in_features))?;
        let mut y = x.matmul(&self.weight_t)?;
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
