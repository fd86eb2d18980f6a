//! Tiny LTX-2 models for `kinograph demo --ltx2` and for tests: every part of the real structure under the
//! file names and tensor names ComfyUI's LTX-2 templates ask for (the single-file checkpoint with the
//! transformer, text projection and connectors, video VAE, audio VAE and vocoder; a Gemma 3 file that embeds
//! its SentencePiece model as `spiece_model`; the x2 latent upsampler; the distilled LoRA), with small widths
//! and deterministic random weights. The real Gemma vocabulary cannot ship, so the demo's Gemma uses a small
//! SentencePiece model with Gemma's special tokens. What they generate is structured noise with sound.

use crate::demo::randomise;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::gemma3::vision::{Gemma3Projector, SiglipVisionModel};
use kinograph_models::gemma3::{Gemma3Config, Gemma3TextModel, Gemma3VisionConfig};
use kinograph_models::ltx2::audio::{
    AudioVae, AudioVaeConfig, BweConfig, GeneratorConfig, VaeParts, Vocoder, VocoderConfig,
};
use kinograph_models::ltx2::text::connector::{Connector, ConnectorConfig};
use kinograph_models::ltx2::text::features::FeatureExtractor;
use kinograph_models::ltx2::transformer::{Ltx2Transformer, Ltx2TransformerConfig};
use kinograph_models::ltx2::upsampler::{LatentUpsampler, UpsampleMode, UpsamplerConfig};
use kinograph_models::ltxv::vae::LtxvVae;
use kinograph_models::ltxv::vae::config::{DecoderBlock, EncoderBlock, VaeConfig};
use kinograph_models::ltxv::vae::conv3d::SpatialPadding;
use kinograph_models::sampling::torch_noise::TorchGenerator;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The checkpoint name of the LTX-2.0 text-to-video templates.
pub const LTX2_CHECKPOINT: &str = "ltx-2-19b-dev-fp8.safetensors";
/// The distilled checkpoint name of the distilled template.
pub const LTX2_DISTILLED_CHECKPOINT: &str = "ltx-2-19b-distilled.safetensors";
/// The Gemma file the templates load.
pub const LTX2_TEXT_ENCODER: &str = "gemma_3_12B_it_fp4_mixed.safetensors";
/// The latent upsampler the templates load.
pub const LTX2_UPSAMPLER: &str = "ltx-2-spatial-upscaler-x2-1.0.safetensors";
/// The distilled LoRA of stage 2.
pub const LTX2_DISTILLED_LORA: &str = "ltx-2-19b-distilled-lora-384.safetensors";

/// The LTX-2.3 checkpoint name of the 2.3 templates.
pub const LTX23_CHECKPOINT: &str = "ltx-2.3-22b-dev-fp8.safetensors";
/// The 2.3 latent upsampler the 2.3 templates load.
pub const LTX23_UPSAMPLER: &str = "ltx-2.3-spatial-upscaler-x2-1.1.safetensors";
/// The 2.3 distilled LoRA of the 2.3 templates' stage 2.
pub const LTX23_DISTILLED_LORA: &str = "ltx_2.3_22b_distilled_1.1_lora_dynamic_fro09_avg_rank_111_bf16.safetensors";

/// The Gemma LoRA the 2.3 templates apply to the text encoder.
pub const LTX23_GEMMA_LORA: &str = "gemma-3-12b-it-abliterated_lora_rank64_bf16.safetensors";

/// Which release's layout a tiny checkpoint has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// 2.0: caption projections in the transformer, one text projection, the 24 kHz vocoder.
    V20,
    /// 2.3: gated attention and prompt modulation, per-stream text projections and gated connectors, the
    /// 2.3 video VAE, the vocoder with bandwidth extension to 48 kHz.
    V23,
}

/// The demo Gemma's SentencePiece model: 520 byte-fallback BPE pieces with Gemma's special tokens
/// (`<pad>` 0, `<eos>` 1, `<bos>` 2), made by `tools/fixtures/make_gemma_tokenizer_fixtures.py`.
const DEMO_TOKENIZER: &[u8] = include_bytes!("demo_data/gemma_demo_tokenizer.model");
/// Its vocabulary size.
const DEMO_VOCAB: usize = 520;

/// Gemma's width, which the 2.0 connectors keep.
const TEXT_WIDTH: usize = 32;
const GEMMA_LAYERS: usize = 2;

/// The tiny transformer: 2 blocks, video 2 heads × 16, audio 2 heads × 8, the real 128 latent channels.
fn transformer_json(release: Release) -> Value {
    let mut json = json!({
        "num_layers": 2,
        "num_attention_heads": 2, "attention_head_dim": 16,
        "audio_num_attention_heads": 2, "audio_attention_head_dim": 8,
        "cross_attention_dim": 32, "audio_cross_attention_dim": 16,
        "caption_channels": TEXT_WIDTH,
        "in_channels": 128, "out_channels": 128, "audio_in_channels": 128, "audio_out_channels": 128,
        "connector_num_attention_heads": 2, "connector_attention_head_dim": 16,
        "causal_temporal_positioning": true,
    });
    if release == Release::V23 {
        // The audio connector works at the audio stream's width, as the 2.3 release's does.
        json["audio_connector_num_attention_heads"] = json!(2);
        json["audio_connector_attention_head_dim"] = json!(8);
    }
    json
}

fn transformer_config(release: Release) -> Ltx2TransformerConfig {
    let base = match release {
        Release::V20 => Ltx2TransformerConfig::ltx2_19b(),
        Release::V23 => Ltx2TransformerConfig::ltx23_22b(),
    };
    let mut config = base;
    config.apply_json(&transformer_json(release));
    config
}

fn audio_vae_json() -> Value {
    json!({
        "model": {"params": {"ddconfig": {
            "ch": 8, "ch_mult": [1, 2, 4], "num_res_blocks": 1, "z_channels": 8, "double_z": true,
            "in_channels": 2, "out_ch": 2, "mel_bins": 64, "norm_type": "pixel", "causality_axis": "height",
            "attn_resolutions": [], "mid_block_add_attention": false, "resolution": 256, "dropout": 0.0,
            "downsample_time": false
        }, "sampling_rate": 16000}},
        "preprocessing": {"mel": {"mel_fmax": 8000.0, "mel_fmin": 0.0, "n_mel_channels": 64},
                          "stft": {"causal": true, "filter_length": 1024, "hop_length": 160, "win_length": 1024}}
    })
}

fn vocoder_json(release: Release) -> Value {
    match release {
        Release::V20 => json!({
            "activation": "snake", "output_sampling_rate": 24000, "resblock": "1",
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "resblock_kernel_sizes": [3, 7, 11],
            "stereo": true, "upsample_initial_channel": 32, "upsample_kernel_sizes": [16, 15, 8, 4, 4],
            "upsample_rates": [6, 5, 2, 2, 2], "use_bias_at_final": true, "use_tanh_at_final": true
        }),
        // The 2.3 vocoder: a BigVGAN generator to 16 kHz and the bandwidth extension to 48 kHz.
        Release::V23 => json!({
            "vocoder": {
                "upsample_initial_channel": 64, "resblock": "AMP1", "upsample_rates": [5, 2, 2, 2, 2, 2],
                "resblock_kernel_sizes": [3, 7, 11], "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "stereo": true,
                "use_tanh_at_final": false, "activation": "snakebeta", "use_bias_at_final": false
            },
            "bwe": {
                "upsample_initial_channel": 32, "resblock": "AMP1", "upsample_rates": [6, 5, 2, 2, 2],
                "resblock_kernel_sizes": [3, 7, 11], "upsample_kernel_sizes": [12, 11, 4, 4, 4],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "stereo": true,
                "use_tanh_at_final": false, "activation": "snakebeta", "use_bias_at_final": false,
                "apply_final_activation": false, "input_sampling_rate": 16000, "output_sampling_rate": 48000,
                "hop_length": 80, "n_fft": 128, "win_size": 128, "num_mels": 64
            }
        }),
    }
}

fn vocoder_config(release: Release) -> Result<VocoderConfig, String> {
    Ok(match release {
        Release::V20 => {
            let mut generator = GeneratorConfig::ltx2();
            generator.apply_json(&vocoder_json(release))?;
            VocoderConfig::Hifigan(generator)
        }
        Release::V23 => {
            let mut bwe = BweConfig::ltx23();
            bwe.apply_json(&vocoder_json(release))?;
            VocoderConfig::WithBwe(bwe)
        }
    })
}

/// The tiny 2.3 video VAE: the demo's 2.0 widths with the 2.3 structure (the last space-to-depth keeps the
/// width; plain depth-to-space upsamplers, one keeping the width, one temporal only, one spatial only).
fn vae_config(release: Release) -> VaeConfig {
    let mut config = crate::demo::ltx2_vae_config();
    if release == Release::V20 {
        return config;
    }
    if let Some(EncoderBlock::SpaceToDepth { multiplier, .. }) =
        config.encoder_blocks.iter_mut().rev().find(|block| matches!(block, EncoderBlock::SpaceToDepth { .. }))
    {
        *multiplier = 1;
    }
    let res = DecoderBlock::Res { layers: 1, inject_noise: false };
    let upsample = |stride, multiplier| DecoderBlock::Upsample { stride, residual: false, multiplier };
    config.decoder_blocks = vec![
        res,
        upsample([2, 2, 2], 2),
        res,
        upsample([2, 2, 2], 1),
        res,
        upsample([2, 1, 1], 2),
        res,
        upsample([1, 2, 2], 2),
        res,
    ];
    config.encoder_padding = SpatialPadding::Zeros;
    config.decoder_padding = SpatialPadding::Zeros;
    config
}

fn upsampler_config() -> UpsamplerConfig {
    UpsamplerConfig { in_channels: 128, mid_channels: 32, num_blocks_per_stage: 1, mode: UpsampleMode::Spatial2 }
}

fn gemma_config() -> Gemma3Config {
    Gemma3Config {
        vocab_size: DEMO_VOCAB,
        hidden_size: TEXT_WIDTH,
        intermediate_size: 64,
        num_hidden_layers: GEMMA_LAYERS,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        query_pre_attn_scalar: 16.0,
        layer_types: Gemma3Config::pattern(GEMMA_LAYERS, 6),
        ..Gemma3Config::gemma3_12b()
    }
}

/// Where [`write_ltx2_demo_models`] put the files.
#[derive(Debug, Clone)]
pub struct Ltx2DemoModels {
    pub checkpoint: PathBuf,
    pub checkpoint_23: PathBuf,
    pub text_encoder: PathBuf,
    pub upsampler: PathBuf,
    pub upsampler_23: PathBuf,
    pub lora: PathBuf,
    pub lora_23: PathBuf,
    pub gemma_lora: PathBuf,
}

fn varmap() -> (VarMap, VarBuilder<'static>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    (varmap, vb)
}

fn built(what: &str) -> impl Fn(candle_core::Error) -> String + '_ {
    move |e| format!("building the demo {what}: {e}")
}

/// The single-file checkpoint's tensors and `config` metadata.
fn checkpoint_tensors(release: Release) -> Result<(BTreeMap<String, Tensor>, Value), String> {
    let config = transformer_config(release);
    let mut tensors = BTreeMap::new();

    let (map, vb) = varmap();
    Ltx2Transformer::new(&config, &vb, BlockHolding::Resident).map_err(built("transformer"))?;
    tensors.extend(randomise(&map, "model.diffusion_model.", 21).map_err(built("transformer"))?);

    let widths = [("video", config.inner_dim()), ("audio", config.audio_inner_dim())];
    for (index, (stream, width)) in widths.into_iter().enumerate() {
        let (map, vb) = varmap();
        // 2.0's connectors keep Gemma's width; 2.3's work at their stream's width, with gated attention.
        let width = if release == Release::V20 { TEXT_WIDTH } else { width };
        let connector = ConnectorConfig {
            heads: 2,
            head_dim: width / 2,
            layers: 2,
            registers: 128,
            gated: release == Release::V23,
            max_position: 4096.0,
            theta: 10_000.0,
            eps: 1e-6,
        };
        Connector::new(connector, &vb).map_err(built("connector"))?;
        let prefix = format!("model.diffusion_model.{stream}_embeddings_connector.");
        tensors.extend(randomise(&map, &prefix, 22 + index as u64).map_err(built("connector"))?);
    }
    let (map, vb) = varmap();
    match release {
        Release::V20 => FeatureExtractor::v1(&vb, TEXT_WIDTH, GEMMA_LAYERS + 1),
        Release::V23 => {
            FeatureExtractor::v2(&vb, TEXT_WIDTH, GEMMA_LAYERS + 1, config.inner_dim(), config.audio_inner_dim())
        }
    }
    .map_err(built("text projection"))?;
    tensors.extend(randomise(&map, "text_embedding_projection.", 24).map_err(built("text projection"))?);

    let (map, vb) = varmap();
    LtxvVae::new(vae_config(release), &vb).map_err(built("video VAE"))?;
    tensors.extend(randomise(&map, "vae.", 25).map_err(built("video VAE"))?);

    let mut audio = AudioVaeConfig::ltx2();
    audio.apply_json(&audio_vae_json())?;
    let (map, vb) = varmap();
    AudioVae::new(&audio, VaeParts::Both, &vb).map_err(built("audio VAE"))?;
    tensors.extend(randomise(&map, "audio_vae.", 26).map_err(built("audio VAE"))?);

    let (map, vb) = varmap();
    Vocoder::new(&vocoder_config(release)?, &vb).map_err(built("vocoder"))?;
    tensors.extend(randomise(&map, "vocoder.", 27).map_err(built("vocoder"))?);

    let metadata = json!({
        "transformer": transformer_json(release),
        "audio_vae": audio_vae_json(),
        "vocoder": vocoder_json(release),
    });
    Ok((tensors, metadata))
}

/// The demo Gemma's vision tower: `SigLIP` 16 wide, one layer, 32-pixel images in 4-pixel patches, pooled to
/// 4 tokens an image (the 12B's 896 / 14 / 256, scaled down with the same pooling).
fn vision_config() -> Gemma3VisionConfig {
    Gemma3VisionConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        image_size: 32,
        patch_size: 4,
        num_channels: 3,
        mm_tokens_per_image: 4,
    }
}

/// The `config` metadata that gives the vision tower's heads and tokens per image (the tensors give the rest).
fn gemma_metadata() -> Value {
    let vision = vision_config();
    json!({
        "mm_tokens_per_image": vision.mm_tokens_per_image,
        "vision_config": {
            "num_attention_heads": vision.num_attention_heads, "image_size": vision.image_size,
            "patch_size": vision.patch_size, "hidden_size": vision.hidden_size
        }
    })
}

/// The Gemma file's tensors: the text model, and the vision tower and projector that image prompts use.
fn gemma_tensors() -> Result<BTreeMap<String, Tensor>, String> {
    let (map, vb) = varmap();
    Gemma3TextModel::new(&gemma_config(), &vb.pp("model"), BlockHolding::Resident).map_err(built("Gemma"))?;
    let mut tensors = randomise(&map, "", 28).map_err(built("Gemma"))?;
    let (map, vb) = varmap();
    SiglipVisionModel::new(&vision_config(), &vb.pp("vision_model")).map_err(built("Gemma vision tower"))?;
    Gemma3Projector::new(&vision_config(), &gemma_config(), &vb.pp("multi_modal_projector"))
        .map_err(built("Gemma projector"))?;
    tensors.extend(randomise(&map, "", 32).map_err(built("Gemma vision tower"))?);
    Ok(tensors)
}

fn upsampler_tensors() -> Result<BTreeMap<String, Tensor>, String> {
    let (map, vb) = varmap();
    LatentUpsampler::new(&upsampler_config(), &vb).map_err(built("latent upsampler"))?;
    randomise(&map, "", 29).map_err(built("latent upsampler"))
}

/// A rank-4 LoRA in the trainer's format (`diffusion_model.<layer>.lora_A/B.weight`) over the attention and
/// feed-forward projections of every block.
fn lora_tensors(release: Release) -> Result<BTreeMap<String, Tensor>, String> {
    let config = transformer_config(release);
    let (_map, vb) = varmap();
    let model = Ltx2Transformer::new(&config, &vb, BlockHolding::Resident).map_err(built("transformer"))?;
    let layers = model.linear_layers().map_err(built("LoRA"))?;
    let mut generator = TorchGenerator::new(30);
    let mut tensors = BTreeMap::new();
    let rank = 4;
    for (layer, (rows, columns)) in layers.iter().filter(|(name, _)| name.contains("transformer_blocks.")) {
        let mut matrix = |shape: (usize, usize), scale: f32| -> Result<Tensor, String> {
            let values: Vec<f32> = generator.randn(shape.0 * shape.1).iter().map(|v| v * scale).collect();
            Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())
        };
        tensors.insert(format!("diffusion_model.{layer}.lora_A.weight"), matrix((rank, *columns), 0.05)?);
        tensors.insert(format!("diffusion_model.{layer}.lora_B.weight"), matrix((*rows, rank), 0.05)?);
    }
    Ok(tensors)
}

/// Writes the LTX-2 demo models into `models_dir` (`checkpoints/`, `text_encoders/`,
/// `latent_upscale_models/`, `loras/`) unless they are there already: the 2.0 files and the 2.3 ones, under
/// the names ComfyUI's templates load. The weights depend only on the code.
pub fn write_ltx2_demo_models(models_dir: &Path) -> Result<Ltx2DemoModels, String> {
    let checkpoint = models_dir.join("checkpoints").join(LTX2_CHECKPOINT);
    let distilled = models_dir.join("checkpoints").join(LTX2_DISTILLED_CHECKPOINT);
    let checkpoint_23 = models_dir.join("checkpoints").join(LTX23_CHECKPOINT);
    let text_encoder = models_dir.join("text_encoders").join(LTX2_TEXT_ENCODER);
    let upsampler = models_dir.join("latent_upscale_models").join(LTX2_UPSAMPLER);
    let upsampler_23 = models_dir.join("latent_upscale_models").join(LTX23_UPSAMPLER);
    let lora = models_dir.join("loras").join(LTX2_DISTILLED_LORA);
    let lora_23 = models_dir.join("loras").join(LTX23_DISTILLED_LORA);
    if !checkpoint.is_file() || !distilled.is_file() {
        let (tensors, config) = checkpoint_tensors(Release::V20)?;
        let metadata = [("config", config.to_string())];
        for path in [&checkpoint, &distilled] {
            write_tensors(path, &tensors, &[], &metadata)?;
        }
    }
    if !checkpoint_23.is_file() {
        let (tensors, config) = checkpoint_tensors(Release::V23)?;
        let metadata = [("config", config.to_string()), ("model_version", "2.3.0".to_string())];
        write_tensors(&checkpoint_23, &tensors, &[], &metadata)?;
    }
    if !text_encoder.is_file() {
        let spiece = [("spiece_model", DEMO_TOKENIZER)];
        write_tensors(&text_encoder, &gemma_tensors()?, &spiece, &[("config", gemma_metadata().to_string())])?;
    }
    for path in [&upsampler, &upsampler_23] {
        if !path.is_file() {
            let config = upsampler_config();
            let metadata = json!({
                "_class_name": "LatentUpsampler", "dims": 3, "in_channels": config.in_channels,
                "mid_channels": config.mid_channels, "num_blocks_per_stage": config.num_blocks_per_stage,
                "rational_resampler": false, "spatial_scale": 2.0, "spatial_upsample": true, "temporal_upsample": false
            });
            write_tensors(path, &upsampler_tensors()?, &[], &[("config", metadata.to_string())])?;
        }
    }
    for (path, release) in [(&lora, Release::V20), (&lora_23, Release::V23)] {
        if !path.is_file() {
            write_tensors(path, &lora_tensors(release)?, &[], &[])?;
        }
    }
    let gemma_lora = models_dir.join("loras").join(LTX23_GEMMA_LORA);
    if !gemma_lora.is_file() {
        let tensors = kinograph_models::gemma3::lora::tiny_lora_tensors(&gemma_config(), 4, 31)
            .map_err(|e| format!("building the demo Gemma LoRA: {e}"))?;
        write_tensors(&gemma_lora, &tensors, &[], &[])?;
    }
    Ok(Ltx2DemoModels { checkpoint, checkpoint_23, text_encoder, upsampler, upsampler_23, lora, lora_23, gemma_lora })
}

/// Writes f32 `tensors`, raw `bytes` tensors (u8) and string `metadata` to `path` as safetensors, through a
/// temporary file renamed into place.
fn write_tensors(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    bytes: &[(&str, &[u8])],
    metadata: &[(&str, String)],
) -> Result<(), String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let mut data: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let values: Vec<f32> = tensor.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| e.to_string())?;
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), safetensors::Dtype::F32, tensor.dims().to_vec(), raw));
    }
    for (name, raw) in bytes {
        data.push(((*name).to_string(), safetensors::Dtype::U8, vec![raw.len()], raw.to_vec()));
    }
    let views = data
        .iter()
        .map(|(name, dtype, shape, raw)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), raw)
                .map(|view| (name.as_str(), view))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut info: HashMap<String, String> =
        metadata.iter().map(|(key, value)| ((*key).to_string(), value.clone())).collect();
    info.insert("description".into(), "kinograph demo: tiny random LTX-2 weights".into());
    let serialized = safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())?;
    let temporary =
        folder.join(format!(".{}.partial", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&temporary, serialized).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot move {} into place: {e}", path.display()))
}
