//! What the LTX models do with the guides `LTXVAddGuide` appended to a latent, as ComfyUI's `LTXVModel`
//! does it: tokens whose noise mask is negative (the empty cells of a guide dilated onto the latent's grid)
//! are left out of the model call, the guide tokens that remain take the positions the conditioning
//! recorded for them, and the guides' strengths and attention masks weight the attention between guide
//! tokens and generated tokens.

use crate::values::{CondEntry, GuideAttentionEntry};
use candle_core::{DType, Device, Result, Tensor};
use kinograph_models::ltxv::transformer::GuideAttentionBias;

/// How one model call treats its tokens when the conditioning carries guides.
#[derive(Debug, Clone)]
pub struct GuidePlan {
    /// The latent's tokens (`T·H·W`).
    pub tokens: usize,
    /// The tokens given to the model, in order; `None` keeps every token.
    pub kept: Option<Vec<u32>>,
    /// The surviving guide tokens' intervals `[B_k, 3, K, 2]` (f32; time in pixel frames), which replace the
    /// positions of the last `K` tokens given to the model.
    pub keyframes: Tensor,
    /// The self-attention weights of the guide tokens.
    pub bias: Option<GuideAttentionBias>,
}

impl GuidePlan {
    /// The plan for `cond` over a latent `[B, C, T, H, W]` of shape `shape` whose noise mask is
    /// `denoise_mask` (broadcastable to `[B, 1 or C, T, H, W]`); `None` when there are no guides.
    pub fn new(cond: &CondEntry, shape: &[usize], denoise_mask: Option<&Tensor>) -> Result<Option<GuidePlan>> {
        let Some(keyframes) = &cond.keyframe_idxs else { return Ok(None) };
        let &[_, _, frames, height, width] = shape else {
            candle_core::bail!("guides need a video latent [B, C, T, H, W], got {shape:?}");
        };
        let keyframes = keyframes.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let keyframes = match keyframes.rank() {
            4 => keyframes,
            // Start coordinates only: the interval of one latent cell.
            3 => Tensor::stack(&[&keyframes, &keyframes], 3)?,
            _ => candle_core::bail!("keyframe_idxs must be [B, 3, N, 2], got {:?}", keyframes.dims()),
        };
        let guide_tokens = keyframes.dim(2)?;
        if guide_tokens == 0 {
            return Ok(None);
        }
        let per_frame = height * width;
        let tokens = frames * per_frame;
        if guide_tokens % per_frame != 0 || guide_tokens > tokens {
            candle_core::bail!(
                "the conditioning holds {guide_tokens} guide tokens, which is not a whole number of this latent's \
                 {per_frame}-token frames (or more than its {tokens} tokens): the guides were added to a latent of \
                 another size. Crop the guides (LTXVCropGuides) before resizing or upscaling the latent"
            );
        }
        // ComfyUI's `grid_mask`: a token stays unless a channel of the first sample's mask is negative.
        let keep: Vec<bool> = match denoise_mask {
            None => vec![true; tokens],
            Some(mask) => {
                let mask = mask.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                let channels = mask.dim(1)?;
                let mask = mask.broadcast_as((mask.dim(0)?, channels, frames, height, width))?.get(0)?;
                let values: Vec<f32> = mask.contiguous()?.flatten_all()?.to_vec1()?;
                (0..tokens).map(|n| (0..channels).all(|c| values[c * tokens + n] >= 0.0)).collect()
            }
        };
        let guide_keep = &keep[tokens - guide_tokens..];
        let surviving: Vec<u32> = (0..guide_tokens as u32).filter(|&i| guide_keep[i as usize]).collect();
        let keyframes = keyframes.contiguous()?.index_select(&Tensor::new(surviving.as_slice(), &Device::Cpu)?, 2)?;
        let kept_count = keep.iter().filter(|&&k| k).count();
        let bias = match cond.guide_attention_entries.as_deref() {
            Some(entries) if !entries.is_empty() => guide_bias(entries, guide_keep, kept_count - surviving.len())?,
            _ => None,
        };
        let kept = (kept_count < tokens).then(|| (0..tokens as u32).filter(|&n| keep[n as usize]).collect());
        Ok(Some(GuidePlan { tokens, kept, keyframes, bias }))
    }

    /// `tensor` (`[B, N, ...]` over the latent's tokens) with only the kept tokens.
    pub fn select(&self, tensor: &Tensor) -> Result<Tensor> {
        match &self.kept {
            None => Ok(tensor.clone()),
            Some(kept) => tensor.contiguous()?.index_select(&Tensor::new(kept.as_slice(), tensor.device())?, 1),
        }
    }

    /// The model's output `[B, N', C]` over the kept tokens spread back over all tokens, zeros elsewhere.
    pub fn scatter(&self, output: &Tensor) -> Result<Tensor> {
        let Some(kept) = &self.kept else { return Ok(output.clone()) };
        let (batch, _, channels) = output.dims3()?;
        let index = Tensor::new(kept.as_slice(), output.device())?.reshape((1, kept.len(), 1))?;
        let index = index.broadcast_as((batch, kept.len(), channels))?.contiguous()?;
        Tensor::zeros((batch, self.tokens, channels), output.dtype(), output.device())?.scatter_add(
            &index,
            &output.contiguous()?,
            1,
        )
    }

    /// `positions` `[B, 3, N', 2]` (of the kept tokens; time in seconds) with the last `K` replaced by the
    /// guides', their time divided by `frame_rate`. With `starts_only`, `positions` is `[B, 3, N']` and
    /// takes the intervals' starts (LTX-Video).
    pub fn place(&self, positions: &Tensor, frame_rate: f32, starts_only: bool) -> Result<Tensor> {
        let batch = positions.dim(0)?;
        let guides = self.keyframes.dim(2)?;
        let count = positions.dim(2)?;
        if guides == 0 {
            return Ok(positions.clone());
        }
        let keyframes = match self.keyframes.dim(0)? {
            b if b == batch => self.keyframes.clone(),
            1 => self.keyframes.repeat((batch, 1, 1, 1))?,
            other => candle_core::bail!("the guides have batch {other} but the latent has batch {batch}"),
        };
        let time = (keyframes.narrow(1, 0, 1)? * (1.0 / f64::from(frame_rate)))?;
        let keyframes = Tensor::cat(&[&time, &keyframes.narrow(1, 1, 2)?], 1)?;
        let keyframes = if starts_only { keyframes.narrow(3, 0, 1)?.squeeze(3)? } else { keyframes };
        let keyframes = keyframes.to_device(positions.device())?.to_dtype(positions.dtype())?;
        Tensor::cat(&[&positions.narrow(2, 0, count - guides)?, &keyframes], 2)
    }

    /// The number of guide tokens given to the model (at the end of its sequence).
    pub fn guide_tokens(&self) -> Result<usize> {
        self.keyframes.dim(2)
    }
}

/// The self-attention weights of the surviving guide tokens (`guide_keep` over the appended guide tokens),
/// which start at `guide_start` in the model's sequence.
fn guide_bias(
    entries: &[GuideAttentionEntry],
    guide_keep: &[bool],
    guide_start: usize,
) -> Result<Option<GuideAttentionBias>> {
    let total: usize = entries.iter().map(|e| e.pre_filter_count).sum();
    if total != guide_keep.len() {
        candle_core::bail!(
            "the guides' recorded token counts add up to {total} but the conditioning places {} guide tokens",
            guide_keep.len()
        );
    }
    if entries.iter().all(|e| e.strength == 1.0 && e.pixel_mask.is_none()) {
        return Ok(None);
    }
    let mut weights = Vec::new();
    let mut offset = 0;
    for entry in entries {
        let surviving = guide_keep[offset..offset + entry.pre_filter_count].iter().filter(|&&k| k).count();
        offset += entry.pre_filter_count;
        if surviving == 0 {
            continue;
        }
        let strength = entry.strength as f32;
        match &entry.pixel_mask {
            Some(mask) => {
                let per_token = mask_per_token(mask, entry.latent_shape)?;
                weights.extend(per_token.iter().take(surviving).map(|w| w * strength));
            }
            None => weights.extend(std::iter::repeat_n(strength, surviving)),
        }
    }
    Ok(GuideAttentionBias::from_weights(guide_start, &weights))
}

/// A pixel-space mask `[B, 1, F, H, W]` as one weight per guide latent token `[f, h, w]`
/// (ComfyUI's `_downsample_mask_to_latent`, first sample): each frame area-averaged to `h × w`, the first
/// pixel frame giving the first latent frame and the rest averaged in groups of `(F − 1) / (f − 1)`
/// (repeated, nearest, when there are fewer pixel frames than latent frames).
fn mask_per_token(mask: &Tensor, [frames, height, width]: [usize; 3]) -> Result<Vec<f32>> {
    let mask = mask.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let (_, _, pixel_frames, pixel_height, pixel_width) = mask.dims5()?;
    let values: Vec<f32> = mask.get(0)?.get(0)?.contiguous()?.flatten_all()?.to_vec1()?;
    let plane = pixel_height * pixel_width;
    let spatial: Vec<Vec<f32>> = (0..pixel_frames)
        .map(|f| area_resize(&values[f * plane..(f + 1) * plane], (pixel_height, pixel_width), (height, width)))
        .collect();
    let cells = height * width;
    let mut latent: Vec<Vec<f32>> = vec![spatial[0].clone()];
    if pixel_frames > 1 && frames > 1 {
        let (rest_pixels, rest_latent) = (pixel_frames - 1, frames - 1);
        let group = rest_pixels / rest_latent;
        for f in 0..rest_latent {
            if group < 1 {
                // Nearest: latent frame f takes pixel frame floor(f · rest_pixels / rest_latent).
                latent.push(spatial[1 + f * rest_pixels / rest_latent].clone());
            } else {
                let mut mean = vec![0f32; cells];
                let first = 1 + f * group;
                for frame in &spatial[first..first + group] {
                    for (m, v) in mean.iter_mut().zip(frame) {
                        *m += v;
                    }
                }
                for m in &mut mean {
                    *m /= group as f32;
                }
                latent.push(mean);
            }
        }
    } else if frames > 1 {
        latent.resize(frames, spatial[0].clone());
    }
    Ok(latent.concat())
}

/// `torch.nn.functional.interpolate(mode="area")` of one plane: each output cell the mean of the input
/// cells `[⌊i·H/h⌋, ⌈(i+1)·H/h⌉)` × the same for columns.
fn area_resize(plane: &[f32], (in_h, in_w): (usize, usize), (out_h, out_w): (usize, usize)) -> Vec<f32> {
    let span = |i: usize, input: usize, output: usize| (i * input / output, ((i + 1) * input).div_ceil(output));
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        let (r0, r1) = span(i, in_h, out_h);
        for j in 0..out_w {
            let (c0, c1) = span(j, in_w, out_w);
            let mut sum = 0f32;
            for r in r0..r1 {
                sum += plane[r * in_w + c0..r * in_w + c1].iter().sum::<f32>();
            }
            out.push(sum / ((r1 - r0) * (c1 - c0)) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_the_cells_each_output_covers() {
        let plane: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 3 × 4
        assert_eq!(
            area_resize(&plane, (3, 4), (1, 2)),
            vec![(0. + 1. + 4. + 5. + 8. + 9.) / 6., (2. + 3. + 6. + 7. + 10. + 11.) / 6.]
        );
        // 3 rows to 2: rows [0, 2) and [1, 3) overlap, as torch's adaptive pooling does.
        assert_eq!(area_resize(&plane, (3, 4), (2, 1)), vec![(0. + 1. + 2. + 3. + 4. + 5. + 6. + 7.) / 8., 7.5]);
    }

    fn entry_with_guides(guide_tokens: usize) -> CondEntry {
        let mut entry = CondEntry::new(Tensor::zeros((1, 2, 4), DType::F32, &Device::Cpu).unwrap(), None);
        entry.keyframe_idxs = Some(Tensor::zeros((1, 3, guide_tokens, 2), DType::I64, &Device::Cpu).unwrap());
        entry
    }

    #[test]
    fn guides_recorded_at_another_size_are_refused() {
        // Six guide tokens are not a whole number of 2 × 2 frames: the latent was resized after the guides.
        let error = GuidePlan::new(&entry_with_guides(6), &[1, 8, 3, 2, 2], None).unwrap_err().to_string();
        assert!(error.contains("LTXVCropGuides"), "{error}");
    }

    #[test]
    fn tokens_with_a_negative_mask_are_left_out_and_come_back_as_zeros() {
        // Two frames of 1 × 2 cells; the second (a guide) has its second cell masked below 0.
        let mask = Tensor::new(&[1f32, 1.0, 0.0, -1.0], &Device::Cpu).unwrap().reshape((1, 1, 2, 1, 2)).unwrap();
        let plan = GuidePlan::new(&entry_with_guides(2), &[1, 4, 2, 1, 2], Some(&mask)).unwrap().unwrap();
        assert_eq!(plan.kept.as_deref(), Some([0, 1, 2].as_slice()));
        assert_eq!(plan.guide_tokens().unwrap(), 1, "one guide token survives");
        let output = Tensor::new(&[[[1f32], [2.0], [3.0]]], &Device::Cpu).unwrap();
        let full: Vec<f32> = plan.scatter(&output).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(full, [1.0, 2.0, 3.0, 0.0]);
    }
}
