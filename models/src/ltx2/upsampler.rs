//! The latent upsampler of LTX-2's two-stage pipelines: the original `LatentUpsampler`, diffusers
//! `LTX2LatentUpsamplerModel` (`pipelines/ltx2/latent_upsampler.py`), ComfyUI's `LTXVLatentUpsampler`.
//!
//! `initial_conv` (3-D, 3×3×3) → `GroupNorm(32)` → `SiLU` → `res_blocks` → upsampler → `post_upsample_res_blocks`
//! → `final_conv`, on un-normalised latents. The upsamplers:
//! - spatial ×2 (`ltx-2-spatial-upscaler-x2`): per frame, a 2-D conv to 4× the channels and a pixel shuffle;
//! - spatial ×1.5 (`ltx-2.3-spatial-upscaler-x1.5`, the rational resampler `upsampler.conv`): a 2-D conv to 9×
//!   the channels, pixel shuffle ×3, then a 5×5 binomial blur with stride 2;
//! - temporal ×2 (`ltx-2-temporal-upscaler-x2`): a 3-D conv to 2× the channels, a shuffle along time, and the
//!   first frame dropped (the causal frame stays one frame).
//!
//! Every conv pads with zeros (time included).

use crate::ltxv::vae::conv3d::{Conv3d, SpatialPadding};
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// How the upsampler scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpsampleMode {
    /// Spatial ×2 by pixel shuffle.
    Spatial2,
    /// Spatial by `numerator / denominator` with the rational resampler (×1.5 is 3/2).
    SpatialRational { numerator: usize, denominator: usize },
    /// Temporal ×2.
    Temporal2,
}

/// The upsampler's sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpsamplerConfig {
    /// Latent channels (128).
    pub in_channels: usize,
    /// Working width (1024).
    pub mid_channels: usize,
    /// Residual blocks before and after the upsampler (4).
    pub num_blocks_per_stage: usize,
    /// How it scales.
    pub mode: UpsampleMode,
}

impl UpsamplerConfig {
    /// From the file's `config` metadata (official keys `spatial_scale`, `rational_resampler`, or diffusers'
    /// `rational_spatial_scale`, `use_rational_resampler`) and the tensors' shapes.
    fn read(source: &WeightSource, prefix: &str) -> std::result::Result<Self, WeightError> {
        let file = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let shape = |name: &str| source.shape(&format!("{prefix}{name}"));
        let initial = shape("initial_conv.weight").ok_or_else(|| WeightError::Invalid {
            file: file.clone(),
            message: format!("no LTX-2 latent upsampler found (expected '{prefix}initial_conv.weight')"),
        })?;
        let (mid_channels, in_channels) = (initial[0], initial[1]);
        let num_blocks_per_stage =
            (0..usize::MAX).take_while(|i| source.contains(&format!("{prefix}res_blocks.{i}.conv1.weight"))).count();
        let json: serde_json::Value = match source.metadata("config") {
            Some(text) => serde_json::from_str(text).map_err(|e| WeightError::Invalid {
                file: file.clone(),
                message: format!("the config is not valid JSON: {e}"),
            })?,
            None => serde_json::Value::Null,
        };
        let flag = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(serde_json::Value::as_bool));
        let scale = ["spatial_scale", "rational_spatial_scale"]
            .iter()
            .find_map(|k| json.get(*k).and_then(serde_json::Value::as_f64));
        let mode = if let Some(conv) = shape("upsampler.conv.weight") {
            // The rational resampler: conv to numerator² × the channels.
            let numerator = ((conv[0] / mid_channels.max(1)) as f64).sqrt().round() as usize;
            let denominator = match scale {
                Some(scale) if scale > 0.0 => ((numerator as f64) / scale).round() as usize,
                _ => {
                    if numerator == 3 {
                        2
                    } else {
                        1
                    }
                }
            };
            UpsampleMode::SpatialRational { numerator, denominator: denominator.max(1) }
        } else {
            match shape("upsampler.0.weight").as_deref() {
                Some([out, _, _, _]) if *out == 4 * mid_channels => UpsampleMode::Spatial2,
                Some([out, _, _, _, _]) if *out == 2 * mid_channels && flag(&["spatial_upsample"]) != Some(true) => {
                    UpsampleMode::Temporal2
                }
                other => {
                    return Err(WeightError::Invalid {
                        file,
                        message: format!(
                            "unsupported latent upsampler: '{prefix}upsampler.0.weight' has shape {other:?} for {mid_channels} \
                             channels (supported: spatial ×2, spatial ×1.5, temporal ×2)"
                        ),
                    });
                }
            }
        };
        Ok(UpsamplerConfig { in_channels, mid_channels, num_blocks_per_stage, mode })
    }
}

/// A 3×3×3 conv with zero padding in time as well as in space.
#[derive(Debug, Clone)]
struct ZeroPaddedConv3d(Conv3d);

impl ZeroPaddedConv3d {
    fn new(inputs: usize, outputs: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(ZeroPaddedConv3d(Conv3d::new(inputs, outputs, 3, [1, 1, 1], SpatialPadding::Zeros, vb)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, h, w) = x.dims5()?;
        let zeros = Tensor::zeros((b, c, 1, h, w), x.dtype(), x.device())?;
        self.0.forward(&Tensor::cat(&[&zeros, x, &zeros], 2)?)
    }
}

/// `ResBlock`: conv → group norm → `SiLU` → conv → group norm → `SiLU(x + residual)`.
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: ZeroPaddedConv3d,
    norm1: candle_nn::GroupNorm,
    conv2: ZeroPaddedConv3d,
    norm2: candle_nn::GroupNorm,
}

fn group_norm(channels: usize, vb: &VarBuilder<'_>) -> Result<candle_nn::GroupNorm> {
    let weight = vb.get(channels, "weight")?.to_dtype(DType::F32)?;
    let bias = vb.get(channels, "bias")?.to_dtype(DType::F32)?;
    candle_nn::GroupNorm::new(weight, bias, channels, 32.min(channels), 1e-5)
}

impl ResBlock {
    fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(ResBlock {
            conv1: ZeroPaddedConv3d::new(channels, channels, &vb.pp("conv1"))?,
            norm1: group_norm(channels, &vb.pp("norm1"))?,
            conv2: ZeroPaddedConv3d::new(channels, channels, &vb.pp("conv2"))?,
            norm2: group_norm(channels, &vb.pp("norm2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(&self.conv1.forward(x)?)?.silu()?;
        let h = self.norm2.forward(&self.conv2.forward(&h)?)?;
        (h + x)?.silu()
    }
}

/// The upsampling stage.
#[derive(Debug, Clone)]
enum Upsampler {
    Spatial { conv: candle_nn::Conv2d, factor: usize, blur_stride: usize },
    Temporal { conv: ZeroPaddedConv3d },
}

/// The latent upsampler.
#[derive(Debug, Clone)]
pub struct LatentUpsampler {
    config: UpsamplerConfig,
    initial_conv: ZeroPaddedConv3d,
    initial_norm: candle_nn::GroupNorm,
    res_blocks: Vec<ResBlock>,
    upsampler: Upsampler,
    post_upsample_res_blocks: Vec<ResBlock>,
    final_conv: ZeroPaddedConv3d,
}

impl LatentUpsampler {
    /// Builds the model from `vb` (official names, which diffusers keeps).
    pub fn new(config: &UpsamplerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let mid = config.mid_channels;
        let blocks = |name: &str| {
            (0..config.num_blocks_per_stage).map(|i| ResBlock::new(mid, &vb.pp(name).pp(i))).collect::<Result<Vec<_>>>()
        };
        let conv2d = |outputs: usize, vb: VarBuilder<'_>| -> Result<candle_nn::Conv2d> {
            let weight = vb.get((outputs, mid, 3, 3), "weight")?.to_dtype(DType::F32)?;
            let bias = vb.get(outputs, "bias")?.to_dtype(DType::F32)?;
            Ok(candle_nn::Conv2d::new(weight, Some(bias), candle_nn::Conv2dConfig { padding: 1, ..Default::default() }))
        };
        let upsampler = match config.mode {
            UpsampleMode::Spatial2 => {
                Upsampler::Spatial { conv: conv2d(4 * mid, vb.pp("upsampler").pp(0))?, factor: 2, blur_stride: 1 }
            }
            UpsampleMode::SpatialRational { numerator, denominator } => Upsampler::Spatial {
                conv: conv2d(numerator * numerator * mid, vb.pp("upsampler").pp("conv"))?,
                factor: numerator,
                blur_stride: denominator,
            },
            UpsampleMode::Temporal2 => {
                Upsampler::Temporal { conv: ZeroPaddedConv3d::new(mid, 2 * mid, &vb.pp("upsampler").pp(0))? }
            }
        };
        Ok(LatentUpsampler {
            config: *config,
            initial_conv: ZeroPaddedConv3d::new(config.in_channels, mid, &vb.pp("initial_conv"))?,
            initial_norm: group_norm(mid, &vb.pp("initial_norm"))?,
            res_blocks: blocks("res_blocks")?,
            upsampler,
            post_upsample_res_blocks: blocks("post_upsample_res_blocks")?,
            final_conv: ZeroPaddedConv3d::new(mid, config.in_channels, &vb.pp("final_conv"))?,
        })
    }

    /// Loads an upsampler file (`ltx-2-spatial-upscaler-x2-1.0.safetensors`, …): tensors with no prefix, sizes
    /// from their shapes and the mode from the metadata.
    pub fn load(source: &Arc<WeightSource>, device: &Device) -> std::result::Result<Self, WeightError> {
        let config = UpsamplerConfig::read(source, "")?;
        let vb = source.var_builder("", DType::F32, device);
        let model = LatentUpsampler::new(&config, &vb).map_err(|e| source.explain(&e))?;
        source.reject_unused("")?;
        Ok(model)
    }

    /// The configuration.
    pub fn config(&self) -> &UpsamplerConfig {
        &self.config
    }

    /// Upsamples an un-normalised latent `[B, C, F, H, W]`.
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let x = latent.to_dtype(DType::F32)?;
        let mut h = self.initial_norm.forward(&self.initial_conv.forward(&x)?)?.silu()?;
        for block in &self.res_blocks {
            h = block.forward(&h)?;
        }
        h = match &self.upsampler {
            Upsampler::Spatial { conv, factor, blur_stride } => {
                let (b, c, f, height, width) = h.dims5()?;
                let frames = h.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, height, width))?;
                let shuffled = pixel_shuffle_2d(&conv.forward(&frames)?, *factor)?;
                let blurred = blur_downsample(&shuffled, *blur_stride)?;
                let (_, c, height, width) = blurred.dims4()?;
                blurred.reshape((b, f, c, height, width))?.permute((0, 2, 1, 3, 4))?.contiguous()?
            }
            Upsampler::Temporal { conv } => {
                let y = conv.forward(&h)?;
                let (b, c2, f, height, width) = y.dims5()?;
                let c = c2 / 2;
                // Channel c·2 + k becomes frame 2f + k; then the first frame is dropped.
                let y = y.reshape((b, c, 2, f, height, width))?.permute((0, 1, 3, 2, 4, 5))?.reshape((
                    b,
                    c,
                    2 * f,
                    height,
                    width,
                ))?;
                y.narrow(2, 1, 2 * f - 1)?.contiguous()?
            }
        };
        for block in &self.post_upsample_res_blocks {
            h = block.forward(&h)?;
        }
        self.final_conv.forward(&h)
    }
}

/// `[N, C·r², H, W]` → `[N, C, H·r, W·r]`: channel `c·r² + i·r + j` goes to row `h·r + i`, column `w·r + j`.
fn pixel_shuffle_2d(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, channels, h, w) = x.dims4()?;
    let c = channels / (r * r);
    x.reshape((n, c, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?.reshape((n, c, h * r, w * r))
}

/// The 5×5 binomial blur (`[1, 4, 6, 4, 1]` outer product, normalised) applied per channel with `stride`
/// and padding 2; nothing for stride 1.
fn blur_downsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (_, channels, _, _) = x.dims4()?;
    let taps = [1f32, 4.0, 6.0, 4.0, 1.0];
    let kernel: Vec<f32> = taps.iter().flat_map(|a| taps.iter().map(move |b| a * b / 256.0)).collect();
    let kernel = Tensor::from_vec(kernel, (1, 1, 5, 5), x.device())?.repeat((channels, 1, 1, 1))?;
    x.contiguous()?.conv2d(&kernel, 2, stride, 1, channels)
}

/// `LTXVLatentUpsampler`: un-normalise with the video VAE's statistics, upsample, normalise again.
pub fn upsample_normalized(
    upsampler: &LatentUpsampler,
    latent: &Tensor,
    mean: &Tensor,
    std: &Tensor,
) -> Result<Tensor> {
    let shape = (1, (), 1, 1, 1);
    let (mean, std) = (mean.to_dtype(DType::F32)?.reshape(shape)?, std.to_dtype(DType::F32)?.reshape(shape)?);
    let raw = latent.to_dtype(DType::F32)?.broadcast_mul(&std)?.broadcast_add(&mean)?;
    upsampler.forward(&raw)?.broadcast_sub(&mean)?.broadcast_div(&std)
}
