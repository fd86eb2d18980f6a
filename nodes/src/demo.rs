//! Tiny LTX-Video models for the built-in demo and for tests: the real architecture and the real tensor
//! names of ComfyUI's files (a single-file checkpoint with `model.diffusion_model.*` and `vae.*`, and a
//! T5 encoder file with the real 32,128-token vocabulary), with small widths and deterministic random
//! weights. They load through the same code as the released models. What they generate is structured
//! noise: they show the pipeline working end to end without a download.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kinograph_models::ltxv::transformer::{LtxvTransformer, LtxvTransformerConfig};
use kinograph_models::ltxv::vae::LtxvVae;
use kinograph_models::ltxv::vae::config::{DecoderBlock, EncoderBlock, VaeConfig};
use kinograph_models::sampling::torch_noise::TorchGenerator;
use kinograph_models::t5::{Activation, T5Config, T5Encoder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The demo checkpoint's file name under `checkpoints/`.
pub const DEMO_CHECKPOINT: &str = "ltxv-demo-tiny.safetensors";
/// The demo text encoder's file name under `text_encoders/`.
pub const DEMO_TEXT_ENCODER: &str = "t5-demo-tiny.safetensors";

/// The demo's text encoder width (also the transformer's caption width).
const TEXT_WIDTH: usize = 32;

/// The tiny transformer: the real 128 latent channels, 2 blocks of 2 heads × 16.
pub fn transformer_config() -> LtxvTransformerConfig {
    LtxvTransformerConfig {
        num_attention_heads: 2,
        attention_head_dim: 16,
        num_layers: 2,
        cross_attention_dim: 32,
        caption_channels: TEXT_WIDTH,
        ..LtxvTransformerConfig::ltxv_2b()
    }
}

/// The tiny VAE: the 0.9.5 structure (space-to-depth encoder, timestep-conditioned residual decoder,
/// 32× spatial and 8× temporal compression, 128 latent channels) with one resnet per level and narrow
/// widths.
pub fn vae_config() -> VaeConfig {
    use DecoderBlock as D;
    use EncoderBlock as E;
    let mut config = VaeConfig::v095();
    config.encoder_base_channels = 8;
    config.decoder_base_channels = 8;
    config.encoder_blocks = vec![
        E::Res { layers: 1 },
        E::SpaceToDepth { stride: [1, 2, 2], multiplier: 2 },
        E::Res { layers: 1 },
        E::SpaceToDepth { stride: [2, 1, 1], multiplier: 2 },
        E::Res { layers: 1 },
        E::SpaceToDepth { stride: [2, 2, 2], multiplier: 2 },
        E::Res { layers: 1 },
        E::SpaceToDepth { stride: [2, 2, 2], multiplier: 2 },
        E::Res { layers: 1 },
    ];
    let upsample = D::Upsample { stride: [2, 2, 2], residual: true, multiplier: 2 };
    config.decoder_blocks = vec![
        D::Res { layers: 1, inject_noise: false },
        upsample,
        D::Res { layers: 1, inject_noise: false },
        upsample,
        D::Res { layers: 1, inject_noise: false },
        upsample,
        D::Res { layers: 1, inject_noise: false },
    ];
    config
}

/// The tiny LTX-2.0 video VAE: [`vae_config`] without timestep conditioning (the 2.0 VAE is the 0.9.5
/// layout without it).
pub fn ltx2_vae_config() -> VaeConfig {
    VaeConfig { timestep_conditioning: false, ..vae_config() }
}

/// The tiny T5: the real vocabulary, 2 blocks of width 32.
pub fn text_encoder_config() -> T5Config {
    T5Config {
        vocab_size: 32128,
        d_model: TEXT_WIDTH,
        d_kv: 8,
        d_ff: 64,
        num_layers: 2,
        num_heads: 4,
        relative_attention_num_buckets: 32,
        relative_attention_max_distance: 128,
        layer_norm_epsilon: 1e-6,
        activation: Activation::GeluTanh,
    }
}

/// Where [`write_demo_models`] put the files.
#[derive(Debug, Clone)]
pub struct DemoModels {
    pub checkpoint: PathBuf,
    pub text_encoder: PathBuf,
}

/// Writes the demo models into `models_dir` (`checkpoints/` and `text_encoders/`) unless they are there
/// already. The weights depend only on the code, so every machine writes the same files.
pub fn write_demo_models(models_dir: &Path) -> Result<DemoModels, String> {
    let checkpoint = models_dir.join("checkpoints").join(DEMO_CHECKPOINT);
    let text_encoder = models_dir.join("text_encoders").join(DEMO_TEXT_ENCODER);
    if !checkpoint.is_file() {
        let mut tensors = transformer_tensors().map_err(|e| format!("building the demo transformer: {e}"))?;
        tensors.extend(vae_tensors().map_err(|e| format!("building the demo VAE: {e}"))?);
        write_safetensors(&checkpoint, &tensors)?;
    }
    if !text_encoder.is_file() {
        let tensors = text_encoder_tensors().map_err(|e| format!("building the demo T5: {e}"))?;
        write_safetensors(&text_encoder, &tensors)?;
    }
    Ok(DemoModels { checkpoint, text_encoder })
}

/// The transformer's tensors under `model.diffusion_model.`.
pub fn transformer_tensors() -> candle_core::Result<BTreeMap<String, Tensor>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    LtxvTransformer::new(&transformer_config(), &vb)?;
    randomise(&varmap, "model.diffusion_model.", 1)
}

/// The VAE's tensors under `vae.`.
pub fn vae_tensors() -> candle_core::Result<BTreeMap<String, Tensor>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    LtxvVae::new(vae_config(), &vb)?;
    randomise(&varmap, "vae.", 2)
}

/// The T5 encoder's tensors, named as in ComfyUI's `t5xxl_fp16.safetensors`.
pub fn text_encoder_tensors() -> candle_core::Result<BTreeMap<String, Tensor>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    T5Encoder::new(&vb, &text_encoder_config())?;
    randomise(&varmap, "", 3)
}

/// Replaces every variable with deterministic values: weights `N(0, 1/fan_in)`, biases small, norm
/// scales near 1, positive statistics; named `prefix + name`.
pub(crate) fn randomise(varmap: &VarMap, prefix: &str, seed: u64) -> candle_core::Result<BTreeMap<String, Tensor>> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("weights lock poisoned".into()))?;
    let names: BTreeMap<&String, &candle_core::Var> = data.iter().collect();
    let mut generator = TorchGenerator::new(seed);
    let mut tensors = BTreeMap::new();
    for (name, var) in names {
        let shape = var.as_tensor().dims().to_vec();
        let count: usize = shape.iter().product();
        let normal = generator.randn(count);
        let fan_in = if shape.len() > 1 { shape[1..].iter().product::<usize>() } else { 1 };
        let values: Vec<f32> = if name.contains("std-of-means") {
            normal.iter().map(|v| 1.0 + 0.1 * v.abs()).collect()
        } else if name.contains("mean-of-means") || name.ends_with("bias") {
            normal.iter().map(|v| 0.02 * v).collect()
        } else if name.contains("norm") || name.contains("scale_shift_table") || shape.len() == 1 {
            normal.iter().map(|v| 1.0 + 0.05 * v).collect()
        } else if name == "timestep_scale_multiplier" || name.ends_with(".timestep_scale_multiplier") {
            vec![1000.0; count]
        } else {
            let scale = 1.0 / (fan_in as f32).sqrt();
            normal.iter().map(|v| v * scale).collect()
        };
        tensors.insert(format!("{prefix}{name}"), Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(tensors)
}

/// Writes `tensors` to `path` as f32 safetensors, through a temporary file renamed into place.
fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let values: Vec<f32> = tensor.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| e.to_string())?;
        bytes.push((name.clone(), tensor.dims().to_vec(), values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.as_str(), view))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata =
        HashMap::from([("description".to_string(), "kinograph demo: tiny random LTX-Video weights".to_string())]);
    let data = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
    let temporary =
        folder.join(format!(".{}.partial", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&temporary, data).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot move {} into place: {e}", path.display()))
}

/// Writes the picture the image-to-video demo starts from: a 320×240 PNG of a sun over hills, drawn
/// from a few shapes so that no file has to ship.
pub fn write_demo_image(path: &Path) -> Result<(), String> {
    let (width, height) = (320usize, 240usize);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
            let hill = 0.62 + 0.08 * (fx * 9.0).sin() + 0.05 * (fx * 23.0).cos();
            let sun = ((fx - 0.7).powi(2) + (fy - 0.3).powi(2)).sqrt() < 0.09;
            let pixel: [f32; 3] = if sun {
                [1.0, 0.85, 0.3]
            } else if fy > hill {
                [0.15 + 0.2 * fy, 0.45 + 0.1 * (fx * 40.0).sin(), 0.2]
            } else {
                [0.35 + 0.3 * fy, 0.55 + 0.3 * fy, 0.95]
            };
            rgb.extend(pixel.iter().map(|c| (c.clamp(0.0, 1.0) * 255.0) as u8));
        }
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let mut encoded = Vec::new();
    crate::media::png::write_png(&mut encoded, &rgb, width, height, &[]).map_err(|e| e.to_string())?;
    let temporary = folder.join(".kinograph-demo-image.partial");
    std::fs::write(&temporary, encoded).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot move {} into place: {e}", path.display()))
}
