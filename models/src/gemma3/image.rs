//! How ComfyUI turns an IMAGE batch into Gemma 3's vision input, step by step in float32 as torch computes it:
//!
//! 1. `Gemma3_Tokenizer.tokenize_with_weights` (`comfy/text_encoders/lt.py`): the batch `[B, H, W, C]` is resized
//!    with `interpolate(mode="area")` (an adaptive average pool) to `round(W·s) × round(H·s)`,
//!    `s = √(896² / (W·H))`, keeping its aspect, and any channel past the third is dropped. ComfyUI writes 896;
//!    here it is the tower's `image_size`, which is 896 in every Gemma 3 with vision.
//! 2. `clip_preprocess(size, mean = std = 0.5, crop = True)` (`comfy/clip_model.py`): unless the image is already
//!    `size × size`, its shorter side goes to `size` (`round(scale·H) × round(scale·W)`) with
//!    `interpolate(mode="bicubic", antialias=True)` (Keys' cubic, a = −0.5, widened by the scale when shrinking)
//!    and the centre `size × size` is cut out; then values are clamped and rounded to 1/255 and mapped to [-1, 1].
//!
//! The result `[B, 3, size, size]` goes to [`super::vision::Gemma3Vision::encode`]. Python's `round` rounds
//! halves to even, and so does this.

use candle_core::{Device, Result, Tensor};

/// Gemma 3's pixel values for an IMAGE batch `frames` `[B, H, W, C]` (values in 0..1, `C ≥ 3`) and a tower
/// of `size`: `[B, 3, size, size]` f32 in [-1, 1].
pub fn comfy_pixel_values(frames: &Tensor, size: usize) -> Result<Tensor> {
    let (batch, height, width, channels) = frames.dims4()?;
    if channels < 3 || height == 0 || width == 0 || size == 0 {
        candle_core::bail!("Gemma 3 needs RGB images, got a batch of shape {:?}", frames.dims());
    }
    let pixels: Vec<f32> = frames.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
    let scale_by = ((size * size) as f64 / (width * height) as f64).sqrt();
    let area_width = ((width as f64 * scale_by).round_ties_even() as usize).max(1);
    let area_height = ((height as f64 * scale_by).round_ties_even() as usize).max(1);
    let mut out = Vec::with_capacity(batch * 3 * size * size);
    for frame in 0..batch {
        for channel in 0..3 {
            let plane: Vec<f32> =
                (0..height * width).map(|i| pixels[(frame * height * width + i) * channels + channel]).collect();
            let plane = area_resize(&plane, (height, width), (area_height, area_width));
            let plane = clip_resize_crop(plane, (area_height, area_width), size);
            out.extend(plane.into_iter().map(|v| {
                let quantised = (255.0_f32 * v).clamp(0.0, 255.0).round_ties_even() / 255.0;
                (quantised - 0.5) / 0.5
            }));
        }
    }
    Tensor::from_vec(out, (batch, 3, size, size), &Device::Cpu)?.to_device(frames.device())
}

/// `clip_preprocess`'s resize and centre crop of one plane (unless it is already `size × size`).
fn clip_resize_crop(plane: Vec<f32>, (height, width): (usize, usize), size: usize) -> Vec<f32> {
    if height == size && width == size {
        return plane;
    }
    let scale = size as f64 / height.min(width) as f64;
    let new_height = ((scale * height as f64).round_ties_even() as usize).max(size);
    let new_width = ((scale * width as f64).round_ties_even() as usize).max(size);
    let resized = bicubic_antialias(&plane, (height, width), (new_height, new_width));
    let (top, left) = ((new_height - size) / 2, (new_width - size) / 2);
    (0..size).flat_map(|y| resized[(top + y) * new_width + left..][..size].to_vec()).collect()
}

/// torch's `adaptive_avg_pool2d` (what `interpolate(mode="area")` runs) of one plane.
fn area_resize(plane: &[f32], (height, width): (usize, usize), (out_height, out_width): (usize, usize)) -> Vec<f32> {
    let start = |index: usize, input: usize, output: usize| (index * input) / output;
    let end = |index: usize, input: usize, output: usize| ((index + 1) * input).div_ceil(output);
    let mut out = Vec::with_capacity(out_height * out_width);
    for oy in 0..out_height {
        let (y0, y1) = (start(oy, height, out_height), end(oy, height, out_height));
        for ox in 0..out_width {
            let (x0, x1) = (start(ox, width, out_width), end(ox, width, out_width));
            let mut sum = 0.0_f32;
            for y in y0..y1 {
                for x in x0..x1 {
                    sum += plane[y * width + x];
                }
            }
            out.push(sum / (y1 - y0) as f32 / (x1 - x0) as f32);
        }
    }
    out
}

/// Keys' cubic with a = −0.5, torch's antialiasing bicubic filter.
fn cubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// For each output index along one axis: the first input index and the normalised weights, as torch's
/// `_compute_weights_aa` forms them in float32.
fn antialias_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f32 / output as f32;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inverse = if scale >= 1.0 { (1.0 / f64::from(scale)) as f32 } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            let first = ((f64::from(center - support) + 0.5) as i64).max(0) as usize;
            let last = ((f64::from(center + support) + 0.5) as i64).min(input as i64) as usize;
            let mut weights: Vec<f32> =
                (first..last.max(first)).map(|j| cubic((j as f32 - center + 0.5) * inverse)).collect();
            let total: f32 = weights.iter().sum();
            if total != 0.0 {
                for weight in &mut weights {
                    *weight /= total;
                }
            }
            (first, weights)
        })
        .collect()
}

/// `interpolate(mode="bicubic", antialias=True, align_corners=False)` of one plane: along the rows first,
/// then the columns, as torch's separable kernel runs.
fn bicubic_antialias(
    plane: &[f32],
    (height, width): (usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<f32> {
    let horizontal = antialias_weights(width, out_width);
    let mut rows = Vec::with_capacity(height * out_width);
    for y in 0..height {
        let row = &plane[y * width..][..width];
        for (first, weights) in &horizontal {
            rows.push(weights.iter().enumerate().fold(0.0_f32, |t, (j, w)| t + row[first + j] * w));
        }
    }
    let vertical = antialias_weights(height, out_height);
    let mut out = Vec::with_capacity(out_height * out_width);
    for (first, weights) in &vertical {
        for x in 0..out_width {
            out.push(weights.iter().enumerate().fold(0.0_f32, |t, (j, w)| t + rows[(first + j) * out_width + x] * w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_whole_cells_and_weights_sum_to_one() {
        let plane = [1.0, 3.0, 5.0, 7.0];
        assert_eq!(area_resize(&plane, (2, 2), (1, 1)), [4.0]);
        assert_eq!(area_resize(&plane, (1, 4), (1, 2)), [2.0, 6.0]);
        for (input, output) in [(25, 32), (41, 52), (100, 32)] {
            for (_, weights) in antialias_weights(input, output) {
                assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
    }
}
