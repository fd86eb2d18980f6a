//! The tiled CPU conv3d for layers whose weights fit in cache (see `conv3d_cpu.rs` for when it is used).
//!
//! The output `(C_out, T_out, H, W)` of one sample is cut into tiles: runs of consecutive positions of
//! one frame, a multiple of [`POSITION_BLOCK`] long where the frame allows. For each tile a worker
//! gathers the full 3D im2col block, `kt·kh·kw·C` rows (ordered (dt, dy, dx, c) like the weight's
//! columns) of one value per position, with the zero spatial padding and the replicated temporal
//! padding folded in, then runs one single-threaded GEMM `C_out × (kt·kh·kw·C) × positions` that
//! accumulates into the tile's part of the output, which starts as the bias.
//!
//! Compared with one im2col matrix for the whole sequence, the block stays in cache between the gather
//! and the GEMM (the whole-sequence matrix is kh·kw times the input and goes through memory), the
//! GEMM's inner dimension is kt times longer, and the workers need no synchronisation besides taking
//! the next tile, so every core stays busy. The cost is that every tile reads the whole weight, which
//! is why large weights take the whole-sequence path instead.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of one tile's im2col block: small enough to stay in the cache of a core next to the weight.
const TILE_BYTES: usize = 3 << 20;

/// Tiles are a multiple of this many positions: the GEMM's micro-kernel covers 64 positions at a time
/// with AVX-512, so other lengths leave part of every tile to slower edge kernels.
const POSITION_BLOCK: usize = 64;

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
/// `(C_out, kt·kh·kw·C)` with columns (dt, dy, dx, c), `bias` is `(C_out)`.
pub(super) fn conv_tiled(
    output: &mut [f32],
    sample: &[f32],
    weight: &[f32],
    bias: &[f32],
    shape: &ConvShape,
    threads: usize,
) {
    let [kt, kh, kw] = shape.kernel;
    let (height, width) = (shape.height, shape.width);
    let plane = height * width;
    let depth = kt * kh * kw * shape.channels;
    let out_frames = output.len() / (shape.out_channels * plane);
    // As many positions as the byte budget allows, rounded to whole micro-kernel blocks, then spread
    // evenly over the tiles a frame needs.
    let most = (TILE_BYTES / (depth * 4) / POSITION_BLOCK).max(1) * POSITION_BLOCK;
    let tiles_per_frame = plane.div_ceil(most);
    let tile_len = plane.div_ceil(tiles_per_frame).next_multiple_of(POSITION_BLOCK).min(plane);
    let tiles_per_frame = plane.div_ceil(tile_len);
    let tiles = out_frames * tiles_per_frame;
    let next = AtomicUsize::new(0);
    let target = TileOutput { data: output.as_mut_ptr(), len: output.len() };
    let (next, target) = (&next, &target);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(tiles) {
            scope.spawn(move || {
                let mut block = vec![0f32; depth * tile_len];
                loop {
                    let tile = next.fetch_add(1, Ordering::Relaxed);
                    if tile >= tiles {
                        break;
                    }
                    let frame = tile / tiles_per_frame;
                    let first = (tile % tiles_per_frame) * tile_len;
                    let count = tile_len.min(plane - first);
                    let block = &mut block[..depth * count];
                    gather_tile(block, sample, shape, frame, first);
                    let start = frame * plane + first;
                    let stride = out_frames * plane;
                    debug_assert!((shape.out_channels - 1) * stride + start + count <= target.len);
                    for (channel, &value) in bias.iter().enumerate() {
                        // SAFETY: `first + count <= plane`, so the range lies inside row
                        // `channel` of the output, and it belongs to this tile only.
                        #[allow(unsafe_code)]
                        unsafe { std::slice::from_raw_parts_mut(target.data.add(channel * stride + start), count) }
                            .fill(value);
                    }
                    // SAFETY: the destination is out_channels rows of `count` values at stride
                    // `stride`, starting at `start`: inside the output and owned by this tile (see
                    // above). The left operand is the whole (out_channels, depth) weight, the right one
                    // the (depth, count) block, both contiguous; nothing is aliased.
                    #[allow(unsafe_code)]
                    unsafe {
                        gemm::gemm(
                            shape.out_channels,
                            count,
                            depth,
                            target.data.add(start),
                            1,
                            stride as isize,
                            true,
                            weight.as_ptr(),
                            1,
                            depth as isize,
                            block.as_ptr(),
                            1,
                            count as isize,
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
    });
}

/// Fills `block` (rows (dt, dy, dx, c), one value per position) for output frame `frame`, positions
/// `first .. first + block.len() / depth` of the frame: zero outside the image, replicated frames
/// outside the sequence.
///
/// For one row the source positions are the tile's positions moved by `sy·W + sx` (the spatial
/// offset of the tap), a contiguous run of the source plane: one copy, then zeros where the run leaves
/// the plane (rows above or below the image) and where it wrapped around a row end (columns left or
/// right of the image).
fn gather_tile(block: &mut [f32], sample: &[f32], shape: &ConvShape, frame: usize, first: usize) {
    let [kt, kh, kw] = shape.kernel;
    let (channels, width) = (shape.channels, shape.width);
    let plane = shape.height * width;
    let count = block.len() / (kt * kh * kw * channels);
    let (ph, pw) = ((kh / 2) as isize, (kw / 2) as isize);
    for (index, row) in block.chunks_mut(count).enumerate() {
        let (tap, c) = (index / channels, index % channels);
        let (dt, dy, dx) = (tap / (kh * kw), tap / kw % kh, tap % kw);
        let source_frame = (frame + dt).saturating_sub(shape.before).min(shape.frames - 1);
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
