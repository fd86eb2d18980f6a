//! Widening fp8 codes to f32 through a 256-entry table (the format's values, already multiplied by the
//! weight's scale), over a band of a weight matrix, on the threads candle uses for matmul.
//!
//! candle's own `to_dtype` for `F8E4M3` decodes each element with a branchy conversion and cannot read
//! e5m2 at all; a table lookup is one load per element from a 1 KB table that stays in L1 cache.

/// `out[i] = table[codes[i]]`, on up to `threads` threads.
pub fn widen_codes(codes: &[u8], table: &[f32; 256], out: &mut [f32], threads: usize) {
    assert_eq!(codes.len(), out.len(), "one output per code");
    let threads = threads.clamp(1, codes.len().div_ceil(1 << 16).max(1));
    if threads == 1 {
        lookup(codes, table, out);
        return;
    }
    let per_thread = codes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (codes, out) in codes.chunks(per_thread).zip(out.chunks_mut(per_thread)) {
            scope.spawn(move || lookup(codes, table, out));
        }
    });
}

/// Columns `start..start + count` of the row-major `rows × columns` matrix `codes`, widened into a
/// contiguous `rows × count` matrix: a band of output features of a weight kept transposed (`[in, out]`).
pub fn widen_columns(
    codes: &[u8],
    columns: usize,
    start: usize,
    count: usize,
    table: &[f32; 256],
    threads: usize,
) -> Vec<f32> {
    assert!(start + count <= columns && codes.len().is_multiple_of(columns.max(1)), "band inside the matrix");
    let rows = codes.len() / columns.max(1);
    let mut out = vec![0f32; rows * count];
    if count == 0 {
        return out;
    }
    let threads = threads.clamp(1, (rows * count).div_ceil(1 << 16).max(1)).min(rows.max(1));
    let rows_per_thread = rows.div_ceil(threads);
    let band = |first_row: usize, out: &mut [f32]| {
        for (row, out_row) in out.chunks_exact_mut(count).enumerate() {
            let offset = (first_row + row) * columns + start;
            lookup(&codes[offset..offset + count], table, out_row);
        }
    };
    if threads == 1 {
        band(0, &mut out);
    } else {
        std::thread::scope(|scope| {
            for (index, piece) in out.chunks_mut(rows_per_thread * count).enumerate() {
                let band = &band;
                scope.spawn(move || band(index * rows_per_thread, piece));
            }
        });
    }
    out
}

#[inline]
fn lookup(codes: &[u8], table: &[f32; 256], out: &mut [f32]) {
    for (value, &code) in out.iter_mut().zip(codes) {
        *value = table[usize::from(code)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp8::Fp8Format;

    #[test]
    fn threads_and_bands_give_the_same_values() {
        let codes: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let table = Fp8Format::E5M2.scaled_table(0.5);
        let mut one = vec![0f32; codes.len()];
        let mut four = vec![0f32; codes.len()];
        widen_codes(&codes, &table, &mut one, 1);
        widen_codes(&codes, &table, &mut four, 4);
        assert!(one.iter().zip(&four).all(|(a, b)| a.to_bits() == b.to_bits()));

        // A 600 × 500 matrix: columns 17..(17 + 300) of every row.
        let (rows, columns) = (600, 500);
        let band = widen_columns(&codes[..rows * columns], columns, 17, 300, &table, 3);
        assert_eq!(band.len(), rows * 300);
        for row in [0, 299, 599] {
            for column in [0, 150, 299] {
                let expected = one[row * columns + 17 + column];
                assert_eq!(band[row * 300 + column].to_bits(), expected.to_bits(), "({row}, {column})");
            }
        }
    }
}
