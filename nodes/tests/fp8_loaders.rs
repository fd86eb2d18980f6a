//! `UNETLoader`'s `weight_dtype` and scaled fp8 `diffusion_models` files, on the tiny LTX-Video transformer
//! (`models/tests/data/ltxv/single/`) and its scaled fp8 copy written by torch
//! (`tools/fixtures/make_fp8_fixtures.py`).

use crate::support::{folders, inputs, node};
use candle_core::{Device, Tensor};
use kinograph_engine::{ExecutionContext, Value};
use kinograph_models::fp8::{Fp8Format, WeightStorage};
use kinograph_models::ltxv::transformer::{LtxvTransformer, RopePositions};
use kinograph_nodes::values::{DiffusionModel, Transformer};
use std::path::Path;
use std::sync::Arc;

const TINY: &str = "../models/tests/data/ltxv/single/ltxv-tiny-v095.safetensors";
const TINY_FP8: &str = "../models/tests/data/fp8/ltxv_transformer_fp8.safetensors";

/// The transformer `UNETLoader` loads from `file` (copied into `diffusion_models/`) with `weight_dtype`.
fn load(file: &str, weight_dtype: &str) -> Result<Arc<LtxvTransformer>, String> {
    let folders = folders();
    let target = folders.env.models.models_dir().join("diffusion_models");
    std::fs::create_dir_all(&target).unwrap();
    let name = Path::new(file).file_name().unwrap().to_str().unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(file), target.join(name)).unwrap();
    let context = ExecutionContext::detached("1", "UNETLoader", folders.env.clone());
    let values =
        inputs(vec![("unet_name", Value::String(name.into())), ("weight_dtype", Value::String(weight_dtype.into()))]);
    let output = node("UNETLoader").execute(&values, &context).map_err(|error| error.to_string())?;
    let model: Arc<DiffusionModel> = output.values[0].downcast().unwrap();
    match &model.transformer {
        Transformer::Ltxv(transformer) => Ok(transformer.clone()),
        Transformer::Ltx2(_) => panic!("an LTX-Video transformer"),
    }
}

/// `count` fixed values in about [−1, 1] (no random generator, so that every run sees the same inputs).
fn fixed(shape: (usize, usize, usize), phase: f64) -> Tensor {
    let count = shape.0 * shape.1 * shape.2;
    let values = Tensor::arange(0f32, count as f32, &Device::Cpu).unwrap();
    ((values * 0.731).unwrap() + phase).unwrap().sin().unwrap().reshape(shape).unwrap()
}

/// One forward pass on fixed inputs (a 2×2×3 latent, 5 text tokens).
fn forward(model: &LtxvTransformer) -> Tensor {
    let device = Device::Cpu;
    let config = model.config();
    let latent = fixed((1, 12, config.in_channels), 0.3);
    let text = fixed((1, 5, config.caption_channels), 1.1);
    let timestep = Tensor::new(&[500f32], &device).unwrap();
    model.forward(&latent, &text, None, &timestep, &RopePositions::grid(2, 2, 3, 25.0)).unwrap()
}

fn relative_error(found: &Tensor, expected: &Tensor) -> f32 {
    let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    (difference / expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()).sqrt()
}

fn storages(model: &LtxvTransformer) -> Vec<WeightStorage> {
    model.linear_storage().unwrap().into_iter().map(|(_, storage)| storage).collect()
}

/// `default` keeps the file's dtype; each fp8 choice keeps every linear weight as that format's codes
/// (`fp8_e4m3fn_fast` the same as `fp8_e4m3fn`: no fp8 matmul here), which compute close to the f32 model.
#[test]
fn weight_dtype_sets_how_the_linear_weights_are_kept() {
    let reference = load(TINY, "default").unwrap();
    assert!(storages(&reference).iter().all(|storage| *storage == WeightStorage::Dense(candle_core::DType::F32)));
    let expected = forward(&reference);
    for (weight_dtype, format, tolerance) in [
        ("fp8_e4m3fn", Fp8Format::E4M3Fn, 0.1),
        ("fp8_e4m3fn_fast", Fp8Format::E4M3Fn, 0.1),
        ("fp8_e5m2", Fp8Format::E5M2, 0.25),
    ] {
        let model = load(TINY, weight_dtype).unwrap();
        assert!(storages(&model).iter().all(|storage| *storage == WeightStorage::Fp8(format)), "{weight_dtype}");
        let error = relative_error(&forward(&model), &expected);
        println!("{weight_dtype}: relative L2 error against the f32 weights {error:.2e}");
        assert!(error > 0.0 && error < tolerance, "{weight_dtype}: {error}");
    }
    let error = load(TINY, "fp8_e4m3").unwrap_err();
    assert!(error.contains("weight_dtype") && error.contains("fp8_e4m3fn_fast"), "{error}");
}

/// A scaled fp8 file (block linears e4m3fn with `weight_scale`, the `scaled_fp8` marker) loads with no
/// unexpected tensor, keeps its fp8 weights with their scales whatever `weight_dtype` says, and computes
/// close to the f32 model it was made from.
#[test]
fn scaled_fp8_diffusion_models_load_with_their_scales() {
    let reference = load(TINY, "default").unwrap();
    let expected = forward(&reference);
    for weight_dtype in ["default", "fp8_e5m2"] {
        let model = load(TINY_FP8, weight_dtype).unwrap();
        for (name, storage) in model.linear_storage().unwrap() {
            let expected = match (name.starts_with("transformer_blocks."), weight_dtype) {
                (true, _) => WeightStorage::Fp8(Fp8Format::E4M3Fn),
                (false, "default") => WeightStorage::Dense(candle_core::DType::F32),
                (false, _) => WeightStorage::Fp8(Fp8Format::E5M2),
            };
            assert_eq!(storage, expected, "{weight_dtype}: {name}");
        }
        let error = relative_error(&forward(&model), &expected);
        println!("scaled fp8 file, {weight_dtype}: relative L2 error against the f32 model {error:.2e}");
        assert!(error > 0.0 && error < if weight_dtype == "default" { 0.05 } else { 0.25 }, "{error}");
    }
}
