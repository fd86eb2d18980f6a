//! The latent upsampler of LTX-2's two-stage pipelines: the original `LatentUpsampler`
//! (`ltx_core/model/upsampler/`), diffusers `LTX2LatentUpsamplerModel` (`pipelines/ltx2/latent_upsampler.py`, same
//! module names), and the normalisation around it of ComfyUI's `LTXVLatentUpsampler` node
//! (`comfy_extras/nodes_lt_upsampler.py`).
//!
//! `initial_conv` (3×3×3) → `initial_norm` (`GroupNorm(32)`) → `SiLU` → `res_blocks` → `upsampler` →
//! `post_upsample_res_blocks` → `final_conv`, on un-normalised latents. Each `ResBlock` is conv → group norm → `SiLU` →
//! conv → group norm → `SiLU(x + input)`. Every conv pads with zeros, time included. The upsamplers:
//! - spatial ×2 (`ltx-2-spatial-upscaler-x2`, `upsampler.0`): per frame, a 2-D conv to 4× the channels and a
//!   pixel shuffle;
//! - the rational resampler (`upsampler.conv`; `ltx-2.3-spatial-upscaler-x1.5` at scale 3/2): per frame, a 2-D
//!   conv to n² × the channels, a pixel shuffle by n, then the 5×5 binomial blur (`upsampler.blur_down.kernel`,
//!   `[1, 4, 6, 4, 1]` outer product / 256) with stride d and padding 2; scales 3/4, 3/2, 2 and 4 as in ltx-core;
//! - temporal ×2 (`ltx-2-temporal-upscaler-x2`, `upsampler.0`): a 3-D conv to 2× the channels, channel `2c + k`
//!   becoming frame `2f + k`, then the first frame dropped so that F latent frames become 2F − 1 (the first latent
//!   frame stands for one video frame).
//!
//! The configuration comes from the file's `config` metadata (ltx-core keys `in_channels`, `mid_channels`,
//! `num_blocks_per_stage`, `dims`, `spatial_upsample`, `temporal_upsample`, `spatial_scale`, `rational_resampler`,
//! or diffusers' `rational_spatial_scale`, `use_rational_resampler`) checked against the tensors; without metadata the
//! tensors decide, except for a ×3 rational resampler, which could be ×1.5 or ×0.75 (an error asks for the config).
//! The 2-D variant (`dims: 2`) and the joint spatio-temporal one were never released and are refused.

use crate::ltxv::vae::conv3d::{Conv3d, SpatialPadding};
use crate::ltxv::vae::statistics::PerChannelStatistics;
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use std::sync::Arc;

/// Groups of every group norm of the upsampler (`torch.nn.GroupNorm(32, …)`).
pub const GROUP_NORM_GROUPS: usize = 32;

/// The rational scales of ltx-core's `SpatialRationalResampler` as (scale, numerator, denominator).
const RATIONAL_SCALES: [(f64, usize, usize); 4] = [(0.75, 3, 4), (1.5, 3, 2), (2.0, 2, 1), (4.0, 4, 1)];

/// How the upsampler scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsampleMode {
    /// Spatial ×2 by a 2-D conv and a pixel shuffle (`upsampler.0`).
    Spatial2,
    /// Spatial by `numerator / denominator` with the rational resampler (`upsampler.conv`; ×1.5 is 3/2).
    SpatialRational { numerator: usize, denominator: usize },
    /// Temporal ×2 (F latent frames become 2F − 1).
    Temporal2,
}

impl UpsampleMode {
    /// The (frames, height, width) of the output for an input of (`frames`, `height`, `width`).
    pub fn output_size(&self, frames: usize, height: usize, width: usize) -> (usize, usize, usize) {
        match *self {
            UpsampleMode::Spatial2 => (frames, 2 * height, 2 * width),
            UpsampleMode::SpatialRational { numerator, denominator } => {
                let scaled = |side: usize| (numerator * side - 1) / denominator + 1;
                (frames, scaled(height), scaled(width))
            }
            UpsampleMode::Temporal2 => (2 * frames - 1, height, width),
        }
    }
}

/// The upsampler's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsamplerConfig {
    /// Latent channels (128).
    pub in_channels: usize,
    /// Working width (1024 in the releases); a multiple of [`GROUP_NORM_GROUPS`].
    pub mid_channels: usize,
    /// Residual blocks before and after the upsampler (4).
    pub num_blocks_per_stage: usize,
    /// How it scales.
    pub mode: UpsampleMode,
}

impl UpsamplerConfig {
    /// Reads the configuration of the upsampler under `prefix` (`""` for the released files) from the
    /// `config` metadata and the tensors (see the module documentation).
    pub fn detect(source: &WeightSource, prefix: &str) -> std::result::Result<Self, WeightError> {
        let file = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let invalid = |message: String| WeightError::Invalid { file: file.clone(), message };
        let shape = |name: &str| source.shape(&format!("{prefix}{name}"));
        let initial = shape("initial_conv.weight").ok_or_else(|| {
            invalid(format!("no LTX-2 latent upsampler found (expected '{prefix}initial_conv.weight')"))
        })?;
        let json: Value = match source.metadata("config") {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| invalid(format!("the `config` metadata is not JSON: {e}")))?
            }
            None => Value::Null,
        };
        let flag = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(Value::as_bool));
        let number = |key: &str| json.get(key).and_then(Value::as_u64).map(|v| v as usize);

        let dims = number("dims").unwrap_or(initial.len().saturating_sub(2));
        if dims != 3 || initial.len() != 5 {
            return Err(invalid(format!(
                "only 3-D latent upsamplers (`dims: 3`) are supported; this one has dims {dims} and \
                 '{prefix}initial_conv.weight' of shape {initial:?}"
            )));
        }
        let in_channels = number("in_channels").unwrap_or(initial[1]);
        let mid_channels = number("mid_channels").unwrap_or(initial[0]);
        if mid_channels == 0 || !mid_channels.is_multiple_of(GROUP_NORM_GROUPS) {
            return Err(invalid(format!(
                "the upsampler's group norms split {mid_channels} channels into {GROUP_NORM_GROUPS} groups; the \
                 width must be a positive multiple of {GROUP_NORM_GROUPS}"
            )));
        }
        let stored = source.names().count();
        let counted =
            (0..stored).take_while(|i| source.contains(&format!("{prefix}res_blocks.{i}.conv1.weight"))).count();
        let num_blocks_per_stage = number("num_blocks_per_stage").unwrap_or(counted);

        let spatial = flag(&["spatial_upsample"]);
        let temporal = flag(&["temporal_upsample"]);
        let rational = flag(&["rational_resampler", "use_rational_resampler"]);
        let scale =
            ["spatial_scale", "rational_spatial_scale"].iter().find_map(|k| json.get(*k).and_then(Value::as_f64));
        if spatial == Some(true) && temporal == Some(true) {
            return Err(invalid(
                "joint spatial and temporal upsampling (`spatial_upsample` and `temporal_upsample`) is not supported"
                    .into(),
            ));
        }
        let mode = if let Some(conv) = shape("upsampler.conv.weight") {
            if rational == Some(false) || spatial == Some(false) {
                return Err(invalid(format!(
                    "the config describes no rational resampler, but the file has '{prefix}upsampler.conv.weight'"
                )));
            }
            let outputs = conv.first().copied().unwrap_or(0);
            let numerator = (1..=8).find(|n| n * n * mid_channels == outputs).ok_or_else(|| {
                invalid(format!(
                    "'{prefix}upsampler.conv.weight' has shape {conv:?}: not n² × {mid_channels} outputs of a rational \
                     resampler"
                ))
            })?;
            let denominator = match scale {
                Some(scale) => {
                    let (_, n, d) =
                        RATIONAL_SCALES.iter().find(|(s, _, _)| (s - scale).abs() < 1e-9).ok_or_else(|| {
                            invalid(format!("unsupported `spatial_scale` {scale} (supported: 0.75, 1.5, 2.0, 4.0)"))
                        })?;
                    if *n != numerator {
                        return Err(invalid(format!(
                            "`spatial_scale` {scale} needs a ×{n} pixel shuffle, but '{prefix}upsampler.conv.weight' \
                             has shape {conv:?} (×{numerator})"
                        )));
                    }
                    *d
                }
                None if numerator == 3 => {
                    return Err(invalid(
                        "a ×3 rational resampler scales by 1.5 or by 0.75, which the tensors do not tell; the file \
                         needs its `config` metadata with `spatial_scale`"
                            .into(),
                    ));
                }
                None if numerator == 2 || numerator == 4 => 1,
                None => {
                    return Err(invalid(format!("unsupported rational resampler: ×{numerator} pixel shuffle")));
                }
            };
            UpsampleMode::SpatialRational { numerator, denominator }
        } else {
            match shape("upsampler.0.weight").as_deref() {
                Some([out, _, _, _]) if *out == 4 * mid_channels && temporal != Some(true) => UpsampleMode::Spatial2,
                Some([out, _, _, _, _]) if *out == 2 * mid_channels && spatial != Some(true) => UpsampleMode::Temporal2,
                other => {
                    return Err(invalid(format!(
                        "unsupported latent upsampler: '{prefix}upsampler.0.weight' has shape {other:?} for \
                         {mid_channels} channels and the config says spatial {spatial:?}, temporal {temporal:?} \
                         (supported: spatial ×2, the rational resampler, temporal ×2)"
                    )));
                }
            }
        };
        if rational == Some(true) && !matches!(mode, UpsampleMode::SpatialRational { .. }) {
            return Err(invalid(format!(
                "the config asks for the rational resampler, but the file has no '{prefix}upsampler.conv.weight'"
            )));
        }
        Ok(UpsamplerConfig { in_channels, mid_channels, num_blocks_per_stage, mode })
    }
}

/// A 3×3×3 conv padded with zeros in time as well as in space (`torch.nn.Conv3d(…, padding=1)`).
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

/// `torch.nn.GroupNorm(32, channels)` (eps 1e-5) from `vb`.
fn group_norm(channels: usize, vb: &VarBuilder<'_>) -> Result<candle_nn::GroupNorm> {
    let weight = vb.get(channels, "weight")?.to_dtype(DType::F32)?;
    let bias = vb.get(channels, "bias")?.to_dtype(DType::F32)?;
    candle_nn::GroupNorm::new(weight, bias, channels, GROUP_NORM_GROUPS, 1e-5)
}

/// `ResBlock`: conv → group norm → `SiLU` → conv → group norm → `SiLU(x + input)`.
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: ZeroPaddedConv3d,
    norm1: candle_nn::GroupNorm,
    conv2: ZeroPaddedConv3d,
    norm2: candle_nn::GroupNorm,
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
    /// Per frame: conv, pixel shuffle by `factor`, then the `(1, 1, 5, 5)` blur kernel with its stride (none for
    /// the pixel-shuffle ×2 and for rational scales with denominator 1).
    Spatial { conv: candle_nn::Conv2d, factor: usize, blur: Option<(Tensor, usize)> },
    /// Conv to 2× the channels, shuffle along time, drop the first frame.
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
    /// Builds the model from `vb` (official names, which diffusers keeps). The blur kernel of the rational
    /// resampler is read from `upsampler.blur_down.kernel` when the file has it, otherwise built.
    pub fn new(config: &UpsamplerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let mid = config.mid_channels;
        if mid == 0 || !mid.is_multiple_of(GROUP_NORM_GROUPS) {
            candle_core::bail!("the upsampler width {mid} is not a positive multiple of {GROUP_NORM_GROUPS}");
        }
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
                Upsampler::Spatial { conv: conv2d(4 * mid, vb.pp("upsampler").pp(0))?, factor: 2, blur: None }
            }
            UpsampleMode::SpatialRational { numerator, denominator } => {
                let resampler = vb.pp("upsampler");
                let blur_down = resampler.pp("blur_down");
                // The buffer is stored even where the stride is 1 and the blur does not run.
                let kernel = if blur_down.contains_tensor("kernel") {
                    blur_down.get((1, 1, 5, 5), "kernel")?.to_dtype(DType::F32)?
                } else {
                    binomial_kernel(vb.device())?
                };
                Upsampler::Spatial {
                    conv: conv2d(numerator * numerator * mid, resampler.pp("conv"))?,
                    factor: numerator,
                    blur: (denominator > 1).then_some((kernel, denominator)),
                }
            }
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

    /// Loads an upsampler file (`ltx-2-spatial-upscaler-x2-1.0.safetensors`, …; tensors without a prefix) as f32,
    /// with the configuration of [`UpsamplerConfig::detect`]. A missing, misshapen or unexpected tensor is an error
    /// naming it.
    pub fn load(source: &Arc<WeightSource>, device: &Device) -> std::result::Result<Self, WeightError> {
        let config = UpsamplerConfig::detect(source, "")?;
        let vb = source.var_builder("", DType::F32, device);
        let model = LatentUpsampler::new(&config, &vb).map_err(|e| source.explain(&e))?;
        source.reject_unused("")?;
        Ok(model)
    }

    /// The configuration.
    pub fn config(&self) -> &UpsamplerConfig {
        &self.config
    }

    /// Upsamples an un-normalised latent `[B, C, F, H, W]` (see [`UpsampleMode::output_size`] for the output size).
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let (_, channels, frames, height, width) = latent.dims5()?;
        if channels != self.config.in_channels || frames == 0 || height == 0 || width == 0 {
            candle_core::bail!(
                "the latent upsampler takes (B, {}, F, H, W) latents, got {:?}",
                self.config.in_channels,
                latent.dims()
            );
        }
        let x = latent.to_dtype(DType::F32)?;
        let mut h = self.initial_norm.forward(&self.initial_conv.forward(&x)?)?.silu()?;
        for block in &self.res_blocks {
            h = block.forward(&h)?;
        }
        h = match &self.upsampler {
            Upsampler::Spatial { conv, factor, blur } => {
                let (b, c, f, height, width) = h.dims5()?;
                let frames = h.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, height, width))?;
                let shuffled = pixel_shuffle_2d(&conv.forward(&frames)?, *factor)?;
                let blurred = match blur {
                    Some((kernel, stride)) => blur_downsample(&shuffled, kernel, *stride)?,
                    None => shuffled,
                };
                let (_, c, height, width) = blurred.dims4()?;
                blurred.reshape((b, f, c, height, width))?.permute((0, 2, 1, 3, 4))?.contiguous()?
            }
            Upsampler::Temporal { conv } => {
                let y = conv.forward(&h)?;
                let (b, doubled, f, height, width) = y.dims5()?;
                let c = doubled / 2;
                // Channel 2c + k becomes frame 2f + k; then the first frame is dropped.
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

    /// ComfyUI's `LTXVLatentUpsampler` (and ltx-core's `upsample_video`): un-normalises a normalised latent with
    /// the video VAE's per-channel statistics, upsamples it and normalises the result again.
    pub fn forward_normalized(&self, latent: &Tensor, statistics: &PerChannelStatistics) -> Result<Tensor> {
        upsample_normalized(self, latent, statistics.mean(), statistics.std())
    }
}

/// `[N, C·r², H, W]` → `[N, C, H·r, W·r]`: channel `c·r² + i·r + j` goes to row `h·r + i`, column `w·r + j`.
fn pixel_shuffle_2d(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, channels, h, w) = x.dims4()?;
    let c = channels / (r * r);
    x.reshape((n, c, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?.reshape((n, c, h * r, w * r))
}

/// The `(1, 1, 5, 5)` binomial kernel: the `[1, 4, 6, 4, 1]` outer product divided by its sum, 256.
fn binomial_kernel(device: &Device) -> Result<Tensor> {
    let taps = [1f32, 4.0, 6.0, 4.0, 1.0];
    let kernel: Vec<f32> = taps.iter().flat_map(|a| taps.iter().map(move |b| a * b / 256.0)).collect();
    Tensor::from_vec(kernel, (1, 1, 5, 5), device)
}

/// `BlurDownsample`: the `(1, 1, 5, 5)` `kernel` applied to each channel with `stride` and padding 2.
fn blur_downsample(x: &Tensor, kernel: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, channels, _, _) = x.dims4()?;
    let kernel = kernel.to_device(x.device())?.repeat((channels, 1, 1, 1))?;
    x.contiguous()?.conv2d(&kernel, 2, stride, 1, channels)
}

/// `LTXVLatentUpsampler` with the statistics as tensors: `latent · std + mean` per channel, upsample, then
/// `(z − mean) / std`. `mean` and `std` are `(C,)`.
pub fn upsample_normalized(
    upsampler: &LatentUpsampler,
    latent: &Tensor,
    mean: &Tensor,
    std: &Tensor,
) -> Result<Tensor> {
    let channels = upsampler.config().in_channels;
    if mean.dims() != [channels] || std.dims() != [channels] {
        candle_core::bail!(
            "the upsampler has {channels} latent channels but the statistics have shapes {:?} and {:?}",
            mean.dims(),
            std.dims()
        );
    }
    let shape = (1, (), 1, 1, 1);
    let (mean, std) = (mean.to_dtype(DType::F32)?.reshape(shape)?, std.to_dtype(DType::F32)?.reshape(shape)?);
    let raw = latent.to_dtype(DType::F32)?.broadcast_mul(&std)?.broadcast_add(&mean)?;
    upsampler.forward(&raw)?.broadcast_sub(&mean)?.broadcast_div(&std)
}
