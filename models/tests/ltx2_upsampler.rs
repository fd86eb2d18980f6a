//! The LTX-2 latent upsamplers (spatial ×2, spatial ×1.5 with the rational resampler, temporal ×2) against
//! diffusers 0.42.1 `LTX2LatentUpsamplerModel` on the tiny f16 files of `tools/fixtures/make_ltx2_fixtures.py`.

use crate::compare::{ltx2_data as data, max_abs_diff};
use candle_core::{Device, Tensor};
use kinograph_models::ltx2::upsampler::{LatentUpsampler, UpsampleMode, upsample_normalized};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn every_upsampler_mode_matches_diffusers() {
    let device = Device::Cpu;
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/upsamplers.safetensors"), &device).unwrap();
    for (name, mode) in [
        ("x2", UpsampleMode::Spatial2),
        ("x1_5", UpsampleMode::SpatialRational { numerator: 3, denominator: 2 }),
        ("t2", UpsampleMode::Temporal2),
    ] {
        let source = Arc::new(WeightSource::open(&[data(&format!("upsampler_{name}.safetensors"))]).unwrap());
        let model = LatentUpsampler::load(&source, &device).unwrap();
        assert_eq!(model.config().mode, mode);
        let out = model.forward(&r["latent"]).unwrap();
        let error = max_abs_diff(&out, &r[name]);
        println!("upsampler {name}: {:?}, max abs error {error:.3e}", out.dims());
        assert!(error <= 1e-4, "upsampler {name}: {error}");
    }
}

#[test]
fn normalized_latents_are_upsampled_in_the_vae_space() {
    let device = Device::Cpu;
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/upsamplers.safetensors"), &device).unwrap();
    let source = Arc::new(WeightSource::open(&[data("upsampler_x2.safetensors")]).unwrap());
    let model = LatentUpsampler::load(&source, &device).unwrap();
    let mean = Tensor::new(&[0.5f32, -0.2, 0.1, 0.0, 0.3, -0.4, 0.2, 0.05], &device).unwrap();
    let std = Tensor::new(&[1.5f32, 0.7, 1.1, 0.9, 1.3, 0.6, 1.0, 2.0], &device).unwrap();
    let shape = (1, 8, 1, 1, 1);
    let normalized = r["latent"]
        .broadcast_sub(&mean.reshape(shape).unwrap())
        .unwrap()
        .broadcast_div(&std.reshape(shape).unwrap())
        .unwrap();
    let out = upsample_normalized(&model, &normalized, &mean, &std).unwrap();
    let expected = r["x2"]
        .broadcast_sub(&mean.reshape(shape).unwrap())
        .unwrap()
        .broadcast_div(&std.reshape(shape).unwrap())
        .unwrap();
    assert!(max_abs_diff(&out, &expected) <= 1e-4);
}
