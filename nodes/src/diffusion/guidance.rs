//! How a GUIDER's model predictions for the positive and negative conditionings combine into one
//! denoised latent per step (classifier-free guidance, ComfyUI's `CFGGuider` and `BasicGuider`).

use super::model_call::predict_denoised;
use crate::values::{Conditioning, Guider};
use candle_core::{Result, Tensor};

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
