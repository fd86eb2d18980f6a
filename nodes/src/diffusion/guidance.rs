//! How a GUIDER's model predictions for the positive and negative conditionings combine into one
//! denoised latent per step (classifier-free guidance, ComfyUI's `CFGGuider` and `BasicGuider`).

use super::av_call::{AvShapes, predict_denoised_av};
use super::model_call::predict_denoised;
use crate::values::{CondEntry, Conditioning, Guider, Transformer};
use candle_core::{Result, Tensor};
use kinograph_models::ltx2::transformer::Perturbation;

/// The noise masks of an audio-video latent, each shaped like its stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct AvMasks<'a> {
    pub video: Option<&'a Tensor>,
    pub audio: Option<&'a Tensor>,
}

impl Guider {
    /// Whether the negative pass is skipped: no negative, or `cfg` = 1 (ComfyUI's shortcut: the result
    /// would equal the positive prediction).
    pub fn skips_negative(&self) -> bool {
        self.negative.is_none() || (self.cfg - 1.0).abs() <= 1e-9
    }

    /// The guided prediction of the clean latent from `x` at `sigma`:
    /// `uncond + (cond − uncond)·cfg`, each the mean over its conditioning's entries.
    pub fn predict(&self, x: &Tensor, sigma: f64, denoise_mask: Option<&Tensor>) -> Result<Tensor> {
        self.guided(|entry| predict_denoised(&self.model, x, sigma, entry, denoise_mask))
    }

    /// The guided prediction for a packed audio-video latent `x` (`AvShapes::pack`) of an LTX-2 model:
    /// the same combination as [`Self::predict`] on the packed tensor.
    pub fn predict_av(&self, x: &Tensor, shapes: &AvShapes, sigma: f64, masks: AvMasks<'_>) -> Result<Tensor> {
        let Transformer::Ltx2(transformer) = &self.model.transformer else {
            candle_core::bail!("an audio-video latent needs an LTX-2 model; this MODEL is LTX-Video 0.9")
        };
        let (video, audio) = shapes.unpack(x)?;
        self.guided(|entry| {
            let (video, audio) = predict_denoised_av(
                transformer,
                (&video, &audio),
                sigma,
                entry,
                (masks.video, masks.audio),
                &Perturbation::default(),
            )?;
            shapes.pack(&video, &audio)
        })
    }

    /// Classifier-free guidance over `predict`, the prediction for one conditioning entry.
    fn guided(&self, predict: impl Fn(&CondEntry) -> Result<Tensor>) -> Result<Tensor> {
        let cond = mean_prediction(&self.positive, &predict)?;
        match &self.negative {
            Some(negative) if !self.skips_negative() => {
                let uncond = mean_prediction(negative, &predict)?;
                let scale = self.cfg as f32;
                uncond.clone() + ((cond - uncond)? * f64::from(scale))?
            }
            _ => Ok(cond),
        }
    }
}

/// The mean of `predict` over the entries of `conditioning`.
fn mean_prediction(conditioning: &Conditioning, predict: &impl Fn(&CondEntry) -> Result<Tensor>) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for entry in &conditioning.entries {
        let prediction = predict(entry)?;
        total = Some(match total {
            Some(sum) => (sum + prediction)?,
            None => prediction,
        });
    }
    let count = conditioning.entries.len();
    match total {
        Some(sum) if count > 1 => sum / count as f64,
        Some(sum) => Ok(sum),
        None => candle_core::bail!("the conditioning is empty"),
    }
}
