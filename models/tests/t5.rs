//! The T5 text encoder and tokenizer against transformers' references (`tools/fixtures/`).
//!
//! Tolerances (f32, max absolute error):
//! - tiny T5 (`ref/t5.safetensors`) with and without mask: 1e-4 (the fixture README asks 1e-5; the
//!   outputs are RMS-normalised, so values are O(1) and f32 summation order gives ~1e-6);
//! - the same weights from a ComfyUI-style single file, or under a bundled prefix: bit-identical;
//! - bf16 storage against an f32 model holding the same bf16-rounded values: 1e-5 (the values are equal,
//!   only the order of f32 operations could differ).

use candle_core::{DType, Device, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::t5::{
    COMFY_BUNDLED_PREFIX, T5Config, T5Encoder, T5LoadOptions, T5Tokenizer, TokenLength, Tokens,
    relative_position_bucket,
};
use kinograph_models::weights::{WeightError, WeightSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

fn text_encoder_folder() -> PathBuf {
    data("ltxv/diffusers/text_encoder")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data("ltxv/ref/t5.safetensors"), &Device::Cpu).unwrap()
}

fn diffusers_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(text_encoder_folder().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn tiny_config() -> T5Config {
    T5Config::from_json_file(&text_encoder_folder().join("config.json")).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn encode_reference_inputs(encoder: &T5Encoder) -> (Tensor, Tensor) {
    let reference = reference();
    let ids = &reference["input_ids"];
    let mask = &reference["attention_mask"];
    (encoder.forward(ids, Some(mask)).unwrap(), encoder.forward(ids, None).unwrap())
}

fn write(tensors: &HashMap<String, Tensor>, path: &Path) -> Arc<WeightSource> {
    candle_core::safetensors::save(tensors, path).unwrap();
    Arc::new(WeightSource::open(&[path]).unwrap())
}

#[test]
fn tiny_t5_matches_transformers_with_and_without_mask() {
    let encoder = T5Encoder::open(&text_encoder_folder(), &Device::Cpu).unwrap();
    assert_eq!(encoder.config(), &tiny_config(), "config.json is read from a diffusers folder");
    assert_eq!(encoder.storage_dtype(), DType::F32);
    let reference = reference();
    let (masked, unmasked) = encode_reference_inputs(&encoder);
    let masked_error = max_abs_diff(&masked, &reference["last_hidden_state_masked"]);
    let unmasked_error = max_abs_diff(&unmasked, &reference["last_hidden_state_unmasked"]);
    println!("tiny T5 max abs error: masked {masked_error:e}, unmasked {unmasked_error:e}");
    assert!(masked_error <= 1e-4, "masked: {masked_error}");
    assert!(unmasked_error <= 1e-4, "unmasked: {unmasked_error}");
    // The mask matters for the padded row: the two references differ there.
    assert!(max_abs_diff(&masked, &unmasked) > 1e-2);

    // The pipeline folder above text_encoder/ opens too.
    let from_pipeline = T5Encoder::open(&data("ltxv/diffusers"), &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&from_pipeline.forward(&reference["input_ids"], None).unwrap(), &unmasked), 0.0);
}

#[test]
fn config_from_shapes_agrees_with_config_json() {
    let source = Arc::new(WeightSource::open(&[text_encoder_folder().join("model.safetensors")]).unwrap());
    let inferred = T5Config::from_weights(&source, "").unwrap();
    // Only the maximum relative distance is not visible in the shapes; T5 v1.1 uses 128.
    let expected = T5Config { relative_attention_max_distance: 128, ..tiny_config() };
    assert_eq!(inferred, expected);
    assert_eq!(T5Config::v1_1_xxl().parameter_count(), 4_762_310_656, "google/t5-v1_1-xxl: 4,762,310,656 parameters");
}

#[test]
fn single_files_load_like_the_diffusers_folder() {
    let folder = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let diffusers = T5Encoder::open(&text_encoder_folder(), &Device::Cpu).unwrap();
    let (masked, unmasked) = encode_reference_inputs(&diffusers);

    // ComfyUI's t5xxl file: no prefix; try the tied embedding name in place of `shared.weight`, and both.
    let mut tied = diffusers_tensors();
    let shared = tied.remove("shared.weight").unwrap();
    tied.insert("encoder.embed_tokens.weight".into(), shared.clone());
    let mut both = tied.clone();
    both.insert("shared.weight".into(), shared);
    // A checkpoint bundling the text encoder under ComfyUI's prefix.
    let bundled: HashMap<String, Tensor> = diffusers_tensors()
        .into_iter()
        .map(|(name, tensor)| (format!("{COMFY_BUNDLED_PREFIX}{name}"), tensor))
        .collect();

    for (file, tensors, prefix) in [
        ("tied.safetensors", tied, ""),
        ("both.safetensors", both, ""),
        ("bundled.safetensors", bundled, COMFY_BUNDLED_PREFIX),
    ] {
        let source = write(&tensors, &folder.path().join(file));
        assert_eq!(kinograph_models::t5::find_prefix(&source).unwrap(), prefix);
        let encoder = T5Encoder::load_with_config(&source, prefix, &config, &Device::Cpu).unwrap();
        let (single_masked, single_unmasked) = encode_reference_inputs(&encoder);
        assert_eq!(max_abs_diff(&single_masked, &masked), 0.0, "{file}");
        assert_eq!(max_abs_diff(&single_unmasked, &unmasked), 0.0, "{file}");

        // Without a config.json the shapes give everything but the maximum distance.
        let inferred = T5Encoder::load(&source, &Device::Cpu).unwrap();
        assert_eq!(inferred.config(), &T5Config { relative_attention_max_distance: 128, ..config.clone() });
    }
}

#[test]
fn sharded_folders_load_like_a_single_file() {
    let folder = tempfile::tempdir().unwrap();
    let tensors = diffusers_tensors();
    let (first, second): (HashMap<_, _>, HashMap<_, _>) =
        tensors.into_iter().partition(|(name, _)| name.starts_with("encoder.block.0."));
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [("model-00001-of-00002.safetensors", &first), ("model-00002-of-00002.safetensors", &second)] {
        candle_core::safetensors::save(part, folder.path().join(shard)).unwrap();
        for name in part.keys() {
            weight_map.insert(name.clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(folder.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::copy(text_encoder_folder().join("config.json"), folder.path().join("config.json")).unwrap();

    let sharded = T5Encoder::open(folder.path(), &Device::Cpu).unwrap();
    let diffusers = T5Encoder::open(&text_encoder_folder(), &Device::Cpu).unwrap();
    let (masked, unmasked) = encode_reference_inputs(&diffusers);
    let (sharded_masked, sharded_unmasked) = encode_reference_inputs(&sharded);
    assert_eq!(max_abs_diff(&sharded_masked, &masked), 0.0);
    assert_eq!(max_abs_diff(&sharded_unmasked, &unmasked), 0.0);
}

#[test]
fn bf16_storage_is_widened_per_matrix() {
    let folder = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let bf16: HashMap<String, Tensor> =
        diffusers_tensors().into_iter().map(|(name, tensor)| (name, tensor.to_dtype(DType::BF16).unwrap())).collect();
    let rounded: HashMap<String, Tensor> =
        bf16.iter().map(|(name, tensor)| (name.clone(), tensor.to_dtype(DType::F32).unwrap())).collect();
    let bf16_source = write(&bf16, &folder.path().join("t5_bf16.safetensors"));
    let rounded_source = write(&rounded, &folder.path().join("t5_rounded_f32.safetensors"));

    let encoder = T5Encoder::load_with_config(&bf16_source, "", &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.storage_dtype(), DType::BF16, "weights stay in their storage dtype");
    let reference_model = T5Encoder::load_with_config(&rounded_source, "", &config, &Device::Cpu).unwrap();
    assert_eq!(reference_model.storage_dtype(), DType::F32);

    let (masked, unmasked) = encode_reference_inputs(&encoder);
    assert_eq!(masked.dtype(), DType::F32, "compute is f32");
    let (expected_masked, expected_unmasked) = encode_reference_inputs(&reference_model);
    let masked_error = max_abs_diff(&masked, &expected_masked);
    let unmasked_error = max_abs_diff(&unmasked, &expected_unmasked);
    let reference = reference();
    let rounding_effect = max_abs_diff(&unmasked, &reference["last_hidden_state_unmasked"]);
    println!(
        "bf16 storage vs bf16-rounded f32: masked {masked_error:e}, unmasked {unmasked_error:e}; \
         vs the f32 transformers reference (effect of rounding the weights): {rounding_effect:e}"
    );
    assert!(masked_error <= 1e-5 && unmasked_error <= 1e-5);
    // Rounding weights to bf16 (relative step 2⁻⁸) must move the normalised outputs, but only a little.
    assert!(rounding_effect > 0.0 && rounding_effect < 0.1, "{rounding_effect}");

    // f16 storage too.
    let f16: HashMap<String, Tensor> =
        diffusers_tensors().into_iter().map(|(name, tensor)| (name, tensor.to_dtype(DType::F16).unwrap())).collect();
    let f16_source = write(&f16, &folder.path().join("t5_f16.safetensors"));
    let encoder = T5Encoder::load_with_config(&f16_source, "", &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.storage_dtype(), DType::F16);
    let (_, unmasked) = encode_reference_inputs(&encoder);
    assert!(max_abs_diff(&unmasked, &reference["last_hidden_state_unmasked"]) < 0.02);
}

#[test]
fn fp8_storage_is_widened_like_bf16() {
    // ComfyUI's t5xxl_fp8_e4m3fn.safetensors is a plain cast of every tensor to e4m3.
    let folder = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let fp8: HashMap<String, Tensor> =
        diffusers_tensors().into_iter().map(|(name, tensor)| (name, tensor.to_dtype(DType::F8E4M3).unwrap())).collect();
    let rounded: HashMap<String, Tensor> =
        fp8.iter().map(|(name, tensor)| (name.clone(), tensor.to_dtype(DType::F32).unwrap())).collect();
    let fp8_source = write(&fp8, &folder.path().join("t5_fp8_e4m3fn.safetensors"));
    let rounded_source = write(&rounded, &folder.path().join("t5_rounded_f32.safetensors"));
    let encoder = T5Encoder::load_with_config(&fp8_source, "", &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.storage_dtype(), DType::F8E4M3);
    let reference_model = T5Encoder::load_with_config(&rounded_source, "", &config, &Device::Cpu).unwrap();
    let (masked, unmasked) = encode_reference_inputs(&encoder);
    let (expected_masked, expected_unmasked) = encode_reference_inputs(&reference_model);
    let error = max_abs_diff(&masked, &expected_masked).max(max_abs_diff(&unmasked, &expected_unmasked));
    println!("fp8 storage vs fp8-rounded f32: {error:e}");
    assert!(error <= 1e-5, "{error}");
}

/// ComfyUI's scaled fp8 T5 files (`t5xxl_fp8_e4m3fn_scaled`, `umt5_xxl_fp8_e4m3fn_scaled`): the projections in
/// e4m3fn with `scale_weight` and `scale_input`, the `scaled_fp8` marker, the rest f16. They load with no
/// unexpected tensor and compute what their dequantised weights compute.
#[test]
fn scaled_fp8_files_compute_with_their_scales() {
    let folder = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let (mut scaled, mut dequantised) = (HashMap::new(), HashMap::new());
    scaled.insert("scaled_fp8".to_string(), Tensor::zeros(0, DType::F8E4M3, &Device::Cpu).unwrap());
    for (name, tensor) in diffusers_tensors() {
        let projection = name.starts_with("encoder.block.") && name.ends_with(".weight") && tensor.rank() == 2;
        if !projection {
            let rounded = tensor.to_dtype(DType::F16).unwrap();
            dequantised.insert(name.clone(), rounded.to_dtype(DType::F32).unwrap());
            scaled.insert(name, rounded);
            continue;
        }
        let scale = tensor.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / 448.0;
        let codes = (&tensor / f64::from(scale)).unwrap().to_dtype(DType::F8E4M3).unwrap();
        dequantised.insert(name.clone(), (codes.to_dtype(DType::F32).unwrap() * f64::from(scale)).unwrap());
        let layer = name.strip_suffix(".weight").unwrap();
        scaled.insert(format!("{layer}.scale_weight"), Tensor::new(scale, &Device::Cpu).unwrap());
        scaled.insert(format!("{layer}.scale_input"), Tensor::new(1f32, &Device::Cpu).unwrap());
        scaled.insert(name, codes);
    }
    let scaled_source = write(&scaled, &folder.path().join("t5_fp8_e4m3fn_scaled.safetensors"));
    let reference_source = write(&dequantised, &folder.path().join("t5_dequantised.safetensors"));
    let encoder = T5Encoder::load_with_config(&scaled_source, "", &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.storage_dtype(), DType::F16, "the embedding; the projections stay fp8");
    let unused = scaled_source.unused("");
    let unused_companions: Vec<&String> =
        unused.iter().filter(|name| kinograph_models::weights::is_quantization_companion(name)).collect();
    assert!(unused_companions.is_empty(), "scales and marker are read with their weights: {unused_companions:?}");
    let reference_model = T5Encoder::load_with_config(&reference_source, "", &config, &Device::Cpu).unwrap();
    let (masked, unmasked) = encode_reference_inputs(&encoder);
    let (expected_masked, expected_unmasked) = encode_reference_inputs(&reference_model);
    let error = max_abs_diff(&masked, &expected_masked).max(max_abs_diff(&unmasked, &expected_unmasked));
    println!("scaled fp8 vs its dequantised weights: {error:e}");
    assert!(error <= 1e-5, "{error}");
}

/// Streamed blocks (read from the file as the forward pass reaches them), all of them or all but the first,
/// compute what resident blocks compute, bit for bit: with and without the mask, with prompt weights, with a LoRA on two blocks, from
/// f32 and bf16 files and under ComfyUI's bundled prefix. A file missing a later block's tensor fails at
/// load time.
#[test]
fn streamed_blocks_compute_what_resident_blocks_compute() {
    let folder = tempfile::tempdir().unwrap();
    let streamed = T5LoadOptions { blocks: BlockHolding::STREAMED };
    let bf16: HashMap<String, Tensor> =
        diffusers_tensors().into_iter().map(|(name, tensor)| (name, tensor.to_dtype(DType::BF16).unwrap())).collect();
    let bundled: HashMap<String, Tensor> = diffusers_tensors()
        .into_iter()
        .map(|(name, tensor)| (format!("{COMFY_BUNDLED_PREFIX}{name}"), tensor))
        .collect();
    let sources = [
        ("f32", write(&diffusers_tensors(), &folder.path().join("t5_f32.safetensors"))),
        ("bf16", write(&bf16, &folder.path().join("t5_bf16.safetensors"))),
        ("bundled", write(&bundled, &folder.path().join("bundled.safetensors"))),
    ];
    // Prompt weights need the empty prompt beside the prompt; ids within the tiny vocabulary.
    let tokens = Tokens {
        ids: vec![5, 17, 42, 8, 1, 0, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 0, 0, 0],
        weights: vec![1.0, 1.3, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0],
    };
    let holdings = [streamed, T5LoadOptions { blocks: BlockHolding::Streamed { kept: 1 } }];
    for ((what, source), options) in sources.iter().flat_map(|source| holdings.iter().map(move |h| (source, *h))) {
        let what = format!("{what}, {:?}", options.blocks);
        let resident = T5Encoder::load(source, &Device::Cpu).unwrap();
        let stream = T5Encoder::load_with(source, &Device::Cpu, options).unwrap();
        assert!(!resident.streams_blocks() && stream.streams_blocks(), "{what}");
        assert_eq!(stream.block_holding(), options.blocks, "{what}");
        assert_eq!(stream.storage_dtype(), resident.storage_dtype(), "{what}: the embedding stays in the file's dtype");
        let layers = resident.linear_layers().unwrap();
        assert_eq!(stream.linear_layers().unwrap(), layers, "{what}");

        let (masked, unmasked) = encode_reference_inputs(&resident);
        let (stream_masked, stream_unmasked) = encode_reference_inputs(&stream);
        assert_eq!(max_abs_diff(&stream_masked, &masked), 0.0, "{what}, masked");
        assert_eq!(max_abs_diff(&stream_unmasked, &unmasked), 0.0, "{what}, unmasked");
        let weighted = resident.encode_tokens(&tokens, true).unwrap();
        assert_eq!(max_abs_diff(&stream.encode_tokens(&tokens, true).unwrap(), &weighted), 0.0, "{what}, weighted");

        let shapes: HashMap<String, (usize, usize)> = layers.into_iter().collect();
        let mut patches = std::collections::BTreeMap::new();
        for name in ["encoder.block.1.layer.0.SelfAttention.q", "encoder.block.0.layer.1.DenseReluDense.wo"] {
            patches.insert(name.to_string(), crate::compare::low_rank_patch(shapes[name]));
        }
        let patched = resident.with_patches(&patches).unwrap().forward(&reference()["input_ids"], None).unwrap();
        assert!(max_abs_diff(&patched, &unmasked) > 1e-3, "{what}: the LoRA changes the output");
        let stream_patched = stream.with_patches(&patches).unwrap();
        let stream_patched = stream_patched.forward(&reference()["input_ids"], None).unwrap();
        assert_eq!(max_abs_diff(&stream_patched, &patched), 0.0, "{what}, with a LoRA");
        let unknown = std::collections::BTreeMap::from([(
            "encoder.block.9.layer.0.SelfAttention.q".to_string(),
            kinograph_models::lora::LayerPatch::default(),
        )]);
        let error = stream.with_patches(&unknown).unwrap_err().to_string();
        assert!(error.contains("encoder.block.9.layer.0.SelfAttention.q"), "{error}");
    }

    // Block 1 without its output projection: refused at load, not in the middle of an encode.
    let mut tensors = diffusers_tensors();
    tensors.remove("encoder.block.1.layer.1.DenseReluDense.wo.weight");
    let source = write(&tensors, &folder.path().join("missing.safetensors"));
    let error = T5Encoder::load_with(&source, &Device::Cpu, streamed).unwrap_err();
    assert!(
        matches!(&error, WeightError::Missing { tensor, expected, .. }
            if tensor == "encoder.block.1.layer.1.DenseReluDense.wo.weight" && expected == &vec![16, 32]),
        "{error}"
    );
}

#[test]
fn bad_files_name_the_file_and_tensor() {
    let folder = tempfile::tempdir().unwrap();
    let config = tiny_config();

    // Truncated.
    let bytes = std::fs::read(text_encoder_folder().join("model.safetensors")).unwrap();
    let truncated = folder.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let error = T5Encoder::open(&truncated, &Device::Cpu).unwrap_err();
    assert!(matches!(error, WeightError::Format { .. }), "{error}");
    assert!(error.to_string().contains("truncated.safetensors") && error.to_string().contains("truncated?"), "{error}");

    // A missing projection.
    let mut tensors = diffusers_tensors();
    tensors.remove("encoder.block.1.layer.1.DenseReluDense.wo.weight");
    let source = write(&tensors, &folder.path().join("missing.safetensors"));
    let error = T5Encoder::load_with_config(&source, "", &config, &Device::Cpu).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, WeightError::Missing { tensor, expected, .. }
            if tensor == "encoder.block.1.layer.1.DenseReluDense.wo.weight" && expected == &vec![16, 32]),
        "{message}"
    );
    assert!(message.contains("missing.safetensors") && message.contains("[16, 32]"), "{message}");

    // A wrong shape.
    let mut tensors = diffusers_tensors();
    tensors.insert(
        "encoder.block.0.layer.0.SelfAttention.k.weight".into(),
        Tensor::zeros((16, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    let source = write(&tensors, &folder.path().join("shape.safetensors"));
    let error = T5Encoder::load_with_config(&source, "", &config, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&error, WeightError::Shape { tensor, expected, found, .. }
            if tensor == "encoder.block.0.layer.0.SelfAttention.k.weight" && expected == &vec![16, 16] && found == &vec![16, 8]),
        "{error}"
    );

    // A tensor the encoder does not know (T5 projections have no bias).
    let mut tensors = diffusers_tensors();
    tensors.insert(
        "encoder.block.0.layer.0.SelfAttention.q.bias".into(),
        Tensor::ones(16, DType::F32, &Device::Cpu).unwrap(),
    );
    let source = write(&tensors, &folder.path().join("extra.safetensors"));
    let error = T5Encoder::load_with_config(&source, "", &config, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("encoder.block.0.layer.0.SelfAttention.q.bias"), "{error}");

    // Not a T5 file at all.
    let source = write(
        &HashMap::from([(
            "model.diffusion_model.proj_in.weight".to_string(),
            Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap(),
        )]),
        &folder.path().join("dit.safetensors"),
    );
    let error = T5Encoder::load(&source, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("encoder.final_layer_norm.weight"), "{error}");

    // A folder without weights.
    let error = T5Encoder::open(&folder.path().join("nowhere"), &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("nowhere"), "{error}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let encoder = T5Encoder::open(&text_encoder_folder(), &Device::Cpu).unwrap();
    let device = Device::Cpu;
    let out_of_vocabulary = Tensor::new(&[[3u32, 64]], &device).unwrap();
    let error = encoder.forward(&out_of_vocabulary, None).unwrap_err();
    assert!(error.to_string().contains("0..64"), "{error}");
    let ids = Tensor::new(&[[3u32, 1]], &device).unwrap();
    let wrong_mask = Tensor::ones((1, 3), DType::F32, &device).unwrap();
    assert!(encoder.forward(&ids, Some(&wrong_mask)).unwrap_err().to_string().contains("mask"));
    let flat = Tensor::new(&[3u32, 1], &device).unwrap();
    assert!(encoder.forward(&flat, None).unwrap_err().to_string().contains("[batch, tokens]"));
}

fn tokenizer_fixture() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data("t5/tokenizer_fixture.json")).unwrap()).unwrap()
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenizer_matches_transformers() {
    let tokenizer = T5Tokenizer::new().unwrap();
    let fixture = tokenizer_fixture();
    let prompts = fixture["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 10);
    for prompt in prompts {
        let text = prompt["text"].as_str().unwrap();
        let expected = ids(&prompt["ids"]);
        assert_eq!(tokenizer.token_ids(text).unwrap(), expected, "{text:?}");

        // ComfyUI: the same ids, padded with 0 to at least 128, never truncated.
        let tokens = tokenizer.encode(text, TokenLength::AtLeast(128)).unwrap();
        assert_eq!(tokens.len(), expected.len().max(128));
        assert_eq!(tokens.ids[..expected.len()], expected[..]);
        assert!(tokens.ids[expected.len()..].iter().all(|&id| id == 0));
        let first_end = expected.iter().position(|&id| id == 1).unwrap() + 1;
        assert_eq!(tokens.attention_mask.iter().sum::<u32>() as usize, first_end, "{text:?}");
        assert!(tokens.attention_mask[..first_end].iter().all(|&keep| keep == 1));
    }
    // ComfyUI's mask stops at a `</s>` written in the prompt.
    let spelled = tokenizer.encode("special </s> tokens", TokenLength::AtLeast(8)).unwrap();
    assert_eq!(spelled.ids[..5], [534, 1, 14145, 7, 1]);
    assert_eq!(spelled.attention_mask, [1, 1, 0, 0, 0, 0, 0, 0]);
    // The 300-character prompt is longer than 128 tokens and keeps them all.
    let long = prompts.iter().map(|prompt| ids(&prompt["ids"])).max_by_key(Vec::len).unwrap();
    assert!(long.len() > 128);

    for case in fixture["padded"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let length = case["length"].as_u64().unwrap() as usize;
        let tokens = tokenizer.encode(text, TokenLength::Exactly(length)).unwrap();
        assert_eq!(tokens.ids, ids(&case["ids"]), "{text:?}");
        assert_eq!(tokens.attention_mask, ids(&case["mask"]), "{text:?}");
    }
    assert!(tokenizer.encode("x", TokenLength::Exactly(0)).is_err());

    let (ids, mask) = tokenizer.encode("a cat", TokenLength::AtLeast(8)).unwrap().to_tensors(&Device::Cpu).unwrap();
    assert_eq!(ids.dims(), [1, 8]);
    assert_eq!(mask.to_vec2::<f32>().unwrap(), vec![vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]);
}

#[test]
fn comfy_prompt_weights_tokenize_each_run_on_its_own() {
    let tokenizer = T5Tokenizer::new().unwrap();
    let plain = "A woman with long brown hair smiles.";
    assert_eq!(
        tokenizer.encode_weighted(plain, 128).unwrap(),
        tokenizer.encode(plain, TokenLength::AtLeast(128)).unwrap(),
        "without brackets ComfyUI's path is the plain one"
    );
    let tokens = tokenizer.encode_weighted("a (red fox:1.5) in ((snow))", 16).unwrap();
    let piece = |text: &str| {
        let mut ids = tokenizer.token_ids(text).unwrap();
        ids.pop();
        ids
    };
    let (a, fox, in_, snow) = (piece("a "), piece("red fox"), piece(" in "), piece("snow"));
    let expected: Vec<u32> = [&a[..], &fox[..], &in_[..], &snow[..], &[1]].concat();
    assert_eq!(tokens.ids[..expected.len()], expected[..]);
    assert_eq!(tokens.len(), 16);
    let mut weights = vec![1.0_f32; a.len()];
    weights.extend(std::iter::repeat_n(1.5, fox.len()));
    weights.extend(std::iter::repeat_n(1.0, in_.len()));
    weights.extend(std::iter::repeat_n((1.1_f64 * 1.1) as f32, snow.len()));
    weights.resize(16, 1.0);
    assert_eq!(tokens.weights, weights);
    assert!(tokens.has_weights());
}

#[test]
fn weighted_tokens_move_away_from_the_empty_prompt() {
    let encoder = T5Encoder::open(&text_encoder_folder(), &Device::Cpu).unwrap();
    let tokens = Tokens {
        ids: vec![13, 7, 42, 5, 1, 0, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 0, 0, 0],
        weights: vec![1.0, 1.3, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0],
    };
    let weighted = encoder.encode_tokens(&tokens, true).unwrap();
    let (ids, mask) = tokens.to_tensors(&Device::Cpu).unwrap();
    let plain = encoder.forward(&ids, Some(&mask)).unwrap();
    let empty_ids = Tensor::new(&[[1u32, 0, 0, 0, 0, 0, 0, 0]], &Device::Cpu).unwrap();
    let empty_mask = Tensor::new(&[[1f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
    let empty = encoder.forward(&empty_ids, Some(&empty_mask)).unwrap();
    for position in 0..8 {
        let got = weighted.narrow(1, position, 1).unwrap();
        let z = plain.narrow(1, position, 1).unwrap();
        let e = empty.narrow(1, position, 1).unwrap();
        let weight = f64::from(tokens.weights[position]);
        let expected = if weight == 1.0 { z } else { ((z - &e).unwrap() * weight).unwrap().add(&e).unwrap() };
        let error = max_abs_diff(&got, &expected);
        assert!(error <= 1e-5, "position {position}: {error}");
    }
    // Unweighted tokens take the plain path.
    let unweighted = Tokens { weights: vec![1.0; 8], ..tokens };
    assert_eq!(max_abs_diff(&encoder.encode_tokens(&unweighted, true).unwrap(), &plain), 0.0);
}

#[test]
fn relative_position_buckets_match_transformers() {
    for case in tokenizer_fixture()["buckets"].as_array().unwrap() {
        let buckets = case["num_buckets"].as_u64().unwrap() as usize;
        let distance = case["max_distance"].as_u64().unwrap() as usize;
        let first = case["first"].as_i64().unwrap();
        for (offset, expected) in case["values"].as_array().unwrap().iter().enumerate() {
            let relative = first + offset as i64;
            assert_eq!(
                relative_position_bucket(relative, buckets, distance),
                expected.as_u64().unwrap() as u32,
                "relative position {relative}, {buckets} buckets, max distance {distance}"
            );
        }
    }
}

/// Random weights made in memory, for timing: uniform values with the spread of a trained T5
/// (norm weights near 1, projections scaled by 1/√fan-in). Filled on all cores straight into the
/// requested dtype, so that a bf16 T5-XXL never exists in f32.
struct RandomWeights;

impl RandomWeights {
    fn fill<T: Copy + Send + Default>(
        count: usize,
        seed: u64,
        center: f32,
        half_width: f32,
        convert: fn(f32) -> T,
    ) -> Vec<T> {
        let mut values = vec![T::default(); count];
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let chunk = count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (index, part) in values.chunks_mut(chunk).enumerate() {
                scope.spawn(move || {
                    let mut state = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for value in part {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                        *value = convert(center + (2.0 * unit - 1.0) * half_width);
                    }
                });
            }
        });
        values
    }
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = shape.dims().to_vec();
        let seed = name
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
        // Uniform on [c − w, c + w] has standard deviation w/√3.
        let (center, deviation) = if name.ends_with("layer_norm.weight") {
            (1.0, 0.05)
        } else if name.contains("relative_attention_bias") || name.ends_with("shared.weight") {
            (0.0, if name.ends_with("shared.weight") { 1.0 } else { 0.5 })
        } else {
            (0.0, 1.0 / (dims[1] as f32).sqrt())
        };
        let half_width = deviation * 3f32.sqrt();
        let count = shape.elem_count();
        match dtype {
            DType::BF16 => {
                Tensor::from_vec(Self::fill(count, seed, center, half_width, half::bf16::from_f32), dims, device)
            }
            DType::F16 => {
                Tensor::from_vec(Self::fill(count, seed, center, half_width, half::f16::from_f32), dims, device)
            }
            _ => Tensor::from_vec(Self::fill(count, seed, center, half_width, |value| value), dims, device)?
                .to_dtype(dtype),
        }
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for '{name}'")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

fn memory_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|line| line.starts_with(field)).map(|line| line[field.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// T5-XXL shapes (`T5_BENCH_LAYERS` of the 24 blocks, default all), random weights in memory stored as
/// `T5_BENCH_STORAGE` (bf16 by default; f16 or f32), f32 compute, one 128-token prompt with ComfyUI's
/// mask. Run with
/// `cargo test --release -p kinograph-models --test integration -- --ignored --nocapture t5::t5_xxl`.
///
/// Measured on the 2-core development machine while other builds ran (load ≈ 4): all 24 layers in
/// 15.7 s with a peak RSS (`VmHWM`) of 8.94 GiB, 0.06 GiB above the RSS right after building the
/// 8.87 GiB of bf16 weights; 4 layers 0.65 s per layer in bf16 storage,
/// 0.56 s with f32 storage, against 1.01 s per layer for transformers in f32 (`tools/bench/t5.py`).
#[test]
#[ignore = "needs about 10 GB of memory and a minute of CPU; run explicitly in release"]
fn t5_xxl_bf16_encode_time_and_peak_memory() {
    let layers = std::env::var("T5_BENCH_LAYERS").ok().and_then(|value| value.parse().ok()).unwrap_or(24);
    let storage = match std::env::var("T5_BENCH_STORAGE").as_deref() {
        Ok("f32") => DType::F32,
        Ok("f16") => DType::F16,
        _ => DType::BF16,
    };
    let config = T5Config { num_layers: layers, ..T5Config::v1_1_xxl() };
    let device = Device::Cpu;
    let started = std::time::Instant::now();
    let builder = candle_nn::VarBuilder::from_backend(Box::new(RandomWeights), storage, device.clone());
    let encoder = T5Encoder::new(&builder, &config).unwrap();
    println!(
        "T5-XXL shapes, {layers} layers, {:.2} B parameters in {}: built in {:.1} s, RSS {}",
        config.parameter_count() as f64 / 1e9,
        storage.as_str(),
        started.elapsed().as_secs_f64(),
        memory_status("VmRSS:")
    );
    let tokens = T5Tokenizer::new()
        .unwrap()
        .encode("A woman with long brown hair smiles at the camera in warm evening light.", TokenLength::AtLeast(128))
        .unwrap();
    let (ids, mask) = tokens.to_tensors(&device).unwrap();
    let mut timings = Vec::new();
    for run in 0..2 {
        let started = std::time::Instant::now();
        let hidden = encoder.forward(&ids, Some(&mask)).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(hidden.dims(), [1, 128, 4096]);
        let total = hidden.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(total.is_finite());
        println!("encode 128 tokens (run {run}): {seconds:.2} s");
        timings.push(seconds);
    }
    println!(
        "best {:.2} s for {layers} layers ({:.3} s per layer); peak RSS (VmHWM) {}, RSS now {}",
        timings.iter().copied().fold(f64::INFINITY, f64::min),
        timings.iter().copied().fold(f64::INFINITY, f64::min) / layers.max(1) as f64,
        memory_status("VmHWM:"),
        memory_status("VmRSS:")
    );
}
