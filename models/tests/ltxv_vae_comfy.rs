//! The LTX-Video VAE's decoder against ComfyUI's own decoder code (`ref/comfy_decode_*.safetensors`, made by
//! `tools/fixtures/make_comfy_vae_fixtures.py`): the spatial padding users see. A checkpoint whose config
//! names no `spatial_padding_mode` decodes with `reflect` and encodes with `zeros`; a named mode wins.

use crate::ltxv_vae::{check, data, max_error, recorded_noise, reference, single};
use candle_core::Device;
use kinograph_models::ltxv::vae::conv3d::SpatialPadding;
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::{DecodeOptions, LtxvVae};
use kinograph_models::weights::WeightSource;
use std::sync::Arc;

/// The tiny single file of `version` with `spatial_padding_mode` taken out of its metadata config, as in
/// the released 0.9.0 files: a copy in a temporary folder (kept alive by the returned guard).
pub(crate) fn single_without_padding_mode(version: &str) -> (tempfile::TempDir, Arc<WeightSource>) {
    let bytes = std::fs::read(data(&format!("single/ltxv-tiny-{version}.safetensors"))).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&metadata["config"]).unwrap();
    assert!(config["vae"].as_object_mut().unwrap().remove("spatial_padding_mode").is_some());
    metadata.insert("config".into(), config.to_string());
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join(format!("ltxv-tiny-{version}-no-padding-mode.safetensors"));
    safetensors::serialize_to_file(file.tensors(), Some(metadata), &path).unwrap();
    let source = Arc::new(WeightSource::open(&[path]).unwrap());
    (folder, source)
}

/// ComfyUI's rule for the decoder's spatial padding: a checkpoint whose config names no mode decodes with
/// `reflect` (and encodes with `zeros`); against ComfyUI's own decoder on each layout
/// (`ref/comfy_decode_*.safetensors`, `tools/fixtures/make_comfy_vae_fixtures.py`), 1e-4 on outputs in
/// [−1, 1], so frames within 1/255. The named mode wins where there is one (the diffusers comparisons
/// above use files that name `zeros`).
fn check_comfy_decoder(version: &str) {
    let (_folder, source) = single_without_padding_mode(version);
    let vae = LtxvVae::load(&source, "vae", &Device::Cpu).unwrap();
    assert_eq!(vae.config().decoder_padding, SpatialPadding::Reflect, "{version}");
    assert_eq!(vae.config().encoder_padding, SpatialPadding::Zeros, "{version}");
    let named = LtxvVae::load(&single(version), "vae", &Device::Cpu).unwrap();
    assert_eq!(named.config().decoder_padding, SpatialPadding::Zeros, "{version}: the metadata names zeros");

    let expected = reference(&format!("ref/comfy_decode_{version}.safetensors"));
    let latent = &expected["decoder.input"];
    let timestep = (version != "v090").then_some(0.05);
    let mut noise = recorded_noise(&expected);
    let decoded = vae.decode(latent, timestep, &mut noise, &DecodeOptions::default()).unwrap();
    assert_eq!(noise.remaining(), 0, "every recorded draw is used, in order");
    check(&format!("{version} decode vs ComfyUI"), &decoded, &expected["decoder.output"], 1e-4);
    // The streamed decode the `VAEDecode` node uses pads the same way.
    let streamed = DecodeOptions { temporal_chunk: Some(1), ..Default::default() };
    let decoded = vae.decode(latent, timestep, &mut recorded_noise(&expected), &streamed).unwrap();
    check(&format!("{version} streamed decode vs ComfyUI"), &decoded, &expected["decoder.output"], 1e-4);
    let zeros = named.decode(latent, timestep, &mut recorded_noise(&expected), &DecodeOptions::default()).unwrap();
    assert!(max_error(&zeros, &expected["decoder.output"]) > 1e-2, "{version}: zero padding would not match");

    // A one-pixel-high latent cannot be reflected: an error that says why, not a panic deep in a conv.
    let thin = latent.narrow(3, 0, 1).unwrap();
    let error = vae.decode(&thin, timestep, &mut ZeroNoise, &DecodeOptions::default()).unwrap_err().to_string();
    assert!(error.contains("1×3") && error.contains("reflect") && error.contains("64×64 pixels"), "{error}");
}

#[test]
fn v090_decoder_pads_as_comfyui() {
    check_comfy_decoder("v090");
}

#[test]
fn v091_decoder_pads_as_comfyui() {
    check_comfy_decoder("v091");
}

#[test]
fn v095_decoder_pads_as_comfyui() {
    check_comfy_decoder("v095");
}
