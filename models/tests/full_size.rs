//! Full-size checkpoints: the real 2B transformer (alone and with a rank-64 LoRA), each VAE layout,
//! T5-XXL, and LTX-2's 19B transformer and Gemma 3 12B streamed block by block, loaded from bf16 single
//! files and run, with the peak resident memory of each. The files are not committed (they are 4–10 GB
//! each); write them with `tools/fixtures/make_full_size_checkpoints.py OUT_DIR` and run
//!
//! ```text
//! KINOGRAPH_FULL_SIZE_DIR=OUT_DIR cargo nextest run --release -p kinograph-models \
//!     -E 'test(/^full_size::/)' --run-ignored ignored-only --no-capture
//! ```
//!
//! nextest runs each test in its own process, so each peak is that model's alone.

use candle_core::{DType, Device, Tensor};
use kinograph_models::bench_support::{peak_resident_bytes, reset_peak_resident, resident_bytes};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::{Gemma3TextModel, GemmaLoadOptions};
use kinograph_models::ltx2::transformer::{AvInputs, LoadOptions, Ltx2Transformer, Perturbation};
use kinograph_models::ltxv::transformer::{LtxvTransformer, RopePositions};
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::{DecodeOptions, LtxvVae};
use kinograph_models::t5::{T5Encoder, T5Tokenizer, TokenLength};
use kinograph_models::weights::WeightSource;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn folder() -> PathBuf {
    PathBuf::from(
        std::env::var("KINOGRAPH_FULL_SIZE_DIR").expect("set KINOGRAPH_FULL_SIZE_DIR to the checkpoints folder"),
    )
}

fn gib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".into(), |b| format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30)))
}

/// One 2B transformer call's inputs: a 2×16×24 latent (768 tokens), 128 text tokens, timestep 500.
struct TransformerInputs {
    hidden: Tensor,
    text: Tensor,
    mask: Tensor,
    timestep: Tensor,
    positions: RopePositions,
}

impl TransformerInputs {
    const TOKENS: usize = 2 * 16 * 24;

    fn new() -> Self {
        let device = Device::Cpu;
        TransformerInputs {
            hidden: Tensor::randn(0f32, 1.0, (1, Self::TOKENS, 128), &device).unwrap(),
            text: Tensor::randn(0f32, 1.0, (1, 128, 4096), &device).unwrap(),
            mask: Tensor::ones((1, 128), DType::F32, &device).unwrap(),
            timestep: Tensor::new(&[500f32], &device).unwrap(),
            positions: RopePositions::grid(2, 16, 24, 25.0),
        }
    }

    fn forward(&self, model: &LtxvTransformer) -> Tensor {
        model.forward(&self.hidden, &self.text, Some(&self.mask), &self.timestep, &self.positions).unwrap()
    }
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs) and ~10 GB of memory"]
fn transformer_2b_loads_from_bf16_and_runs() {
    reset_peak_resident();
    let path = folder().join("checkpoints/ltxv-2b-random-v095.safetensors");
    let started = Instant::now();
    let model = LtxvTransformer::load_file(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let loaded = started.elapsed();
    let inputs = TransformerInputs::new();
    let started = Instant::now();
    let out = inputs.forward(&model);
    assert_eq!(out.dims(), [1, TransformerInputs::TOKENS, 128]);
    assert!(out.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().is_finite());
    println!(
        "2B transformer from bf16: load {:.1} s, forward (768 tokens) {:.1} s, peak RSS {}, RSS now {}",
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes()),
        gib(resident_bytes())
    );
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs) and ~10 GB of memory"]
fn transformer_2b_with_a_lora_beside_the_base() {
    use kinograph_models::lora::{KeyMap, LoraFile};
    reset_peak_resident();
    let model = LtxvTransformer::load_file(&folder().join("checkpoints/ltxv-2b-random-v095.safetensors"), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = resident_bytes();
    let started = Instant::now();
    let lora = LoraFile::open(&folder().join("loras/ltxv-2b-rank64-random.safetensors")).unwrap();
    let keys = KeyMap::diffusion_model(&model.linear_layers().unwrap());
    let patches = lora.patches(&keys, &[("unet", 0.7)]).unwrap();
    assert!(patches.not_loaded.is_empty(), "{:?}", patches.not_loaded);
    let patched = model.with_patches(&patches.layers["unet"]).unwrap();
    let applied = started.elapsed();
    let with_lora = resident_bytes();

    let inputs = TransformerInputs::new();
    let mut seconds = [f64::MAX; 2];
    let mut outputs = Vec::new();
    for _ in 0..2 {
        for (index, which) in [&model, &patched].into_iter().enumerate() {
            let started = Instant::now();
            let out = inputs.forward(which);
            seconds[index] = seconds[index].min(started.elapsed().as_secs_f64());
            outputs.push(out);
        }
    }
    let change = (&outputs[1] - &outputs[0]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(change > 0.0, "the LoRA changes the output");
    println!(
        "2B + rank-64 LoRA ({} MB in f32): applied in {:.2} s, RSS {} after loading the model, {} with the LoRA, \
         peak {}; forward (768 tokens, best of 2) {:.2} s base, {:.2} s with the LoRA (×{:.3})",
        lora.byte_size() / 1_000_000,
        applied.as_secs_f64(),
        gib(loaded),
        gib(with_lora),
        gib(peak_resident_bytes()),
        seconds[0],
        seconds[1],
        seconds[1] / seconds[0]
    );
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs) and ~12 GB of memory"]
fn t5_xxl_loads_from_bf16_and_runs() {
    reset_peak_resident();
    let path = folder().join("text_encoders/t5xxl-random-bf16.safetensors");
    let started = Instant::now();
    let encoder = T5Encoder::open(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let loaded = started.elapsed();
    let tokens = T5Tokenizer::new().unwrap().encode("a red fox in fresh snow", TokenLength::AtLeast(128)).unwrap();
    let (ids, mask) = tokens.to_tensors(&Device::Cpu).unwrap();
    let started = Instant::now();
    let hidden = encoder.forward(&ids, Some(&mask)).unwrap();
    assert_eq!(hidden.dims(), [1, 128, 4096]);
    println!(
        "T5-XXL from bf16 ({:?} storage): load {:.1} s, encode 128 tokens {:.1} s, peak RSS {}, RSS now {}",
        encoder.storage_dtype(),
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes()),
        gib(resident_bytes())
    );
}

fn vae_loads_from_bf16_and_runs(version: &str) {
    reset_peak_resident();
    let path = folder().join(format!("checkpoints/ltxv-2b-random-{version}.safetensors"));
    let started = Instant::now();
    let source = Arc::new(WeightSource::open(&[&path]).unwrap_or_else(|e| panic!("{e}")));
    let vae = LtxvVae::load(&source, "vae", &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let loaded = started.elapsed();
    drop(source);
    let video = Tensor::randn(0f32, 0.5, (1, 3, 9, 64, 96), &Device::Cpu).unwrap();
    let started = Instant::now();
    let latent = vae.encode(&video).unwrap();
    assert_eq!(latent.dims(), [1, 128, 2, 2, 3]);
    let options = DecodeOptions { temporal_chunk: Some(1), spatial_tiles: None };
    let decoded = vae.decode(&latent, Some(0.05), &mut ZeroNoise, &options).unwrap();
    assert_eq!(decoded.dims(), [1, 3, 9, 64, 96]);
    println!(
        "VAE {version} ({:?}) from bf16: load {:.1} s, encode + streamed decode of 9×64×96 {:.1} s, peak RSS {}, RSS now {}",
        vae.version(),
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes()),
        gib(resident_bytes())
    );
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs)"]
fn vae_v090_loads_from_bf16_and_runs() {
    vae_loads_from_bf16_and_runs("v090");
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs)"]
fn vae_v091_loads_from_bf16_and_runs() {
    vae_loads_from_bf16_and_runs("v091");
}

#[test]
#[ignore = "needs the full-size checkpoints (see the module docs)"]
fn vae_v095_loads_from_bf16_and_runs() {
    vae_loads_from_bf16_and_runs("v095");
}

/// LTX-2's 19B transformer (37.8 GB in bf16, more than this machine's memory) streamed from its file one
/// block at a time: one forward at 384×256×97 (latent 13×8×12 = 1248 video tokens), 101 audio tokens and
/// 1024 text tokens. Write the file with `--only ltx2`.
#[test]
#[ignore = "needs the 38 GB LTX-2 transformer file (see the module docs)"]
fn ltx2_transformer_streams_a_forward_from_bf16() {
    let path = folder().join("diffusion_models/ltx2-19b-random-transformer.safetensors");
    let device = Device::Cpu;
    reset_peak_resident();
    let started = Instant::now();
    let options = LoadOptions { blocks: BlockHolding::STREAMED, ..LoadOptions::default() };
    let model = Ltx2Transformer::load_file(&path, &device, options).unwrap();
    let loaded = started.elapsed();
    println!("loaded in {:.1} s, resident {}", loaded.as_secs_f64(), gib(resident_bytes()));
    assert_eq!(model.storage(), kinograph_models::fp8::WeightStorage::Dense(DType::BF16));
    let (frames, height, width, audio_tokens) = (13, 8, 12, 101);
    let video = Tensor::randn(0f32, 1.0, (1, frames * height * width, 128), &device).unwrap();
    let audio = Tensor::randn(0f32, 1.0, (1, audio_tokens, 128), &device).unwrap();
    let context = Tensor::randn(0f32, 1.0, (1, 1024, 3840), &device).unwrap();
    let t = Tensor::new(&[1000f32], &device).unwrap();
    let video_positions = model.video_positions(1, frames, height, width, 24.0).unwrap();
    let audio_positions = model.audio_positions(1, audio_tokens).unwrap();
    let inputs =
        AvInputs::at_one_timestep((&video, &audio), (&context, &context), &t, (&video_positions, &audio_positions));
    let started = Instant::now();
    let (video_out, audio_out) = model.forward(&inputs, &Perturbation::default()).unwrap();
    println!(
        "LTX-2 19B forward, 1248 + 101 tokens, streamed: {:.1} s, peak resident {}",
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes())
    );
    assert_eq!(video_out.dims(), [1, 1248, 128]);
    assert_eq!(audio_out.dims(), [1, 101, 128]);
    assert!(video_out.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().is_finite());
}

/// Gemma 3 12B (21.9 GiB in bf16) streamed layer by layer: every hidden state of a 128-token prompt.
/// Write the file with `--only gemma`.
#[test]
#[ignore = "needs the 24 GB Gemma 3 12B file (see the module docs)"]
fn gemma3_12b_streams_an_encode_from_bf16() {
    let path = folder().join("text_encoders/gemma3-12b-random.safetensors");
    let device = Device::Cpu;
    reset_peak_resident();
    let source = Arc::new(WeightSource::open(&[&path]).unwrap());
    let model = Gemma3TextModel::load(&source, &device, GemmaLoadOptions { layers: BlockHolding::STREAMED }).unwrap();
    println!("loaded, resident {}", gib(resident_bytes()));
    assert_eq!(model.storage_dtype(), DType::BF16);
    let ids: Vec<u32> = std::iter::once(2).chain((1..128).map(|i| 1000 + i * 37)).collect();
    let ids = Tensor::from_vec(ids, (1, 128), &device).unwrap();
    let started = Instant::now();
    let states = model.hidden_states(&ids, None).unwrap();
    println!(
        "Gemma 3 12B, 128 tokens, streamed: {:.1} s, peak resident {}",
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes())
    );
    assert_eq!(states.len(), 49);
    assert_eq!(states[48].dims(), [1, 128, 3840]);
}

/// LTX-2.0's text path after Gemma at full size, random bf16 weights built in memory (no file): the
/// 3840 × 188,160 feature projection and the video connector (30 heads × 128, 2 blocks, 128 registers)
/// on a 128-token prompt, giving the 1024-token context.
#[test]
#[ignore = "builds 2.2 GB of random weights; run with the full-size checks"]
fn ltx2_text_projection_and_connector_at_full_size() {
    use kinograph_models::bench_support::random_var_builder;
    use kinograph_models::ltx2::text::connector::{Connector, ConnectorConfig};
    use kinograph_models::ltx2::text::features::FeatureExtractor;
    let device = Device::Cpu;
    reset_peak_resident();
    let vb = random_var_builder(DType::BF16, &device).unwrap();
    let started = Instant::now();
    let features = FeatureExtractor::v1(&vb.pp("text_embedding_projection"), 3840, 49).unwrap();
    let config = ConnectorConfig {
        heads: 30,
        head_dim: 128,
        layers: 2,
        registers: 128,
        gated: false,
        max_position: 4096.0,
        theta: 10_000.0,
        eps: 1e-6,
    };
    let connector = Connector::new(config, &vb.pp("video_embeddings_connector")).unwrap();
    println!("built in {:.1} s, resident {}", started.elapsed().as_secs_f64(), gib(resident_bytes()));
    let states: Vec<Tensor> = (0..49).map(|_| Tensor::randn(0f32, 1.0, (1, 128, 3840), &device).unwrap()).collect();
    let mask = Tensor::ones((1, 128), DType::F32, &device).unwrap();
    // Building random weights goes through f32 copies; measure the forward from here.
    reset_peak_resident();
    let started = Instant::now();
    let (video, _) = features.forward(&states, &mask).unwrap();
    let context = connector.forward(&video, Some(&mask), 1024).unwrap();
    println!(
        "projection + connector, 128 tokens → 1024: {:.1} s, peak resident {}",
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes())
    );
    assert_eq!(context.dims(), [1, 1024, 3840]);
}

/// The LTX-2.3 video VAE decoder and the LTX-2 spatial ×2 latent upsampler at their real sizes, random
/// weights built in memory in f32 (the VAE's convs widen their weights to f32 when loading): a decode of a
/// 3×4×6 latent (17×128×192 pixels) and an upsampling of it.
#[test]
#[ignore = "builds the full-size VAE decoder and upsampler from random weights; run with the full-size checks"]
fn ltx23_vae_decoder_and_upsampler_at_full_size() {
    use kinograph_models::bench_support::random_var_builder;
    use kinograph_models::ltx2::upsampler::{LatentUpsampler, UpsampleMode, UpsamplerConfig};
    use kinograph_models::ltxv::vae::config::VaeConfig;
    use kinograph_models::ltxv::vae::decoder::Decoder;
    let device = Device::Cpu;
    let vb = random_var_builder(DType::F32, &device).unwrap();
    let decoder = Decoder::new(&VaeConfig::ltx23(), &vb.pp("decoder")).unwrap();
    let config =
        UpsamplerConfig { in_channels: 128, mid_channels: 1024, num_blocks_per_stage: 4, mode: UpsampleMode::Spatial2 };
    let upsampler = LatentUpsampler::new(&config, &vb.pp("upsampler")).unwrap();
    let latent = Tensor::randn(0f32, 1.0, (1, 128, 3, 4, 6), &device).unwrap();
    reset_peak_resident();
    let started = Instant::now();
    let inputs = decoder.prepare(1, 4, 6, None, &mut ZeroNoise, &device).unwrap();
    let video = decoder.forward(&latent, &inputs, None).unwrap();
    println!(
        "2.3 decode {:?}: {:.1} s, peak resident {}",
        video.dims(),
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes())
    );
    assert_eq!(video.dims(), [1, 3, 17, 128, 192]);
    reset_peak_resident();
    let started = Instant::now();
    let upsampled = upsampler.forward(&latent).unwrap();
    println!(
        "×2 upsampling {:?}: {:.1} s, peak resident {}",
        upsampled.dims(),
        started.elapsed().as_secs_f64(),
        gib(peak_resident_bytes())
    );
    assert_eq!(upsampled.dims(), [1, 128, 3, 8, 12]);
}
