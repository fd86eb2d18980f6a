//! `y += a · b` in place, the way a LoRA update joins a linear layer's output: `y` `[rows, n]` is the layer's
//! fresh output, `a` `[rows, k]` the input through the down-projection, `b` `[k, n]` the up-projection.
//! On the CPU the rows are split across threads and each block is accumulated by gemm straight into `y`,
//! so the update costs its multiply-adds and no `[rows, n]` temporaries (which, allocated fresh for every
//! layer of every step, cost a 2B model a fifth of its speed).

use super::gemm::{Matrix, MatrixMut, multiply_add};
use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Result, Tensor};

/// `y + a · b`, computed into `y`'s own storage when all three are contiguous-able f32 on the CPU (`y`
/// must then be a tensor nothing else shares, such as a matmul's fresh output); a new tensor otherwise.
pub fn add_product(y: Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let cpu_f32 = [&y, a, b].iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if cpu_f32 && y.is_contiguous() && y.rank() == 2 {
        y.inplace_op3(&a.contiguous()?, &b.contiguous()?, &AddProduct)?;
        return Ok(y);
    }
    y + a.matmul(b)?
}

struct AddProduct;

impl InplaceOp3 for AddProduct {
    fn name(&self) -> &'static str {
        "kinograph-add-product"
    }

    fn cpu_fwd(
        &self,
        y: &mut CpuStorage,
        y_layout: &Layout,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(y), CpuStorage::F32(a), CpuStorage::F32(b)) = (y, a, b) else {
            candle_core::bail!("kinograph-add-product needs f32 tensors")
        };
        let slice = |layout: &Layout, what: &str| -> Result<(usize, usize, usize, usize)> {
            let (Some((start, end)), [rows, cols]) = (layout.contiguous_offsets(), layout.dims()) else {
                candle_core::bail!("kinograph-add-product: {what} must be a contiguous matrix, got {:?}", layout.dims())
            };
            Ok((start, end, *rows, *cols))
        };
        let (y_start, y_end, rows, n) = slice(y_layout, "y")?;
        let (a_start, a_end, a_rows, k) = slice(a_layout, "a")?;
        let (b_start, b_end, b_rows, b_cols) = slice(b_layout, "b")?;
        if a_rows != rows || b_rows != k || b_cols != n {
            candle_core::bail!("kinograph-add-product: [{rows}, {n}] += [{a_rows}, {k}] · [{b_rows}, {b_cols}]");
        }
        if rows == 0 || n == 0 || k == 0 {
            return Ok(());
        }
        let (y, a, b) = (&mut y[y_start..y_end], &a[a_start..a_end], &b[b_start..b_end]);
        let threads = candle_core::utils::get_num_threads().clamp(1, rows);
        let chunk = rows.div_ceil(threads);
        std::thread::scope(|scope| {
            for (y_rows, a_rows) in y.chunks_mut(chunk * n).zip(a.chunks(chunk * k)) {
                scope.spawn(move || {
                    let count = y_rows.len() / n;
                    let mut dst = MatrixMut::new(y_rows, count, n, n);
                    multiply_add(&mut dst, Matrix::new(a_rows, count, k, k), Matrix::new(b, k, n, n));
                });
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accumulates_in_place_as_a_matmul_would() {
        let device = Device::Cpu;
        let y = Tensor::randn(0f32, 1.0, (37, 19), &device).unwrap();
        let a = Tensor::randn(0f32, 1.0, (37, 5), &device).unwrap();
        let b = Tensor::randn(0f32, 1.0, (5, 19), &device).unwrap();
        let expected = (&y + a.matmul(&b).unwrap()).unwrap();
        let fresh = (y * 1.0).unwrap();
        let out = add_product(fresh, &a, &b.t().unwrap().contiguous().unwrap().t().unwrap()).unwrap();
        let error = (out - expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(error < 1e-5, "{error}");
    }

    #[test]
    fn refuses_shapes_that_do_not_chain() {
        let device = Device::Cpu;
        let y = Tensor::zeros((4, 3), DType::F32, &device).unwrap();
        let a = Tensor::zeros((4, 2), DType::F32, &device).unwrap();
        let b = Tensor::zeros((3, 3), DType::F32, &device).unwrap();
        assert!(add_product(y, &a, &b).is_err());
    }
}
