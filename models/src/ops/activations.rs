//! Multi-threaded CPU kernels for the two elementwise hot spots of a forward pass, the tanh GELU of the
//! feed-forward (4d wide) and the attention softmax (N × N per head). candle's own versions run GELU on
//! one thread with `tanhf` and softmax with scalar `expf`; at 768 tokens these two cost about as much as
//! a third of the matmuls. Other devices and dtypes fall back to candle's ops.
//!
//! The exponential below is a range-reduced polynomial written so that the compiler vectorises it:
//! relative error about 2e-7 (a couple of f32 ULPs), against `expf`'s correctly rounded result.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};

/// `exp(x)` for f32, vectorisable: `2^k · p(r)` with `x = k·ln2 + r`, `|r| ≤ ln2/2`, and `p` the degree-7
/// Taylor polynomial (truncation error below 6e-9 relative). Inputs are clamped to the finite range.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a branch or a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k built from the bits of k + 127 + 2^23, whose low mantissa bits are k + 127 (no float-to-int
    // conversion, so the loop stays vectorised).
    let scale = f32::from_bits((k + (127.0 + 8_388_608.0)).to_bits() << 23);
    p * scale
}

/// Runs `work` in place over `data` split into whole rows of `row` elements, one piece per thread, on the
/// number of threads candle uses for matmul.
fn parallel_rows(data: &mut [f32], row: usize, work: impl Fn(&mut [f32]) + Sync) {
    let rows = data.len() / row.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || data.len() < 1 << 15 {
        work(data);
        return;
    }
    let per_thread = rows.div_ceil(threads) * row;
    std::thread::scope(|scope| {
        for piece in data.chunks_mut(per_thread) {
            let work = &work;
            scope.spawn(move || work(piece));
        }
    });
}

/// The contiguous f32 data of a CPU tensor, if it is one.
fn f32_slice_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Option<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Some(&mut data[start..end]),
        _ => None,
    }
}

struct GeluTanh;

impl InplaceOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "ltxv-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some(data) = f32_slice_mut(storage, layout) else {
            candle_core::bail!("ltxv-gelu-tanh needs contiguous f32 input")
        };
        parallel_rows(data, 1, |piece| {
            // 0.5·x·(1 + tanh(u)) = x·σ(2u) = x / (1 + e^(−2u)), u = √(2/π)·(x + 0.044715·x³).
            const TWO_SQRT_TWO_OVER_PI: f32 = 2.0 * 0.797_884_6;
            for y in piece.iter_mut() {
                let x = *y;
                let u = TWO_SQRT_TWO_OVER_PI * x * (1.0 + 0.044_715 * x * x);
                *y = x / (1.0 + fast_exp(-u));
            }
        });
        Ok(())
    }
}

/// The tanh-approximated GELU (`GELU(approximate="tanh")`). On CPU in f32 it is threaded and overwrites
/// `x`'s storage, so pass a tensor nothing else holds (a fresh matmul output); elsewhere it is candle's.
pub fn gelu_tanh(x: Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        x.inplace_op1(&GeluTanh)?;
        Ok(x)
    } else {
        x.gelu()
    }
}

/// Reduces `values` with `op` over 16 independent lanes (which the compiler can keep in vector
/// registers), then across the lanes.
#[inline(always)]
fn lane_reduce(values: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [init; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = op(*lane, v);
        }
    }
    let tail = chunks.remainder().iter().fold(init, |a, &v| op(a, v));
    lanes.iter().fold(tail, |a, &v| op(a, v))
}

struct SoftmaxLastDim;

impl InplaceOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "ltxv-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let Some(data) = f32_slice_mut(storage, layout) else {
            candle_core::bail!("ltxv-softmax-last-dim needs contiguous f32 input")
        };
        parallel_rows(data, width, |piece| {
            for row in piece.chunks_exact_mut(width) {
                let max = lane_reduce(row, f32::NEG_INFINITY, |a, b| if a > b { a } else { b });
                for v in row.iter_mut() {
                    *v = fast_exp(*v - max);
                }
                let inverse = 1.0 / lane_reduce(row, 0.0, |a, b| a + b);
                for v in row.iter_mut() {
                    *v *= inverse;
                }
            }
        });
        Ok(())
    }
}

/// Softmax over the last dimension. On CPU in f32 it is threaded and overwrites `x`'s storage, so pass
/// a tensor nothing else holds (fresh attention scores); elsewhere it is candle's.
pub fn softmax_last_dim(x: Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        x.inplace_op1(&SoftmaxLastDim)?;
        Ok(x)
    } else {
        candle_nn::ops::softmax_last_dim(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_a_few_ulps() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1.234e-4;
            let exact = f64::from(x).exp();
            worst = worst.max(((f64::from(fast_exp(x)) - exact) / exact).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn kernels_match_candle() {
        let device = candle_core::Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (3, 70, 513), &device).unwrap() - 1.0).unwrap();
        let diff = |a: Tensor, b: Tensor| -> f32 {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
        };
        assert!(diff(gelu_tanh(x.copy().unwrap()).unwrap(), x.gelu().unwrap()) < 1e-5);
        assert!(
            diff(softmax_last_dim(x.copy().unwrap()).unwrap(), candle_nn::ops::softmax_last_dim(&x).unwrap()) < 1e-6
        );
    }
}
