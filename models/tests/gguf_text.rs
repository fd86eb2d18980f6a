//! Text encoders from llama.cpp GGUFs: Gemma 3 and T5 written as llama.cpp's converter writes them (renamed,
//! Gemma's norms shifted by 1, `F32`/`F16` and `Q8_0`, the tokenizer in the metadata), against transformers and the
//! original tokenizers. Fixtures: `models/tests/data/gguf_text/` (`tools/fixtures/make_gguf_text_fixtures.py`).

use crate::compare::{bf16_tiles, max_abs_diff};
use candle_core::{Device, IndexOp, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::sentencepiece::SentencePieceModel;
use kinograph_models::gemma3::{Gemma3TextModel, GemmaLoadOptions, GemmaTokenizer};
use kinograph_models::gguf::GgufFile;
use kinograph_models::gguf::tokenizer::{GgufTokenizerError, sentencepiece_from_gguf};
use kinograph_models::t5::{T5Encoder, T5LoadOptions, T5Tokenizer};
use kinograph_models::weights::{WeightError, WeightSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_text").join(name)
}

fn listing() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data("reference.json")).unwrap()).unwrap()
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data("reference.safetensors"), &Device::Cpu).unwrap()
}

fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect()
}

fn open(name: &str) -> Arc<WeightSource> {
    Arc::new(WeightSource::open(&[data(name)]).unwrap())
}

#[test]
fn gemma_tokenizer_from_gguf_metadata_gives_the_sentencepiece_ids() {
    let listing = listing();
    let gguf = GgufFile::open(data("gemma3-tiny-Q8_0.gguf")).unwrap();
    let tokenizer = GemmaTokenizer::from_gguf(&gguf).unwrap();
    let original = GemmaTokenizer::from_sentencepiece_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../nodes/src/demo_data/gemma_demo_tokenizer.model"),
    )
    .unwrap();
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()), (2, 1, 0));
    assert_eq!(tokenizer.vocab_size(), 520);
    let prompts = listing["prompts"].as_array().unwrap();
    for (prompt, expected) in prompts.iter().zip(listing["gemma_ids"].as_array().unwrap()) {
        let prompt = prompt.as_str().unwrap();
        let ids = tokenizer.encode_prompt(prompt).unwrap();
        assert_eq!(ids, ids_of(expected), "{prompt:?}");
        assert_eq!(ids, original.encode_prompt(prompt).unwrap(), "{prompt:?}");
        assert_eq!(tokenizer.decode(&ids).unwrap(), original.decode(&ids).unwrap(), "{prompt:?}");
    }
}

#[test]
fn t5_tokenizer_from_gguf_metadata_gives_t5s_ids() {
    let listing = listing();
    let gguf = GgufFile::open(data("t5-tiny-encoder-Q8_0.gguf")).unwrap();
    let model: SentencePieceModel = sentencepiece_from_gguf(&gguf).unwrap();
    let t5 = T5Tokenizer::new().unwrap();
    let prompts = listing["prompts"].as_array().unwrap();
    for (prompt, expected) in prompts.iter().zip(listing["t5_ids"].as_array().unwrap()) {
        let prompt = prompt.as_str().unwrap();
        assert_eq!(model.encode(prompt), ids_of(expected), "{prompt:?}");
        let mut with_end = ids_of(expected);
        with_end.push(1);
        assert_eq!(t5.token_ids(prompt).unwrap(), with_end, "{prompt:?}");
    }
}

/// The largest magnitude in the references named `prefix…`.
fn largest(prefix: &str) -> f32 {
    reference()
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, t)| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap())
        .fold(0f32, f32::max)
}

/// Max abs error of every hidden state of the GGUF Gemma against transformers over all prompts; `weights`
/// names the reference run: the original `f32` weights, or those a `q8_0` file stores.
fn gemma_error(model: &Gemma3TextModel, weights: &str) -> f32 {
    let listing = listing();
    let reference = reference();
    let mut worst = 0f32;
    for (index, ids) in listing["gemma_ids"].as_array().unwrap().iter().enumerate() {
        let ids = Tensor::new(ids_of(ids).as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let states = model.hidden_states(&ids, None).unwrap();
        let expected = &reference[&format!("gemma.{weights}.prompt{index}.hidden_states")];
        assert_eq!(states.len(), expected.dim(0).unwrap());
        for (layer, state) in states.iter().enumerate() {
            worst = worst.max(max_abs_diff(&state.i(0).unwrap(), &expected.i(layer).unwrap()));
        }
    }
    worst
}

#[test]
fn gemma_from_an_f32_gguf_matches_transformers() {
    let source = open("gemma3-tiny-F32.gguf");
    let model = Gemma3TextModel::load_gguf(&source, &Device::Cpu, GemmaLoadOptions::default()).unwrap();
    let config = model.config();
    assert_eq!((config.vocab_size, config.hidden_size, config.num_hidden_layers), (520, 32, 6));
    assert_eq!((config.num_attention_heads, config.num_key_value_heads, config.head_dim), (2, 1, 16));
    assert_eq!((config.global_rope.theta, config.global_rope.factor, config.local_rope.theta), (1e6, 8.0, 1e4));
    assert_eq!((config.rms_norm_eps, config.query_pre_attn_scalar), (1e-6, 16.0));
    let error = gemma_error(&model, "f32");
    println!("Gemma 3 F32 GGUF: max abs error {error:.3e} (largest value {:.2})", largest("gemma.f32."));
    assert!(error < 1e-4, "{error}");
}

#[test]
fn gemma_from_a_q8_0_gguf_streams_and_matches_transformers() {
    let source = open("gemma3-tiny-Q8_0.gguf");
    for layers in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let model = Gemma3TextModel::load_gguf(&source, &Device::Cpu, GemmaLoadOptions { layers }).unwrap();
        // The very weights the file stores: only arithmetic differs.
        let error = gemma_error(&model, "q8_0");
        println!("Gemma 3 Q8_0 GGUF ({layers:?}) against the stored weights: max abs error {error:.3e}");
        // On bf16 tiles each product is rounded to 8 significant bits: under 1 % of the largest value.
        let tolerance = if bf16_tiles() { 0.01 * largest("gemma.f32.") } else { 1e-4 };
        assert!(error < tolerance, "{error}");
        // The original weights: Q8_0's rounding.
        let error = gemma_error(&model, "f32");
        let scale = largest("gemma.f32.");
        println!("Gemma 3 Q8_0 GGUF against the original weights: max abs error {error:.3e}, largest value {scale:.2}");
        assert!(error < 0.03 * scale, "{error} vs {scale}");
    }
}

/// Max abs error of T5's last hidden state against transformers over all prompts; `weights` names the
/// reference run: the original `f32` weights, or those an `f16` or `q8_0` file stores.
fn t5_error(encoder: &T5Encoder, weights: &str) -> f32 {
    let listing = listing();
    let reference = reference();
    let mut worst = 0f32;
    for (index, ids) in listing["t5_ids"].as_array().unwrap().iter().enumerate() {
        let mut ids = ids_of(ids);
        ids.push(1);
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let hidden = encoder.forward(&ids, None).unwrap().i(0).unwrap();
        let expected = &reference[&format!("t5.{weights}.prompt{index}.last_hidden_state")];
        worst = worst.max(max_abs_diff(&hidden, expected));
    }
    worst
}

#[test]
fn t5_from_f16_and_q8_0_ggufs_matches_transformers() {
    let f16 = T5Encoder::load_gguf(&open("t5-tiny-encoder-F16.gguf"), &Device::Cpu).unwrap();
    let config = f16.config();
    assert_eq!((config.vocab_size, config.d_model, config.d_kv, config.d_ff), (32128, 32, 16, 64));
    assert_eq!((config.num_layers, config.num_heads, config.relative_attention_num_buckets), (2, 2, 32));
    let scale = largest("t5.f32.");
    for (file, weights) in [("t5-tiny-encoder-F16.gguf", "f16"), ("t5-tiny-encoder-Q8_0.gguf", "q8_0")] {
        let encoder = T5Encoder::load_gguf(&open(file), &Device::Cpu).unwrap();
        let error = t5_error(&encoder, weights);
        println!("T5 {file} against the stored weights: max abs error {error:.3e}");
        // On bf16 tiles each product is rounded to 8 significant bits, and this T5's sharp attention
        // (no 1/sqrt(d) scale) amplifies that: under 5 % of the largest value.
        let tolerance = if bf16_tiles() && weights == "q8_0" { 0.05 * scale } else { 1e-4 };
        assert!(error < tolerance, "{file}: {error}");
        let error = t5_error(&encoder, "f32");
        println!("T5 {file} against the original weights: max abs error {error:.3e}, largest value {scale:.2}");
        // This random T5's attention is sharp (no 1/sqrt(d) scale): Q8_0 rounding moves outputs by ~6 %.
        assert!(error < 0.1 * scale, "{file}: {error} vs {scale}");
    }
}

/// Streamed blocks of a llama.cpp T5 (`enc.blk.N.`, read as the forward pass reaches them, quantized blocks
/// kept as blocks) compute what resident ones do, bit for bit.
#[test]
fn t5_gguf_streamed_blocks_match_resident_ones() {
    let listing = listing();
    let mut ids = ids_of(&listing["t5_ids"][0]);
    ids.push(1);
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    for file in ["t5-tiny-encoder-F16.gguf", "t5-tiny-encoder-Q8_0.gguf"] {
        let source = open(file);
        let resident = T5Encoder::load_gguf(&source, &Device::Cpu).unwrap();
        let streamed =
            T5Encoder::load_gguf_with(&source, &Device::Cpu, T5LoadOptions { blocks: BlockHolding::STREAMED }).unwrap();
        assert!(streamed.streams_blocks(), "{file}");
        let expected = resident.forward(&ids, None).unwrap();
        assert_eq!(max_abs_diff(&streamed.forward(&ids, None).unwrap(), &expected), 0.0, "{file}");
    }
}

/// A copy of `name` in a temporary folder, cut to `length` bytes or with its metadata edited by `edit`.
fn altered(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let mut bytes = std::fs::read(data(name)).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Overwrites the first occurrence of `from` with `to` (same length).
fn replace(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|window| window == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(to);
}

#[test]
fn other_architectures_missing_tokenizers_and_truncated_files_are_refused_by_name() {
    // Another architecture: the value is named, and what is read.
    let (_dir, path) = altered("gemma3-tiny-Q8_0.gguf", |b| {
        replace(b, b"\x06\x00\x00\x00\x00\x00\x00\x00gemma3", b"\x06\x00\x00\x00\x00\x00\x00\x00falcon");
    });
    let source = Arc::new(WeightSource::open(&[&path]).unwrap());
    let error = Gemma3TextModel::load_gguf(&source, &Device::Cpu, GemmaLoadOptions::default()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("'falcon'") && text.contains("gemma3, t5encoder, t5"), "{text}");
    // A Gemma file asked for as T5.
    let error = T5Encoder::load_gguf(&open("gemma3-tiny-F32.gguf"), &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("holds Gemma 3 ('gemma3'), not T5"), "{error}");

    // No tokenizer in the metadata.
    let (_dir, path) =
        altered("gemma3-tiny-Q8_0.gguf", |b| replace(b, b"tokenizer.ggml.tokens", b"tokenizer.ggml.tokenz"));
    let gguf = GgufFile::open(&path).unwrap();
    assert!(matches!(sentencepiece_from_gguf(&gguf), Err(GgufTokenizerError::Missing { .. })));
    let error = GemmaTokenizer::from_gguf(&gguf).unwrap_err();
    assert!(error.to_string().contains("no tokenizer in this GGUF file"), "{error}");

    // Cut short: the header or the data.
    for keep in [100usize, 60_000] {
        let (_dir, path) = altered("gemma3-tiny-Q8_0.gguf", |b| b.truncate(keep));
        match WeightSource::open(&[&path]) {
            Err(error) => assert!(matches!(error, WeightError::GgufFormat { .. }), "{keep}: {error}"),
            Ok(source) => panic!("a file cut to {keep} bytes opened ({} tensors)", source.names().count()),
        }
    }
}
