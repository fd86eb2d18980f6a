//! Widening ggml blocks to f32, written from the block layouts of ggml's `ggml-common.h` and checked
//! bit for bit against the `gguf` Python package's `gguf.quants.dequantize` (the test fixtures).
//!
//! Every kernel works on one whole block (a fixed-size byte array in, a fixed-size f32 array out), so
//! the compiler sees constant bounds and nothing is allocated per element. The arithmetic is done in
//! f32 in the same order as the reference (`d · q − m`, scales multiplied before the quant), which is
//! what makes the results equal to the last bit.
//!
//! Layouts, per block (all little-endian; `d`, `m`, `dmin` are f16):
//! - `Q8_0` (32 values, 34 bytes): `d`, 32 × i8. Value `q · d`.
//! - `Q4_0` / `IQ4_NL` (32, 18): `d`, 16 bytes whose low nibbles are values 0–15 and high nibbles 16–31.
//!   `Q4_0`: `d · (q − 8)`; `IQ4_NL`: `d · table[q]` with the non-linear 16-entry table below.
//! - `Q4_1` (32, 20): `d`, `m`, nibbles as `Q4_0`. Value `d · q + m`.
//! - `Q5_0` (32, 22) / `Q5_1` (32, 24): `d` (and `m`), a u32 of fifth bits (bit i for value i), nibbles
//!   as `Q4_0`. Values `d · (q − 16)` / `d · q + m`.
//! - `Q2_K` (256, 84): 16 scale bytes (low nibble scale, high nibble min, one per 16 values), 64 bytes of
//!   2-bit quants, `d`, `dmin`. Value `(d · scale) · q − dmin · min`.
//! - `Q3_K` (256, 110): 32 bytes of high bits, 64 bytes of low 2-bit quants, 12 bytes packing sixteen 6-bit
//!   scales, `d`. Value `(d · (scale − 32)) · (q − 4 if the high bit is clear)`.
//! - `Q4_K` (256, 144) / `Q5_K` (256, 176): `d`, `dmin`, 12 bytes packing eight 6-bit scales and mins,
//!   (`Q5_K`: 32 bytes of fifth bits), 128 bytes of nibbles. Value `(d · scale) · q − dmin · min`.
//! - `Q6_K` (256, 210): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 i8 scales, `d`.
//!   Value `(d · scale) · (q − 32)`.
//! - `IQ4_XS` (256, 136): `d`, a u16 of high scale bits, 4 bytes of low scale nibbles, 128 bytes of
//!   nibbles into the `IQ4_NL` table, eight 32-value sub-blocks. Value `(d · (scale − 32)) · table[q]`.
//! - `F32`, `F16`, `BF16`: one value per element.

use super::types::{GgmlType, SUPER_BLOCK};
use half::f16;

/// The 16 values of `IQ4_NL` and `IQ4_XS` quants (ggml's `kvalues_iq4nl`).
const IQ4_VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Elements below which widening stays on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 16;

/// Why bytes could not be widened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantizeError {
    /// The type has no f32 widening here.
    #[error(
        "kinograph cannot dequantize {0} tensors (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)"
    )]
    Unsupported(GgmlType),
    /// The byte and element counts are not whole blocks of the same number.
    #[error(
        "{bytes} bytes of {ty} do not hold {elements} values ({block_elements} values per {block_bytes}-byte block)"
    )]
    Length { ty: GgmlType, bytes: usize, elements: usize, block_elements: usize, block_bytes: usize },
}

/// Widens `bytes`, whole blocks of `ty`, into `out`, which must hold exactly their values.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantizeError> {
    check(ty, bytes.len(), out.len())?;
    widen(ty, bytes, out);
    Ok(())
}

/// [`dequantize_into`] spread over candle's CPU threads when there are many values.
pub fn dequantize_parallel(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantizeError> {
    let (block_elements, block_bytes) = check(ty, bytes.len(), out.len())?;
    let blocks = out.len() / block_elements;
    let threads = candle_core::utils::get_num_threads().clamp(1, blocks.max(1));
    if threads == 1 || out.len() < PARALLEL_THRESHOLD {
        widen(ty, bytes, out);
        return Ok(());
    }
    let blocks_per_thread = blocks.div_ceil(threads);
    std::thread::scope(|scope| {
        for (part, values) in
            bytes.chunks(blocks_per_thread * block_bytes).zip(out.chunks_mut(blocks_per_thread * block_elements))
        {
            scope.spawn(move || widen(ty, part, values));
        }
    });
    Ok(())
}

/// `(values, bytes)` per block of `ty`, after checking that `bytes` and `elements` are the same number of
/// whole blocks of a type that can be widened.
fn check(ty: GgmlType, bytes: usize, elements: usize) -> Result<(usize, usize), DequantizeError> {
    let (Some(block_elements), Some(block_bytes)) = (ty.block_elements(), ty.block_bytes()) else {
        return Err(DequantizeError::Unsupported(ty));
    };
    if !ty.can_dequantize() {
        return Err(DequantizeError::Unsupported(ty));
    }
    if !elements.is_multiple_of(block_elements) || bytes != elements / block_elements * block_bytes {
        return Err(DequantizeError::Length { ty, bytes, elements, block_elements, block_bytes });
    }
    Ok((block_elements, block_bytes))
}

/// Widens checked input on the calling thread.
fn widen(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => blocks(bytes, out, |b: &[u8; 4], y: &mut [f32; 1]| y[0] = f32::from_le_bytes(*b)),
        GgmlType::BF16 => blocks(bytes, out, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
        }),
        GgmlType::F16 => blocks(bytes, out, f16_run),
        GgmlType::Q8_0 => blocks(bytes, out, q8_0),
        GgmlType::Q4_0 => blocks(bytes, out, q4_0),
        GgmlType::Q4_1 => blocks(bytes, out, q4_1),
        GgmlType::Q5_0 => blocks(bytes, out, q5_0),
        GgmlType::Q5_1 => blocks(bytes, out, q5_1),
        GgmlType::Q2_K => blocks(bytes, out, q2_k),
        GgmlType::Q3_K => blocks(bytes, out, q3_k),
        GgmlType::Q4_K => blocks(bytes, out, q4_k),
        GgmlType::Q5_K => blocks(bytes, out, q5_k),
        GgmlType::Q6_K => blocks(bytes, out, q6_k),
        GgmlType::IQ4_NL => blocks(bytes, out, iq4_nl),
        GgmlType::IQ4_XS => blocks(bytes, out, iq4_xs),
        // `check` let through only the types above.
        _ => unreachable!("{ty} passed the dequantize check"),
    }
    // F16 tensors whose length is not a multiple of the run length end with single values.
    if ty == GgmlType::F16 {
        let whole = out.len() / F16_RUN * F16_RUN;
        let (_, tail_bytes) = bytes.split_at(whole * 2);
        for (b, y) in tail_bytes.as_chunks::<2>().0.iter().zip(&mut out[whole..]) {
            *y = f16::from_le_bytes(*b).to_f32();
        }
    }
}

/// Runs `kernel` over each `B`-byte block of `bytes` and its `N` values in `out`.
#[inline]
fn blocks<const B: usize, const N: usize>(bytes: &[u8], out: &mut [f32], kernel: impl Fn(&[u8; B], &mut [f32; N])) {
    let (inputs, _) = bytes.as_chunks::<B>();
    let (outputs, _) = out.as_chunks_mut::<N>();
    for (block, values) in inputs.iter().zip(outputs) {
        kernel(block, values);
    }
}

/// F16 values converted a run at a time (half's slice conversion uses the CPU's F16C instructions).
const F16_RUN: usize = 64;

fn f16_run(b: &[u8; 2 * F16_RUN], y: &mut [f32; F16_RUN]) {
    use half::slice::HalfFloatSliceExt;
    let halves: [f16; F16_RUN] = std::array::from_fn(|i| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]));
    halves.convert_to_f32_slice(y);
}

#[inline]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (value, &q) in y.iter_mut().zip(&b[2..]) {
        *value = f32::from(q as i8) * d;
    }
}

fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..].iter().enumerate() {
        y[j] = d * f32::from((q & 15) as i8 - 8);
        y[j + 16] = d * f32::from((q >> 4) as i8 - 8);
    }
}

fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (j, &q) in b[4..].iter().enumerate() {
        y[j] = d * f32::from(q & 15) + m;
        y[j + 16] = d * f32::from(q >> 4) + m;
    }
}

/// The 5-bit quants of a `Q5_0`/`Q5_1` block: nibbles plus the fifth bits of `high`.
#[inline]
fn five_bit(nibbles: &[u8], high: u32) -> [u8; 32] {
    let mut q = [0_u8; 32];
    for (j, &byte) in nibbles.iter().enumerate().take(16) {
        q[j] = (byte & 15) | (((high >> j) & 1) as u8) << 4;
        q[j + 16] = (byte >> 4) | (((high >> (j + 16)) & 1) as u8) << 4;
    }
    q
}

fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let q = five_bit(&b[6..], u32::from_le_bytes([b[2], b[3], b[4], b[5]]));
    for (value, q) in y.iter_mut().zip(q) {
        *value = d * f32::from(q as i8 - 16);
    }
}

fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let q = five_bit(&b[8..], u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    for (value, q) in y.iter_mut().zip(q) {
        *value = d * f32::from(q) + m;
    }
}

fn q2_k(b: &[u8; 84], y: &mut [f32; SUPER_BLOCK]) {
    let (scales, quants) = (&b[..16], &b[16..80]);
    let (d, dmin) = (half_at(b, 80), half_at(b, 82));
    // Values are laid out as two halves of 128; in each, four 32-value runs read the same 32 bytes at
    // bit shifts 0, 2, 4, 6. Each 16 values share a scale byte.
    for (group, values) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        let first = group * 16;
        let (half, shift, lane) = (first / 128, (first % 128) / 32 * 2, first % 32);
        let scale = d * f32::from(scales[group] & 15);
        let min = dmin * f32::from(scales[group] >> 4);
        for (i, value) in values.iter_mut().enumerate() {
            let q = (quants[half * 32 + lane + i] >> shift) & 3;
            *value = scale * f32::from(q) - min;
        }
    }
}

fn q3_k(b: &[u8; 110], y: &mut [f32; SUPER_BLOCK]) {
    let (high_bits, quants, packed) = (&b[..32], &b[32..96], &b[96..108]);
    let d = half_at(b, 108);
    for (group, values) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        // Sixteen 6-bit scales: low nibbles in bytes 0–7 (low halves first), high pairs in bytes 8–11.
        let low = if group < 8 { packed[group] & 15 } else { packed[group - 8] >> 4 };
        let high = (packed[8 + group % 4] >> (2 * (group / 4))) & 3;
        let scale = d * f32::from((low | high << 4) as i8 - 32);
        let first = group * 16;
        let (half, shift, lane) = (first / 128, (first % 128) / 32 * 2, first % 32);
        let high_shift = first / 32;
        for (i, value) in values.iter_mut().enumerate() {
            let low_bits = ((quants[half * 32 + lane + i] >> shift) & 3) as i8;
            // The high bit set means no offset; clear means the quant is 4 lower.
            let offset = if (high_bits[lane + i] >> high_shift) & 1 == 0 { 4 } else { 0 };
            *value = scale * f32::from(low_bits - offset);
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0–7) of a `Q4_K`/`Q5_K` block's 12 packed bytes.
#[inline]
fn scale_min_k4(packed: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        ((packed[j + 4] & 15) | (packed[j - 4] >> 6) << 4, (packed[j + 4] >> 4) | (packed[j] >> 6) << 4)
    }
}

fn q4_k(b: &[u8; 144], y: &mut [f32; SUPER_BLOCK]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (packed, quants) = (&b[4..16], &b[16..]);
    for (j, values) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (scale, min) = scale_min_k4(packed, j);
        let (scale, min) = (d * f32::from(scale), dmin * f32::from(min));
        // Sub-blocks 2c and 2c+1 are the low and high nibbles of the same 32 bytes.
        let (bytes, shift) = (&quants[j / 2 * 32..j / 2 * 32 + 32], 4 * (j % 2));
        for (value, &byte) in values.iter_mut().zip(bytes) {
            *value = scale * f32::from((byte >> shift) & 15) - min;
        }
    }
}

fn q5_k(b: &[u8; 176], y: &mut [f32; SUPER_BLOCK]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (packed, high_bits, quants) = (&b[4..16], &b[16..48], &b[48..]);
    for (j, values) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let (scale, min) = scale_min_k4(packed, j);
        let (scale, min) = (d * f32::from(scale), dmin * f32::from(min));
        let (bytes, shift) = (&quants[j / 2 * 32..j / 2 * 32 + 32], 4 * (j % 2));
        for ((value, &byte), &high) in values.iter_mut().zip(bytes).zip(high_bits) {
            let q = ((byte >> shift) & 15) | ((high >> j) & 1) << 4;
            *value = scale * f32::from(q) - min;
        }
    }
}

fn q6_k(b: &[u8; 210], y: &mut [f32; SUPER_BLOCK]) {
    let (low_bits, high_bits, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half_at(b, 208);
    for (group, values) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        let scale = d * f32::from(scales[group] as i8);
        let first = group * 16;
        // Two halves of 128 values; in each, 64 low bytes give two nibble runs and 32 high bytes give
        // four 2-bit runs.
        let (half, within) = (first / 128, first % 128);
        let (low_shift, low_lane) = (4 * (within / 64), within % 64);
        let (high_shift, high_lane) = (2 * (within / 32), within % 32);
        for (i, value) in values.iter_mut().enumerate() {
            let low = (low_bits[half * 64 + low_lane + i] >> low_shift) & 15;
            let high = (high_bits[half * 32 + high_lane + i] >> high_shift) & 3;
            *value = scale * f32::from((low | high << 4) as i8 - 32);
        }
    }
}

fn iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..].iter().enumerate() {
        y[j] = d * f32::from(IQ4_VALUES[usize::from(q & 15)]);
        y[j + 16] = d * f32::from(IQ4_VALUES[usize::from(q >> 4)]);
    }
}

fn iq4_xs(b: &[u8; 136], y: &mut [f32; SUPER_BLOCK]) {
    let d = half_at(b, 0);
    let high_scales = u16::from_le_bytes([b[2], b[3]]);
    let (low_scales, quants) = (&b[4..8], &b[8..]);
    for (j, values) in y.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let low = (low_scales[j / 2] >> (4 * (j % 2))) & 15;
        let high = ((high_scales >> (2 * j)) & 3) as u8;
        let scale = d * f32::from((low | high << 4) as i8 - 32);
        let bytes = &quants[j * 16..j * 16 + 16];
        for (i, &q) in bytes.iter().enumerate() {
            values[i] = scale * f32::from(IQ4_VALUES[usize::from(q & 15)]);
            values[i + 16] = scale * f32::from(IQ4_VALUES[usize::from(q >> 4)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_blocks_only() {
        let error = dequantize_into(GgmlType::Q8_0, &[0; 33], &mut [0.0; 32]).unwrap_err();
        assert!(error.to_string().contains("33 bytes of Q8_0 do not hold 32 values"), "{error}");
        assert!(dequantize_into(GgmlType::Q4_K, &[0; 144], &mut [0.0; 128]).is_err());
        let error = dequantize_into(GgmlType::IQ2_XXS, &[0; 66], &mut [0.0; 256]).unwrap_err();
        assert_eq!(error, DequantizeError::Unsupported(GgmlType::IQ2_XXS));
        assert!(dequantize_into(GgmlType::Unknown(77), &[], &mut []).is_err());
    }

    #[test]
    fn plain_types_and_a_hand_made_q8_0_block() {
        let mut out = [0.0; 3];
        let bytes: Vec<u8> = [1.5_f32, -2.0, 0.25].iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        dequantize_into(GgmlType::F16, &bytes, &mut out).unwrap();
        assert_eq!(out, [1.5, -2.0, 0.25]);
        dequantize_into(GgmlType::BF16, &[0x80, 0x3f, 0x00, 0xc0, 0x00, 0x00], &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0, 0.0]);

        let mut block = vec![0_u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = 4;
        block[33] = (-3_i8) as u8;
        let mut values = [9.0; 32];
        dequantize_into(GgmlType::Q8_0, &block, &mut values).unwrap();
        assert_eq!((values[0], values[1], values[31]), (2.0, 0.0, -1.5));
    }

    #[test]
    fn parallel_widening_equals_serial() {
        let blocks = 4096;
        let bytes: Vec<u8> = (0..blocks * 144).map(|i| (i * 7919 % 251) as u8).collect();
        // Keep every block's f16 scales finite: bytes 0–3 of each block.
        let bytes: Vec<u8> = bytes.iter().enumerate().map(|(i, &b)| if i % 144 < 4 { b & 0x3b } else { b }).collect();
        let mut serial = vec![0.0; blocks * 256];
        let mut parallel = vec![0.0; blocks * 256];
        dequantize_into(GgmlType::Q4_K, &bytes, &mut serial).unwrap();
        dequantize_parallel(GgmlType::Q4_K, &bytes, &mut parallel).unwrap();
        assert!(serial.iter().zip(&parallel).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(serial.iter().all(|v| v.is_finite()));
    }
}
