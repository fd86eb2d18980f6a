//! ComfyUI's `common_upscale(..., "bilinear", crop)` for images: with `"center"`, crop the centre to the
//! target aspect ratio (offsets rounded half to even, as Python's `round`); then resize with PyTorch's
//! bilinear interpolation (`align_corners=False`, no antialiasing).

use candle_core::{DType, Device, Tensor};

/// How frames are fitted to the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Crop the centre to the output's aspect ratio, then resize (`LTXVImgToVideo`).
    CenterCrop,
    /// Resize the whole frame, whatever its aspect ratio (`LTXVAddGuide`).
    Stretch,
}

/// Frames `[N, H, W, C]` resized to `out_height × out_width` and reduced to RGB (a one-channel frame's
/// channel repeated), f32 on the CPU.
pub fn resize_rgb_frames(
    frames: &Tensor,
    fit: Fit,
    (out_height, out_width): (usize, usize),
) -> candle_core::Result<Tensor> {
    let (count, height, width, channels) = frames.dims4()?;
    let source: Vec<f32> = frames.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut out = Vec::with_capacity(count * out_height * out_width * 3);
    for frame in source.chunks_exact(height * width * channels) {
        let resized = match fit {
            Fit::CenterCrop => center_crop_resize(frame, (height, width, channels), (out_height, out_width)),
            Fit::Stretch => stretch_resize(frame, (height, width, channels), (out_height, out_width)),
        };
        out.extend(resized.chunks_exact(channels).flat_map(|pixel| (0..3).map(move |c| pixel[c.min(channels - 1)])));
    }
    Tensor::from_vec(out, (count, out_height, out_width, 3), &Device::Cpu)
}

/// Resizes an `[height, width, channels]` image (row-major f32) to `out_height × out_width`.
pub fn center_crop_resize(
    pixels: &[f32],
    (height, width, channels): (usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<f32> {
    let old_aspect = width as f64 / height as f64;
    let new_aspect = out_width as f64 / out_height as f64;
    let (mut x, mut y) = (0usize, 0usize);
    if old_aspect > new_aspect {
        x = ((width as f64 - width as f64 * (new_aspect / old_aspect)) / 2.0).round_ties_even() as usize;
    } else if old_aspect < new_aspect {
        y = ((height as f64 - height as f64 * (old_aspect / new_aspect)) / 2.0).round_ties_even() as usize;
    }
    bilinear_resize(pixels, (height, width, channels), (y, x, height - 2 * y, width - 2 * x), (out_height, out_width))
}

/// Resizes the whole `[height, width, channels]` image to `out_height × out_width`, whatever the aspect
/// ratio (`common_upscale` with `crop="disabled"`).
pub fn stretch_resize(
    pixels: &[f32],
    (height, width, channels): (usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<f32> {
    bilinear_resize(pixels, (height, width, channels), (0, 0, height, width), (out_height, out_width))
}

/// Bilinear resize of the window `(top, left, rows, columns)` of the image.
fn bilinear_resize(
    pixels: &[f32],
    (_, width, channels): (usize, usize, usize),
    (y, x, crop_height, crop_width): (usize, usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<f32> {
    let rows = source_taps(crop_height, out_height);
    let columns = source_taps(crop_width, out_width);
    let mut out = vec![0f32; out_height * out_width * channels];
    for (oy, &(y0, y1, wy0, wy1)) in rows.iter().enumerate() {
        for (ox, &(x0, x1, wx0, wx1)) in columns.iter().enumerate() {
            for c in 0..channels {
                let at = |row: usize, column: usize| pixels[((y + row) * width + x + column) * channels + c];
                let top = wx0 * at(y0, x0) + wx1 * at(y0, x1);
                let bottom = wx0 * at(y1, x0) + wx1 * at(y1, x1);
                out[(oy * out_width + ox) * channels + c] = wy0 * top + wy1 * bottom;
            }
        }
    }
    out
}

/// For each output index: the two source indices and their weights (PyTorch's
/// `area_pixel_compute_source_index` with `align_corners=False`).
pub(crate) fn source_taps(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|index| {
            let source = (scale * (index as f32 + 0.5) - 0.5).max(0.0);
            let low = (source as usize).min(input - 1);
            let high = if low < input - 1 { low + 1 } else { low };
            let lambda = source - low as f32;
            (low, high, 1.0 - lambda, lambda)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_upscale_interpolates() {
        let pixels: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(center_crop_resize(&pixels, (3, 4, 1), (3, 4)), pixels);
        // 1×2 → 1×4: sources at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped index).
        let out = center_crop_resize(&[0.0, 1.0], (1, 2, 1), (1, 4));
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn crops_the_centre_to_the_target_aspect() {
        // A 1×4 row resized to 1×2 at aspect 2 keeps the middle two columns.
        let out = center_crop_resize(&[0.0, 1.0, 2.0, 3.0], (1, 4, 1), (1, 2));
        assert_eq!(out, vec![1.0, 2.0]);
    }

    #[test]
    fn stretch_keeps_every_column() {
        // A 1×4 row stretched to 1×2: sources at 0.5 and 2.5, averages of neighbours.
        let out = stretch_resize(&[0.0, 1.0, 2.0, 3.0], (1, 4, 1), (1, 2));
        assert_eq!(out, vec![0.5, 2.5]);
    }
}
