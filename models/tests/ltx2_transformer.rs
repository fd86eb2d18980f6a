//! The LTX-2 audio-video transformer against diffusers 0.42.1 on the tiny fixtures of
//! `tools/fixtures/make_ltx2_fixtures.py` (`tests/data/ltx2/`): the 2.0 and 2.3 layouts saved under the
//! official single-file names, with per-token timesteps, padded text, odd latent sizes, a 1-frame video,
//! both timestep routings, spatio-temporal guidance and isolated modalities. f32 max absolute errors.

use crate::compare::{assert_close, ltx2_data as data, max_abs_diff};
use candle_core::{DType, Device, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::fp8::WeightStorage;
use kinograph_models::ltx2::transformer::{
    AvInputs, AvTimestepRouting, LoadOptions, Ltx2Transformer, Ltx2Version, Perturbation, detect_layout, read_config,
};
use kinograph_models::weights::{WeightError, WeightSource};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data(&format!("ref/{name}.safetensors")), &Device::Cpu).unwrap()
}

fn model(version: &str, blocks: BlockHolding) -> Ltx2Transformer {
    let path = data(&format!("transformer_{version}.safetensors"));
    Ltx2Transformer::load_file(&path, &Device::Cpu, LoadOptions { blocks, ..LoadOptions::default() }).unwrap()
}

/// A fixture case's inputs at the given positions (with its text mask when `masked`, and its keyframe mask
/// when it has one).
pub(crate) fn fixture_inputs<'a>(
    r: &'a HashMap<String, Tensor>,
    video_positions: &'a Tensor,
    audio_positions: &'a Tensor,
    masked: bool,
) -> AvInputs<'a> {
    AvInputs {
        video: &r["video"],
        audio: &r["audio"],
        video_context: &r["video_context"],
        audio_context: &r["audio_context"],
        context_mask: masked.then(|| &r["context_mask"]),
        video_timestep: &r["timestep"],
        audio_timestep: &r["audio_timestep"],
        video_sigma: &r["sigma"],
        audio_sigma: &r["audio_sigma"],
        video_positions,
        audio_positions,
        keyframe_mask: r.get("keyframe_mask"),
        video_guides: None,
    }
}

/// Runs one fixture case and compares both outputs (and the positions and RoPE tables) with diffusers.
fn check_case(version: &str, case: &str, blocks: BlockHolding) {
    let r = reference(&format!("transformer_{version}_{case}"));
    let mut model = model(version, blocks);
    let routing = if case == "cross_timestep" { AvTimestepRouting::Cross } else { AvTimestepRouting::Own };
    model.set_av_routing(routing);
    model.set_v2a_after_a2v(false);
    let grid: Vec<i64> = r["grid"].to_vec1().unwrap();
    let [frames, height, width, audio_tokens] = [grid[0], grid[1], grid[2], grid[3]].map(|v| v as usize);
    let batch = r["video"].dim(0).unwrap();
    let fps = r["fps"].to_vec1::<f32>().unwrap()[0];
    let video_positions = model.video_positions(batch, frames, height, width, fps).unwrap();
    let audio_positions = model.audio_positions(batch, audio_tokens).unwrap();
    assert_close(&format!("{version} {case} video positions"), &video_positions, &r["video_coords"], 1e-6);
    assert_close(&format!("{version} {case} audio positions"), &audio_positions, &r["audio_coords"], 1e-6);
    let tables = model.rope_tables(&video_positions, &audio_positions).unwrap();
    for (table, name) in tables.iter().zip(["rope", "audio_rope", "cross_rope", "cross_audio_rope"]) {
        let (cos, sin) = table.to_diffusers().unwrap();
        assert_close(&format!("{version} {case} {name} cos"), &cos, &r[&format!("{name}_cos")], 1e-5);
        assert_close(&format!("{version} {case} {name} sin"), &sin, &r[&format!("{name}_sin")], 1e-5);
    }
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
    let perturbation = Perturbation {
        stg_blocks: if case == "stg" { vec![1] } else { Vec::new() },
        isolate_modalities: case == "isolated",
    };
    let (video, audio) = model.forward(&inputs, &perturbation).unwrap();
    let label = format!("{version} {case} ({blocks:?})");
    assert_close(&format!("{label} video"), &video, &r["video_out"], 1e-4);
    assert_close(&format!("{label} audio"), &audio, &r["audio_out"], 1e-4);
}

#[test]
fn release_and_sizes_are_read_from_the_tensors_and_metadata() {
    for (file, version, gated) in [("20", Ltx2Version::V2_0, false), ("23", Ltx2Version::V2_3, true)] {
        let source = WeightSource::open(&[data(&format!("transformer_{file}.safetensors"))]).unwrap();
        let layout = detect_layout(&source).unwrap();
        assert_eq!(layout.prefix, "model.diffusion_model");
        let config = read_config(&source, &layout).unwrap();
        assert_eq!(config.version(), version);
        assert_eq!(config.gated_attention, gated);
        assert_eq!(config.caption_projection, version == Ltx2Version::V2_0);
        assert_eq!((config.num_attention_heads, config.attention_head_dim), (2, 16));
        assert_eq!((config.audio_num_attention_heads, config.audio_attention_head_dim), (2, 8));
        assert_eq!((config.num_layers, config.cross_attention_dim, config.audio_cross_attention_dim), (2, 32, 16));
        assert!(config.causal_temporal_positioning);
        assert_eq!(config.gate_timestep_factor(), 1.0);
    }
}

#[test]
fn ltx20_matches_diffusers() {
    for case in ["t2v", "per_token", "one_frame", "cross_timestep"] {
        check_case("20", case, BlockHolding::Resident);
    }
}

#[test]
fn ltx23_matches_diffusers() {
    for case in ["t2v", "per_token", "one_frame", "cross_timestep", "stg", "isolated"] {
        check_case("23", case, BlockHolding::Resident);
    }
}

/// 2.5: no video feed-forward bias, a static prompt table instead of `prompt_adaln_single`, and the
/// keyframe embedding on the tokens of the first latent frame.
#[test]
fn ltx25_matches_diffusers() {
    let source = WeightSource::open(&[data("transformer_25.safetensors")]).unwrap();
    let config = read_config(&source, &detect_layout(&source).unwrap()).unwrap();
    assert_eq!(config.version(), Ltx2Version::V2_5);
    assert!(!config.ff_bias && config.audio_ff_bias && config.keyframes_embedding && !config.prompt_adaln);
    for case in ["t2v", "per_token"] {
        check_case("25", case, BlockHolding::Resident);
    }
}

#[test]
fn streamed_and_partly_streamed_blocks_give_the_same_result() {
    check_case("20", "per_token", BlockHolding::STREAMED);
    check_case("23", "per_token", BlockHolding::STREAMED);
    check_case("20", "per_token", BlockHolding::Streamed { kept: 1 });
}

/// ComfyUI's routing (gates from the other stream's largest timestep) equals diffusers' per-stream routing
/// when both streams share one timestep, as in text-to-video.
#[test]
fn comfyui_routing_equals_the_others_for_one_shared_timestep() {
    let r = reference("transformer_23_t2v");
    let mut model = model("23", BlockHolding::Resident);
    let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
    let audio_positions = model.audio_positions(1, 5).unwrap();
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
    for routing in [AvTimestepRouting::CrossGate, AvTimestepRouting::Cross] {
        model.set_av_routing(routing);
        model.set_v2a_after_a2v(false);
        let (video, audio) = model.forward(&inputs, &Perturbation::default()).unwrap();
        assert_close(&format!("{routing:?} video"), &video, &r["video_out"], 1e-4);
        assert_close(&format!("{routing:?} audio"), &audio, &r["audio_out"], 1e-4);
    }
}

#[test]
fn partial_and_foreign_files_are_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let full = candle_core::safetensors::load(data("transformer_20.safetensors"), &Device::Cpu).unwrap();

    // Only the VAE-like remainder: no transformer at all.
    let path = dir.path().join("vae_only.safetensors");
    let some: HashMap<String, Tensor> =
        [("vae.decoder.conv_in.weight".to_string(), Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap())].into();
    candle_core::safetensors::save(&some, &path).unwrap();
    let error = Ltx2Transformer::load_file(&path, &Device::Cpu, LoadOptions::default()).unwrap_err();
    assert!(error.to_string().contains("no LTX-2 transformer found"), "{error}");

    // A file cut after the first block: the missing block is named, resident or streamed.
    let path = dir.path().join("one_block.safetensors");
    let partial: HashMap<String, Tensor> = full
        .iter()
        .filter(|(name, _)| !name.contains("transformer_blocks.1."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let mut with_one_tensor = partial.clone();
    let kept = "model.diffusion_model.transformer_blocks.1.scale_shift_table";
    with_one_tensor.insert(kept.to_string(), full[kept].clone());
    candle_core::safetensors::save(&with_one_tensor, &path).unwrap();
    for blocks in [BlockHolding::Resident, BlockHolding::STREAMED] {
        let error = Ltx2Transformer::load_file(&path, &Device::Cpu, LoadOptions { blocks, ..LoadOptions::default() })
            .unwrap_err();
        assert!(matches!(error, WeightError::Missing { .. }), "{error}");
        assert!(error.to_string().contains("transformer_blocks.1."), "{error}");
    }

    // An LTX-Video 0.9.x transformer is recognised as such.
    let path = dir.path().join("ltxv.safetensors");
    let ltxv: HashMap<String, Tensor> = full
        .iter()
        .filter(|(name, _)| name.starts_with("model.diffusion_model.adaln_single."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    candle_core::safetensors::save(&ltxv, &path).unwrap();
    let error =
        Ltx2Transformer::load(&Arc::new(WeightSource::open(&[&path]).unwrap()), &Device::Cpu, LoadOptions::default())
            .unwrap_err();
    assert!(error.to_string().contains("LTX-Video 0.9.x"), "{error}");
}

/// A low-rank update on a block layer and a top-level layer gives the same output whether the blocks are
/// resident or streamed, and the same as merging `B·A` into the weights of the file.
#[test]
fn lora_updates_apply_to_resident_and_streamed_blocks() {
    use kinograph_models::lora::{LayerPatch, WeightDelta};
    use std::collections::BTreeMap;
    let device = Device::Cpu;
    let r = reference("transformer_20_t2v");
    let layers: BTreeMap<String, (usize, usize)> =
        model("20", BlockHolding::Resident).linear_layers().unwrap().into_iter().collect();
    assert_eq!(model("20", BlockHolding::STREAMED).linear_layers().unwrap().len(), layers.len());
    let partly = model("20", BlockHolding::Streamed { kept: 1 }).linear_layers().unwrap();
    assert_eq!(partly.into_iter().collect::<BTreeMap<_, _>>(), layers);
    let targets = ["transformer_blocks.1.audio_to_video_attn.to_q", "patchify_proj"];
    let mut patches = BTreeMap::new();
    let mut merged = candle_core::safetensors::load(data("transformer_20.safetensors"), &device).unwrap();
    for (seed, name) in targets.iter().enumerate() {
        let (out, inputs) = layers[*name];
        let down = Tensor::randn(0f32, 0.3, (2, inputs), &device).unwrap();
        let up = Tensor::randn(0f32, 0.3 + seed as f32 * 0.1, (out, 2), &device).unwrap();
        let delta = WeightDelta::LowRank {
            down_t: down.t().unwrap().contiguous().unwrap(),
            up_t: up.t().unwrap().contiguous().unwrap(),
            scale: 0.7,
        };
        patches.insert(name.to_string(), LayerPatch { weight: Some(delta), ..LayerPatch::default() });
        let key = format!("model.diffusion_model.{name}.weight");
        let update = (up.matmul(&down).unwrap() * 0.7).unwrap();
        merged.insert(key.clone(), (&merged[&key] + update).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let merged_path = dir.path().join("merged.safetensors");
    candle_core::safetensors::save(&merged, &merged_path).unwrap();
    let config = read_config(
        &WeightSource::open(&[data("transformer_20.safetensors")]).unwrap(),
        &detect_layout(&WeightSource::open(&[data("transformer_20.safetensors")]).unwrap()).unwrap(),
    )
    .unwrap();
    let source = Arc::new(WeightSource::open(&[&merged_path]).unwrap());
    let layout = detect_layout(&source).unwrap();
    let mut expected_model =
        Ltx2Transformer::load_with_config(&source, &layout, &config, &device, LoadOptions::default()).unwrap();
    expected_model.set_av_routing(AvTimestepRouting::Own);
    expected_model.set_v2a_after_a2v(false);

    let video_positions = expected_model.video_positions(1, 3, 2, 3, 24.0).unwrap();
    let audio_positions = expected_model.audio_positions(1, 5).unwrap();
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, false);
    let (expected_video, expected_audio) = expected_model.forward(&inputs, &Perturbation::default()).unwrap();
    let (base_video, _) = {
        let mut base = model("20", BlockHolding::Resident);
        base.set_av_routing(AvTimestepRouting::Own);
        base.set_v2a_after_a2v(false);
        base.forward(&inputs, &Perturbation::default()).unwrap()
    };
    assert!(max_abs_diff(&base_video, &expected_video) > 1e-2, "the update must change the output");
    for blocks in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let mut patched = model("20", blocks).with_patches(&patches).unwrap();
        patched.set_av_routing(AvTimestepRouting::Own);
        patched.set_v2a_after_a2v(false);
        let (video, audio) = patched.forward(&inputs, &Perturbation::default()).unwrap();
        assert_close(&format!("LoRA video ({blocks:?})"), &video, &expected_video, 1e-4);
        assert_close(&format!("LoRA audio ({blocks:?})"), &audio, &expected_audio, 1e-4);
    }
    let mut unknown = BTreeMap::new();
    unknown.insert("transformer_blocks.7.attn1.to_q".to_string(), LayerPatch::default());
    assert!(model("20", BlockHolding::STREAMED).with_patches(&unknown).is_err());
}

/// A bf16 file keeps its linear layers in bf16 (widened as they are used) and computes the same as the
/// same weights widened to f32 at load time.
#[test]
fn bf16_weights_stay_bf16_and_compute_in_f32() {
    let device = Device::Cpu;
    let full = candle_core::safetensors::load(data("transformer_23.safetensors"), &device).unwrap();
    let bf16: HashMap<String, Tensor> =
        full.iter().map(|(name, t)| (name.clone(), t.to_dtype(DType::BF16).unwrap())).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bf16.safetensors");
    // The metadata (head split) travels with the file: copy it over.
    let source = WeightSource::open(&[data("transformer_23.safetensors")]).unwrap();
    let config = source.metadata("config").unwrap().to_string();
    let views: Vec<(String, Tensor)> = bf16.into_iter().collect();
    safetensors::serialize_to_file(
        views.iter().map(|(n, t)| (n.as_str(), t)),
        Some([("config".to_string(), config)].into()),
        &path,
    )
    .unwrap();
    let source = Arc::new(WeightSource::open(&[&path]).unwrap());
    let layout = detect_layout(&source).unwrap();
    assert_eq!(layout.storage_dtype(&source).unwrap(), DType::BF16);
    let r = reference("transformer_23_t2v");
    let mut outputs = Vec::new();
    for widen_at_load in [false, true] {
        let options = LoadOptions { widen_at_load, ..LoadOptions::default() };
        let mut model = Ltx2Transformer::load(&source, &device, options).unwrap();
        let dtype = if widen_at_load { DType::F32 } else { DType::BF16 };
        assert_eq!(model.storage(), WeightStorage::Dense(dtype));
        model.set_av_routing(AvTimestepRouting::Own);
        model.set_v2a_after_a2v(false);
        let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
        let audio_positions = model.audio_positions(1, 5).unwrap();
        let inputs = fixture_inputs(&r, &video_positions, &audio_positions, false);
        outputs.push(model.forward(&inputs, &Perturbation::default()).unwrap());
    }
    assert_close("bf16 kept vs widened at load, video", &outputs[0].0, &outputs[1].0, 1e-5);
    assert_close("bf16 kept vs widened at load, audio", &outputs[0].1, &outputs[1].1, 1e-5);
    // bf16 rounding of the weights moves the output, but not far.
    assert_close("bf16 vs f32 weights, video", &outputs[0].0, &r["video_out"], 0.1);
}

/// A diffusers `transformer/` folder (diffusers' names and `config.json`) is the same model as the single file.
#[test]
fn the_diffusers_folder_layout_loads_the_same_transformer() {
    let folder = data("diffusers_23/transformer/diffusion_pytorch_model.safetensors");
    let source = Arc::new(WeightSource::open(&[folder]).unwrap());
    let layout = detect_layout(&source).unwrap();
    assert!(layout.diffusers && layout.prefix.is_empty());
    let config = read_config(&source, &layout).unwrap();
    let single = WeightSource::open(&[data("transformer_23.safetensors")]).unwrap();
    let mut expected = read_config(&single, &detect_layout(&single).unwrap()).unwrap();
    expected.causal_temporal_positioning = config.causal_temporal_positioning;
    assert_eq!(config, expected);
    assert!(config.causal_temporal_positioning, "diffusers' causal_offset 1");
    let mut model = Ltx2Transformer::load(&source, &Device::Cpu, LoadOptions::default()).unwrap();
    model.set_av_routing(AvTimestepRouting::Own);
    model.set_v2a_after_a2v(false);
    let r = reference("transformer_23_per_token");
    let video_positions = model.video_positions(2, 3, 2, 3, 25.0).unwrap();
    let audio_positions = model.audio_positions(2, 5).unwrap();
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
    let (video, audio) = model.forward(&inputs, &Perturbation::default()).unwrap();
    assert_close("diffusers folder video", &video, &r["video_out"], 1e-4);
    assert_close("diffusers folder audio", &audio, &r["audio_out"], 1e-4);
}

/// Which parts each file holds, and the error for a part a file lacks.
#[test]
fn files_say_which_parts_they_hold() {
    use kinograph_models::ltx2::checkpoint::{Contents, Part};
    let transformer = WeightSource::open(&[data("transformer_23.safetensors")]).unwrap();
    let contents = Contents::inspect(&transformer);
    assert_eq!(contents.transformer, Some(Ltx2Version::V2_3));
    assert_eq!(contents.parts, [Part::Transformer]);
    let error = contents.require(Part::AudioVae, &transformer).unwrap_err().to_string();
    assert!(error.contains("holds LTX-2 transformer but no audio VAE") && error.contains("audio_vae."), "{error}");

    let connectors = WeightSource::open(&[data("connectors_20.safetensors")]).unwrap();
    let contents = Contents::inspect(&connectors);
    assert_eq!(
        (contents.transformer, contents.parts.as_slice()),
        (None, [Part::TextConnectors, Part::TextProjection].as_slice())
    );
    assert!(contents.require(Part::Transformer, &connectors).is_err());

    let gemma = WeightSource::open(&[data("gemma3_tiny.safetensors")]).unwrap();
    assert_eq!(Contents::inspect(&gemma).parts, [Part::TextEncoder]);
}

/// A LoRA in the LTX-2 trainer's naming (`diffusion_model.<layer>.lora_A/lora_B.weight`, no alpha, as the
/// distilled and IC LoRAs ship) is read through ComfyUI's key map onto the transformer's layers and equals
/// the weights merged by hand (`ΔW = strength·B·A`).
#[test]
fn trainer_loras_apply_through_comfyui_keys() {
    use kinograph_models::lora::{KeyMap, LoraFile};
    let device = Device::Cpu;
    let base = model("23", BlockHolding::STREAMED);
    let layers = base.linear_layers().unwrap();
    let shapes: HashMap<String, (usize, usize)> = layers.iter().cloned().collect();
    let targets =
        ["transformer_blocks.0.attn1.to_q", "transformer_blocks.1.video_to_audio_attn.to_gate_logits", "proj_out"];
    let strength = 0.8;
    let mut lora = HashMap::new();
    let mut merged = candle_core::safetensors::load(data("transformer_23.safetensors"), &device).unwrap();
    for name in targets {
        let (out, inputs) = shapes[name];
        let a = Tensor::randn(0f32, 0.3, (4, inputs), &device).unwrap();
        let b = Tensor::randn(0f32, 0.3, (out, 4), &device).unwrap();
        let key = format!("model.diffusion_model.{name}.weight");
        merged.insert(key.clone(), (&merged[&key] + (b.matmul(&a).unwrap() * strength).unwrap()).unwrap());
        lora.insert(format!("diffusion_model.{name}.lora_A.weight"), a);
        lora.insert(format!("diffusion_model.{name}.lora_B.weight"), b);
    }
    let dir = tempfile::tempdir().unwrap();
    let lora_path = dir.path().join("lora.safetensors");
    candle_core::safetensors::save(&lora, &lora_path).unwrap();
    let merged_path = dir.path().join("merged.safetensors");
    let config =
        WeightSource::open(&[data("transformer_23.safetensors")]).unwrap().metadata("config").unwrap().to_string();
    let views: Vec<(String, Tensor)> = merged.into_iter().collect();
    safetensors::serialize_to_file(
        views.iter().map(|(n, t)| (n.as_str(), t)),
        Some([("config".to_string(), config)].into()),
        &merged_path,
    )
    .unwrap();

    let found =
        LoraFile::open(&lora_path).unwrap().patches(&KeyMap::diffusion_model(&layers), &[("unet", strength)]).unwrap();
    assert!(found.not_loaded.is_empty(), "{:?}", found.not_loaded);
    let mut patched = base.with_patches(&found.layers["unet"]).unwrap();
    let mut expected = Ltx2Transformer::load_file(&merged_path, &device, LoadOptions::default()).unwrap();
    let r = reference("transformer_23_t2v");
    let video_positions = patched.video_positions(1, 3, 2, 3, 24.0).unwrap();
    let audio_positions = patched.audio_positions(1, 5).unwrap();
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, false);
    patched.set_av_routing(AvTimestepRouting::Own);
    patched.set_v2a_after_a2v(false);
    expected.set_av_routing(AvTimestepRouting::Own);
    expected.set_v2a_after_a2v(false);
    let (video, audio) = patched.forward(&inputs, &Perturbation::default()).unwrap();
    let (expected_video, expected_audio) = expected.forward(&inputs, &Perturbation::default()).unwrap();
    assert_close("trainer LoRA video", &video, &expected_video, 1e-4);
    assert_close("trainer LoRA audio", &audio, &expected_audio, 1e-4);
}

/// Lightricks' fp8 files: the block linears in float8 e4m3 with a per-tensor scale (`weight_scale`, or the
/// older `scale_weight`; `input_scale` beside them for fp8 matmuls), everything else bf16. They load, keep
/// the fp8 codes in memory, and compute what the dequantised weights compute; the scale is never skipped.
#[test]
fn scaled_fp8_files_compute_with_their_dequantised_weights() {
    let device = Device::Cpu;
    let full = candle_core::safetensors::load(data("transformer_20.safetensors"), &device).unwrap();
    let config =
        WeightSource::open(&[data("transformer_20.safetensors")]).unwrap().metadata("config").unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let save = |tensors: &HashMap<String, Tensor>, name: &str| {
        let path = dir.path().join(name);
        let views: Vec<(&String, &Tensor)> = tensors.iter().collect();
        safetensors::serialize_to_file(
            views.iter().map(|(n, t)| (n.as_str(), *t)),
            Some([("config".to_string(), config.clone())].into()),
            &path,
        )
        .unwrap();
        path
    };
    let mut outputs = Vec::new();
    for scale_name in ["weight_scale", "scale_weight"] {
        let (mut quantised, mut dequantised) = (HashMap::new(), HashMap::new());
        for (name, tensor) in &full {
            let linear = name.contains(".transformer_blocks.") && name.ends_with(".weight") && tensor.rank() == 2;
            if linear {
                let scale = tensor.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / 448.0;
                let q = (tensor / f64::from(scale)).unwrap().to_dtype(DType::F8E4M3).unwrap();
                dequantised.insert(name.clone(), (q.to_dtype(DType::F32).unwrap() * f64::from(scale)).unwrap());
                let stem = name.strip_suffix(".weight").unwrap();
                quantised.insert(format!("{stem}.{scale_name}"), Tensor::new(scale, &device).unwrap());
                quantised.insert(format!("{stem}.input_scale"), Tensor::new(1f32, &device).unwrap());
                quantised.insert(name.clone(), q);
            } else {
                let rounded = tensor.to_dtype(DType::BF16).unwrap();
                dequantised.insert(name.clone(), rounded.to_dtype(DType::F32).unwrap());
                quantised.insert(name.clone(), rounded);
            }
        }
        let fp8 = Arc::new(WeightSource::open(&[save(&quantised, "fp8.safetensors")]).unwrap());
        assert_eq!(detect_layout(&fp8).unwrap().storage_dtype(&fp8).unwrap(), DType::BF16);
        let mut model = Ltx2Transformer::load(
            &fp8,
            &device,
            LoadOptions { blocks: BlockHolding::STREAMED, ..LoadOptions::default() },
        )
        .unwrap();
        let mut reference_model =
            Ltx2Transformer::load_file(&save(&dequantised, "dequantised.safetensors"), &device, LoadOptions::default())
                .unwrap();
        let r = reference("transformer_20_t2v");
        let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
        let audio_positions = model.audio_positions(1, 5).unwrap();
        let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
        model.set_av_routing(AvTimestepRouting::Own);
        model.set_v2a_after_a2v(false);
        reference_model.set_av_routing(AvTimestepRouting::Own);
        reference_model.set_v2a_after_a2v(false);
        let (video, audio) = model.forward(&inputs, &Perturbation::default()).unwrap();
        let (expected_video, expected_audio) = reference_model.forward(&inputs, &Perturbation::default()).unwrap();
        assert_close(&format!("fp8 ({scale_name}) video"), &video, &expected_video, 1e-5);
        assert_close(&format!("fp8 ({scale_name}) audio"), &audio, &expected_audio, 1e-5);
        outputs.push(video);
    }
    // The scales matter: without them the output would be far off (the fp8 values are up to 448× the weights).
    assert!(max_abs_diff(&outputs[0], &reference("transformer_20_t2v")["video_out"]) < 0.5);
}
