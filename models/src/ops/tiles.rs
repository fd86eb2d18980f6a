//! `y = x Wᵀ` on Intel AMX tiles: bf16 products summed in f32, for a weight that is widened to f32 a band of
//! rows at a time by its owner (a quantized GGUF weight, say) and rounded to bf16 here.
//!
//! This is the arithmetic ComfyUI-GGUF runs on a GPU (weights dequantized to the compute dtype, bf16
//! matmul with f32 accumulation), and on a CPU with AMX (Intel Xeon since Sapphire Rapids) it is several
//! times faster than the f32 matmul: one `tdpbf16ps` multiplies a 16×32 bf16 tile by a 32×16 one into a
//! 16×16 f32 tile. Rounding the activations and the weight to bf16 costs about 0.3 % relative error per
//! product, small beside a quantized weight's own error.
//!
//! Layout. The activations are rounded to bf16 and cut into tiles (16 rows × 32 inputs, 64-byte rows), padded
//! to whole 32-row blocks. The weight is packed band by band into the tile order `tdpbf16ps` reads: for each
//! 16 output columns and each 32 inputs, one 16×64-byte tile whose row `r` holds, for each column `j`, the
//! pair of inputs `2r, 2r + 1`.
//! Each thread owns a range of 32-row blocks of the output and computes 32×32 output blocks with four
//! accumulator tiles, walking the inputs in blocks of 1024 so that a panel of activations stays in the
//! core's L2 cache while the band's columns go by.
//!
//! Linux hands out the tile state on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); [`available`] asks once
//! and says no on other systems, other CPUs, or when the kernel refuses.

use candle_core::Result;
use rayon::prelude::*;
use std::ops::Range;

/// Weight values packed per band (16 MB of bf16): a band's f32 rows are widened and packed by the threads
/// together, then multiplied.
const BAND_WEIGHTS: usize = 8 << 20;
/// Inputs per tile row (32 bf16 = 64 bytes).
const CHUNK: usize = 32;
/// bf16 values per weight tile (16 rows of 32).
const TILE_VALUES: usize = 16 * CHUNK;
/// Rows of output each 2×2 tile block covers, and columns likewise.
const BLOCK: usize = 32;
/// Chunks of 32 inputs summed before the accumulators go back to memory (1024 inputs).
const INPUT_BLOCK_CHUNKS: usize = 32;
/// Output rows per panel: the panel's activations (`PANEL_ROWS × 1024` bf16, 256 KB) stay in L2.
const PANEL_ROWS: usize = 128;

/// Rows `range` of the weight `[outputs, inputs]`, widened to f32 into a slice of `range.len() × inputs`.
pub type WidenRows<'a> = dyn Fn(Range<usize>, &mut [f32]) -> Result<()> + Sync + 'a;

/// Whether this process can multiply on AMX bf16 tiles: an x86-64 Linux machine whose CPU has AMX-TILE,
/// AMX-BF16 and AVX-512 and whose kernel grants the tile state (asked once, on the first call).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(amx::request)
}

/// Whether a product of `inputs` inputs can run on tiles here ([`available`], and whole 32-input chunks).
pub fn fits(inputs: usize) -> bool {
    inputs > 0 && inputs.is_multiple_of(CHUNK) && available()
}

/// `x Wᵀ`, `[rows, outputs]` row-major, for `x` `[rows, inputs]` row-major f32 and a weight of `outputs`
/// rows that `widen` produces on request. Fails where [`fits`] says no, or when `widen` fails.
pub fn matmul(x: &[f32], rows: usize, inputs: usize, outputs: usize, widen: &WidenRows<'_>) -> Result<Vec<f32>> {
    if !fits(inputs) {
        candle_core::bail!("AMX bf16 tiles are not available for a product of {inputs} inputs on this machine");
    }
    if x.len() != rows * inputs {
        candle_core::bail!("{} activations do not make [{rows}, {inputs}]", x.len());
    }
    if rows == 0 || outputs == 0 {
        return Ok(vec![0.0; rows * outputs]);
    }
    let threads = rayon::current_num_threads().max(1);
    let padded_rows = rows.next_multiple_of(BLOCK);
    let padded_outputs = outputs.next_multiple_of(BLOCK);
    let activations = rounded_rows(x, inputs, padded_rows, threads);
    let band = (BAND_WEIGHTS / inputs).max(BLOCK) / BLOCK * BLOCK;
    let mut packed = vec![0_u16; band.min(padded_outputs) * inputs];
    let mut out = vec![0_f32; padded_rows * padded_outputs];
    for start in (0..padded_outputs).step_by(band) {
        let width = band.min(padded_outputs - start);
        let packed = &mut packed[..width * inputs];
        pack_band(widen, start..start + width, outputs, inputs, packed, threads)?;
        multiply_band(&activations, inputs, packed, start..start + width, &mut out, padded_outputs, threads);
    }
    if padded_rows == rows && padded_outputs == outputs {
        return Ok(out);
    }
    let mut trimmed = Vec::with_capacity(rows * outputs);
    for row in out.chunks_exact(padded_outputs).take(rows) {
        trimmed.extend_from_slice(&row[..outputs]);
    }
    Ok(trimmed)
}

/// `value` rounded to the nearest bf16 (ties to even), as its bits; NaN stays NaN.
#[inline]
fn bf16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) as u16) | 0x0040;
    if bits & 0x7FFF_FFFF > 0x7F80_0000 { quiet_nan } else { rounded }
}

/// `x` `[rows, inputs]` rounded to bf16 and laid out as tiles, followed by zero rows up to `padded_rows`:
/// for each 16 rows, `inputs / 32` tiles of 16 rows × 32 inputs. Tiles read from contiguous 64-byte rows;
/// read straight from `x`'s rows, 16 loads `2 · inputs` bytes apart fell into the same L1 cache set.
fn rounded_rows(x: &[f32], inputs: usize, padded_rows: usize, threads: usize) -> Vec<u16> {
    let mut rounded = vec![0_u16; padded_rows * inputs];
    let group_values = 16 * inputs;
    let per_thread = (padded_rows / 16).div_ceil(threads).max(1) * group_values;
    rounded.par_chunks_mut(per_thread).enumerate().for_each(|(part, target)| {
        let source = x.get(part * per_thread..).unwrap_or(&[]);
        for (group, tiles) in target.chunks_mut(group_values).enumerate() {
            let rows = source.get(group * group_values..).unwrap_or(&[]);
            for (row, values) in rows.chunks_exact(inputs).take(16).enumerate() {
                for (chunk, chunk_values) in values.chunks_exact(CHUNK).enumerate() {
                    round_into(chunk_values, &mut tiles[chunk * TILE_VALUES + row * CHUNK..][..CHUNK]);
                }
            }
        }
    });
    rounded
}

/// Widens and packs weight rows `columns` (some may lie past `outputs`: zeros) into `packed`, 16 rows per
/// group of `inputs / 32` tiles, the groups shared among the threads.
fn pack_band(
    widen: &WidenRows<'_>,
    columns: Range<usize>,
    outputs: usize,
    inputs: usize,
    packed: &mut [u16],
    threads: usize,
) -> Result<()> {
    let group_values = 16 * inputs;
    let groups = columns.len() / 16;
    let per_thread = groups.div_ceil(threads).max(1);
    packed.par_chunks_mut(per_thread * group_values).enumerate().try_for_each(|(part, target)| -> Result<()> {
        let first_row = columns.start + part * per_thread * 16;
        let mut rows = vec![0_f32; group_values];
        for (group, tiles) in target.chunks_mut(group_values).enumerate() {
            let start = first_row + group * 16;
            let valid = outputs.saturating_sub(start).min(16);
            if valid > 0 {
                widen(start..start + valid, &mut rows[..valid * inputs])?;
            }
            rows[valid * inputs..].fill(0.0);
            pack_group(&rows, inputs, tiles);
        }
        Ok(())
    })
}

/// 16 weight rows (`16 × inputs` f32) as `inputs / 32` tiles: tile `c`, row `r`, column `j` holds inputs
/// `32c + 2r` and `32c + 2r + 1` of weight row `j`.
fn pack_group(rows: &[f32], inputs: usize, tiles: &mut [u16]) {
    // Gathered a tile row at a time (16 columns × 2 inputs) so that the rounding runs over contiguous
    // values.
    let mut pairs = [0_f32; CHUNK];
    for (chunk, tile) in tiles.chunks_exact_mut(TILE_VALUES).enumerate() {
        for (pair, tile_row) in tile.chunks_exact_mut(CHUNK).enumerate() {
            let at = chunk * CHUNK + 2 * pair;
            for (column, two) in pairs.chunks_exact_mut(2).enumerate() {
                two.copy_from_slice(&rows[column * inputs + at..][..2]);
            }
            round_into(&pairs, tile_row);
        }
    }
}

/// `values` rounded to bf16 into `bits` (same length). Only the tile kernel calls it, after [`fits`], so the
/// CPU has AVX-512 ([`available`] requires it beside AMX) and the loop is compiled for it.
fn round_into(values: &[f32], bits: &mut [u16]) {
    debug_assert!(available());
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: `available` checked AVX-512 F and BW, the features the function is compiled for.
    #[allow(unsafe_code)]
    unsafe {
        round_into_avx512(values, bits);
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    round_into_portable(values, bits);
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[target_feature(enable = "avx512f,avx512bw")]
fn round_into_avx512(values: &[f32], bits: &mut [u16]) {
    round_into_portable(values, bits);
}

#[inline]
fn round_into_portable(values: &[f32], bits: &mut [u16]) {
    for (bits, value) in bits.iter_mut().zip(values) {
        *bits = bf16_bits(*value);
    }
}

/// Output columns `columns` of `out` (`padded_rows × stride` f32) from the rounded activations and the
/// packed band, the 32-row blocks shared among the threads.
fn multiply_band(
    activations: &[u16],
    inputs: usize,
    packed: &[u16],
    columns: Range<usize>,
    out: &mut [f32],
    stride: usize,
    threads: usize,
) {
    let blocks = activations.len() / inputs / BLOCK;
    let per_thread = blocks.div_ceil(threads).max(1) * BLOCK;
    out.par_chunks_mut(per_thread * stride).enumerate().for_each(|(part, rows_out)| {
        let rows = rows_out.len() / stride;
        let first = part * per_thread;
        let panel = &activations[first * inputs..(first + rows) * inputs];
        // SAFETY: `fits` checked that the CPU has the AMX instructions and the kernel granted the tile state;
        // the slices cover every tile the kernel reads and writes (whole 32-row blocks of `panel` and
        // `rows_out`, whole 32-column pairs of groups of `packed`).
        #[allow(unsafe_code)]
        unsafe {
            amx::multiply(panel, rows, inputs, packed, columns.clone(), rows_out, stride);
        }
    });
}

// The tile instructions have no intrinsics on stable Rust: inline assembly, checked by the tests against
// exact integer products.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
mod amx {
    use super::{BLOCK, CHUNK, INPUT_BLOCK_CHUNKS, PANEL_ROWS, TILE_VALUES};
    use std::arch::asm;
    use std::ops::Range;

    /// Checks CPUID for AMX-TILE and AMX-BF16 and asks Linux for the tile data state.
    pub(super) fn request() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE. The packing loops use AVX-512, which every
        // CPU with AMX has.
        let features = std::arch::x86_64::__cpuid_count(7, 0);
        if features.edx & (1 << 22) == 0 || features.edx & (1 << 24) == 0 {
            return false;
        }
        if !(std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw")) {
            return false;
        }
        let result: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM) only changes which state the kernel saves for this process.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => result,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result == 0
    }

    /// The tile configuration `ldtilecfg` reads: palette 1, eight tiles of 16 rows × 64 bytes (tmm0–3 hold
    /// the 2×2 accumulator block, tmm4–5 two activation tiles, tmm6–7 two weight tiles).
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn all_full() -> Self {
            let mut config = [0_u8; 64];
            config[0] = 1;
            for tile in 0..8 {
                config[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&64_u16.to_le_bytes());
                config[48 + tile] = 16;
            }
            TileConfig(config)
        }
    }

    /// Columns `columns` (relative to the start of `packed`'s band) of `out` `[rows, stride]` f32 from
    /// `panel` `[rows, inputs]` bf16 and the packed band. `rows` is a whole number of 32-row blocks.
    ///
    /// # Safety
    /// The CPU must have AMX-TILE and AMX-BF16 with the tile state granted ([`request`]).
    pub(super) unsafe fn multiply(
        panel: &[u16],
        rows: usize,
        inputs: usize,
        packed: &[u16],
        columns: Range<usize>,
        out: &mut [f32],
        stride: usize,
    ) {
        let chunks = inputs / CHUNK;
        let group_values = chunks * TILE_VALUES;
        assert!(rows.is_multiple_of(BLOCK) && panel.len() == rows * inputs && out.len() >= rows * stride);
        assert!(columns.len().is_multiple_of(BLOCK) && packed.len() >= columns.len() / 16 * group_values);
        assert!(columns.end <= stride);
        let config = TileConfig::all_full();
        // SAFETY (whole body): every pointer below stays inside the slices checked above.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly, preserves_flags));
            for first_chunk in (0..chunks).step_by(INPUT_BLOCK_CHUNKS) {
                let block_chunks = INPUT_BLOCK_CHUNKS.min(chunks - first_chunk);
                for panel_start in (0..rows).step_by(PANEL_ROWS) {
                    let panel_end = (panel_start + PANEL_ROWS).min(rows);
                    for pair in 0..columns.len() / BLOCK {
                        let weights = packed.as_ptr().add(2 * pair * group_values + first_chunk * TILE_VALUES);
                        for row in (panel_start..panel_end).step_by(BLOCK) {
                            let activations = panel.as_ptr().add(row * inputs + first_chunk * TILE_VALUES);
                            let accumulators = out.as_mut_ptr().add(row * stride + columns.start + pair * BLOCK);
                            block_product(
                                activations,
                                group_values,
                                weights,
                                weights.add(group_values),
                                block_chunks,
                                accumulators,
                                stride * 4,
                                first_chunk > 0,
                            );
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack, nomem, preserves_flags));
        }
    }

    /// One 32×32 output block: `c += a · b` over `chunks` chunks of 32 inputs (`c` zeroed first unless
    /// `accumulate`): `a` the activation tiles of its first 16 rows (those of the next 16 are `a_group`
    /// values further), `b0`/`b1` the weight tiles of its two 16-column groups, all tiles 64-byte rows.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn block_product(
        a: *const u16,
        a_group: usize,
        b0: *const u16,
        b1: *const u16,
        chunks: usize,
        c: *mut f32,
        c_stride: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller passes pointers to whole tiles (see `multiply`).
        unsafe {
            let a1 = a.add(a_group);
            let c01 = c.add(16);
            let c10 = c.byte_add(16 * c_stride);
            let c11 = c10.add(16);
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c00} + {s}*1]",
                    "tileloadd tmm1, [{c01} + {s}*1]",
                    "tileloadd tmm2, [{c10} + {s}*1]",
                    "tileloadd tmm3, [{c11} + {s}*1]",
                    c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c_stride,
                    options(nostack, readonly, preserves_flags),
                );
            } else {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem, preserves_flags),
                );
            }
            for chunk in 0..chunks {
                asm!(
                    "tileloadd tmm4, [{a0} + {w}*1]",
                    "tileloadd tmm5, [{a1} + {w}*1]",
                    "tileloadd tmm6, [{b0} + {w}*1]",
                    "tileloadd tmm7, [{b1} + {w}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a.add(chunk * TILE_VALUES),
                    a1 = in(reg) a1.add(chunk * TILE_VALUES),
                    b0 = in(reg) b0.add(chunk * TILE_VALUES),
                    b1 = in(reg) b1.add(chunk * TILE_VALUES),
                    w = in(reg) CHUNK * 2,
                    options(nostack, readonly, preserves_flags),
                );
            }
            asm!(
                "tilestored [{c00} + {s}*1], tmm0",
                "tilestored [{c01} + {s}*1], tmm1",
                "tilestored [{c10} + {s}*1], tmm2",
                "tilestored [{c11} + {s}*1], tmm3",
                c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c_stride,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[allow(unsafe_code)]
mod amx {
    use std::ops::Range;

    pub(super) fn request() -> bool {
        false
    }

    /// Never called: [`super::available`] is false here.
    pub(super) unsafe fn multiply(_: &[u16], _: usize, _: usize, _: &[u16], _: Range<usize>, _: &mut [f32], _: usize) {
        unreachable!("AMX tiles are only used on x86-64 Linux")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x Wᵀ` in f64, `[rows, outputs]`.
    fn reference(x: &[f32], weight: &[f32], rows: usize, inputs: usize, outputs: usize) -> Vec<f64> {
        let mut out = vec![0.0; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                out[r * outputs + o] =
                    (0..inputs).map(|i| f64::from(x[r * inputs + i]) * f64::from(weight[o * inputs + i])).sum();
            }
        }
        out
    }

    fn widen_from(weight: &[f32], inputs: usize) -> impl Fn(Range<usize>, &mut [f32]) -> Result<()> + Sync + '_ {
        move |rows: Range<usize>, out: &mut [f32]| {
            out.copy_from_slice(&weight[rows.start * inputs..rows.end * inputs]);
            Ok(())
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(-2.5), 0xC020);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: it goes to the even one, 1.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_bits(f32::INFINITY), 0x7F80);
        assert!(f32::from_bits(u32::from(bf16_bits(f32::NAN)) << 16).is_nan());
    }

    #[test]
    fn small_integers_multiply_exactly_with_ragged_sizes() {
        if !available() {
            eprintln!("no AMX bf16 tiles on this machine: nothing to check");
            return;
        }
        // Small integers are exact in bf16 and their sums exact in f32, so any layout mistake shows.
        let (rows, inputs, outputs) = (45, 96, 50);
        let value = |i: usize, salt: usize| ((i * 7 + salt * 13) % 9) as f32 - 4.0;
        let x: Vec<f32> = (0..rows * inputs).map(|i| value(i, 1)).collect();
        let weight: Vec<f32> = (0..outputs * inputs).map(|i| value(i / 3 + i, 2)).collect();
        let found = matmul(&x, rows, inputs, outputs, &widen_from(&weight, inputs)).unwrap();
        let expected = reference(&x, &weight, rows, inputs, outputs);
        assert_eq!(found.len(), rows * outputs);
        for (index, (found, expected)) in found.iter().zip(&expected).enumerate() {
            assert_eq!(f64::from(*found), *expected, "row {}, column {}", index / outputs, index % outputs);
        }
    }

    #[test]
    fn random_products_match_f32_within_bf16_rounding() {
        if !available() {
            eprintln!("no AMX bf16 tiles on this machine: nothing to check");
            return;
        }
        // 1056 inputs span two input blocks (the accumulators go to memory and back); 300 outputs span
        // several column pairs with a ragged end.
        let (rows, inputs, outputs) = (70, 1056, 300);
        let mut state = 0x2545_F491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..rows * inputs).map(|_| next()).collect();
        let weight: Vec<f32> = (0..outputs * inputs).map(|_| next() * 0.05).collect();
        let found = matmul(&x, rows, inputs, outputs, &widen_from(&weight, inputs)).unwrap();
        let expected = reference(&x, &weight, rows, inputs, outputs);
        let error: f64 = found.iter().zip(&expected).map(|(f, e)| (f64::from(*f) - e).powi(2)).sum();
        let norm: f64 = expected.iter().map(|e| e * e).sum();
        let relative = (error / norm).sqrt();
        // bf16 keeps 8 significant bits: each rounded factor is within 2^-9 relative, the products' errors
        // are independent, so the sums are off by about 2^-9 relative.
        assert!(relative < 4e-3, "relative error {relative}");
        assert!(relative > 1e-5, "the products were not rounded to bf16 ({relative})");
    }

    #[test]
    fn widening_errors_and_bad_sizes_are_reported() {
        if !available() {
            assert!(matmul(&[0.0; 32], 1, 32, 1, &|_, _| Ok(())).is_err());
            return;
        }
        let failing = |_: Range<usize>, _: &mut [f32]| -> Result<()> { candle_core::bail!("the file is truncated") };
        let error = matmul(&[0.0; 64], 2, 32, 20, &failing).unwrap_err();
        assert!(error.to_string().contains("the file is truncated"), "{error}");
        assert!(matmul(&[0.0; 63], 2, 32, 20, &failing).is_err());
        assert!(!fits(48));
    }
}
