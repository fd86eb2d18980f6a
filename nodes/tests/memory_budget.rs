//! The loaders of LTX-Video's models under a memory budget: a T5 (`CLIPLoader`) and an LTX-Video transformer
//! (`CheckpointLoaderSimple`, `UNETLoader`) that do not fit stream their blocks from the file instead of being
//! refused, count only what they keep against the budget, and compute what resident ones compute; a budget
//! too small even for that refuses them, naming the sizes.
//!
//! The models are small random ones with eight blocks, written here, so that streaming saves most of their
//! size. Each test sets the process's budget: nextest runs each in a process of its own.

use crate::support::{Folders, folders, inputs, node};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kinograph_engine::{ExecutionContext, MemoryBudget, MemoryPool, NodeOutput, Value};
use kinograph_models::ltxv::transformer::{LtxvTransformer, LtxvTransformerConfig, RopePositions};
use kinograph_models::t5::{Activation, T5Config, T5Encoder};
use kinograph_nodes::values::{DiffusionModel, TextEncoder, Transformer, VideoVae};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const T5_FILE: &str = "t5-eight-blocks.safetensors";
const CHECKPOINT_FILE: &str = "ltxv-eight-blocks.safetensors";
/// The tiny LTX-Video single file of the model tests, for its VAE.
const TINY_CHECKPOINT: &str = "../models/tests/data/ltxv/single/ltxv-tiny-v095.safetensors";

/// Random values for every variable of `varmap`, named `prefix + name`: small noise, norm scales near 1.
fn randomised(varmap: &VarMap, prefix: &str) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(name, var)| {
            let noise = Tensor::randn(0f32, 0.3, var.as_tensor().shape(), &Device::Cpu).unwrap();
            let value = if name.ends_with("norm.weight") { (noise + 1.0).unwrap() } else { noise };
            (format!("{prefix}{name}"), value)
        })
        .collect()
}

/// Writes a T5 v1.1 encoder with eight blocks into `text_encoders/`, in ComfyUI's names.
fn write_t5(folders: &Folders) {
    let config = T5Config {
        vocab_size: 64,
        d_model: 16,
        d_kv: 8,
        d_ff: 32,
        num_layers: 8,
        num_heads: 2,
        relative_attention_num_buckets: 32,
        relative_attention_max_distance: 128,
        layer_norm_epsilon: 1e-6,
        activation: Activation::GeluTanh,
    };
    let varmap = VarMap::new();
    T5Encoder::new(&VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), &config).unwrap();
    let folder = folders.env.models.models_dir().join("text_encoders");
    std::fs::create_dir_all(&folder).unwrap();
    candle_core::safetensors::save(&randomised(&varmap, ""), folder.join(T5_FILE)).unwrap();
}

/// Writes a single-file checkpoint with an eight-block LTX-Video transformer and the tiny VAE into
/// `checkpoints/` and `diffusion_models/`.
fn write_checkpoint(folders: &Folders) {
    let config = LtxvTransformerConfig {
        in_channels: 8,
        out_channels: 8,
        num_attention_heads: 1,
        attention_head_dim: 32,
        num_layers: 8,
        cross_attention_dim: 32,
        caption_channels: 16,
        ..LtxvTransformerConfig::ltxv_2b()
    };
    let varmap = VarMap::new();
    LtxvTransformer::new(&config, &VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let mut tensors = randomised(&varmap, "model.diffusion_model.");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY_CHECKPOINT);
    let vae = candle_core::safetensors::load(tiny, &Device::Cpu).unwrap();
    tensors.extend(vae.into_iter().filter(|(name, _)| name.starts_with("vae.")));
    for kind in ["checkpoints", "diffusion_models"] {
        let folder = folders.env.models.models_dir().join(kind);
        std::fs::create_dir_all(&folder).unwrap();
        candle_core::safetensors::save(&tensors, folder.join(CHECKPOINT_FILE)).unwrap();
    }
}

fn run(folders: &Folders, class: &str, values: Vec<(&str, &str)>) -> Result<NodeOutput, String> {
    let context = ExecutionContext::detached("1", class, folders.env.clone());
    let values = inputs(values.into_iter().map(|(name, value)| (name, Value::String(value.into()))).collect());
    node(class).execute(&values, &context).map_err(|error| error.to_string())
}

fn load_clip(folders: &Folders) -> Result<Arc<TextEncoder>, String> {
    let output = run(folders, "CLIPLoader", vec![("clip_name", T5_FILE), ("type", "ltxv")])?;
    Ok(output.values[0].downcast().unwrap())
}

fn ltxv(model: &DiffusionModel) -> Arc<LtxvTransformer> {
    match &model.transformer {
        Transformer::Ltxv(transformer) => transformer.clone(),
        Transformer::Ltx2(_) => panic!("an LTX-Video transformer"),
    }
}

/// `count` fixed values in about [−1, 1].
fn fixed(shape: (usize, usize, usize), phase: f64) -> Tensor {
    let count = shape.0 * shape.1 * shape.2;
    let values = Tensor::arange(0f32, count as f32, &Device::Cpu).unwrap();
    ((values * 0.731).unwrap() + phase).unwrap().sin().unwrap().reshape(shape).unwrap()
}

fn encode(encoder: &T5Encoder) -> Tensor {
    encoder.forward(&Tensor::new(&[[5u32, 17, 42, 8, 1, 0]], &Device::Cpu).unwrap(), None).unwrap()
}

fn denoise(model: &LtxvTransformer) -> Tensor {
    let config = model.config();
    let latent = fixed((1, 12, config.in_channels), 0.3);
    let text = fixed((1, 5, config.caption_channels), 1.1);
    let timestep = Tensor::new(&[500f32], &Device::Cpu).unwrap();
    model.forward(&latent, &text, None, &timestep, &RopePositions::grid(2, 2, 3, 25.0)).unwrap()
}

fn resident_bytes() -> u64 {
    MemoryBudget::global().resident(MemoryPool::Ram)
}

/// What each model is and keeps without a limit: the T5 encoder's output and size, the checkpoint's
/// transformer output and size, and its VAE's size.
struct Unlimited {
    text: Tensor,
    text_bytes: usize,
    velocity: Tensor,
    transformer_bytes: usize,
    vae_bytes: usize,
}

fn unlimited(folders: &Folders) -> Unlimited {
    MemoryBudget::global().set_limit(MemoryPool::Ram, None);
    let clip = load_clip(folders).unwrap();
    let encoder = clip.encoder().unwrap();
    assert!(!encoder.streams_blocks());
    let output = run(folders, "CheckpointLoaderSimple", vec![("ckpt_name", CHECKPOINT_FILE)]).unwrap();
    let model: Arc<DiffusionModel> = output.values[0].downcast().unwrap();
    let vae: Arc<VideoVae> = output.values[2].downcast().unwrap();
    assert!(!ltxv(&model).streams_blocks());
    assert_eq!(resident_bytes(), (clip.bytes + model.bytes + vae.bytes) as u64, "each counted once");
    Unlimited {
        text: encode(encoder),
        text_bytes: clip.bytes,
        velocity: denoise(&ltxv(&model)),
        transformer_bytes: model.bytes,
        vae_bytes: vae.bytes,
    }
}

/// The limit whose room (seven eighths of it, the rest being the working reserve) is `room` bytes.
fn limit_with_room(room: usize) -> u64 {
    (room as u64 * 8).div_ceil(7)
}

#[test]
fn a_small_budget_streams_the_t5_and_the_ltxv_transformer_instead_of_refusing_them() {
    let folders = folders();
    write_t5(&folders);
    write_checkpoint(&folders);
    let reference = unlimited(&folders);
    assert_eq!(resident_bytes(), 0, "the models went with their values");

    // Room for half the T5: its embedding table and two of its eight blocks fit, all of it does not.
    MemoryBudget::global().set_limit(MemoryPool::Ram, Some(limit_with_room(reference.text_bytes / 2)));
    let clip = load_clip(&folders).unwrap();
    let encoder = clip.encoder().unwrap().clone();
    assert!(encoder.streams_blocks(), "the T5 streams its blocks");
    assert!(clip.bytes < reference.text_bytes / 8, "{} of {} kept", clip.bytes, reference.text_bytes);
    assert_eq!(resident_bytes(), clip.bytes as u64, "what the T5 keeps is what counts");
    assert_eq!(encode(&encoder).to_vec3::<f32>().unwrap(), reference.text.to_vec3::<f32>().unwrap());
    drop((encoder, clip));
    assert_eq!(resident_bytes(), 0);

    // Room for the VAE, which cannot stream, and half the transformer.
    let room = reference.vae_bytes + reference.transformer_bytes / 2;
    MemoryBudget::global().set_limit(MemoryPool::Ram, Some(limit_with_room(room)));
    let output = run(&folders, "CheckpointLoaderSimple", vec![("ckpt_name", CHECKPOINT_FILE)]).unwrap();
    let model: Arc<DiffusionModel> = output.values[0].downcast().unwrap();
    let vae: Arc<VideoVae> = output.values[2].downcast().unwrap();
    assert!(ltxv(&model).streams_blocks(), "the checkpoint's transformer streams its blocks");
    assert!(model.bytes < reference.transformer_bytes / 4, "{} of {} kept", model.bytes, reference.transformer_bytes);
    assert_eq!(vae.bytes, reference.vae_bytes);
    assert_eq!(resident_bytes(), (model.bytes + vae.bytes) as u64);
    let velocity = denoise(&ltxv(&model));
    assert_eq!(velocity.to_vec3::<f32>().unwrap(), reference.velocity.to_vec3::<f32>().unwrap());
    drop((output, model, vae));
    assert_eq!(resident_bytes(), 0);

    // UNETLoader, in room for half the transformer.
    let room = reference.transformer_bytes / 2;
    MemoryBudget::global().set_limit(MemoryPool::Ram, Some(limit_with_room(room)));
    let values = vec![("unet_name", CHECKPOINT_FILE), ("weight_dtype", "default")];
    let output = run(&folders, "UNETLoader", values).unwrap();
    let model: Arc<DiffusionModel> = output.values[0].downcast().unwrap();
    assert!(ltxv(&model).streams_blocks(), "UNETLoader's transformer streams its blocks");
    assert_eq!(resident_bytes(), model.bytes as u64);
    assert_eq!(denoise(&ltxv(&model)).to_vec3::<f32>().unwrap(), reference.velocity.to_vec3::<f32>().unwrap());
}

#[test]
fn a_budget_too_small_even_for_streamed_blocks_refuses_naming_the_sizes() {
    let folders = folders();
    write_t5(&folders);
    let text_bytes = unlimited_text_bytes(&folders);
    // Room for an eighth of the T5: not even its embedding table and two blocks.
    MemoryBudget::global().set_limit(MemoryPool::Ram, Some(limit_with_room(text_bytes / 8)));
    let error = load_clip(&folders).unwrap_err();
    assert!(error.contains("clip_name") && error.contains(T5_FILE), "{error}");
    assert!(error.contains("this text encoder does not fit in the memory budget"), "{error}");
    assert!(error.contains("even with its blocks streamed from the file it keeps"), "{error}");
}

fn unlimited_text_bytes(folders: &Folders) -> usize {
    MemoryBudget::global().set_limit(MemoryPool::Ram, None);
    load_clip(folders).unwrap().bytes
}

/// `CLIPLoaderGGUF`'s llama.cpp T5 (`models/tests/data/gguf_text/`) streams its blocks too, here because it
/// would take over half the budget, and encodes as it does resident.
#[test]
fn clip_loader_gguf_streams_a_llama_cpp_t5() {
    let folders = folders();
    let target = folders.env.models.models_dir().join("clip");
    std::fs::create_dir_all(&target).unwrap();
    let file = "t5-tiny-encoder-Q8_0.gguf";
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/gguf_text").join(file);
    std::fs::copy(source, target.join(file)).unwrap();
    let load = || -> Arc<TextEncoder> {
        let output = run(&folders, "CLIPLoaderGGUF", vec![("clip_name", file), ("type", "ltxv")]).unwrap();
        output.values[0].downcast().unwrap()
    };
    let ids = Tensor::new(&[[71u32, 1]], &Device::Cpu).unwrap();

    MemoryBudget::global().set_limit(MemoryPool::Ram, None);
    let clip = load();
    let encoder = clip.encoder().unwrap();
    assert!(!encoder.streams_blocks());
    let (expected, total) = (encoder.forward(&ids, None).unwrap(), clip.bytes);
    drop(clip);

    MemoryBudget::global().set_limit(MemoryPool::Ram, Some(limit_with_room(total * 4 / 3)));
    let clip = load();
    let encoder = clip.encoder().unwrap();
    assert!(encoder.streams_blocks(), "over half the budget, the T5 streams its blocks");
    assert!(clip.bytes < total, "{} of {total} kept", clip.bytes);
    assert_eq!(resident_bytes(), clip.bytes as u64);
    assert_eq!(encoder.forward(&ids, None).unwrap().to_vec3::<f32>().unwrap(), expected.to_vec3::<f32>().unwrap());
}
