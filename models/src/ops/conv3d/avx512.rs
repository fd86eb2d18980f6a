//! The AVX-512 micro-kernel of the tiled conv3d (`tiled.rs`): `tile += weight · block` for one
//! temporal tap, without the packing a general GEMM does on every call.
//!
//! The gathered block is already laid out the way the kernel reads it (one row of positions per im2col
//! row), and the weights are read where they are: each is broadcast from memory anyway, so eight
//! sequential streams (one per output channel of a panel of [`PANEL`]) serve as well as a packed copy.
//! For each panel and each strip of [`STRIP`] positions the kernel keeps the `PANEL × STRIP` outputs in 24 registers and, for every
//! im2col row, loads three vectors of positions and adds them times eight broadcast weights: 24 fused
//! multiply-adds for 3 + 8 loads, and adds them to the output every [`CHUNK_ROWS`] rows. Strips that
//! run past the tile's end use masked loads and stores.

/// Positions per strip: three AVX-512 vectors.
pub(super) const STRIP: usize = 48;
/// Output channels per panel.
pub(super) const PANEL: usize = 8;
/// Im2col rows summed in registers before they are added to the output: shorter chains of f32
/// additions round less (the sums then reach the output in a few hundred-term partial sums, as in a
/// blocked GEMM), at the cost of one load and store of the outputs per chunk.
const CHUNK_ROWS: usize = 256;
/// The most tap blocks one call sums (the temporal kernel size of every LTX-Video conv).
pub(super) const MAX_TAPS: usize = 3;

/// Whether the kernel can run here, for a conv with `out_channels` outputs.
pub(super) fn applies(out_channels: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        out_channels.is_multiple_of(PANEL) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = out_channels;
        false
    }
}

/// One call of the kernel: `count` positions of `out_channels` output rows `stride` apart starting at
/// `dst`, plus the product of the weight (`out_channels` rows of `rows` values, `weight_stride` apart,
/// the sum of the blocks at `taps` in `weight`) with `block` (`rows` rows of positions, `row_stride`
/// apart). The kernel reads whole strips, so `block` must hold `count` rounded up to [`STRIP`] values
/// after the start of its last row.
///
/// Several taps are summed where they read the same input frame: at the ends of the sequence, whose
/// replicated padding frames are copies of the first or last frame. Adding their weights as they are
/// broadcast costs vector additions, which run beside the multiply-adds, instead of a whole extra
/// product per tap.
pub(super) struct KernelCall<'a> {
    pub dst: *mut f32,
    pub stride: usize,
    pub count: usize,
    pub out_channels: usize,
    pub weight: &'a [f32],
    /// Offsets in `weight` of the tap blocks summed: one to [`MAX_TAPS`].
    pub taps: &'a [usize],
    pub weight_stride: usize,
    pub rows: usize,
    pub block: &'a [f32],
    pub row_stride: usize,
}

impl KernelCall<'_> {
    /// Runs the kernel.
    ///
    /// # Safety
    /// The processor must have AVX-512F ([`applies`]), `out_channels` must be a multiple of [`PANEL`],
    /// and `dst` must point at `out_channels` writable rows of `count` values `stride` apart that
    /// nothing else reads or writes during the call.
    #[allow(unsafe_code)]
    pub(super) unsafe fn run(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded from the caller.
        unsafe {
            match self.taps.len() {
                1 => self.run_avx512::<1>(),
                2 => self.run_avx512::<2>(),
                3 => self.run_avx512::<3>(),
                n => panic!("the conv kernel sums 1 to {MAX_TAPS} taps, not {n}"),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    unsafe fn run_avx512<const TAPS: usize>(&self) {
        use std::arch::x86_64::{
            __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
            _mm512_set1_ps, _mm512_setzero_ps,
        };
        let strips = self.count.next_multiple_of(STRIP);
        assert!(self.rows > 0 && self.block.len() >= (self.rows - 1) * self.row_stride + strips);
        let taps: [usize; TAPS] = std::array::from_fn(|n| self.taps[n]);
        for &tap in &taps {
            assert!(self.weight.len() >= tap + (self.out_channels - 1) * self.weight_stride + self.rows);
        }
        for panel in 0..self.out_channels / PANEL {
            let weights: [[&[f32]; TAPS]; PANEL] = std::array::from_fn(|j| {
                std::array::from_fn(|n| &self.weight[taps[n] + (panel * PANEL + j) * self.weight_stride..][..self.rows])
            });
            let mut strip = 0;
            while strip < self.count {
                let valid = (self.count - strip).min(STRIP);
                let masks: [u16; 3] = std::array::from_fn(|i| {
                    let lanes = valid.saturating_sub(16 * i).min(16);
                    ((1u32 << lanes) - 1) as u16
                });
                let rows: [*mut f32; PANEL] =
                    std::array::from_fn(|j| self.dst.wrapping_add((panel * PANEL + j) * self.stride + strip));
                let column = self.block[strip..].as_ptr();
                let mut chunk = 0;
                while chunk < self.rows {
                    let end = (chunk + CHUNK_ROWS).min(self.rows);
                    let mut acc: [[__m512; 3]; PANEL] = [[_mm512_setzero_ps(); 3]; PANEL];
                    for k in chunk..end {
                        // SAFETY: the strip's STRIP values of row k lie inside `block` (checked
                        // above: strip + STRIP <= strips).
                        let a: [__m512; 3] = std::array::from_fn(|i| unsafe {
                            _mm512_loadu_ps(column.add(k * self.row_stride + 16 * i))
                        });
                        for (j, rows) in weights.iter().enumerate() {
                            // SAFETY: k < rows = row.len() for every tap's row.
                            let mut w = _mm512_set1_ps(unsafe { *rows[0].get_unchecked(k) });
                            for row in &rows[1..] {
                                w = _mm512_add_ps(w, _mm512_set1_ps(unsafe { *row.get_unchecked(k) }));
                            }
                            for i in 0..3 {
                                acc[j][i] = _mm512_fmadd_ps(a[i], w, acc[j][i]);
                            }
                        }
                    }
                    for j in 0..PANEL {
                        for i in 0..3 {
                            let at = rows[j].wrapping_add(16 * i);
                            // SAFETY: output row `panel·PANEL + j` has `count` values from `dst`, and
                            // the masks keep every access below `count − strip` from `strip`.
                            unsafe {
                                let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[i], at), acc[j][i]);
                                _mm512_mask_storeu_ps(at, masks[i], sum);
                            }
                        }
                    }
                    chunk = end;
                }
                strip += STRIP;
            }
        }
    }
}
