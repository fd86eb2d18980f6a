//! LTX-2's multimodal guidance (ltx-core `MultiModalGuider`, diffusers `LTX2Pipeline`), applied per
//! stream on x₀ predictions:
//!
//! `x̂ = c + (cfg − 1)(c − u_text) + stg·(c − u_perturbed) + (modality − 1)(c − u_isolated)`,
//!
//! then, with `rescale` r > 0, `x̂ ← r·x̂·σ(c)/σ(x̂) + (1 − r)·x̂` where σ is the (unbiased) standard deviation
//! of each sample. A term whose prediction is missing, or whose scale makes it vanish, is skipped.

use candle_core::{DType, Result, Tensor};

/// The guidance scales of one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceScales {
    /// Classifier-free guidance (1: off).
    pub cfg: f64,
    /// Spatio-temporal guidance (0: off).
    pub stg: f64,
    /// Modality-isolation guidance (1: off).
    pub modality: f64,
    /// Guidance rescale (0: off).
    pub rescale: f64,
}

impl GuidanceScales {
    /// The official LTX-2 video defaults (cfg 3, stg 1, modality 3, rescale 0.7).
    pub const VIDEO: GuidanceScales = GuidanceScales { cfg: 3.0, stg: 1.0, modality: 3.0, rescale: 0.7 };
    /// The official LTX-2 audio defaults (cfg 7, stg 1, modality 3, rescale 0.7).
    pub const AUDIO: GuidanceScales = GuidanceScales { cfg: 7.0, stg: 1.0, modality: 3.0, rescale: 0.7 };
}

/// The x₀ predictions of one stream under each conditioning.
#[derive(Debug, Clone, Copy)]
pub struct Predictions<'a> {
    /// With the prompt.
    pub conditional: &'a Tensor,
    /// With the negative prompt.
    pub unconditional: Option<&'a Tensor>,
    /// With the prompt and the perturbed self-attention blocks.
    pub perturbed: Option<&'a Tensor>,
    /// With the prompt and no audio↔video attention.
    pub isolated: Option<&'a Tensor>,
}

/// The guided x₀ of one stream (`[B, …]`).
pub fn guide(predictions: &Predictions<'_>, scales: &GuidanceScales) -> Result<Tensor> {
    let c = predictions.conditional.to_dtype(DType::F32)?;
    let mut guided = c.clone();
    let mut add = |other: Option<&Tensor>, scale: f64| -> Result<()> {
        if let Some(other) = other
            && scale != 0.0
        {
            guided = (&guided + ((&c - other.to_dtype(DType::F32)?)? * scale)?)?;
        }
        Ok(())
    };
    add(predictions.unconditional, scales.cfg - 1.0)?;
    add(predictions.perturbed, scales.stg)?;
    add(predictions.isolated, scales.modality - 1.0)?;
    if scales.rescale > 0.0 {
        let ratio = sample_std(&c)?.broadcast_div(&sample_std(&guided)?)?;
        let rescaled = guided.broadcast_mul(&ratio)?;
        guided = ((rescaled * scales.rescale)? + (guided * (1.0 - scales.rescale))?)?;
    }
    Ok(guided)
}

/// The unbiased standard deviation of each sample over all its values, shaped to broadcast: `[B, 1, …]`.
fn sample_std(x: &Tensor) -> Result<Tensor> {
    let batch = x.dim(0)?;
    let count = x.elem_count() / batch.max(1);
    let flat = x.reshape((batch, count))?;
    let mean = flat.mean_keepdim(1)?;
    let variance = (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)? / (count.saturating_sub(1).max(1)) as f64)?;
    let mut shape = vec![1; x.rank()];
    shape[0] = batch;
    variance.sqrt()?.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn terms_add_up_and_rescale_restores_the_conditional_spread() {
        let device = Device::Cpu;
        let c = Tensor::new(&[[1f32, 2.0, 3.0, 4.0]], &device).unwrap();
        let u = Tensor::new(&[[0f32, 2.0, 2.0, 4.0]], &device).unwrap();
        let p = Tensor::new(&[[1f32, 1.0, 3.0, 3.0]], &device).unwrap();
        let scales = GuidanceScales { cfg: 3.0, stg: 0.5, modality: 1.0, rescale: 0.0 };
        let predictions =
            Predictions { conditional: &c, unconditional: Some(&u), perturbed: Some(&p), isolated: Some(&c) };
        let guided = guide(&predictions, &scales).unwrap();
        // c + 2(c − u) + 0.5(c − p)
        assert_eq!(guided.to_vec2::<f32>().unwrap(), vec![vec![3.0, 2.5, 5.0, 4.5]]);
        let rescaled = guide(&predictions, &GuidanceScales { rescale: 1.0, ..scales }).unwrap();
        let spread = |t: &Tensor| sample_std(t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((spread(&rescaled) - spread(&c)).abs() < 1e-6);
    }
}
