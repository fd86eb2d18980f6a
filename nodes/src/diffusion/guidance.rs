//! How a GUIDER's model predictions for the positive and negative conditionings combine into one
//! denoised latent per step (classifier-free guidance, ComfyUI's `CFGGuider` and `BasicGuider`, and
//! `LTXVDualCFGGuider`'s separate video and audio scales).

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
        self.guided(sigma, |entry| predict_denoised(&self.model, x, sigma, entry, denoise_mask))
    }

    /// The video and audio scales of `LTXVDualCFGGuider` when they differ. As ComfyUI's
    /// `Guider_LTXAVDualCFG`, scales equal up to `math.isclose` (relative 1e-9) make it a plain CFG guider
    /// with the video scale.
    pub fn dual_scales(&self) -> Option<(f64, f64)> {
        let audio_cfg = self.audio_cfg?;
        let close = (self.cfg - audio_cfg).abs() <= 1e-9 * self.cfg.abs().max(audio_cfg.abs());
        if close || self.negative.is_none() { None } else { Some((self.cfg, audio_cfg)) }
    }

    /// The guided prediction for a packed audio-video latent `x` (`AvShapes::pack`) of an LTX-2 model:
    /// the same combination as [`Self::predict`] on the packed tensor, or, for `LTXVDualCFGGuider` with two
    /// scales, [`dual_cfg`] (the negative pass always runs then, as ComfyUI disables its cfg = 1 shortcut).
    pub fn predict_av(&self, x: &Tensor, shapes: &AvShapes, sigma: f64, masks: AvMasks<'_>) -> Result<Tensor> {
        let Transformer::Ltx2(transformer) = &self.model.transformer else {
            candle_core::bail!("an audio-video latent needs an LTX-2 model; this MODEL is LTX-Video 0.9")
        };
        let (video, audio) = shapes.unpack(x)?;
        let predict = |entry: &CondEntry| -> Result<Tensor> {
            let (video, audio) = predict_denoised_av(
                transformer,
                (&video, &audio),
                sigma,
                entry,
                (masks.video, masks.audio),
                &Perturbation::default(),
            )?;
            shapes.pack(&video, &audio)
        };
        match (self.dual_scales(), &self.negative) {
            (Some((video_cfg, audio_cfg)), Some(negative)) => {
                let cond = mean_prediction(&self.positive, &predict)?;
                let uncond = mean_prediction(negative, &predict)?;
                let guided = dual_cfg(x, &cond, &uncond, shapes.video_len(), video_cfg, audio_cfg)?;
                self.identity_guided(sigma, guided, &cond, &predict)
            }
            _ => self.guided(sigma, predict),
        }
    }

    /// Classifier-free guidance over `predict`, the prediction for one conditioning entry, then the
    /// model's identity guidance at `sigma`.
    fn guided(&self, sigma: f64, predict: impl Fn(&CondEntry) -> Result<Tensor>) -> Result<Tensor> {
        let cond = mean_prediction(&self.positive, &predict)?;
        let guided = match &self.negative {
            Some(negative) if !self.skips_negative() => {
                let uncond = mean_prediction(negative, &predict)?;
                let scale = self.cfg as f32;
                (uncond.clone() + ((&cond - uncond)? * f64::from(scale))?)?
            }
            _ => cond.clone(),
        };
        self.identity_guided(sigma, guided, &cond, &predict)
    }

    /// ComfyUI's post-CFG functions of `LTXVReferenceAudio` (in the order they were added): each active at
    /// `sigma` adds `scale·(cond − cond without the reference audio)` to the guided prediction, where
    /// `cond` is the positive prediction. Without a reference clip in the positive conditioning the second
    /// pass would be the first one again and the term 0, so it is not run.
    fn identity_guided(
        &self,
        sigma: f64,
        guided: Tensor,
        cond: &Tensor,
        predict: &impl Fn(&CondEntry) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let active: Vec<_> = self.model.identity_guidance.iter().filter(|guidance| guidance.active_at(sigma)).collect();
        if active.is_empty() || self.positive.entries.iter().all(|entry| entry.ref_audio.is_none()) {
            return Ok(guided);
        }
        let without_reference = Conditioning {
            entries: self.positive.entries.iter().map(|entry| CondEntry { ref_audio: None, ..entry.clone() }).collect(),
        };
        let difference = (cond - mean_prediction(&without_reference, predict)?)?;
        active.iter().try_fold(guided, |guided, guidance| {
            // torch multiplies a float32 tensor by a Python float in float32.
            guided + (&difference * f64::from(guidance.scale as f32))?
        })
    }
}

/// ComfyUI's `Guider_LTXAVDualCFG` on packed `[B, 1, N]` predictions: the first `video_len` elements of the
/// last axis (the video stream) guided with `video_cfg`, the rest (audio) with `audio_cfg`. Computed as
/// ComfyUI's `sampler_cfg_function` computes it, in noise space: with `c = x − cond`, `u = x − uncond`,
/// `x − (u + (c − u)·scale)`, which is `uncond + (cond − uncond)·scale` up to rounding.
pub fn dual_cfg(
    x: &Tensor,
    cond: &Tensor,
    uncond: &Tensor,
    video_len: usize,
    video_cfg: f64,
    audio_cfg: f64,
) -> Result<Tensor> {
    let axis = x.rank() - 1;
    let total = x.dim(axis)?;
    if video_len > total {
        candle_core::bail!("the video stream ({video_len} values) is longer than the packed latent ({total})");
    }
    let cond_noise = (x - cond)?;
    let uncond_noise = (x - uncond)?;
    let difference = (&cond_noise - &uncond_noise)?;
    // torch multiplies a float32 tensor by a Python float in float32.
    let guided = |start: usize, length: usize, scale: f64| -> Result<Tensor> {
        let scale = f64::from(scale as f32);
        uncond_noise.narrow(axis, start, length)? + (difference.narrow(axis, start, length)? * scale)?
    };
    let noise =
        Tensor::cat(&[guided(0, video_len, video_cfg)?, guided(video_len, total - video_len, audio_cfg)?], axis)?;
    x - noise
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

#[cfg(test)]
mod tests {
    use super::dual_cfg;
    use candle_core::{Device, Tensor};

    fn packed(rows: &[[f32; 5]]) -> Tensor {
        let values: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(values, (rows.len(), 1, 5), &Device::Cpu).unwrap()
    }

    /// Worked by hand: per stream `uncond + (cond − uncond)·scale`, video (the first 3 values of each batch
    /// item) at 3, audio (the last 2) at 7, whatever `x` is.
    #[test]
    fn dual_cfg_guides_video_and_audio_with_their_own_scales() {
        let x = packed(&[[0.3, -1.0, 2.0, 0.5, 4.0], [1.0, 1.0, 1.0, 1.0, 1.0]]);
        let cond = packed(&[[2.0, 0.0, 1.0, -1.0, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0]]);
        let uncond = packed(&[[1.0, 1.0, 0.0, 0.0, 0.25], [0.0, 0.0, 0.0, 0.0, 0.0]]);
        let out = dual_cfg(&x, &cond, &uncond, 3, 3.0, 7.0).unwrap();
        let expected: [[f32; 5]; 2] = [[4.0, -2.0, 3.0, -7.0, 2.0], [3.0, 6.0, 9.0, 28.0, 35.0]];
        let values: Vec<Vec<f32>> = out.squeeze(1).unwrap().to_vec2().unwrap();
        for (row, expected_row) in values.iter().zip(expected) {
            for (value, wanted) in row.iter().zip(expected_row) {
                assert!((value - wanted).abs() < 1e-5, "{values:?} vs {expected:?}");
            }
        }
        // Swapping the scales changes exactly the audio values.
        let swapped: Vec<Vec<f32>> =
            dual_cfg(&x, &cond, &uncond, 3, 7.0, 3.0).unwrap().squeeze(1).unwrap().to_vec2().unwrap();
        assert!((swapped[0][0] - 8.0).abs() < 1e-5 && (swapped[0][3] + 3.0).abs() < 1e-5, "{swapped:?}");
    }

    #[test]
    fn dual_cfg_rejects_a_video_stream_longer_than_the_latent() {
        let x = packed(&[[0.0; 5]]);
        let error = dual_cfg(&x, &x, &x, 6, 3.0, 7.0).unwrap_err().to_string();
        assert!(error.contains("longer than the packed latent"), "{error}");
    }
}
