//! What the model tests share: where the LTX-2 fixtures are and the f32 max-absolute-error comparison.

use candle_core::{DType, Tensor};
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
