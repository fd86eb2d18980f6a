//! PIL's `Image.resize(size, LANCZOS)` on 8-bit images, as ComfyUI's lanczos upscale and
//! `ResizeImagesByLongerEdge` use it: the frame is quantised to bytes (`clip(255·x, 0, 255)` truncated), resized
//! with PIL's fixed-point two-pass resampler (`libImaging/Resample.c`: a 3-lobe Lanczos kernel widened by the
//! downscale factor, coefficients in 22-bit fixed point, a horizontal pass to bytes and then a vertical one),
//! and read back as `byte / 255`. RGBA and LA images are resampled premultiplied by alpha, as PIL converts them
//! to `RGBa`/`La` first. The same size returns the quantised copy, as PIL does.
//!
//! Pass order: when both sides shrink, Pillow 13.0.0's wheels sometimes resample vertically first (about a
//! third of random size pairs; the rule is not in its published C source, which always goes horizontally
//! first). This goes horizontally first then, so such a resize may differ from PIL by one level (1/255) where
//! the intermediate rounding differs.

use super::resample::Frames;

/// PIL's `PRECISION_BITS` for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The support of the Lanczos filter, in source pixels at scale 1.
const SUPPORT: f64 = 3.0;

/// Resizes every frame as ComfyUI's `lanczos(samples, width, height)` does.
pub fn resize_frames(frames: &Frames, (out_height, out_width): (usize, usize)) -> Result<Frames, String> {
    let channels = frames.channels;
    if !(1..=4).contains(&channels) {
        return Err(format!("lanczos resizes images of 1 to 4 channels (as PIL does), not {channels}"));
    }
    let mut data = Vec::with_capacity(frames.count * out_height * out_width * channels);
    for index in 0..frames.count {
        let bytes: Vec<u8> = frames.frame(index).iter().map(|&value| quantize(value)).collect();
        let resized = resize_bytes(&bytes, (frames.height, frames.width, channels), (out_height, out_width));
        data.extend(resized.iter().map(|&byte| f32::from(byte) / 255.0));
    }
    Ok(Frames { data, count: frames.count, height: out_height, width: out_width, channels })
}

/// ComfyUI's `np.clip(255. * x, 0, 255).astype(np.uint8)` (float32 product, truncation; NaN gives 0).
pub fn quantize(value: f32) -> u8 {
    (value * 255.0).clamp(0.0, 255.0) as u8
}

/// `Image.resize((width, height), LANCZOS)` of interleaved bytes `[height, width, channels]`.
pub fn resize_bytes(
    pixels: &[u8],
    (height, width, channels): (usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<u8> {
    if (height, width) == (out_height, out_width) {
        return pixels.to_vec();
    }
    let alpha = channels == 2 || channels == 4;
    let mut image = pixels.to_vec();
    if alpha {
        premultiply(&mut image, channels);
    }
    let columns = Coefficients::new(width, out_width);
    let rows = Coefficients::new(height, out_height);
    // Pillow 13.0.0 resamples vertically first when the height shrinks and the width grows (measured on its
    // wheels: every such case matched that order, and none the other); otherwise horizontally first, as its
    // C source reads. Only the source rows the vertical pass reads are resampled horizontally.
    if out_height < height && out_width > width {
        let shrunk = vertical(&image, width, channels, &rows);
        image = horizontal(&shrunk, width, channels, &columns);
    } else {
        let (first_row, last_row) = rows.span();
        let (resampled, rows) = if out_width == width {
            (image, rows)
        } else {
            let used = &image[first_row * width * channels..last_row * width * channels];
            (horizontal(used, width, channels, &columns), rows.shifted(first_row))
        };
        image = if out_height == height { resampled } else { vertical(&resampled, out_width, channels, &rows) };
    }
    if alpha {
        unpremultiply(&mut image, channels);
    }
    image
}

/// The fixed-point taps of every output index along one axis (`precompute_coeffs` and
/// `normalize_coeffs_8bpc`).
struct Coefficients {
    /// `(first source index, tap count)` per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output index.
    weights: Vec<i32>,
    ksize: usize,
}

impl Coefficients {
    fn new(input: usize, output: usize) -> Coefficients {
        let scale = input as f64 / output as f64;
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(output);
        let mut weights = vec![0i32; output * ksize];
        let mut taps = vec![0f64; ksize];
        for index in 0..output {
            let center = (index as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let count = max.saturating_sub(min);
            let mut total = 0.0;
            for (tap, weight) in taps.iter_mut().enumerate().take(count) {
                *weight = lanczos((tap as f64 + min as f64 - center + 0.5) / filter_scale);
                total += *weight;
            }
            for (tap, weight) in taps.iter().enumerate().take(count) {
                let normalized = if total == 0.0 { *weight } else { weight / total };
                let fixed = normalized * f64::from(1u32 << PRECISION_BITS);
                weights[index * ksize + tap] = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            bounds.push((min, count));
        }
        Coefficients { bounds, weights, ksize }
    }

    /// The first source index used and one past the last.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.first().map_or(0, |bound| bound.0);
        let last = self.bounds.last().map_or(0, |bound| bound.0 + bound.1);
        (first, last.max(first))
    }

    /// The same taps with source indices counted from `first`.
    fn shifted(mut self, first: usize) -> Coefficients {
        for bound in &mut self.bounds {
            bound.0 -= first;
        }
        self
    }

    fn taps(&self, index: usize) -> (usize, &[i32]) {
        let (min, count) = self.bounds[index];
        (min, &self.weights[index * self.ksize..][..count])
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) { sinc(x) * sinc(x / SUPPORT) } else { 0.0 }
}

/// A fixed-point sum back to a byte.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

fn horizontal(pixels: &[u8], width: usize, channels: usize, columns: &Coefficients) -> Vec<u8> {
    let rows = pixels.len() / (width * channels);
    let out_width = columns.bounds.len();
    let mut out = vec![0u8; rows * out_width * channels];
    for row in 0..rows {
        let line = &pixels[row * width * channels..][..width * channels];
        for x in 0..out_width {
            let (min, taps) = columns.taps(x);
            for channel in 0..channels {
                let mut sum = 1i64 << (PRECISION_BITS - 1);
                for (tap, &weight) in taps.iter().enumerate() {
                    sum += i64::from(line[(min + tap) * channels + channel]) * i64::from(weight);
                }
                out[(row * out_width + x) * channels + channel] = clip8(sum);
            }
        }
    }
    out
}

fn vertical(pixels: &[u8], width: usize, channels: usize, rows: &Coefficients) -> Vec<u8> {
    let out_height = rows.bounds.len();
    let stride = width * channels;
    let mut out = vec![0u8; out_height * stride];
    for y in 0..out_height {
        let (min, taps) = rows.taps(y);
        for position in 0..stride {
            let mut sum = 1i64 << (PRECISION_BITS - 1);
            for (tap, &weight) in taps.iter().enumerate() {
                sum += i64::from(pixels[(min + tap) * stride + position]) * i64::from(weight);
            }
            out[y * stride + position] = clip8(sum);
        }
    }
    out
}

/// PIL's `RGBA → RGBa` (and `LA → La`): colour times alpha / 255, rounded as `MULDIV255`.
fn premultiply(pixels: &mut [u8], channels: usize) {
    for pixel in pixels.chunks_exact_mut(channels) {
        let alpha = u32::from(pixel[channels - 1]);
        for value in &mut pixel[..channels - 1] {
            let product = u32::from(*value) * alpha + 128;
            *value = (((product >> 8) + product) >> 8) as u8;
        }
    }
}

/// PIL's `RGBa → RGBA`: colour · 255 / alpha (integer division, clipped), unchanged at alpha 0 or 255.
fn unpremultiply(pixels: &mut [u8], channels: usize) {
    for pixel in pixels.chunks_exact_mut(channels) {
        let alpha = u32::from(pixel[channels - 1]);
        if alpha == 0 || alpha == 255 {
            continue;
        }
        for value in &mut pixel[..channels - 1] {
            *value = (255 * u32::from(*value) / alpha).min(255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat() {
        let pixels = vec![77u8; 5 * 7 * 3];
        let out = resize_bytes(&pixels, (5, 7, 3), (9, 4));
        assert_eq!(out.len(), 9 * 4 * 3);
        assert!(out.iter().all(|&value| value == 77));
    }

    #[test]
    fn quantize_truncates_and_clips() {
        assert_eq!((quantize(0.999), quantize(1.5), quantize(-0.2), quantize(f32::NAN)), (254, 255, 0, 0));
    }
}
