//! The whole-sequence path of the CPU conv3d: for convs whose weights are too large to re-read for every
//! tile and whose image planes are small (the widest layers), the im2col rows of a group of output
//! frames are gathered once, and each thread multiplies its own block of output channels by them, tap
//! by tap, straight into the output.

use super::Im2colConv3d;
use crate::ops::gemm::{Matrix, MatrixMut, multiply_add};

/// The sizes of one call: the input `(batch, channels, frames, height, width)`, and the output's
/// channels and frames.
pub(super) struct WholeShape {
    pub input: [usize; 5],
    pub out_channels: usize,
    pub out_frames: usize,
}

/// Convolves every sample into `output`, which is `(batch, C_out, T_out, H, W)`, zeroed.
#[allow(clippy::too_many_arguments)] // the buffers of one conv, named as `cpu_fwd` has them
pub(super) fn conv_whole(
    op: &Im2colConv3d,
    output: &mut [f32],
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    shape: &WholeShape,
    threads: usize,
) {
    let [batch, channels, frames, height, width] = shape.input;
    let (out_channels, out_frames) = (shape.out_channels, shape.out_frames);
    let [kt, kh, kw] = op.kernel;
    let before = op.time_padding[0];
    let rows = kh * kw * channels;
    let weight_width = kt * rows;
    let plane = height * width;
    let bytes_per_frame = rows * plane * 4;
    let group = (op.budget_bytes / bytes_per_frame.max(1)).saturating_sub(kt - 1).max(1).min(out_frames);

    for (row, &value) in output.chunks_mut(out_frames * plane).zip(bias.iter().cycle()) {
        row.fill(value);
    }
    if let Some(residual) = residual {
        for (out, &r) in output.iter_mut().zip(residual) {
            *out += r;
        }
    }
    let mut columns = vec![0f32; rows * (group + kt - 1) * plane];
    for b in 0..batch {
        let sample = &input[b * channels * frames * plane..(b + 1) * channels * frames * plane];
        let mut start = 0;
        while start < out_frames {
            let count = group.min(out_frames - start);
            let input_frames = count + kt - 1;
            let span = input_frames * plane;
            let window = Window { start, frames: input_frames, before };
            gather(&mut columns[..rows * span], sample, [channels, frames, height, width], window, [kh, kw], threads);
            // Frame 0 without its unused channels, then the rest of the group.
            let skip = if start == 0 { op.unused_first.min(out_channels) } else { 0 };
            let parts = [(0, 1, skip), (1, count, 0)];
            let parts: &[(usize, usize, usize)] = if skip > 0 { &parts } else { &[(0, count, 0)] };
            let out_offset = b * out_channels * out_frames * plane + start * plane;
            let out_stride = out_frames * plane;
            // Each thread takes its own block of output channels through every tap: its share of the
            // weights, read once, and no synchronisation inside the products.
            let dst = output.as_mut_ptr() as usize;
            let columns = &columns[..rows * span];
            std::thread::scope(|scope| {
                for &(first, end, skip) in parts.iter().filter(|(first, end, _)| first < end) {
                    let share = (out_channels - skip).div_ceil(threads).next_multiple_of(16);
                    for low in (skip..out_channels).step_by(share) {
                        let high = (low + share).min(out_channels);
                        scope.spawn(move || {
                            // SAFETY: rows low..high (disjoint between the threads, and between the two
                            // parts, which cover other frames) of (end − first)·plane values at stride
                            // out_frames·plane, from frame start + first of sample `b`; start + end <=
                            // out_frames, so every element lies inside `output`, which outlives the
                            // scope and is not otherwise touched while the threads run.
                            #[allow(unsafe_code)]
                            let mut tile = unsafe {
                                MatrixMut::from_raw(
                                    (dst as *mut f32).add(out_offset + low * out_stride + first * plane),
                                    high - low,
                                    (end - first) * plane,
                                    out_stride,
                                )
                            };
                            for tap in 0..kt {
                                // The tap's column block of the weight rows low..high, and the rows of
                                // the gathered frames it reads: (end + tap)·plane <= span because end
                                // <= count and tap <= kt − 1.
                                let lhs = Matrix::new(
                                    &weight[low * weight_width + tap * rows..],
                                    high - low,
                                    rows,
                                    weight_width,
                                );
                                let rhs =
                                    Matrix::new(&columns[(first + tap) * plane..], rows, (end - first) * plane, span);
                                multiply_add(&mut tile, lhs, rhs);
                            }
                        });
                    }
                }
            });
            start += count;
        }
    }
}

/// Frames `start .. start + frames` of the temporally padded sequence, which has `before` copies of the
/// first frame in front (and copies of the last frame after the end).
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    frames: usize,
    before: usize,
}

/// Fills `columns` (rows (dy, dx, c), each `window.frames` shifted planes) from one sample, zero outside
/// the image and replicated outside the sequence.
fn gather(
    columns: &mut [f32],
    sample: &[f32],
    [channels, frames, height, width]: [usize; 4],
    window: Window,
    [kh, kw]: [usize; 2],
    threads: usize,
) {
    let input_frames = window.frames;
    let plane = height * width;
    let span = input_frames * plane;
    let rows = columns.len() / span;
    let per_thread = rows.div_ceil(threads).max(1);
    let (ph, pw) = ((kh / 2) as isize, (kw / 2) as isize);
    std::thread::scope(|scope| {
        for (index, block) in columns.chunks_mut(per_thread * span).enumerate() {
            scope.spawn(move || {
                for (offset, row) in block.chunks_mut(span).enumerate() {
                    let r = index * per_thread + offset;
                    let (shift, c) = (r / channels, r % channels);
                    let (dy, dx) = ((shift / kw) as isize - ph, (shift % kw) as isize - pw);
                    for t in 0..input_frames {
                        let frame = (window.start + t).saturating_sub(window.before).min(frames - 1);
                        let source = &sample[(c * frames + frame) * plane..(c * frames + frame + 1) * plane];
                        for y in 0..height {
                            let target = &mut row[t * plane + y * width..t * plane + (y + 1) * width];
                            let sy = y as isize + dy;
                            if sy < 0 || sy >= height as isize {
                                target.fill(0.0);
                                continue;
                            }
                            let line = &source[sy as usize * width..(sy as usize + 1) * width];
                            // x + dx in [0, width): copy the overlap, zero the rest.
                            let first = (-dx).max(0) as usize;
                            let last = (width as isize - dx).min(width as isize).max(0) as usize;
                            target[..first.min(width)].fill(0.0);
                            if first < last {
                                let from = (first as isize + dx) as usize;
                                target[first..last].copy_from_slice(&line[from..from + (last - first)]);
                            }
                            target[last.max(first).min(width)..].fill(0.0);
                        }
                    }
                }
            });
        }
    });
}
