//! The one place that calls `gemm::gemm`: single-threaded f32 `dst += lhs · rhs` on strided row-major
//! matrices. Every operand is a view with named sizes and strides; views over slices are checked against
//! their slice when they are made, so a wrong stride is a panic at the view rather than a stray write.

use std::marker::PhantomData;

/// Whether `rows` rows of `cols` values, `row_stride` apart, fit in `len` values.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize) -> bool {
    rows == 0
        || cols == 0
        || (rows - 1).checked_mul(row_stride).and_then(|last| last.checked_add(cols)).is_some_and(|end| end <= len)
}

/// A read-only `rows × cols` matrix in a slice: element `(r, c)` is `data[r · row_stride + c]`.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A view of `rows` rows of `cols` values, `row_stride` apart, from the start of `data`.
    ///
    /// # Panics
    /// If the last row ends past `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride),
            "matrix {rows}×{cols} at row stride {row_stride} does not fit in {} values",
            data.len()
        );
        Matrix { data, rows, cols, row_stride }
    }
}

/// A writable `rows × cols` matrix: element `(r, c)` at `r · row_stride + c` from its start.
#[derive(Debug)]
pub struct MatrixMut<'a> {
    data: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    lifetime: PhantomData<&'a mut [f32]>,
}

impl<'a> MatrixMut<'a> {
    /// A view of `rows` rows of `cols` values, `row_stride` apart, from the start of `data`.
    ///
    /// # Panics
    /// If the last row ends past `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride),
            "matrix {rows}×{cols} at row stride {row_stride} does not fit in {} values",
            data.len()
        );
        MatrixMut { data: data.as_mut_ptr(), rows, cols, row_stride, lifetime: PhantomData }
    }

    /// A view over memory that several threads write at once, each its own elements (the rows of one
    /// output channel block, or the positions of one tile of every row), which no `&mut` slice can
    /// describe.
    ///
    /// # Safety
    /// For the lifetime of the view, the `rows × cols` elements `data + r · row_stride + c` must be
    /// inside one live allocation of f32, and nothing else may read or write them.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw(data: *mut f32, rows: usize, cols: usize, row_stride: usize) -> Self {
        MatrixMut { data, rows, cols, row_stride, lifetime: PhantomData }
    }
}

/// `dst += lhs · rhs` on the calling thread.
///
/// # Panics
/// If the shapes do not chain: `lhs` is `m × k`, `rhs` is `k × n` and `dst` is `m × n`.
pub fn multiply_add(dst: &mut MatrixMut<'_>, lhs: Matrix<'_>, rhs: Matrix<'_>) {
    assert!(
        lhs.rows == dst.rows && rhs.cols == dst.cols && lhs.cols == rhs.rows,
        "gemm: ({}×{}) · ({}×{}) does not give ({}×{})",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols,
        dst.rows,
        dst.cols
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    // SAFETY: `lhs` and `rhs` were checked against their slices when made, and are only read. `dst`
    // was checked against its slice (`MatrixMut::new`, which also holds the slice's unique borrow) or
    // its maker promised the same (`MatrixMut::from_raw`). The sizes passed are the views' own, unit
    // column strides and the views' row strides, so gemm touches no element outside the three views,
    // and it writes only `dst`, which aliases neither operand (it is borrowed mutably, or promised
    // unshared, while they are borrowed).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data,
            1,
            dst.row_stride as isize,
            true,
            lhs.data.as_ptr(),
            1,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            1,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_strided_views_into_a_strided_destination() {
        // lhs 2×3 at stride 4, rhs 3×2 at stride 3, dst 2×2 at stride 5 starting from 1s.
        let lhs = [1.0, 2.0, 3.0, -9.0, 4.0, 5.0, 6.0];
        let rhs = [1.0, 0.0, -9.0, 0.0, 1.0, -9.0, 1.0, 1.0];
        let mut dst = [1.0; 7];
        multiply_add(&mut MatrixMut::new(&mut dst, 2, 2, 5), Matrix::new(&lhs, 2, 3, 4), Matrix::new(&rhs, 3, 2, 3));
        assert_eq!([dst[0], dst[1], dst[5], dst[6]], [1.0 + 4.0, 1.0 + 5.0, 1.0 + 10.0, 1.0 + 11.0]);
        assert_eq!(&dst[2..5], &[1.0; 3], "elements between the rows are not written");
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_past_its_slice_is_refused() {
        let data = [0.0; 7];
        let _ = Matrix::new(&data, 2, 3, 5);
    }
}
