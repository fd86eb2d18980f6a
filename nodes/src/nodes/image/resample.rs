//! ComfyUI's `comfy.utils.common_upscale` for images and masks: an optional centre crop, then PyTorch's
//! `interpolate` (nearest-exact, bilinear, area, bicubic; `align_corners=False`, no antialiasing, float32)
//! or, for lanczos, PIL's 8-bit LANCZOS resampling per image (`pil_lanczos.rs`).
//!
//! Frames travel as interleaved `[count, height, width, channels]` f32, the layout of IMAGE; a MASK is the
//! same with one channel.

use super::pil_lanczos;
use crate::values::tensor_error;
use candle_core::{DType, Device, Tensor};
use kinograph_engine::NodeError;

/// An interpolation method, by ComfyUI's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMethod {
    NearestExact,
    Bilinear,
    Area,
    Bicubic,
    Lanczos,
}

impl ResizeMethod {
    /// ComfyUI's `upscale_methods`, in its order.
    pub const NAMES: [&'static str; 5] = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"];

    /// The method called `name`; an error naming `input` otherwise.
    pub fn parse(input: &str, name: &str) -> Result<Self, NodeError> {
        Ok(match name {
            "nearest-exact" => ResizeMethod::NearestExact,
            "bilinear" => ResizeMethod::Bilinear,
            "area" => ResizeMethod::Area,
            "bicubic" => ResizeMethod::Bicubic,
            "lanczos" => ResizeMethod::Lanczos,
            other => {
                return Err(NodeError::input(
                    input,
                    format!("unknown method '{other}'; expected one of {}", ResizeMethod::NAMES.join(", ")),
                ));
            }
        })
    }
}

/// Frames `[count, height, width, channels]`, interleaved f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub data: Vec<f32>,
    pub count: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Frames {
    /// An IMAGE `[B, H, W, C]` or a MASK `[B, H, W]` (one channel), read to the CPU as f32.
    pub fn from_tensor(input: &str, tensor: &Tensor) -> Result<Frames, NodeError> {
        let (count, height, width, channels) = match *tensor.dims() {
            [count, height, width, channels] => (count, height, width, channels),
            [count, height, width] => (count, height, width, 1),
            ref other => {
                return Err(NodeError::input(input, format!("expected [B, H, W, C] or [B, H, W], got {other:?}")));
            }
        };
        let data = tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|error| tensor_error(&format!("reading input '{input}'"), &error))?;
        Ok(Frames { data, count, height, width, channels })
    }

    /// As an IMAGE tensor `[B, H, W, C]`.
    pub fn into_image(self) -> Result<Tensor, NodeError> {
        let shape = (self.count, self.height, self.width, self.channels);
        Tensor::from_vec(self.data, shape, &Device::Cpu).map_err(|error| tensor_error("building the image", &error))
    }

    /// As a MASK tensor `[B, H, W]` (the frames must have one channel).
    pub fn into_mask(self) -> Result<Tensor, NodeError> {
        let shape = (self.count, self.height, self.width);
        Tensor::from_vec(self.data, shape, &Device::Cpu).map_err(|error| tensor_error("building the mask", &error))
    }

    /// The values of frame `index`.
    pub fn frame(&self, index: usize) -> &[f32] {
        let size = self.height * self.width * self.channels;
        &self.data[index * size..(index + 1) * size]
    }

    /// The window `(top, left, rows, columns)` of every frame.
    pub fn crop(&self, (top, left, rows, columns): (usize, usize, usize, usize)) -> Frames {
        let mut data = Vec::with_capacity(self.count * rows * columns * self.channels);
        for index in 0..self.count {
            let frame = self.frame(index);
            for row in top..top + rows {
                let start = (row * self.width + left) * self.channels;
                data.extend_from_slice(&frame[start..start + columns * self.channels]);
            }
        }
        Frames { data, count: self.count, height: rows, width: columns, channels: self.channels }
    }
}

/// `common_upscale(frames, width, height, method, crop)`: `center_crop` first crops the centre to the output's
/// aspect ratio.
pub fn common_upscale(
    frames: &Frames,
    (out_height, out_width): (usize, usize),
    method: ResizeMethod,
    center_crop: bool,
) -> Result<Frames, String> {
    if out_height == 0 || out_width == 0 {
        return Err(format!("cannot resize to {out_width}x{out_height}: both sides must be at least 1 pixel"));
    }
    if frames.height == 0 || frames.width == 0 {
        return Err(format!("cannot resize an empty {}x{} image", frames.width, frames.height));
    }
    let cropped;
    let source = if center_crop {
        cropped = frames.crop(center_window((frames.height, frames.width), (out_height, out_width))?);
        &cropped
    } else {
        frames
    };
    match method {
        ResizeMethod::Lanczos => pil_lanczos::resize_frames(source, (out_height, out_width)),
        _ => Ok(resize_planes(source, (out_height, out_width), method)),
    }
}

/// ComfyUI's centre crop: offsets `round((old - old·ratio) / 2)` (Python's `round`, halves to even) on the
/// side that is too long.
pub fn center_window(
    (height, width): (usize, usize),
    (out_height, out_width): (usize, usize),
) -> Result<(usize, usize, usize, usize), String> {
    let old_aspect = width as f64 / height as f64;
    let new_aspect = out_width as f64 / out_height as f64;
    let (mut x, mut y) = (0usize, 0usize);
    if old_aspect > new_aspect {
        x = ((width as f64 - width as f64 * (new_aspect / old_aspect)) / 2.0).round_ties_even() as usize;
    } else if old_aspect < new_aspect {
        y = ((height as f64 - height as f64 * (old_aspect / new_aspect)) / 2.0).round_ties_even() as usize;
    }
    if 2 * y >= height || 2 * x >= width {
        return Err(format!(
            "a centre crop of a {width}x{height} image to the aspect of {out_width}x{out_height} is empty"
        ));
    }
    Ok((y, x, height - 2 * y, width - 2 * x))
}

/// The torch methods: each channel plane of each frame separately, as `interpolate` on `[N, C, H, W]`.
fn resize_planes(frames: &Frames, (out_height, out_width): (usize, usize), method: ResizeMethod) -> Frames {
    let (height, width, channels) = (frames.height, frames.width, frames.channels);
    let rows = Taps::new(method, height, out_height);
    let columns = Taps::new(method, width, out_width);
    let mut data = vec![0f32; frames.count * out_height * out_width * channels];
    let mut plane = vec![0f32; height * width];
    for index in 0..frames.count {
        let frame = frames.frame(index);
        let out_frame = &mut data[index * out_height * out_width * channels..][..out_height * out_width * channels];
        for channel in 0..channels {
            for (value, pixel) in plane.iter_mut().zip(frame.chunks_exact(channels)) {
                *value = pixel[channel];
            }
            for (out_y, row) in rows.taps.iter().enumerate() {
                for (out_x, column) in columns.taps.iter().enumerate() {
                    let value = match method {
                        ResizeMethod::Area => area_average(&plane, width, row, column),
                        _ => separable(&plane, width, row, column),
                    };
                    out_frame[(out_y * out_width + out_x) * channels + channel] = value;
                }
            }
        }
    }
    Frames { data, count: frames.count, height: out_height, width: out_width, channels }
}

/// `Σ_j w_row[j] · (Σ_k w_column[k] · x[row_j][column_k])`, the order of torch's separable CPU kernels.
fn separable(plane: &[f32], width: usize, row: &Tap, column: &Tap) -> f32 {
    let mut total = 0f32;
    for (&y, &row_weight) in row.indices.iter().zip(&row.weights) {
        let line = &plane[y * width..];
        let mut inner = 0f32;
        for (&x, &column_weight) in column.indices.iter().zip(&column.weights) {
            inner += line[x] * column_weight;
        }
        total += inner * row_weight;
    }
    total
}

/// `adaptive_avg_pool2d`: the mean over the window the tap spans.
fn area_average(plane: &[f32], width: usize, row: &Tap, column: &Tap) -> f32 {
    let mut sum = 0f32;
    for &y in &row.indices {
        for &x in &column.indices {
            sum += plane[y * width + x];
        }
    }
    sum / row.indices.len() as f32 / column.indices.len() as f32
}

/// The source indices and weights of one output index along one axis.
struct Tap {
    indices: Vec<usize>,
    weights: Vec<f32>,
}

struct Taps {
    taps: Vec<Tap>,
}

impl Taps {
    fn new(method: ResizeMethod, input: usize, output: usize) -> Taps {
        // torch: `compute_scales_value` with no scale factor given is `(float)input / output`.
        let scale = input as f32 / output as f32;
        let last = input - 1;
        let taps = (0..output)
            .map(|index| match method {
                ResizeMethod::NearestExact => {
                    let source = (((index as f32 + 0.5) * scale).floor() as usize).min(last);
                    Tap { indices: vec![source], weights: vec![1.0] }
                }
                ResizeMethod::Bilinear => {
                    let real = (scale * (index as f32 + 0.5) - 0.5).max(0.0);
                    let low = (real as usize).min(last);
                    let high = if low < last { low + 1 } else { low };
                    let lambda = (real - low as f32).clamp(0.0, 1.0);
                    Tap { indices: vec![low, high], weights: vec![1.0 - lambda, lambda] }
                }
                ResizeMethod::Bicubic => {
                    let real = scale * (index as f32 + 0.5) - 0.5;
                    let floor = (real.floor() as i64).min(last as i64);
                    let t = (real - floor as f32).clamp(0.0, 1.0);
                    let indices = (0..4).map(|j| (floor - 1 + j).clamp(0, last as i64) as usize).collect();
                    Tap { indices, weights: cubic_weights(t).to_vec() }
                }
                ResizeMethod::Area | ResizeMethod::Lanczos => {
                    let start = index * input / output;
                    let end = ((index + 1) * input).div_ceil(output);
                    Tap { indices: (start..end).collect(), weights: Vec::new() }
                }
            })
            .collect();
        Taps { taps }
    }
}

/// Keys' cubic convolution with `A = -0.75`, torch's `get_cubic_upsample_coefficients`.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[f32]) -> Frames {
        Frames { data: values.to_vec(), count: 1, height: 1, width: values.len(), channels: 1 }
    }

    #[test]
    fn bilinear_upscale_clamps_the_first_source_index() {
        let out = common_upscale(&row(&[0.0, 1.0]), (1, 4), ResizeMethod::Bilinear, false).unwrap();
        assert_eq!(out.data, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn area_averages_whole_windows() {
        let out = common_upscale(&row(&[0.0, 1.0, 2.0, 3.0]), (1, 2), ResizeMethod::Area, false).unwrap();
        assert_eq!(out.data, vec![0.5, 2.5]);
    }

    #[test]
    fn nearest_exact_picks_centres() {
        let out = common_upscale(&row(&[0.0, 1.0, 2.0]), (1, 2), ResizeMethod::NearestExact, false).unwrap();
        assert_eq!(out.data, vec![0.0, 2.0]);
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        assert_eq!(center_window((1, 4), (1, 2)).unwrap(), (0, 1, 1, 2));
        assert!(common_upscale(&row(&[1.0]), (0, 2), ResizeMethod::Area, false).is_err());
    }
}
