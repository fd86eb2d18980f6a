//! Gemma 3's vision path (`gemma3::image`, `gemma3::vision`, `gemma3::prompt`) against ComfyUI's maths as
//! transformers 5.24 computes it, on the fixtures of `tools/fixtures/make_gemma_vision_fixtures.py`: a tiny
//! `Gemma3ForConditionalGeneration` (8×8 patch grid pooled 4×4 to 4 tokens) in ComfyUI's and transformers'
//! names, a two-frame RGBA image, its pixel values and embeddings, the logits of a prompt with the image
//! (causal as ComfyUI, bidirectional as transformers with token types) and a greedy generation.

use crate::compare::assert_close;
use candle_core::{DType, Device, IndexOp, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::image::comfy_pixel_values;
use kinograph_models::gemma3::{
    Gemma3Cache, Gemma3TextModel, Gemma3Vision, GemmaLoadOptions, GenerateOptions, IMAGE_PLACEHOLDER_ID,
    ImageAttention, PromptEmbeddings, Stop, generate_from_embeddings,
};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn load(file: &str) -> (Gemma3TextModel, Gemma3Vision) {
    load_with(file, GemmaLoadOptions::default())
}

fn load_with(file: &str, options: GemmaLoadOptions) -> (Gemma3TextModel, Gemma3Vision) {
    let source = Arc::new(WeightSource::open(&[data(file)]).unwrap());
    let text = Gemma3TextModel::load(&source, &Device::Cpu, options).unwrap();
    let vision = Gemma3Vision::load(&source, text.config(), &Device::Cpu).unwrap();
    (text, vision)
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data("gemma_vision/reference.safetensors"), &Device::Cpu).unwrap()
}

fn ids(tensor: &Tensor) -> Vec<u32> {
    tensor.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap().into_iter().map(|id| id as u32).collect()
}

#[test]
fn pixel_values_follow_comfyui_resize_crop_and_normalisation() {
    let r = reference();
    let pixels = comfy_pixel_values(&r["image"], 32).unwrap();
    assert_close("resized, cropped (20×12 → 41×25 → 52×32 → 32×32)", &pixels, &r["pixel_values"], 1e-5);
    let square = comfy_pixel_values(&r["square_image"], 32).unwrap();
    assert_close("already 32×32: no resize", &square, &r["square_pixel_values"], 1e-6);
}

#[test]
fn image_embeddings_match_in_comfyui_and_transformers_names() {
    let r = reference();
    for file in ["gemma_vision/gemma3_vision_tiny.safetensors", "gemma_vision/gemma3_vision_hub.safetensors"] {
        let (_, vision) = load(file);
        let config = vision.config();
        assert_eq!(
            (config.image_size, config.patch_size, config.patches_per_side(), config.tokens_per_side()),
            (32, 4, 8, 2),
            "sizes read from {file}"
        );
        assert_eq!((config.hidden_size, config.num_attention_heads, config.num_hidden_layers), (16, 2, 2));
        let embeddings = vision.encode(&r["pixel_values"]).unwrap();
        assert_close(&format!("{file}: image embeddings"), &embeddings, &r["image_embeddings"], 1e-4);
    }
}

fn prompt(text: &Gemma3TextModel, vision: &Gemma3Vision, attention: ImageAttention) -> PromptEmbeddings {
    let r = reference();
    let images = vision.encode(&comfy_pixel_values(&r["image"], 32).unwrap()).unwrap();
    PromptEmbeddings::new(text, &ids(&r["prompt"]), IMAGE_PLACEHOLDER_ID, &[images], attention).unwrap()
}

/// Over ComfyUI's and the published files' names, with resident and streamed layers.
#[test]
fn logits_with_an_image_match_causal_and_bidirectional_attention() {
    let r = reference();
    for (layers, file) in [
        (BlockHolding::Resident, "gemma_vision/gemma3_vision_tiny.safetensors"),
        (BlockHolding::STREAMED, "gemma_vision/gemma3_vision_tiny.safetensors"),
        (BlockHolding::Resident, "gemma_vision/gemma3_vision_hub.safetensors"),
    ] {
        let (text, vision) = load_with(file, GemmaLoadOptions { layers });
        for (attention, name) in
            [(ImageAttention::Causal, "logits_causal"), (ImageAttention::Bidirectional, "logits_bidirectional")]
        {
            let prompt = prompt(&text, &vision, attention);
            assert_eq!(
                prompt.images,
                vec![std::ops::Range { start: 4, end: 12 }],
                "the placeholder takes both frames' four tokens"
            );
            let blocks: Vec<_> = prompt.bidirectional_blocks().collect();
            let hidden =
                text.forward_embeddings_cached(&prompt.embeddings, &mut Gemma3Cache::default(), &blocks).unwrap();
            let logits = text.logits(&hidden).unwrap().squeeze(0).unwrap();
            let what = format!("{file}, {layers:?}: {attention:?} logits over the prompt");
            assert_close(&what, &logits, &r[name], 1e-4);
        }
    }
}

#[test]
fn greedy_generation_with_an_image_matches_transformers() {
    let r = reference();
    let (text, vision) = load("gemma_vision/gemma3_vision_tiny.safetensors");
    let prompt = prompt(&text, &vision, ImageAttention::Causal);
    let expected = ids(&r["tokens"]);
    let options = GenerateOptions { max_new_tokens: expected.len(), stop_tokens: vec![1], sampling: None };
    let generation = generate_from_embeddings(&text, &prompt, &options, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(generation.tokens, expected);
    assert_eq!(generation.stop, Stop::MaxTokens);

    let mut decoder = kinograph_models::gemma3::Gemma3Decoder::new(&text);
    let mut logits = decoder.feed_prompt(&prompt).unwrap();
    for (step, &token) in expected.iter().enumerate() {
        let found = Tensor::from_vec(logits.clone(), logits.len(), &Device::Cpu).unwrap();
        assert_close(&format!("step {step}"), &found, &r["generation_logits"].i(step).unwrap(), 1e-4);
        logits = decoder.feed(&[token]).unwrap();
    }
}

#[test]
fn a_text_only_file_is_refused_by_name() {
    let file = data("gemma_generate/gemma3_generate_tiny.safetensors");
    let source = Arc::new(WeightSource::open(std::slice::from_ref(&file)).unwrap());
    let text = Gemma3TextModel::load(&source, &Device::Cpu, GemmaLoadOptions::default()).unwrap();
    let error = Gemma3Vision::load(&source, text.config(), &Device::Cpu).unwrap_err().to_string();
    assert!(error.contains("gemma3_generate_tiny.safetensors"), "{error}");
    assert!(error.contains("holds the text model only"), "{error}");
}

#[test]
fn a_prompt_needs_as_many_placeholders_as_images() {
    let (text, vision) = load("gemma_vision/gemma3_vision_tiny.safetensors");
    let images = vision.encode(&reference()["pixel_values"]).unwrap();
    let error = PromptEmbeddings::new(&text, &[2, 5, 6], IMAGE_PLACEHOLDER_ID, &[images], ImageAttention::Causal)
        .unwrap_err()
        .to_string();
    assert!(error.contains("0 image placeholder(s) for 1 image(s)"), "{error}");
}

/// The 12B file's vision tower and projector under ComfyUI's names, bfloat16, as a sparse file (nothing on
/// disk) without a config: read as SigLIP-So400m at 896/14 (a 64×64 grid) with 27 layers, 16 heads and 256
/// tokens per image, which pool 4×4.
#[test]
fn the_12b_vision_layout_is_read_from_its_names_and_shapes() {
    use kinograph_models::gemma3::{Gemma3Config, Gemma3VisionConfig};
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("vision_model.embeddings.patch_embedding.weight".into(), vec![1152, 3, 14, 14]),
        ("vision_model.embeddings.patch_embedding.bias".into(), vec![1152]),
        ("vision_model.embeddings.position_embedding.weight".into(), vec![4096, 1152]),
        ("vision_model.post_layernorm.weight".into(), vec![1152]),
        ("vision_model.post_layernorm.bias".into(), vec![1152]),
        ("multi_modal_projector.mm_input_projection_weight".into(), vec![1152, 3840]),
        ("multi_modal_projector.mm_soft_emb_norm.weight".into(), vec![1152]),
    ];
    for layer in 0..27 {
        let name = |part: &str| format!("vision_model.encoder.layers.{layer}.{part}");
        for norm in ["layer_norm1", "layer_norm2"] {
            tensors.push((name(&format!("{norm}.weight")), vec![1152]));
            tensors.push((name(&format!("{norm}.bias")), vec![1152]));
        }
        for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            tensors.push((name(&format!("self_attn.{projection}.weight")), vec![1152, 1152]));
            tensors.push((name(&format!("self_attn.{projection}.bias")), vec![1152]));
        }
        tensors.push((name("mlp.fc1.weight"), vec![4304, 1152]));
        tensors.push((name("mlp.fc1.bias"), vec![4304]));
        tensors.push((name("mlp.fc2.weight"), vec![1152, 4304]));
        tensors.push((name("mlp.fc2.bias"), vec![1152]));
    }
    assert_eq!(tensors.iter().filter(|(name, _)| name.starts_with("vision_model.")).count(), 437);
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("gemma_3_12B_it_vision.safetensors");
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((bytes.len() + offset) as u64).unwrap();

    let source = WeightSource::open(&[path]).unwrap();
    let config = Gemma3VisionConfig::read(&source, &Gemma3Config::gemma3_12b()).unwrap();
    assert_eq!(
        config,
        Gemma3VisionConfig {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_hidden_layers: 27,
            num_attention_heads: 16,
            image_size: 896,
            patch_size: 14,
            num_channels: 3,
            mm_tokens_per_image: 256,
        }
    );
    assert_eq!((config.patches_per_side(), config.tokens_per_side()), (64, 16));
}
