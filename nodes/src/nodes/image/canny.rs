//! `Canny`: ComfyUI's edge detector, `kornia.filters.canny(image, low, high)` with kornia's defaults, in f32
//! per frame:
//!
//! 1. grey = 0.299 R + 0.587 G + 0.114 B (a one-channel image is used as it is);
//! 2. a 5×5 Gaussian blur, sigma 1, as two 1-D passes (x, then y) with reflect padding;
//! 3. the unnormalised 3×3 Sobel gradient with replicate padding, magnitude `sqrt(gx² + gy² + 1e-6)`;
//! 4. non-maximum suppression along the gradient direction rounded to 45°: a pixel must beat both neighbours
//!    along it, strictly, except that along a horizontal or vertical gradient it may equal the right or lower
//!    one; outside the image the magnitude is that of a flat pixel, `sqrt(1e-6)`;
//! 5. weak edges above `low_threshold`, strong ones above `high_threshold` (both strict), and hysteresis: weak
//!    pixels 8-connected to a strong pixel through weak ones become edges.
//!
//! The output is the edge map (0 or 1) in all three channels.

use super::resample::Frames;
use super::resize::{image_output, input_frames};
use kinograph_engine::prelude::*;

const EPSILON: f32 = 1e-6;
/// `(dy, dx)` of the eight directions, kornia's order: direction `k` is the angle `k · 45°`.
const NEIGHBOURS: [(isize, isize); 8] = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)];

/// The Canny edge detector.
pub struct Canny;

impl Node for Canny {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("Canny")
            .display_name("Detect Edges (Canny)")
            .category("image/filters")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::float("low_threshold", 0.4).min(0.01).max(0.99).step(0.01))
            .input(InputSpec::float("high_threshold", 0.8).min(0.01).max(0.99).step(0.01))
            // ComfyUI picks the torch device; kinograph computes this on the CPU whatever is chosen.
            .input(InputSpec::combo("device", ["gpu", "cpu"]).default_option("cpu").node_validated().optional())
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let low = inputs.float("low_threshold")? as f32;
        let high = inputs.float("high_threshold")? as f32;
        if low.is_nan() || low <= 0.0 {
            return Err(NodeError::input("low_threshold", format!("{low} must be positive")));
        }
        if low > high {
            return Err(NodeError::input(
                "low_threshold",
                format!("{low} is above high_threshold ({high}); it must be at most high_threshold"),
            ));
        }
        let frames = input_frames(inputs, "image")?;
        if frames.channels != 1 && frames.channels != 3 {
            return Err(NodeError::input("image", format!("Canny takes 1 or 3 channels, not {}", frames.channels)));
        }
        if frames.height < 3 || frames.width < 3 {
            return Err(NodeError::input(
                "image",
                format!("a {}x{} image is too small for the 5x5 blur (3x3 at least)", frames.width, frames.height),
            ));
        }
        let (height, width) = (frames.height, frames.width);
        let mut data = Vec::with_capacity(frames.count * height * width * 3);
        for index in 0..frames.count {
            context.check_interrupted()?;
            let (edges, _) = detect(&grey(&frames, index), height, width, low, high);
            data.extend(edges.iter().flat_map(|&edge| [edge; 3]));
        }
        image_output(Frames { data, count: frames.count, height, width, channels: 3 })
    }
}

/// The grey plane of frame `index`.
fn grey(frames: &Frames, index: usize) -> Vec<f32> {
    let frame = frames.frame(index);
    if frames.channels == 1 {
        return frame.to_vec();
    }
    let weights = [0.299f32, 0.587, 0.114];
    frame.chunks_exact(3).map(|pixel| weights[0] * pixel[0] + weights[1] * pixel[1] + weights[2] * pixel[2]).collect()
}

/// The edge map (0 or 1) and the magnitude after non-maximum suppression of a grey plane.
pub fn detect(plane: &[f32], height: usize, width: usize, low: f32, high: f32) -> (Vec<f32>, Vec<f32>) {
    let blurred = blur(plane, height, width);
    let at = |y: usize, x: usize, dy: isize, dx: isize| {
        // Replicate padding.
        let row = (y as isize + dy).clamp(0, height as isize - 1) as usize;
        let column = (x as isize + dx).clamp(0, width as isize - 1) as usize;
        blurred[row * width + column]
    };
    let mut magnitude = vec![0f32; height * width];
    let mut direction = vec![0usize; height * width];
    for y in 0..height {
        for x in 0..width {
            let gx = -at(y, x, -1, -1) + at(y, x, -1, 1) - 2.0 * at(y, x, 0, -1) + 2.0 * at(y, x, 0, 1)
                - at(y, x, 1, -1)
                + at(y, x, 1, 1);
            let gy = -at(y, x, -1, -1) - 2.0 * at(y, x, -1, 0) - at(y, x, -1, 1)
                + at(y, x, 1, -1)
                + 2.0 * at(y, x, 1, 0)
                + at(y, x, 1, 1);
            magnitude[y * width + x] = (gx * gx + gy * gy + EPSILON).sqrt();
            let angle = gy.atan2(gx);
            let angle = if angle.is_nan() { 0.0 } else { angle };
            let octant = (angle * (4.0f64 / std::f64::consts::PI) as f32).round_ties_even() as i64;
            direction[y * width + x] = octant.rem_euclid(8) as usize;
        }
    }
    let border = EPSILON.sqrt();
    let neighbour = |y: usize, x: usize, k: usize| {
        let (dy, dx) = NEIGHBOURS[k];
        let (row, column) = (y as isize + dy, x as isize + dx);
        if row < 0 || column < 0 || row >= height as isize || column >= width as isize {
            border
        } else {
            magnitude[row as usize * width + column as usize]
        }
    };
    let beats = |value: f32, other: f32, k: usize| value > other || ((k == 0 || k == 2) && value == other);
    let mut suppressed = vec![0f32; height * width];
    for y in 0..height {
        for x in 0..width {
            let value = magnitude[y * width + x];
            let positive = direction[y * width + x];
            let negative = (positive + 4) % 8;
            let kept = beats(value, neighbour(y, x, positive), positive)
                && beats(value, neighbour(y, x, negative), negative)
                && value > border;
            suppressed[y * width + x] = if kept { value } else { 0.0 };
        }
    }
    (hysteresis(&suppressed, height, width, low, high), suppressed)
}

/// Strong pixels and the weak pixels 8-connected to them through weak pixels.
fn hysteresis(magnitude: &[f32], height: usize, width: usize, low: f32, high: f32) -> Vec<f32> {
    let mut edges: Vec<f32> = magnitude.iter().map(|&value| if value > high { 1.0 } else { 0.0 }).collect();
    let mut stack: Vec<usize> = (0..edges.len()).filter(|&index| edges[index] == 1.0).collect();
    while let Some(index) = stack.pop() {
        let (y, x) = (index / width, index % width);
        for (dy, dx) in NEIGHBOURS {
            let (row, column) = (y as isize + dy, x as isize + dx);
            if row < 0 || column < 0 || row >= height as isize || column >= width as isize {
                continue;
            }
            let next = row as usize * width + column as usize;
            if edges[next] == 0.0 && magnitude[next] > low {
                edges[next] = 1.0;
                stack.push(next);
            }
        }
    }
    edges
}

/// kornia's `gaussian_blur2d(plane, (5, 5), (1, 1))`: reflect padding, x pass then y pass.
fn blur(plane: &[f32], height: usize, width: usize) -> Vec<f32> {
    let taps: [f32; 5] = [-2.0f32, -1.0, 0.0, 1.0, 2.0].map(|x| (-(x * x) / 2.0).exp());
    let total: f32 = taps.iter().sum();
    let kernel = taps.map(|tap| tap / total);
    let reflect = |index: isize, size: usize| {
        let last = size as isize - 1;
        let reflected = if index < 0 {
            -index
        } else if index > last {
            2 * last - index
        } else {
            index
        };
        reflected as usize
    };
    let mut across = vec![0f32; height * width];
    for y in 0..height {
        for x in 0..width {
            across[y * width + x] = (0..5)
                .map(|k| plane[y * width + reflect(x as isize + k as isize - 2, width)] * kernel[k])
                .fold(0.0, |sum, term| sum + term);
        }
    }
    let mut out = vec![0f32; height * width];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = (0..5)
                .map(|k| across[reflect(y as isize + k as isize - 2, height) * width + x] * kernel[k])
                .fold(0.0, |sum, term| sum + term);
        }
    }
    out
}
