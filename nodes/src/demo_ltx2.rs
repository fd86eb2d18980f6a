//! Tiny LTX-2 models for `kinograph demo --ltx2` and for tests: every part of the real structure under the
//! file names and tensor names ComfyUI's LTX-2 templates ask for (the single-file checkpoint with the
//! transformer, text projection and connectors, video VAE, audio VAE and vocoder; a Gemma 3 file that embeds
//! its SentencePiece model as `spiece_model`; the x2 latent upsampler; the distilled LoRA), with small widths
//! and deterministic random weights. The real Gemma vocabulary cannot ship, so the demo's Gemma uses a small
//! SentencePiece model with Gemma's special tokens. What they generate is structured noise with sound.

use crate::demo::randomise;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kinograph_models::gemma3::{Gemma3Config, Gemma3TextModel};
use kinograph_models::ltx2::audio::{AudioVae, AudioVaeConfig, GeneratorConfig, VaeParts, Vocoder, VocoderConfig};
use kinograph_models::ltx2::text::connector::{Connector, ConnectorConfig};
use kinograph_models::ltx2::text::features::FeatureExtractor;
use kinograph_models::ltx2::transformer::{Ltx2Transformer, Ltx2TransformerConfig};
use kinograph_models::ltx2::upsampler::{LatentUpsampler, UpsampleMode, UpsamplerConfig};
use kinograph_models::ltxv::vae::LtxvVae;
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

/// The demo Gemma's SentencePiece model: 520 byte-fallback BPE pieces with Gemma's special tokens
/// (`<pad>` 0, `<eos>` 1, `<bos>` 2), made by `tools/fixtures/make_gemma_tokenizer_fixtures.py`.
const DEMO_TOKENIZER: &[u8] = include_bytes!("demo_data/gemma_demo_tokenizer.model");
/// Its vocabulary size.
const DEMO_VOCAB: usize = 520;

/// Gemma's width, which the 2.0 connectors keep.
const TEXT_WIDTH: usize = 32;
const GEMMA_LAYERS: usize = 2;

/// The tiny transformer: 2 blocks, video 2 heads × 16, audio 2 heads × 8, the real 128 latent channels.
fn transformer_json() -> Value {
    json!({
        "num_layers": 2,
        "num_attention_heads": 2, "attention_head_dim": 16,
        "audio_num_attention_heads": 2, "audio_attention_head_dim": 8,
        "cross_attention_dim": 32, "audio_cross_attention_dim": 16,
        "caption_channels": TEXT_WIDTH,
        "in_channels": 128, "out_channels": 128, "audio_in_channels": 128, "audio_out_channels": 128,
        "connector_num_attention_heads": 2, "connector_attention_head_dim": 16,
        "causal_temporal_positioning": true,
    })
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

fn vocoder_json() -> Value {
    json!({
        "activation": "snake", "output_sampling_rate": 24000, "resblock": "1",
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "resblock_kernel_sizes": [3, 7, 11],
        "stereo": true, "upsample_initial_channel": 32, "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "upsample_rates": [6, 5, 2, 2, 2], "use_bias_at_final": true, "use_tanh_at_final": true
    })
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
    pub text_encoder: PathBuf,
    pub upsampler: PathBuf,
    pub lora: PathBuf,
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
fn checkpoint_tensors() -> Result<(BTreeMap<String, Tensor>, Value), String> {
    let mut config = Ltx2TransformerConfig::ltx2_19b();
    config.apply_json(&transformer_json());
    let mut tensors = BTreeMap::new();

    let (map, vb) = varmap();
    Ltx2Transformer::new(&config, &vb, false).map_err(built("transformer"))?;
    tensors.extend(randomise(&map, "model.diffusion_model.", 21).map_err(built("transformer"))?);

    for (index, stream) in ["video", "audio"].into_iter().enumerate() {
        let (map, vb) = varmap();
        let connector = ConnectorConfig {
            heads: 2,
            head_dim: 16,
            layers: 2,
            registers: 128,
            gated: false,
            max_position: 4096.0,
            theta: 10_000.0,
            eps: 1e-6,
        };
        Connector::new(connector, &vb).map_err(built("connector"))?;
        let prefix = format!("model.diffusion_model.{stream}_embeddings_connector.");
        tensors.extend(randomise(&map, &prefix, 22 + index as u64).map_err(built("connector"))?);
    }
    let (map, vb) = varmap();
    FeatureExtractor::new(&vb, TEXT_WIDTH, GEMMA_LAYERS + 1).map_err(built("text projection"))?;
    tensors.extend(randomise(&map, "text_embedding_projection.", 24).map_err(built("text projection"))?);

    let (map, vb) = varmap();
    LtxvVae::new(crate::demo::ltx2_vae_config(), &vb).map_err(built("video VAE"))?;
    tensors.extend(randomise(&map, "vae.", 25).map_err(built("video VAE"))?);

    let mut audio = AudioVaeConfig::ltx2();
    audio.apply_json(&audio_vae_json())?;
    let (map, vb) = varmap();
    AudioVae::new(&audio, VaeParts::Both, &vb).map_err(built("audio VAE"))?;
    tensors.extend(randomise(&map, "audio_vae.", 26).map_err(built("audio VAE"))?);

    let mut generator = GeneratorConfig::ltx2();
    generator.apply_json(&vocoder_json())?;
    let (map, vb) = varmap();
    Vocoder::new(&VocoderConfig::Hifigan(generator), &vb).map_err(built("vocoder"))?;
    tensors.extend(randomise(&map, "vocoder.", 27).map_err(built("vocoder"))?);

    let metadata = json!({
        "transformer": transformer_json(),
        "audio_vae": audio_vae_json(),
        "vocoder": vocoder_json(),
    });
    Ok((tensors, metadata))
}

fn gemma_tensors() -> Result<BTreeMap<String, Tensor>, String> {
    let (map, vb) = varmap();
    Gemma3TextModel::new(&gemma_config(), &vb.pp("model"), false).map_err(built("Gemma"))?;
    randomise(&map, "", 28).map_err(built("Gemma"))
}

fn upsampler_tensors() -> Result<BTreeMap<String, Tensor>, String> {
    let (map, vb) = varmap();
    LatentUpsampler::new(&upsampler_config(), &vb).map_err(built("latent upsampler"))?;
    randomise(&map, "", 29).map_err(built("latent upsampler"))
}

/// A rank-4 LoRA in the trainer's format (`diffusion_model.<layer>.lora_A/B.weight`) over the attention and
/// feed-forward projections of every block.
fn lora_tensors() -> Result<BTreeMap<String, Tensor>, String> {
    let mut config = Ltx2TransformerConfig::ltx2_19b();
    config.apply_json(&transformer_json());
    let (_map, vb) = varmap();
    let model = Ltx2Transformer::new(&config, &vb, false).map_err(built("transformer"))?;
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
/// `latent_upscale_models/`, `loras/`) unless they are there already. The weights depend only on the code.
pub fn write_ltx2_demo_models(models_dir: &Path) -> Result<Ltx2DemoModels, String> {
    let checkpoint = models_dir.join("checkpoints").join(LTX2_CHECKPOINT);
    let distilled = models_dir.join("checkpoints").join(LTX2_DISTILLED_CHECKPOINT);
    let text_encoder = models_dir.join("text_encoders").join(LTX2_TEXT_ENCODER);
    let upsampler = models_dir.join("latent_upscale_models").join(LTX2_UPSAMPLER);
    let lora = models_dir.join("loras").join(LTX2_DISTILLED_LORA);
    if !checkpoint.is_file() || !distilled.is_file() {
        let (tensors, config) = checkpoint_tensors()?;
        let metadata = [("config", config.to_string())];
        for path in [&checkpoint, &distilled] {
            write_tensors(path, &tensors, &[], &metadata)?;
        }
    }
    if !text_encoder.is_file() {
        let spiece = [("spiece_model", DEMO_TOKENIZER)];
        write_tensors(&text_encoder, &gemma_tensors()?, &spiece, &[])?;
    }
    if !upsampler.is_file() {
        let config = upsampler_config();
        let metadata = json!({
            "_class_name": "LatentUpsampler", "dims": 3, "in_channels": config.in_channels,
            "mid_channels": config.mid_channels, "num_blocks_per_stage": config.num_blocks_per_stage,
            "rational_resampler": false, "spatial_scale": 2.0, "spatial_upsample": true, "temporal_upsample": false
        });
        write_tensors(&upsampler, &upsampler_tensors()?, &[], &[("config", metadata.to_string())])?;
    }
    if !lora.is_file() {
        write_tensors(&lora, &lora_tensors()?, &[], &[])?;
    }
    Ok(Ltx2DemoModels { checkpoint, text_encoder, upsampler, lora })
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
