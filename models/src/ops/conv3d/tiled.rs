//! The tiled CPU conv3d, used for most layers (see the parent module for which).
//!
//! Each frame of the output `(C_out, T_out, H, W)` of one sample is cut into runs of consecutive
//! positions, a multiple of [`POSITION_BLOCK`] long where the frame allows; a tile is one run of one
//! frame. Workers take one run at a time and go through its frames in order. For each input frame the
//! run needs, the worker gathers the run's im2col rows of that frame, `kh·kw·C` rows (ordered (dy, dx,
//! c) like the weight's columns within a temporal tap) of one value per position, with the zero
//! spatial padding and the replicated temporal padding folded in. It keeps the last kt of them, so
//! that each input frame is gathered once per run rather than once per temporal tap. The output tile
//! starts as the bias and each temporal tap adds one single-threaded product `C_out × (kh·kw·C) ×
//! positions` of its weight columns and its frame's rows: the AVX-512 micro-kernel of
//! `avx512.rs` where it runs, a general GEMM elsewhere. The kernel takes the taps that read the
//! same source frame (at the ends, where the padding replicates the first or last frame) in one
//! product with their weights summed: for the 3-frame kernels on T frames that saves 2 of 3T products.
//!
//! Compared with one im2col matrix for the whole sequence, the gathered rows stay in cache between the
//! gather and the GEMMs (the whole-sequence matrix is kh·kw times the input and goes through memory),
//! and the workers need no synchronisation besides taking the next run, so every core stays busy. The
//! cost is that every tile reads the whole weight, which is why large weights on small images take the
//! whole-sequence path instead.

use super::avx512::{KernelCall, MAX_TAPS, PANEL, STRIP, applies};
use crate::ops::gemm::{Matrix, MatrixMut, multiply_add};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of the kt gathered frames of one run: small enough to stay in a core's L2 cache. Short runs
/// also make many of them, so the threads finish together even when other work takes turns on the
/// cores (a run costs no more to gather than its share of a long one: positions need no halo).
const TILE_BYTES: usize = 1 << 20;

/// Runs are a multiple of this many positions, the strip the micro-kernel covers at a time, so that
/// only a frame's last run can end in a partial strip.
const POSITION_BLOCK: usize = STRIP;

/// The geometry of one conv: the input `(channels, frames, height, width)` of one sample before
/// temporal padding, the output width, the kernel and the replicated frames in front.
pub(super) struct ConvShape {
    pub channels: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    /// (kt, kh, kw).
    pub kernel: [usize; 3],
    /// Copies of the first frame before the sequence (the rest of the temporal padding, after it,
    /// follows from the output length).
    pub before: usize,
    /// Output channels at the start of the first output frame that are not computed.
    pub unused_first: usize,
}

impl ConvShape {
    /// The input frame that frame `padded` of the temporally padded sequence copies.
    fn source_frame(&self, padded: usize) -> usize {
        padded.saturating_sub(self.before).min(self.frames - 1)
    }
}

/// The output `(C_out, T_out, H, W)` of one sample, written tile by tile from several threads. Each
/// tile covers its own positions of every output channel, so no two writers touch the same element.
struct TileOutput {
    data: *mut f32,
    len: usize,
}

// SAFETY: the pointer is only used for writes to disjoint tiles (see `TileOutput`), and the buffer
// outlives the scoped threads that use it.
#[allow(unsafe_code)]
unsafe impl Sync for TileOutput {}

/// Convolves one sample: `output` is `(C_out, T_out, H, W)`, `sample` is `(C, T, H, W)`, `weight` is
/// `(C_out, kt·kh·kw·C)` with columns (dt, dy, dx, c), `bias` is `(C_out)`; `residual`, shaped like the
/// output, is added to it.
pub(super) fn conv_tiled(
    output: &mut [f32],
    sample: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    shape: &ConvShape,
    threads: usize,
) {
    let [kt, kh, kw] = shape.kernel;
    let plane = shape.height * shape.width;
    let tap_depth = kh * kw * shape.channels;
    let depth = kt * tap_depth;
    let out_frames = output.len() / (shape.out_channels * plane);
    // As many positions as the byte budget allows, rounded to whole micro-kernel blocks, then spread
    // evenly over the runs a frame needs.
    let most = (TILE_BYTES / (depth * 4) / POSITION_BLOCK).max(1) * POSITION_BLOCK;
    let runs = plane.div_ceil(most);
    let run_len = plane.div_ceil(runs).next_multiple_of(POSITION_BLOCK).min(plane);
    let runs = plane.div_ceil(run_len);
    let use_kernel = applies(shape.out_channels);
    let next = AtomicUsize::new(0);
    let target = TileOutput { data: output.as_mut_ptr(), len: output.len() };
    let (next, target) = (&next, &target);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(runs) {
            scope.spawn(move || {
                // Slot j holds the gathered rows of the input frame s with s % kt == j.
                let mut slots = vec![0f32; depth * run_len.next_multiple_of(STRIP)];
                loop {
                    let run = next.fetch_add(1, Ordering::Relaxed);
                    if run >= runs {
                        break;
                    }
                    let first = run * run_len;
                    let count = run_len.min(plane - first);
                    // Rows of gathered positions are padded to whole strips for the micro-kernel.
                    let row_stride = count.next_multiple_of(STRIP);
                    let slot_len = tap_depth * row_stride;
                    let mut held = vec![usize::MAX; kt];
                    for frame in 0..out_frames {
                        // A source frame is gathered once per run, into slot `source % kt`: the
                        // sources of one output frame are at most kt consecutive frames, so they never
                        // share a slot, and a replicated end frame is not gathered twice.
                        for padded in frame..frame + kt {
                            let source = shape.source_frame(padded);
                            if held[source % kt] != source {
                                let slot = &mut slots[source % kt * slot_len..][..slot_len];
                                gather_frame(slot, row_stride, count, sample, shape, padded, first);
                                held[source % kt] = source;
                            }
                        }
                        // The first frame's unused channels are left out (the kernel needs whole panels).
                        let skip = if frame == 0 && (!use_kernel || shape.unused_first.is_multiple_of(PANEL)) {
                            shape.unused_first
                        } else {
                            0
                        };
                        if skip == shape.out_channels {
                            continue;
                        }
                        let stride = out_frames * plane;
                        let tile = Tile {
                            out_channels: shape.out_channels - skip,
                            start: skip * stride + frame * plane + first,
                            count,
                            stride,
                        };
                        debug_assert!((tile.out_channels - 1) * tile.stride + tile.start + count <= target.len);
                        let (bias, weight) = (&bias[skip..], &weight[skip * depth..]);
                        tile.fill_start(target, bias, residual);
                        if use_kernel {
                            // Taps that read the same source frame (the replicated padding at either
                            // end) go through the kernel together, their weights summed.
                            let mut tap = 0;
                            while tap < kt {
                                let source = shape.source_frame(frame + tap);
                                let mut offsets = [0; MAX_TAPS];
                                let mut merged = 0;
                                while tap < kt && shape.source_frame(frame + tap) == source && merged < MAX_TAPS {
                                    offsets[merged] = tap * tap_depth;
                                    merged += 1;
                                    tap += 1;
                                }
                                let slot = &slots[source % kt * slot_len..][..slot_len];
                                tile.accumulate_kernel(target, weight, &offsets[..merged], depth, slot, row_stride);
                            }
                        } else {
                            for tap in 0..kt {
                                let source = shape.source_frame(frame + tap);
                                let slot = &slots[source % kt * slot_len..][..slot_len];
                                tile.accumulate(target, &weight[tap * tap_depth..], depth, slot, row_stride);
                            }
                        }
                    }
                }
            });
        }
    });
}

/// The positions `start .. start + count` of every output channel row (rows `stride` apart): the part
/// of the output one worker owns while it computes one frame of its run.
struct Tile {
    out_channels: usize,
    start: usize,
    count: usize,
    stride: usize,
}

impl Tile {
    /// Starts the tile as the bias, plus the residual's values at the same places if there is one.
    fn fill_start(&self, target: &TileOutput, bias: &[f32], residual: Option<&[f32]>) {
        for (channel, &value) in bias.iter().enumerate() {
            let offset = channel * self.stride + self.start;
            // SAFETY: `start + count` stays inside the frame, so the range lies inside row `channel`
            // of the output, and it belongs to this tile only.
            #[allow(unsafe_code)]
            let row = unsafe { std::slice::from_raw_parts_mut(target.data.add(offset), self.count) };
            match residual {
                Some(residual) => {
                    for (out, &r) in row.iter_mut().zip(&residual[offset..offset + self.count]) {
                        *out = r + value;
                    }
                }
                None => row.fill(value),
            }
        }
    }

    /// [`Self::accumulate`] with the AVX-512 micro-kernel (where [`applies`] says it runs), for the sum
    /// of the weight blocks at `taps` in `weight`.
    fn accumulate_kernel(
        &self,
        target: &TileOutput,
        weight: &[f32],
        taps: &[usize],
        weight_stride: usize,
        block: &[f32],
        row_stride: usize,
    ) {
        let call = KernelCall {
            dst: target.data.wrapping_add(self.start),
            stride: self.stride,
            count: self.count,
            out_channels: self.out_channels,
            weight,
            taps,
            weight_stride,
            rows: block.len() / row_stride,
            block,
            row_stride,
        };
        // SAFETY: called only where `applies` found AVX-512F and a multiple of PANEL output channels;
        // the destination rows are this tile's (see `fill_start`).
        #[allow(unsafe_code)]
        unsafe {
            call.run();
        }
    }

    /// `tile += weight · block` with a general GEMM: `weight` holds `out_channels` rows of `depth`
    /// values at stride `weight_stride`, `block` has `depth` rows of `row_stride` values.
    fn accumulate(&self, target: &TileOutput, weight: &[f32], weight_stride: usize, block: &[f32], row_stride: usize) {
        let depth = block.len() / row_stride;
        // SAFETY: the destination is out_channels rows of `count` values at stride `stride`, starting
        // at `start`: inside the output and owned by this tile (see `fill_start`).
        #[allow(unsafe_code)]
        let mut tile =
            unsafe { MatrixMut::from_raw(target.data.add(self.start), self.out_channels, self.count, self.stride) };
        multiply_add(
            &mut tile,
            Matrix::new(weight, self.out_channels, depth, weight_stride),
            Matrix::new(block, depth, self.count, row_stride),
        );
    }
}

/// Fills `block` (rows (dy, dx, c) of `row_stride` values, the first `count` used) from frame `padded`
/// of the temporally padded input, positions `first .. first + count` of the frame: zero outside the
/// image, replicated frames outside the sequence.
///
/// For one row the source positions are the tile's positions moved by `sy·W + sx` (the spatial
/// offset of the tap), a contiguous run of the source plane: one copy, then zeros where the run leaves
/// the plane (rows above or below the image) and where it wrapped around a row end (columns left or
/// right of the image).
fn gather_frame(
    block: &mut [f32],
    row_stride: usize,
    count: usize,
    sample: &[f32],
    shape: &ConvShape,
    padded: usize,
    first: usize,
) {
    let [_, kh, kw] = shape.kernel;
    let (channels, width) = (shape.channels, shape.width);
    let plane = shape.height * width;
    let (ph, pw) = ((kh / 2) as isize, (kw / 2) as isize);
    let source_frame = shape.source_frame(padded);
    for (index, row) in block.chunks_mut(row_stride).enumerate() {
        let row = &mut row[..count];
        let (tap, c) = (index / channels, index % channels);
        let (dy, dx) = (tap / kw, tap % kw);
        let source = &sample[(c * shape.frames + source_frame) * plane..][..plane];
        let shift_x = dx as isize - pw;
        let begin = first as isize + (dy as isize - ph) * width as isize + shift_x;
        // Positions i of the tile whose source begin + i lies inside the plane.
        let lead = (-begin).clamp(0, count as isize) as usize;
        let end = (plane as isize - begin).clamp(lead as isize, count as isize) as usize;
        row[..lead].fill(0.0);
        if lead < end {
            let from = (begin + lead as isize) as usize;
            row[lead..end].copy_from_slice(&source[from..from + (end - lead)]);
        }
        row[end..].fill(0.0);
        if shift_x != 0 {
            clear_wrapped_columns(row, first % width, width, shift_x);
        }
    }
}

/// Zeroes the values of `row` (consecutive positions starting at column `x0` of an image row of
/// `width`) whose column plus `shift` falls outside the image: the columns a shifted plain copy took
/// from the neighbouring image row.
fn clear_wrapped_columns(row: &mut [f32], x0: usize, width: usize, shift: isize) {
    let reach = shift.unsigned_abs().min(width);
    // Columns x with x + shift outside [0, width): x < reach for a left shift, x >= width − reach for
    // a right one. The first such column of the tile, then one run of `reach` every `width` positions.
    let first_bad = if shift < 0 { 0 } else { width - reach };
    let mut start = (first_bad + width - x0) % width;
    // A run that begins before the tile (the tile starts inside it) is cut at the tile's start.
    let len = row.len();
    if x0 > first_bad && x0 < first_bad + reach {
        let head = first_bad + reach - x0;
        row[..head.min(len)].fill(0.0);
    }
    while start < len {
        row[start..(start + reach).min(len)].fill(0.0);
        start += width;
    }
}
