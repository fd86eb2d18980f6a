//! The LTX-2.0 video VAE (the 0.9.5 architecture without timestep conditioning, `reflect` padding in the
//! decoder) against diffusers 0.42.1 `AutoencoderKLLTX2Video` on the tiny f16 file of
//! `tools/fixtures/make_ltx2_fixtures.py`, which has the single file's `vae.` names and no config: the
//! layout comes from the tensors, as for the community's separate VAE files. Encode (mean) and decode,
//! whole and streamed.

use crate::compare::{assert_close, ltx2_data as data};
use candle_core::{Device, IndexOp, Tensor};
use kinograph_models::ltxv::vae::conv3d::SpatialPadding;
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::{DecodeOptions, EncodeOptions, LtxvVae};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn ltx20_video_vae_matches_diffusers() {
    check("20", SpatialPadding::Reflect);
}

/// 2.3: plain depth-to-space upsamplers (one temporal only, one spatial only, one keeping the width) and
/// zeros padding in the decoder.
#[test]
fn ltx23_video_vae_matches_diffusers() {
    check("23", SpatialPadding::Zeros);
}

fn check(version: &str, decoder_padding: SpatialPadding) {
    let device = Device::Cpu;
    let source = Arc::new(WeightSource::open(&[data(&format!("video_vae_{version}.safetensors"))]).unwrap());
    let vae = LtxvVae::load(&source, "vae", &device).unwrap();
    assert!(!vae.config().timestep_conditioning, "LTX-2 decoders take no timestep");
    assert_eq!(vae.config().decoder_padding, decoder_padding);
    assert_eq!(vae.config().encoder_padding, SpatialPadding::Zeros);
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data(&format!("ref/video_vae_{version}.safetensors")), &device).unwrap();

    let mean = vae.encode(&r["video"]).unwrap();
    assert_close(&format!("{version} encode (mean)"), &mean, &r["mean"], 1e-4);
    let streamed = vae.encode_moments_with(&r["video"], &EncodeOptions { temporal_chunk: Some(1) }).unwrap().0;
    assert_close(&format!("{version} encode, streamed"), &streamed, &r["mean"], 1e-4);

    for temporal_chunk in [None, Some(1)] {
        let options = DecodeOptions { temporal_chunk, spatial_tiles: None };
        let decoded = vae.decode(&r["latent"], None, &mut ZeroNoise, &options).unwrap();
        assert_eq!(decoded.dims(), [1, 3, 17, 64, 96]);
        let frames = r["decoded"].dim(2).unwrap();
        assert_close(
            &format!("{version} decode (chunk {temporal_chunk:?})"),
            &decoded.i((.., .., ..frames)).unwrap(),
            &r["decoded"],
            1e-4,
        );
    }
}

/// The 2.3 file with the official `config.vae` (the decoder blocks listed in encoder order, as LTX-2.3
/// single files carry them) builds the same decoder as the one read from the tensors.
#[test]
fn ltx23_config_metadata_gives_the_inferred_layout() {
    let device = Device::Cpu;
    let tensors = candle_core::safetensors::load(data("video_vae_23.safetensors"), &device).unwrap();
    let config = serde_json::json!({"vae": {
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 8,
        "patch_size": 4, "latent_log_var": "uniform", "norm_layer": "pixel_norm", "causal_decoder": false,
        "timestep_conditioning": false, "spatial_padding_mode": "zeros", "encoder_base_channels": 8,
        "decoder_base_channels": 4,
        "encoder_blocks": [["res_x", {"num_layers": 1}], ["compress_space_res", {"multiplier": 1}],
            ["res_x", {"num_layers": 1}], ["compress_time_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
            ["compress_all_res", {"multiplier": 2}], ["res_x", {"num_layers": 1}], ["compress_all_res", {"multiplier": 1}],
            ["res_x", {"num_layers": 1}]],
        "decoder_blocks": [["res_x", {"num_layers": 1}], ["compress_space", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}], ["compress_time", {"multiplier": 2}], ["res_x", {"num_layers": 1}],
            ["compress_all", {"multiplier": 1}], ["res_x", {"num_layers": 1}], ["compress_all", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}]]
    }});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("with_config.safetensors");
    let views: Vec<(String, Tensor)> = tensors.into_iter().collect();
    safetensors::serialize_to_file(
        views.iter().map(|(n, t)| (n.as_str(), t)),
        Some([("config".to_string(), config.to_string())].into()),
        &path,
    )
    .unwrap();
    let inferred =
        LtxvVae::load(&Arc::new(WeightSource::open(&[data("video_vae_23.safetensors")]).unwrap()), "vae", &device)
            .unwrap();
    let configured = LtxvVae::load(&Arc::new(WeightSource::open(&[&path]).unwrap()), "vae", &device).unwrap();
    assert_eq!(configured.config().decoder_blocks, inferred.config().decoder_blocks);
    assert_eq!(configured.config().decoder_padding, inferred.config().decoder_padding);
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/video_vae_23.safetensors"), &device).unwrap();
    let decoded = configured.decode(&r["latent"], None, &mut ZeroNoise, &DecodeOptions::default()).unwrap();
    let frames = r["decoded"].dim(2).unwrap();
    assert_close("2.3 decode with the config", &decoded.i((.., .., ..frames)).unwrap(), &r["decoded"], 1e-4);
}
