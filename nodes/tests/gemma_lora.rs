//! `LoraLoader` on LTX-2's CLIP (Gemma 3, as `LTXAVTextEncoderLoader` gives it) against transformers with the
//! LoRA merged as ComfyUI merges it (`tests/data/gemma_lora/`, made by `tools/fixtures/make_gemma_lora_fixtures.py`):
//! both key formats ComfyUI reads for this encoder, resident and streamed layers, two LoRAs in a chain, strength
//! 0, a file whose keys match nothing (a warning, never a silent no-op), and the LTX-2 model beside it.

use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_engine::{Environment, ExecutionContext, ModelFolders, NodeError, NodeInputs, Value};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::{Gemma3TextModel, GemmaLoadOptions, GemmaTokenizer};
use kinograph_models::ltx2::transformer::{AvInputs, AvTimestepRouting, LoadOptions, Ltx2Transformer, Perturbation};
use kinograph_models::weights::WeightSource;
use kinograph_nodes::values::{DiffusionModel, TextEncoder, Transformer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma_lora").join(name)
}

fn ltx2_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/ltx2").join(name)
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data("expected.safetensors"), &Device::Cpu).unwrap()
}

/// A CLIP as `LTXAVTextEncoderLoader` gives it, with the tiny Gemma (the tokenizer and connectors are not used).
fn gemma_clip(layers: BlockHolding) -> Arc<TextEncoder> {
    let gemma_file = data("gemma3_tiny.safetensors");
    let source = Arc::new(WeightSource::open(std::slice::from_ref(&gemma_file)).unwrap());
    let model = Gemma3TextModel::load(&source, &Device::Cpu, GemmaLoadOptions { layers }).unwrap();
    let tokenizer = GemmaTokenizer::from_sentencepiece_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/gemma_tokenizer/gemma_bpe.model"),
    )
    .unwrap();
    crate::support::gemma_clip(model, tokenizer, gemma_file)
}

/// The tiny LTX-2.0 transformer as a MODEL.
fn ltx2_model() -> Arc<DiffusionModel> {
    let file = ltx2_data("transformer_20.safetensors");
    let mut transformer = Ltx2Transformer::load_file(&file, &Device::Cpu, LoadOptions::default()).unwrap();
    transformer.set_av_routing(AvTimestepRouting::Own);
    Arc::new(DiffusionModel {
        transformer: Transformer::Ltx2(Arc::new(transformer)),
        file,
        shift: 1.0,
        bytes: 0,
        loras: Vec::new(),
        identity_guidance: Vec::new(),
    })
}

fn environment(loras: &Path) -> Environment {
    let mut models = ModelFolders::new(loras.join("no-models"));
    models.add_path("loras", loras.to_path_buf());
    Environment { output_dir: loras.join("output"), input_dir: loras.join("input"), models }
}

/// Runs `LoraLoader` and returns its MODEL, CLIP and the warnings it logged.
fn lora_loader(
    model: Arc<DiffusionModel>,
    clip: Arc<TextEncoder>,
    loras: &Path,
    lora_name: &str,
    strength_model: f64,
    strength_clip: f64,
) -> Result<(Arc<DiffusionModel>, Arc<TextEncoder>, String), NodeError> {
    let registry = kinograph_nodes::registry();
    let node = registry.get("LoraLoader").expect("LoraLoader is registered");
    let mut inputs = NodeInputs::default();
    inputs.insert("model", Value::Object(model));
    inputs.insert("clip", Value::Object(clip));
    inputs.insert("lora_name", Value::from(lora_name));
    inputs.insert("strength_model", Value::Float(strength_model));
    inputs.insert("strength_clip", Value::Float(strength_clip));
    let context = ExecutionContext::detached("10", "LoraLoader", environment(loras));
    let (output, warnings) = capture_warnings(|| node.execute(&inputs, &context));
    let output = output?;
    let model = output.values[0].downcast::<DiffusionModel>().unwrap();
    let clip = output.values[1].downcast::<TextEncoder>().unwrap();
    Ok((model, clip, warnings))
}

/// What `run` logs through `tracing` (the node's warnings), as text.
fn capture_warnings<T>(run: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let result = tracing::subscriber::with_default(subscriber, run);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

fn hidden_states(clip: &TextEncoder, r: &HashMap<String, Tensor>) -> Vec<Tensor> {
    let gemma = clip.gemma.as_ref().expect("a Gemma CLIP");
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    gemma.model.hidden_states(&ids, Some(&r["attention_mask"])).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Every hidden state against transformers' for `case`, the padded sample's pad rows left out; returns the
/// largest difference.
fn assert_states(what: &str, states: &[Tensor], r: &HashMap<String, Tensor>, case: &str, tolerance: f32) -> f32 {
    let expected = &r[&format!("hidden_states_{case}")];
    assert_eq!(states.len(), expected.dim(0).unwrap());
    let mut largest = 0f32;
    for (layer, state) in states.iter().enumerate() {
        let reference = expected.i(layer).unwrap();
        for (found, wanted) in [
            (state.i(0).unwrap(), reference.i(0).unwrap()),
            (state.i((1, 4..)).unwrap(), reference.i((1, 4..)).unwrap()),
        ] {
            let error = max_abs_diff(&found, &wanted);
            assert!(error <= tolerance, "{what}: state {layer} differs from transformers ({case}) by {error}");
            largest = largest.max(error);
        }
    }
    largest
}

/// The ComfyUI-format LoRA (`text_encoders.transformer.model.*`, `lora_up`/`lora_down`, float16, no alpha) and
/// the PEFT-format one (`text_encoders.gemma3_12b.transformer.model.*`, `lora_B`/`lora_A`, alpha) give
/// transformers' hidden states with the update merged, on resident and on streamed layers.
#[test]
fn gemma_lora_matches_transformers_in_both_key_formats() {
    let r = expected();
    let loras = data("loras");
    for layers in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let clip = gemma_clip(layers);
        assert_states("base", &hidden_states(&clip, &r), &r, "base", 1e-4);
        for (file, strength, case) in
            [("gemma_lora_comfy.safetensors", 1.0, "comfy"), ("gemma_lora_peft.safetensors", 0.7, "peft")]
        {
            let (_, patched, warnings) = lora_loader(ltx2_model(), clip.clone(), &loras, file, 1.0, strength).unwrap();
            assert!(warnings.is_empty(), "{file}: {warnings}");
            let error = assert_states(file, &hidden_states(&patched, &r), &r, case, 1e-4);
            eprintln!("{file} ({layers:?}): largest difference {error:e}");
            // The input CLIP is left as it was.
            assert_states("input after patching", &hidden_states(&clip, &r), &r, "base", 1e-4);
        }
        // Two LoRA nodes in a row: the second patches the first's output.
        let (model, once, _) =
            lora_loader(ltx2_model(), clip.clone(), &loras, "gemma_lora_comfy.safetensors", 1.0, 1.0).unwrap();
        let (_, twice, _) = lora_loader(model, once, &loras, "gemma_lora_peft.safetensors", 1.0, -0.5).unwrap();
        assert_states("chain", &hidden_states(&twice, &r), &r, "chain", 1e-4);
    }
}

/// Text generation (`TextGenerateLTX2Prompt`) runs the patched layers too: the cached decoder's last state is
/// the patched model's.
#[test]
fn generation_uses_the_patched_layers() {
    let r = expected();
    let (_, patched, _) = lora_loader(
        ltx2_model(),
        gemma_clip(BlockHolding::Resident),
        &data("loras"),
        "gemma_lora_comfy.safetensors",
        1.0,
        1.0,
    )
    .unwrap();
    let model = &patched.gemma.as_ref().unwrap().model;
    let ids = r["input_ids"].i((0..1, ..)).unwrap().to_dtype(DType::U32).unwrap();
    let mut cache = kinograph_models::gemma3::Gemma3Cache::default();
    let last = model.forward_cached(&ids, &mut cache).unwrap();
    let expected = r["hidden_states_comfy"].i((4, 0..1)).unwrap();
    assert!(max_abs_diff(&last, &expected) <= 1e-4);
}

/// Strength 0 on the CLIP leaves Gemma exactly as it was; a LoRA with only text-encoder keys leaves the LTX-2
/// model's output exactly as it was.
#[test]
fn strength_zero_and_the_model_side_are_unchanged() {
    let r = expected();
    let loras = data("loras");
    let clip = gemma_clip(BlockHolding::Resident);
    let base = hidden_states(&clip, &r);
    let (model, unchanged, warnings) =
        lora_loader(ltx2_model(), clip.clone(), &loras, "gemma_lora_comfy.safetensors", 1.0, 0.0).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    for (a, b) in base.iter().zip(hidden_states(&unchanged, &r)) {
        assert_eq!(max_abs_diff(a, &b), 0.0);
    }
    // Both strengths 0: the node passes its inputs through.
    let (_, same, _) =
        lora_loader(ltx2_model(), clip.clone(), &loras, "gemma_lora_comfy.safetensors", 0.0, 0.0).unwrap();
    assert!(Arc::ptr_eq(&same, &clip));

    let base_model = ltx2_model();
    let (base_video, base_audio) = ltx2_forward(&base_model);
    let (video, audio) = ltx2_forward(&model);
    assert_eq!(max_abs_diff(&base_video, &video), 0.0);
    assert_eq!(max_abs_diff(&base_audio, &audio), 0.0);
}

fn ltx2_forward(model: &DiffusionModel) -> (Tensor, Tensor) {
    let Transformer::Ltx2(transformer) = &model.transformer else { panic!("an LTX-2 model") };
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(ltx2_data("ref/transformer_20_t2v.safetensors"), &Device::Cpu).unwrap();
    let video_positions = transformer.video_positions(1, 3, 2, 3, 24.0).unwrap();
    let audio_positions = transformer.audio_positions(1, 5).unwrap();
    let inputs = AvInputs {
        video: &r["video"],
        audio: &r["audio"],
        video_context: &r["video_context"],
        audio_context: &r["audio_context"],
        context_mask: None,
        video_timestep: &r["timestep"],
        audio_timestep: &r["audio_timestep"],
        video_sigma: &r["sigma"],
        audio_sigma: &r["audio_sigma"],
        video_positions: &video_positions,
        audio_positions: &audio_positions,
        keyframe_mask: r.get("keyframe_mask"),
        video_guides: None,
    };
    transformer.forward(&inputs, &Perturbation::default()).unwrap()
}

/// A file none of whose keys ComfyUI reads for this CLIP or model (kohya's `lora_te_*` and PEFT's
/// `base_model.model.*`, which ComfyUI maps only for other text encoders) warns, naming the file and the count,
/// and changes nothing.
#[test]
fn a_lora_that_matches_nothing_warns() {
    let r = expected();
    let clip = gemma_clip(BlockHolding::Resident);
    let (_, patched, warnings) =
        lora_loader(ltx2_model(), clip, &data("loras"), "gemma_lora_unmatched.safetensors", 1.0, 1.0).unwrap();
    assert!(
        warnings.contains("gemma_lora_unmatched.safetensors") && warnings.contains("none of its 4 keys matches"),
        "{warnings}"
    );
    assert_states("unmatched", &hidden_states(&patched, &r), &r, "base", 1e-4);
}

/// The embedding table (low rank; also the tied output table of generation) and norms (full differences of
/// their weight) match transformers with the update merged; the file's vision-tower keys, which kinograph's
/// text model does not have, are named as not loaded.
#[test]
fn embedding_and_norm_updates_match_transformers() {
    let r = expected();
    for layers in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let (_, patched, warnings) = lora_loader(
            ltx2_model(),
            gemma_clip(layers),
            &data("loras"),
            "gemma_lora_embed_norm.safetensors",
            1.0,
            0.8,
        )
        .unwrap();
        let vision = "text_encoders.transformer.vision_model.encoder.layers.0.self_attn.q_proj";
        for key in [format!("{vision}.lora_up.weight"), format!("{vision}.lora_down.weight")] {
            assert!(warnings.contains(&format!("key not loaded: {key}")), "{warnings}");
        }
        let states = hidden_states(&patched, &r);
        let error = assert_states("embedding and norms", &states, &r, "embed_norm", 1e-4);
        let model = &patched.gemma.as_ref().unwrap().model;
        let logits = model.logits(&states[4]).unwrap();
        let expected = &r["logits_embed_norm"];
        let logits_error = max_abs_diff(&logits.i(0).unwrap(), &expected.i(0).unwrap())
            .max(max_abs_diff(&logits.i((1, 4..)).unwrap(), &expected.i((1, 4..)).unwrap()));
        assert!(logits_error <= 1e-4, "logits differ by {logits_error}");
        assert!(max_abs_diff(expected, &r["logits_base"]) > 1e-2);
        eprintln!("embedding and norms ({layers:?}): states {error:e}, logits {logits_error:e}");
    }
}

/// A LoRA that changes the feature projection (part of the connectors in kinograph) is refused, naming the key.
#[test]
fn a_lora_on_the_feature_projection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = Tensor::ones((32, 2), DType::F32, &Device::Cpu).unwrap();
    let down = Tensor::ones((2, 160), DType::F32, &Device::Cpu).unwrap();
    let tensors: HashMap<String, Tensor> = [
        ("text_encoders.text_embedding_projection.lora_up.weight".to_string(), up),
        ("text_encoders.text_embedding_projection.lora_down.weight".to_string(), down),
    ]
    .into();
    candle_core::safetensors::save(&tensors, dir.path().join("projection.safetensors")).unwrap();
    let error =
        lora_loader(ltx2_model(), gemma_clip(BlockHolding::Resident), dir.path(), "projection.safetensors", 1.0, 1.0)
            .unwrap_err();
    assert!(error.to_string().contains("text_embedding_projection"), "{error}");
}

/// One file with updates for both the LTX-2 model and Gemma (as a LoRA trained on both carries them): each side
/// gets its own, at its own strength.
#[test]
fn one_file_patches_the_model_and_gemma() {
    let r = expected();
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = candle_core::safetensors::load(data("loras/gemma_lora_comfy.safetensors"), &Device::Cpu).unwrap();
    let layer = "diffusion_model.transformer_blocks.0.attn1.to_q";
    let up = (Tensor::ones((32, 2), DType::F32, &Device::Cpu).unwrap() * 0.3).unwrap();
    let down = (Tensor::ones((2, 32), DType::F32, &Device::Cpu).unwrap() * 0.2).unwrap();
    tensors.insert(format!("{layer}.lora_B.weight"), up);
    tensors.insert(format!("{layer}.lora_A.weight"), down);
    candle_core::safetensors::save(&tensors, dir.path().join("both.safetensors")).unwrap();

    let (model, clip, warnings) =
        lora_loader(ltx2_model(), gemma_clip(BlockHolding::STREAMED), dir.path(), "both.safetensors", 1.0, 1.0)
            .unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert_states("Gemma side", &hidden_states(&clip, &r), &r, "comfy", 1e-4);
    let (base_video, _) = ltx2_forward(&ltx2_model());
    let (video, _) = ltx2_forward(&model);
    assert!(max_abs_diff(&base_video, &video) > 1e-3, "the model side must change");

    // Strength 0 for the model: Gemma patched, the model as it was.
    let (model, clip, _) =
        lora_loader(ltx2_model(), gemma_clip(BlockHolding::Resident), dir.path(), "both.safetensors", 0.0, 1.0)
            .unwrap();
    assert_states("Gemma side, model at 0", &hidden_states(&clip, &r), &r, "comfy", 1e-4);
    assert_eq!(max_abs_diff(&base_video, &ltx2_forward(&model).0), 0.0);
}
