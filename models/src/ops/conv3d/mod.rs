//! The CPU kernel behind the stride-1 [`super::conv3d::Conv3d`], one custom op with two strategies:
//!
//! - The tiled kernel of `conv3d_tiled.rs`: the im2col rows of a run of output positions gathered in
//!   cache, frame by frame, and multiplied there, runs shared among the threads. It takes every conv
//!   whose weights fit in cache ([`TILED_WEIGHT_BYTES`]), and with the AVX-512 micro-kernel also larger
//!   ones, as long as the image planes fill the kernel's strips of positions (then the weights stream
//!   from memory once per tile at a rate the memory sustains).
//! - The same im2col + per-tap GEMM scheme as the generic path (see `conv3d.rs`) for the rest: large
//!   weights on small images (the 4 × 6 latent planes of the widest layers), where the weights are read
//!   once per conv instead of once per tile. The threads split the output channels, each running its
//!   own single-threaded products over every tap: with the few positions of these planes, a GEMM
//!   parallelised inside spent a sixth of its time waiting.
//!
//! Either way the zero padding is folded into the gather (no padded copy), the output starts as the
//! bias, and the GEMMs accumulate straight into it (no temporaries and no extra passes for sums and bias).

use super::conv3d_kernel::{STRIP, applies};
use super::conv3d_tiled::{ConvShape, conv_tiled};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

/// Weights up to this size always take the tiled kernel: they stay in cache while every tile reads
/// them. Past it, the general GEMM's per-call packing makes re-reading them for every tile cost more
/// than the whole-sequence im2col saves, and only the micro-kernel (which reads them in place) can.
pub const TILED_WEIGHT_BYTES: usize = 8 << 20;

/// Whether an image plane of `plane` positions fills the micro-kernel's strips to at least 7/8.
fn fills_strips(plane: usize) -> bool {
    plane.next_multiple_of(STRIP) * 7 <= plane * 8
}

/// Stride-1 conv3d with zero spatial padding of kernel/2, on a temporally padded f32 input.
pub struct Im2colConv3d {
    /// (kt, kh, kw).
    pub kernel: [usize; 3],
    /// Frames replicated before the first and after the last input frame (the causal conv's temporal
    /// padding, folded into the gather instead of copied).
    pub time_padding: [usize; 2],
    /// Bytes allowed for the im2col buffer before output frames are processed in groups.
    pub budget_bytes: usize,
    /// A contiguous f32 tensor shaped like the output, added to it as the output is started (the
    /// resnet's shortcut, without a separate pass over the activations).
    pub residual: Option<Tensor>,
    /// Output channels `0 .. unused_first` of the first output frame are discarded by the caller (an
    /// upsampler's duplicate of the causal frame): they are not computed.
    pub unused_first: usize,
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("conv3d: {what} must be f32") };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("conv3d: {what} must be contiguous")
    };
    Ok(&data[start..end])
}

impl CustomOp3 for Im2colConv3d {
    fn name(&self) -> &'static str {
        "ltxv-im2col-conv3d"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = contiguous(input, input_layout, "input")?;
        let weight = contiguous(weight, weight_layout, "weight")?;
        let bias = contiguous(bias, bias_layout, "bias")?;
        let &[batch, channels, frames, height, width] = input_layout.shape().dims() else {
            candle_core::bail!("conv3d: input must be (B, C, T, H, W)")
        };
        let [kt, kh, kw] = self.kernel;
        let &[out_channels, weight_width] = weight_layout.shape().dims() else {
            candle_core::bail!("conv3d: weight must be (C_out, kt·kh·kw·C)")
        };
        let rows = kh * kw * channels;
        let [before, after] = self.time_padding;
        let padded_frames = frames + before + after;
        if weight_width != kt * rows || bias.len() != out_channels || padded_frames < kt || frames == 0 {
            candle_core::bail!(
                "conv3d: weight {:?} does not fit input {:?}",
                weight_layout.dims(),
                input_layout.dims()
            );
        }
        let out_frames = padded_frames + 1 - kt;
        let plane = height * width;
        let threads = candle_core::utils::get_num_threads().max(1);
        let out_len = batch * out_channels * out_frames * plane;
        let residual_storage = self.residual.as_ref().map(Tensor::storage_and_layout);
        let residual = match &residual_storage {
            None => None,
            Some((storage, layout)) => {
                let Storage::Cpu(storage) = &**storage else {
                    candle_core::bail!("conv3d: residual must be on the CPU")
                };
                let residual = contiguous(storage, layout, "residual")?;
                if residual.len() != out_len {
                    candle_core::bail!("conv3d: residual {:?} does not match the output", layout.dims());
                }
                Some(residual)
            }
        };
        if out_channels * weight_width * 4 <= TILED_WEIGHT_BYTES || (applies(out_channels) && fills_strips(plane)) {
            let mut output = vec![0f32; out_len];
            let shape = ConvShape {
                channels,
                frames,
                height,
                width,
                out_channels,
                kernel: self.kernel,
                before,
                unused_first: self.unused_first.min(out_channels),
            };
            let per_sample = out_channels * out_frames * plane;
            for (index, (sample, out)) in
                input.chunks(channels * frames * plane).zip(output.chunks_mut(per_sample)).enumerate()
            {
                let residual = residual.map(|r| &r[index * per_sample..(index + 1) * per_sample]);
                conv_tiled(out, sample, weight, bias, residual, &shape, threads);
            }
            return Ok((CpuStorage::F32(output), Shape::from((batch, out_channels, out_frames, height, width))));
        }
        let bytes_per_frame = rows * plane * 4;
        let group = (self.budget_bytes / bytes_per_frame.max(1)).saturating_sub(kt - 1).max(1).min(out_frames);

        let mut output = vec![0f32; out_len];
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
                gather(
                    &mut columns[..rows * span],
                    sample,
                    [channels, frames, height, width],
                    window,
                    [kh, kw],
                    threads,
                );
                let out_offset = b * out_channels * out_frames * plane + start * plane;
                // Frame 0 without its unused channels, then the rest of the group.
                let skip = if start == 0 { self.unused_first.min(out_channels) } else { 0 };
                let parts = [(0, 1, skip), (1, count, 0)];
                let parts: &[(usize, usize, usize)] = if skip > 0 { &parts } else { &[(0, count, 0)] };
                // Each thread takes its own block of output channels through every tap: its share of
                // the weights, read once, and no synchronisation inside the products.
                let (dst, lhs, rhs) =
                    (output.as_mut_ptr() as usize, weight.as_ptr() as usize, columns.as_ptr() as usize);
                std::thread::scope(|scope| {
                    for &(first, end, skip) in parts.iter().filter(|(first, end, _)| first < end) {
                        let share = (out_channels - skip).div_ceil(threads).next_multiple_of(16);
                        for low in (skip..out_channels).step_by(share) {
                            let high = (low + share).min(out_channels);
                            scope.spawn(move || {
                                for tap in 0..kt {
                                    // SAFETY: all three matrices lie inside their buffers. The
                                    // destination is rows low..high (disjoint between the threads) of
                                    // (end − first)·plane values at stride out_frames·plane, from frame
                                    // start + first of sample `b`, with start + end <= out_frames. The
                                    // left operand is the column block of tap `tap` in the
                                    // (out_channels, kt·rows) weight, rows low..high: `rows` values at
                                    // stride kt·rows, starting at tap·rows. The right operand is rows
                                    // rows of (end − first)·plane values at stride span, starting at
                                    // column (first + tap)·plane, and (end + tap)·plane <= span because
                                    // end <= count and tap <= kt − 1. Only the destination is written.
                                    #[allow(unsafe_code)]
                                    unsafe {
                                        gemm::gemm(
                                            high - low,
                                            (end - first) * plane,
                                            rows,
                                            (dst as *mut f32)
                                                .add(out_offset + low * out_frames * plane + first * plane),
                                            1,
                                            (out_frames * plane) as isize,
                                            true,
                                            (lhs as *const f32).add(low * weight_width + tap * rows),
                                            1,
                                            weight_width as isize,
                                            (rhs as *const f32).add((first + tap) * plane),
                                            1,
                                            span as isize,
                                            1.0,
                                            1.0,
                                            false,
                                            false,
                                            false,
                                            gemm::Parallelism::None,
                                        );
                                    }
                                }
                            });
                        }
                    }
                });
                start += count;
            }
        }
        Ok((CpuStorage::F32(output), Shape::from((batch, out_channels, out_frames, height, width))))
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
