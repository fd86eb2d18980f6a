//! How a GUIDER's model predictions for the positive and negative conditionings combine into one
//! denoised latent per step (classifier-free guidance, ComfyUI's `CFGGuider` and `BasicGuider`).

use super::av_call::{AvShapes, predict_denoised_av};
use super::model_call::predict_denoised;
use crate::values::{Conditioning, Guider, Transformer};
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
        let cond = self.mean_prediction(&self.positive, x, sigma, denoise_mask)?;
        match &self.negative {
            Some(negative) if !self.skips_negative() => {
                let uncond = self.mean_prediction(negative, x, sigma, denoise_mask)?;
                let scale = self.cfg as f32;
                uncond.clone() + ((cond - uncond)? * f64::from(scale))?
            }
            _ => Ok(cond),
        }
    }

    /// The guided prediction for a packed audio-video latent `x` (`AvShapes::pack`) of an LTX-2 model:
    /// the same combination as [`Self::predict`] on the packed tensor.
    pub fn predict_av(&self, x: &Tensor, shapes: &AvShapes, sigma: f64, masks: AvMasks<'_>) -> Result<Tensor> {
        let cond = self.mean_prediction_av(&self.positive, x, shapes, sigma, masks)?;
        match &self.negative {
            Some(negative) if !self.skips_negative() => {
                let uncond = self.mean_prediction_av(negative, x, shapes, sigma, masks)?;
                let scale = self.cfg as f32;
                uncond.clone() + ((cond - uncond)? * f64::from(scale))?
            }
            _ => Ok(cond),
        }
    }

    fn mean_prediction_av(
        &self,
        conditioning: &Conditioning,
        x: &Tensor,
        shapes: &AvShapes,
        sigma: f64,
        masks: AvMasks<'_>,
    ) -> Result<Tensor> {
        let Transformer::Ltx2(transformer) = &self.model.transformer else {
            candle_core::bail!("an audio-video latent needs an LTX-2 model; this MODEL is LTX-Video 0.9")
        };
        let (video, audio) = shapes.unpack(x)?;
        let mut total: Option<Tensor> = None;
        for entry in &conditioning.entries {
            let (video, audio) = predict_denoised_av(
                transformer,
                (&video, &audio),
                sigma,
                entry,
                (masks.video, masks.audio),
                &Perturbation::default(),
            )?;
            let prediction = shapes.pack(&video, &audio)?;
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

    fn mean_prediction(
        &self,
        conditioning: &Conditioning,
        x: &Tensor,
        sigma: f64,
        denoise_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for entry in &conditioning.entries {
            let prediction = predict_denoised(&self.model, x, sigma, entry, denoise_mask)?;
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
}
