//! What the model tests share: where the LTX-2 fixtures are, the f32 max-absolute-error comparison and a
//! random LoRA update.

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// A file under `tests/data/ltx2/`.
pub fn ltx2_data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltx2").join(path)
}

/// The largest absolute difference between two tensors of the same shape, compared in f32.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Prints the error of `found` against `expected` and fails above `tolerance`.
pub fn assert_close(what: &str, found: &Tensor, expected: &Tensor, tolerance: f32) {
    let error = max_abs_diff(found, expected);
    println!("{what}: max abs error {error:.3e} (tolerance {tolerance:.0e})");
    assert!(error <= tolerance, "{what}: max abs error {error:e} > {tolerance:e}");
}

/// Whether quantized linears run on AMX bf16 tiles here (`MatmulKernel::Auto` picks them where it can), so
/// that a model on quantized weights differs from the same weights widened to f32 by bf16's rounding (about
/// 2^-9 relative per product) rather than by the order of f32 sums.
pub fn bf16_tiles() -> bool {
    kinograph_models::ops::tiles::available()
}

/// [`assert_close`] within `exact` where quantized linears compute in f32; where they run on bf16 tiles
/// ([`bf16_tiles`]), a relative L2 error under 1 % instead.
pub fn assert_kernel_close(what: &str, found: &Tensor, expected: &Tensor, exact: f32) {
    if !bf16_tiles() {
        return assert_close(what, found, expected, exact);
    }
    let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let norm = expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let relative = (difference / norm).sqrt();
    println!("{what}: relative L2 error {relative:.3e} on bf16 tiles (tolerance 1e-2)");
    assert!(relative < 1e-2, "{what}: relative L2 error {relative:e} on bf16 tiles");
}

/// A random low-rank update `B·A` of rank 2 for a layer of weight shape `(out, in)`.
pub fn low_rank_patch(shape: (usize, usize)) -> kinograph_models::lora::LayerPatch {
    use kinograph_models::lora::{LayerPatch, WeightDelta};
    let device = Device::Cpu;
    let (out, inputs) = shape;
    let down = Tensor::randn(0f32, 0.3, (2, inputs), &device).unwrap();
    let up = Tensor::randn(0f32, 0.3, (out, 2), &device).unwrap();
    let delta = WeightDelta::LowRank {
        down_t: down.t().unwrap().contiguous().unwrap(),
        up_t: up.t().unwrap().contiguous().unwrap(),
        scale: 0.7,
    };
    LayerPatch { weight: Some(delta), ..LayerPatch::default() }
}
