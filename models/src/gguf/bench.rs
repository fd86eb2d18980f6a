//! A timing harness for [`QuantLinear`]: one linear of a transformer block's size (LTX-2's 4096 → 4096
//! attention projections, 4096 → 16384 feed-forward) with a random N(0, 0.02²) weight quantized in
//! memory, each kernel against the dense f32 linear of [`crate::ops::linear`]. `kinograph bench --only
//! gguf-linear` prints the figures.

use super::linear::{MatmulKernel, QuantLinear};
use super::types::GgmlType;
use crate::bench_support::process_cpu_time;
use crate::ops::linear::Linear;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One timed configuration of [`bench_quant_linear`].
#[derive(Debug, Clone)]
pub struct LinearTiming {
    /// The weight's type (`F32` for the dense baseline).
    pub ty: GgmlType,
    /// The kernel timed (`None` for the dense f32 baseline).
    pub kernel: Option<MatmulKernel>,
    /// Each timed forward, after one untimed warm-up (which builds candle's repacked tiles).
    pub forwards: Vec<Duration>,
    /// CPU time of each forward (Linux).
    pub forward_cpu: Vec<Option<Duration>>,
    /// ‖y − `y_f32`‖ / ‖`y_f32`‖ against the dense f32 linear on the unquantized weight.
    pub relative_error: f32,
}

/// What [`bench_quant_linear`] measured.
#[derive(Debug, Clone)]
pub struct LinearBenchReport {
    /// The dense f32 baseline first, then each type and kernel.
    pub timings: Vec<LinearTiming>,
    /// The kernel [`MatmulKernel::Auto`] picks for each type on this CPU.
    pub picks: Vec<(GgmlType, MatmulKernel)>,
}

/// Times `[tokens, inputs] → [tokens, outputs]` with the f32 weight, then for each of `types` (quantized
/// by candle from the same weight) every kernel candle and kinograph have for it, `runs` times each.
pub fn bench_quant_linear(
    outputs: usize,
    inputs: usize,
    tokens: usize,
    types: &[GgmlType],
    runs: usize,
    device: &Device,
) -> Result<LinearBenchReport> {
    let weight = Tensor::randn(0f32, 0.02, (outputs, inputs), device)?;
    let x = Tensor::randn(0f32, 1.0, (tokens, inputs), device)?;
    let dense = {
        let builder =
            VarBuilder::from_tensors(HashMap::from([("weight".to_string(), weight.clone())]), DType::F32, device);
        Linear::without_bias(inputs, outputs, &builder)?
    };
    let expected = dense.forward(&x)?;
    let mut timings = vec![time(GgmlType::F32, None, runs, &expected, &|| dense.forward(&x))?];
    drop(dense);
    let mut picks = Vec::with_capacity(types.len());
    for &ty in types {
        let Some(dtype) = ty.candle_dtype() else {
            candle_core::bail!("candle cannot quantize to {ty} for the benchmark")
        };
        let blocks: std::sync::Arc<[u8]> = QTensor::quantize(&weight, dtype)?.data()?.into_owned().into();
        let build = |kernel| QuantLinear::from_bytes(ty, outputs, inputs, blocks.clone(), None, kernel, device);
        picks.push((ty, build(MatmulKernel::Auto)?.kernel()));
        let tiles = crate::ops::tiles::fits(inputs).then_some(MatmulKernel::Tiles);
        for kernel in [Some(MatmulKernel::Quantized), Some(MatmulKernel::Dequantize), tiles].into_iter().flatten() {
            let layer = build(kernel)?;
            timings.push(time(ty, Some(kernel), runs, &expected, &|| layer.forward(&x))?);
        }
    }
    Ok(LinearBenchReport { timings, picks })
}

fn time(
    ty: GgmlType,
    kernel: Option<MatmulKernel>,
    runs: usize,
    expected: &Tensor,
    forward: &dyn Fn() -> Result<Tensor>,
) -> Result<LinearTiming> {
    let warm = forward()?;
    let difference = (&warm - expected)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
    let norm = expected.sqr()?.sum_all()?.to_scalar::<f32>()?;
    drop(warm);
    let mut forwards = Vec::with_capacity(runs);
    let mut forward_cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_start = process_cpu_time();
        let start = Instant::now();
        drop(forward()?);
        forwards.push(start.elapsed());
        forward_cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start)));
    }
    Ok(LinearTiming {
        ty,
        kernel,
        forwards,
        forward_cpu,
        relative_error: (difference / norm.max(f32::MIN_POSITIVE)).sqrt(),
    })
}
