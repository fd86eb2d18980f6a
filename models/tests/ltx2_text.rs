//! LTX-2's text stack after Gemma: the feature extractor (2.0 range norm, 2.3 per-token RMS) and the
//! video/audio connectors with their registers, against diffusers 0.42.1 `LTX2TextConnectors` on the tiny
//! fixtures of `tools/fixtures/make_ltx2_fixtures.py`. Batches with 5, 8 and 1 valid tokens (left padding).

use crate::compare::{assert_close, ltx2_data as data};
use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::sync::Arc;

/// The stacked `[B, T, D, L]` hidden states as the list of L states the encoder returns.
fn layers(hidden: &Tensor) -> Vec<Tensor> {
    let count = hidden.dim(3).unwrap();
    (0..count).map(|l| hidden.i((.., .., .., l)).unwrap().contiguous().unwrap()).collect()
}

fn check(version: &str) {
    let device = Device::Cpu;
    let source = Arc::new(WeightSource::open(&[data(&format!("connectors_{version}.safetensors"))]).unwrap());
    let connectors = TextConnectors::load(&source, 16, &device).unwrap();
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data(&format!("ref/connectors_{version}.safetensors")), &device).unwrap();
    let hidden = layers(&r["hidden_states"]);
    let (video, audio) = connectors.forward(&hidden, &r["mask"], 8).unwrap();
    assert_close(&format!("{version} video context"), &video, &r["video"], 1e-4);
    assert_close(&format!("{version} audio context"), &audio, &r["audio"], 1e-4);

    // Each prompt alone and unpadded gives its rows of the padded batch.
    let mask: Vec<Vec<i64>> = r["mask"].to_vec2().unwrap();
    for (b, row) in mask.iter().enumerate() {
        let start = row.iter().position(|&m| m == 1).unwrap();
        let tokens = row.len() - start;
        let alone: Vec<Tensor> =
            hidden.iter().map(|h| h.i((b..=b, start.., ..)).unwrap().contiguous().unwrap()).collect();
        let ones = Tensor::ones((1, tokens), DType::F32, &device).unwrap();
        let (video_alone, audio_alone) = connectors.forward(&alone, &ones, 8).unwrap();
        assert_close(&format!("{version} sample {b} unpadded, video"), &video_alone, &video.i(b..=b).unwrap(), 1e-5);
        assert_close(&format!("{version} sample {b} unpadded, audio"), &audio_alone, &audio.i(b..=b).unwrap(), 1e-5);
    }
}

#[test]
fn ltx20_connectors_match_diffusers() {
    check("20");
}

#[test]
fn ltx23_connectors_match_diffusers() {
    check("23");
}

#[test]
fn a_file_without_connectors_is_refused_by_name() {
    let source = Arc::new(WeightSource::open(&[data("transformer_20.safetensors")]).unwrap());
    let error = TextConnectors::load(&source, 16, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("video_embeddings_connector.learnable_registers"), "{error}");
}

/// A diffusers `connectors/` folder (diffusers' names and `config.json`) gives the single file's result.
#[test]
fn the_diffusers_folder_layout_loads_the_same_connectors() {
    let device = Device::Cpu;
    let folder = data("diffusers_23/connectors/diffusion_pytorch_model.safetensors");
    let connectors = TextConnectors::load(&Arc::new(WeightSource::open(&[folder]).unwrap()), 16, &device).unwrap();
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/connectors_23.safetensors"), &device).unwrap();
    let (video, audio) = connectors.forward(&layers(&r["hidden_states"]), &r["mask"], 8).unwrap();
    assert_close("diffusers folder, video context", &video, &r["video"], 1e-4);
    assert_close("diffusers folder, audio context", &audio, &r["audio"], 1e-4);
}
