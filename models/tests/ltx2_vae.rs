//! The LTX-2.0 and LTX-2.3 video VAEs and the LTX-2 latent upsamplers against diffusers 0.42.1
//! (`AutoencoderKLLTX2Video`, `LTX2LatentUpsamplerModel`, `LTX2LatentUpsamplePipeline`) on the tiny f16 files of
//! `tools/fixtures/make_ltx2_vae_fixtures.py` (`tests/data/ltx2/vae/`), saved under the official single-file names
//! with the official `config` metadata. Encode (mean) and decode whole, streamed and (2.0) spatially tiled; the same
//! weights read without prefix, without config and under diffusers' names; the upsamplers in their three modes and
//! between normalised latents; errors for missing tensors and for what neither tensors nor config settle.
//! f32 max absolute errors.

use crate::compare::{assert_close, ltx2_data};
use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_models::ltx2::upsampler::{LatentUpsampler, UpsampleMode, UpsamplerConfig};
use kinograph_models::ltxv::vae::config::{VaeConfig, VaeVersion};
use kinograph_models::ltxv::vae::conv3d::SpatialPadding;
use kinograph_models::ltxv::vae::load::find_prefix;
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::tiling::SpatialTiles;
use kinograph_models::ltxv::vae::{DecodeOptions, EncodeOptions, LtxvVae};
use kinograph_models::weights::{WeightError, WeightSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TOLERANCE: f32 = 1e-4;

fn data(name: &str) -> PathBuf {
    ltx2_data(&format!("vae/{name}"))
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data(&format!("ref/{name}.safetensors")), &Device::Cpu).unwrap()
}

fn source(path: &Path) -> Arc<WeightSource> {
    Arc::new(WeightSource::open(&[path]).unwrap())
}

fn vae(version: &str) -> LtxvVae {
    LtxvVae::load(&source(&data(&format!("video_vae_{version}.safetensors"))), "vae", &Device::Cpu).unwrap()
}

/// Writes the tensors of `from`, renamed by `rename` (dropped where it gives None), with `metadata` to `path`.
fn rewrite(
    from: &Path,
    path: &Path,
    rename: impl Fn(&str) -> Option<String>,
    metadata: Option<HashMap<String, String>>,
) {
    let tensors = candle_core::safetensors::load(from, &Device::Cpu).unwrap();
    let renamed: Vec<(String, Tensor)> =
        tensors.into_iter().filter_map(|(name, tensor)| rename(&name).map(|name| (name, tensor))).collect();
    safetensors::serialize_to_file(renamed.iter().map(|(n, t)| (n.as_str(), t)), metadata, path).unwrap();
}

fn metadata_of(path: &Path) -> HashMap<String, String> {
    let config = source(path).metadata("config").unwrap().to_string();
    HashMap::from([("config".to_string(), config)])
}

/// Encode (whole and streamed one or two latent frames at a time) and decode (whole and streamed) against diffusers.
fn check_encode_and_decode(version: &str, model: &LtxvVae) {
    let r = reference("video_vae");
    for temporal_chunk in [None, Some(1), Some(2)] {
        let mean = model.encode_moments_with(&r["video"], &EncodeOptions { temporal_chunk }).unwrap().0;
        assert_close(
            &format!("{version} encode (chunk {temporal_chunk:?})"),
            &mean,
            &r[&format!("mean_{version}")],
            TOLERANCE,
        );
    }
    for temporal_chunk in [None, Some(1), Some(2)] {
        let options = DecodeOptions { temporal_chunk, spatial_tiles: None };
        let decoded = model.decode(&r["latent"], None, &mut ZeroNoise, &options).unwrap();
        assert_eq!(decoded.dims(), [1, 3, 17, 32, 32]);
        assert_close(
            &format!("{version} decode (chunk {temporal_chunk:?})"),
            &decoded,
            &r[&format!("decoded_{version}")],
            TOLERANCE,
        );
    }
}

#[test]
fn ltx20_official_file_matches_diffusers() {
    let model = vae("20");
    let config = model.config();
    assert_eq!(model.version(), VaeVersion::V20);
    assert!(!config.timestep_conditioning && !config.causal_decoder && !model.injects_noise());
    assert_eq!((config.encoder_padding, config.decoder_padding), (SpatialPadding::Zeros, SpatialPadding::Reflect));
    assert_eq!(model.compression(), (16, 8));
    check_encode_and_decode("20", &model);
}

/// The tiled decode: 2×2 latent tiles sharing one latent pixel, each decoded by diffusers on its own with reflect
/// padding at the tile's borders, blended with kinograph's ramps (see the fixture script).
#[test]
fn ltx20_tiled_decode_matches_diffusers_tiles() {
    let model = vae("20");
    let r = reference("video_vae");
    for temporal_chunk in [None, Some(1)] {
        let options = DecodeOptions { temporal_chunk, spatial_tiles: Some(SpatialTiles { tile: 2, overlap: 1 }) };
        let decoded = model.decode(&r["tiled_latent"], None, &mut ZeroNoise, &options).unwrap();
        assert_eq!(decoded.dims(), [1, 3, 9, 48, 48]);
        assert_close(&format!("2.0 tiled decode (chunk {temporal_chunk:?})"), &decoded, &r["tiled_20"], TOLERANCE);
    }
    // The tiles differ from the whole decode at their borders: the check above sees the tiling.
    let whole = model.decode(&r["tiled_latent"], None, &mut ZeroNoise, &DecodeOptions::default()).unwrap();
    assert!(crate::compare::max_abs_diff(&whole, &r["tiled_20"]) > 1e-2);
}

#[test]
fn ltx23_official_file_matches_diffusers() {
    let model = vae("23");
    let config = model.config();
    assert_eq!(model.version(), VaeVersion::V23);
    assert_eq!((config.encoder_padding, config.decoder_padding), (SpatialPadding::Zeros, SpatialPadding::Zeros));
    assert!(!config.timestep_conditioning && !config.causal_decoder);
    check_encode_and_decode("23", &model);
}

/// The weights under diffusers' `AutoencoderKLLTX2Video` state-dict names (nested `down_blocks.{i}.downsamplers.0`,
/// `up_blocks.{i}.upsamplers.0`, `resnets`, `mid_block`, `latents_mean`; the fixture's table of them) give the model
/// of the official file, configuration included.
#[test]
fn diffusers_names_give_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    for version in ["20", "23"] {
        let table: HashMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(data(&format!("diffusers_names_{version}.json"))).unwrap())
                .unwrap();
        let official_to_diffusers: HashMap<&str, &str> =
            table.iter().map(|(diffusers, official)| (official.as_str(), diffusers.as_str())).collect();
        let path = dir.path().join(format!("diffusers_{version}.safetensors"));
        // The statistics diffusers does not keep (`channel`, `mean-of-stds`) are dropped.
        rewrite(
            &data(&format!("video_vae_{version}.safetensors")),
            &path,
            |name| official_to_diffusers.get(name).map(ToString::to_string),
            None,
        );
        let folder = source(&path);
        assert_eq!(folder.names().count(), table.len());
        assert_eq!(find_prefix(&folder), Some(""));
        let model = LtxvVae::load(&folder, "", &Device::Cpu).unwrap();
        assert_eq!(model.config(), vae(version).config());
        check_encode_and_decode(version, &model);
    }
}

/// ComfyUI's and Kijai's separate VAE files: the official names with or without `vae.`, with the checkpoint's
/// config, with the VAE config alone, or with none (the layout then comes from the tensors).
#[test]
fn separate_vae_files_give_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let r = reference("video_vae");
    for version in ["20", "23"] {
        let official = data(&format!("video_vae_{version}.safetensors"));
        let expected = vae(version);
        let full: serde_json::Value = serde_json::from_str(&metadata_of(&official)["config"]).unwrap();
        let vae_only = HashMap::from([("config".to_string(), full["vae"].to_string())]);
        let cases = [
            ("no-prefix", false, Some(metadata_of(&official))),
            ("vae-config", false, Some(vae_only)),
            ("no-config", false, None),
            ("prefixed-no-config", true, None),
        ];
        for (case, prefixed, metadata) in cases {
            let path = dir.path().join(format!("{version}-{case}.safetensors"));
            let strip = |name: &str| Some(if prefixed { name.to_string() } else { name["vae.".len()..].to_string() });
            rewrite(&official, &path, strip, metadata);
            let copy = source(&path);
            let prefix = find_prefix(&copy).unwrap();
            assert_eq!(prefix, if prefixed { "vae" } else { "" });
            let model = LtxvVae::load(&copy, prefix, &Device::Cpu).unwrap();
            assert_eq!(model.config(), expected.config(), "{version} {case}");
            let decoded = model.decode(&r["latent"], None, &mut ZeroNoise, &DecodeOptions::default()).unwrap();
            assert_close(&format!("{version} {case} decode"), &decoded, &r[&format!("decoded_{version}")], TOLERANCE);
        }
    }
}

/// The released configurations in the official metadata form (ComfyUI's 0.9.5 lists without timestep
/// conditioning for 2.0; the 2.3 lists of the LTX-2.3 files) read as [`VaeConfig::ltx20`] and [`VaeConfig::ltx23`].
#[test]
fn released_ltx2_configs_read_from_their_metadata() {
    let res = |layers: u64| serde_json::json!(["res_x", {"num_layers": layers}]);
    let block = |name: &str, params: serde_json::Value| serde_json::json!([name, params]);
    let mut ltx20 = serde_json::json!({
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
        "encoder_blocks": [res(4), block("compress_space_res", serde_json::json!({"multiplier": 2})), res(6),
            block("compress_time_res", serde_json::json!({"multiplier": 2})), res(6),
            block("compress_all_res", serde_json::json!({"multiplier": 2})), res(2),
            block("compress_all_res", serde_json::json!({"multiplier": 2})), res(2)],
        "decoder_blocks": [res(5), block("compress_all", serde_json::json!({"residual": true, "multiplier": 2})), res(5),
            block("compress_all", serde_json::json!({"residual": true, "multiplier": 2})), res(5),
            block("compress_all", serde_json::json!({"residual": true, "multiplier": 2})), res(5)],
        "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform",
        "use_quant_conv": false, "causal_decoder": false, "timestep_conditioning": false
    });
    assert_eq!(VaeConfig::from_original_json(&ltx20).unwrap(), VaeConfig::ltx20());
    let ltx23 = serde_json::json!({
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
        "encoder_blocks": [res(4), block("compress_space_res", serde_json::json!({"multiplier": 2})), res(6),
            block("compress_time_res", serde_json::json!({"multiplier": 2})), res(4),
            block("compress_all_res", serde_json::json!({"multiplier": 2})), res(2),
            block("compress_all_res", serde_json::json!({"multiplier": 1})), res(2)],
        "decoder_blocks": [res(4), block("compress_space", serde_json::json!({"multiplier": 2})), res(6),
            block("compress_time", serde_json::json!({"multiplier": 2})), res(4),
            block("compress_all", serde_json::json!({"multiplier": 1})), res(2),
            block("compress_all", serde_json::json!({"multiplier": 2})), res(2)],
        "decoder_base_channels": 128, "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4,
        "latent_log_var": "uniform", "use_quant_conv": false, "causal_decoder": false, "timestep_conditioning": false,
        "spatial_padding_mode": "zeros"
    });
    let config = VaeConfig::from_original_json(&ltx23).unwrap();
    assert_eq!(config, VaeConfig::ltx23());
    assert_eq!((config.version(), VaeConfig::ltx20().version()), (VaeVersion::V23, VaeVersion::V20));
    // diffusers' decode path: conv_in 128 → 1024, then 512, 512, 256, 128 after the four upsamplers.
    assert_eq!(config.decoder_widths(), [1024, 1024, 512, 512, 512, 512, 256, 256, 128, 128]);
    assert_eq!(*config.encoder_widths().last().unwrap(), 1024);
    assert_eq!(*VaeConfig::ltx20().encoder_widths().last().unwrap(), 2048);
    config.validate().unwrap();

    // The padding keys of other writers of this format; and what the convolutional VAE cannot be.
    ltx20["decoder_spatial_padding_mode"] = serde_json::json!("zeros");
    let zeros = VaeConfig::from_original_json(&ltx20).unwrap();
    assert_eq!((zeros.encoder_padding, zeros.decoder_padding), (SpatialPadding::Zeros, SpatialPadding::Zeros));
    for (key, value) in [("_class_name", "CausalDiffusionVAE"), ("norm_layer", "group_norm")] {
        let mut broken = ltx23.clone();
        broken[key] = serde_json::json!(value);
        let error = VaeConfig::from_original_json(&broken).unwrap_err();
        assert!(error.contains(value), "{error}");
    }
}

/// A file missing one tensor is an error naming the tensor and the file, with the config from the metadata and
/// with the layout read from the tensors.
#[test]
fn missing_vae_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let official = data("video_vae_20.safetensors");
    let missing = "vae.decoder.up_blocks.4.res_blocks.1.conv2.conv.weight";
    assert!(source(&official).contains(missing));
    for (case, metadata) in [("with-config", Some(metadata_of(&official))), ("without-config", None)] {
        let path = dir.path().join(format!("{case}.safetensors"));
        rewrite(&official, &path, |name| (name != missing).then(|| name.to_string()), metadata);
        let error = LtxvVae::load(&source(&path), "vae", &Device::Cpu).err().unwrap();
        assert!(matches!(&error, WeightError::Missing { tensor, .. } if tensor == missing), "{case}: {error}");
        let message = error.to_string();
        assert!(message.contains(missing) && message.contains(&format!("{case}.safetensors")), "{message}");
    }
}

/// Without a config, a decoder that fits no released layout is refused with a request for the config instead of
/// being guessed.
#[test]
fn vae_layout_the_tensors_do_not_settle_needs_the_config() {
    let official = source(&data("video_vae_20.safetensors"));
    let names: Vec<String> = official.names().filter_map(|n| n.strip_prefix("vae.")).map(str::to_string).collect();
    let inferred = VaeConfig::infer(&names, &|name: &str| official.shape(&format!("vae.{name}"))).unwrap();
    assert_eq!(&inferred, vae("20").config());
    // Make the last upsampler keep the width (8 → 8 × 8 outputs) while the others halve it.
    let altered = |name: &str| match name {
        "decoder.up_blocks.5.conv.conv.weight" => Some(vec![64, 8, 3, 3, 3]),
        "decoder.up_blocks.6.res_blocks.0.conv1.conv.weight" => Some(vec![8, 8, 3, 3, 3]),
        _ => official.shape(&format!("vae.{name}")),
    };
    let error = VaeConfig::infer(&names, &altered).unwrap_err();
    assert!(error.contains("`config` metadata"), "{error}");
}

fn upsampler(name: &str) -> LatentUpsampler {
    LatentUpsampler::load(&source(&data(&format!("upsampler_{name}.safetensors"))), &Device::Cpu).unwrap()
}

#[test]
fn upsamplers_match_diffusers() {
    let r = reference("upsamplers");
    for (name, mode, size) in [
        ("x2", UpsampleMode::Spatial2, [1, 8, 2, 6, 8]),
        ("x1_5", UpsampleMode::SpatialRational { numerator: 3, denominator: 2 }, [1, 8, 2, 5, 6]),
        ("t2", UpsampleMode::Temporal2, [1, 8, 3, 3, 4]),
    ] {
        let model = upsampler(name);
        assert_eq!(
            *model.config(),
            UpsamplerConfig { in_channels: 8, mid_channels: 32, num_blocks_per_stage: 1, mode },
            "{name}"
        );
        assert_eq!(mode.output_size(2, 3, 4), (size[2], size[3], size[4]), "{name}");
        let out = model.forward(&r["latent"]).unwrap();
        assert_eq!(out.dims(), size, "{name}");
        assert_close(&format!("upsampler {name}"), &out, &r[name], TOLERANCE);
    }
}

/// ComfyUI's `LTXVLatentUpsampler`: un-normalise with the video VAE's statistics, upsample, normalise; against
/// diffusers' `LTX2LatentUpsamplePipeline` (`latents_normalized=True`) normalised again.
#[test]
fn upsampler_between_normalized_latents_matches_diffusers_pipeline() {
    let r = reference("upsamplers");
    let out = upsampler("x2").forward_normalized(&r["normalized"], vae("20").statistics()).unwrap();
    assert_close("x2 between normalised latents", &out, &r["x2_normalized"], TOLERANCE);
}

/// Upsampler files without metadata: the tensors settle ×2 and temporal ×2 but not ×3 / 2 against ×3 / 4; widths
/// the group norms cannot split, missing tensors and leftovers are errors naming what is wrong.
#[test]
fn upsampler_files_without_config_or_with_broken_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let r = reference("upsamplers");
    let keep = |name: &str| Some(name.to_string());
    for name in ["x2", "t2"] {
        let path = dir.path().join(format!("{name}-bare.safetensors"));
        rewrite(&data(&format!("upsampler_{name}.safetensors")), &path, keep, None);
        let model = LatentUpsampler::load(&source(&path), &Device::Cpu).unwrap();
        assert_eq!(model.config(), upsampler(name).config());
        assert_close(&format!("{name} without config"), &model.forward(&r["latent"]).unwrap(), &r[name], TOLERANCE);
    }
    let path = dir.path().join("x1_5-bare.safetensors");
    rewrite(&data("upsampler_x1_5.safetensors"), &path, keep, None);
    let error = LatentUpsampler::load(&source(&path), &Device::Cpu).err().unwrap().to_string();
    assert!(error.contains("spatial_scale"), "{error}");

    let x2 = data("upsampler_x2.safetensors");
    let path = dir.path().join("missing.safetensors");
    rewrite(&x2, &path, |name| (name != "final_conv.bias").then(|| name.to_string()), Some(metadata_of(&x2)));
    let error = LatentUpsampler::load(&source(&path), &Device::Cpu).err().unwrap();
    assert!(matches!(&error, WeightError::Missing { tensor, .. } if tensor == "final_conv.bias"), "{error}");

    let mut tensors = candle_core::safetensors::load(&x2, &Device::Cpu).unwrap();
    let path = dir.path().join("extra.safetensors");
    let mut extra = tensors.clone();
    extra.insert("res_blocks.1.conv1.weight".into(), tensors["res_blocks.0.conv1.weight"].clone());
    safetensors::serialize_to_file(&extra, Some(metadata_of(&x2)), &path).unwrap();
    let error = LatentUpsampler::load(&source(&path), &Device::Cpu).err().unwrap();
    assert!(matches!(&error, WeightError::Unexpected { tensors, .. } if tensors == &["res_blocks.1.conv1.weight"]));

    let path = dir.path().join("narrow.safetensors");
    tensors.insert("initial_conv.weight".into(), Tensor::zeros((16, 8, 3, 3, 3), DType::F16, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let error = LatentUpsampler::load(&source(&path), &Device::Cpu).err().unwrap().to_string();
    assert!(error.contains("multiple of 32"), "{error}");

    let error = upsampler("x2").forward(&r["latent"].i((.., ..4)).unwrap()).err().unwrap().to_string();
    assert!(error.contains("(B, 8, F, H, W)"), "{error}");
}
