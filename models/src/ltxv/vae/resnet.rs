//! `ResnetBlock3D` of the original LTX-Video VAE (diffusers `LTXVideoResnetBlock3d`), with pixel norm,
//! optional timestep scale/shift (0.9.1+ decoders) and optional spatial noise injection (0.9.1 decoder),
//! plus the timestep embedder `PixArtAlphaCombinedTimestepSizeEmbeddings` the conditioned blocks use.
//! Covers 0.9.0 – 0.9.8 and LTX-2.0 / 2.3 (diffusers `LTX2VideoResnetBlock3d`).

use super::conv3d::{CausalConv3d, Conv3d, SpatialPadding};
use super::noise::NoiseSource;
pub use crate::ops::norm::{PIXEL_NORM_EPS, modulate, pixel_norm};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `[cos, sin]` of `t · exp(−ln(10⁴)·i/128)`, i < 128: diffusers' `Timesteps(256, flip_sin_to_cos=True)`.
/// The angle is formed in f32 as torch does.
pub fn timestep_sinusoid(timesteps: &Tensor) -> Result<Tensor> {
    let half = 128;
    let frequencies: Vec<f32> = (0..half).map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp()).collect();
    let frequencies = Tensor::new(frequencies.as_slice(), timesteps.device())?.unsqueeze(0)?;
    let angles = timesteps.to_dtype(candle_core::DType::F32)?.unsqueeze(1)?.broadcast_mul(&frequencies)?;
    Tensor::cat(&[angles.cos()?, angles.sin()?], 1)
}

/// `PixArtAlphaCombinedTimestepSizeEmbeddings` without size conditioning: sinusoid → `linear_1` → `SiLU`
/// → `linear_2` (weights under `timestep_embedder.`).
#[derive(Debug, Clone)]
pub struct TimestepEmbedder {
    linear_1: candle_nn::Linear,
    linear_2: candle_nn::Linear,
}

impl TimestepEmbedder {
    /// Builds an embedder with `dim` outputs.
    pub fn new(dim: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let vb = vb.pp("timestep_embedder");
        Ok(Self {
            linear_1: candle_nn::linear(256, dim, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear(dim, dim, vb.pp("linear_2"))?,
        })
    }

    /// Embeds (B,) timesteps (already scaled by the decoder's multiplier) into (B, dim).
    pub fn forward(&self, timesteps: &Tensor) -> Result<Tensor> {
        let hidden = self.linear_1.forward(&timestep_sinusoid(timesteps)?)?;
        self.linear_2.forward(&candle_nn::ops::silu(&hidden)?)
    }
}

/// Options of one resnet, from the block that owns it.
#[derive(Debug, Clone, Copy)]
pub struct ResnetOptions {
    /// Spatial padding of the convs.
    pub padding: SpatialPadding,
    /// Whether the block takes (shift, scale) pairs from a timestep embedding.
    pub timestep_conditioning: bool,
    /// Whether noise is injected after each conv.
    pub inject_noise: bool,
    /// Epsilon of the shortcut `LayerNorm`.
    pub norm_eps: f64,
}

/// `ResnetBlock3D`.
#[derive(Debug, Clone)]
pub struct ResnetBlock3D {
    conv1: CausalConv3d,
    conv2: CausalConv3d,
    /// `norm3` and `conv_shortcut`, present when the width changes.
    shortcut: Option<(candle_nn::LayerNorm, Conv3d)>,
    /// (4, C): shift1, scale1, shift2, scale2.
    scale_shift_table: Option<Tensor>,
    /// (C, 1, 1) scales of the injected noise after conv1 and conv2.
    per_channel_scales: Option<(Tensor, Tensor)>,
}

impl ResnetBlock3D {
    /// Builds the block; `vb` points at the block.
    pub fn new(in_channels: usize, out_channels: usize, options: ResnetOptions, vb: &VarBuilder<'_>) -> Result<Self> {
        let padding = options.padding;
        let conv1 = CausalConv3d::new(in_channels, out_channels, 3, [1, 1, 1], padding, &vb.pp("conv1"))?;
        let conv2 = CausalConv3d::new(out_channels, out_channels, 3, [1, 1, 1], padding, &vb.pp("conv2"))?;
        let shortcut = if in_channels == out_channels {
            None
        } else {
            let norm = vb.pp("norm3").pp("norm");
            let norm3 = candle_nn::LayerNorm::new(
                norm.get(in_channels, "weight")?,
                norm.get(in_channels, "bias")?,
                options.norm_eps,
            );
            let conv = Conv3d::new(in_channels, out_channels, 1, [1, 1, 1], padding, &vb.pp("conv_shortcut"))?;
            Some((norm3, conv))
        };
        let scale_shift_table =
            if options.timestep_conditioning { Some(vb.get((4, out_channels), "scale_shift_table")?) } else { None };
        let per_channel_scales = if options.inject_noise {
            Some((
                vb.get((out_channels, 1, 1), "per_channel_scale1")?,
                vb.get((out_channels, 1, 1), "per_channel_scale2")?,
            ))
        } else {
            None
        };
        Ok(Self { conv1, conv2, shortcut, scale_shift_table, per_channel_scales })
    }

    /// Whether this block draws noise.
    pub fn injects_noise(&self) -> bool {
        self.per_channel_scales.is_some()
    }

    /// Modulation parameters `(shift1, scale1, shift2, scale2)`, each (B, C), from a (B, 4C) embedding.
    pub fn modulation(&self, embedding: Option<&Tensor>) -> Result<Option<[Tensor; 4]>> {
        let (Some(table), Some(embedding)) = (&self.scale_shift_table, embedding) else { return Ok(None) };
        let (batch, _) = embedding.dims2()?;
        let channels = table.dim(1)?;
        let sum = embedding.reshape((batch, 4, channels))?.broadcast_add(&table.unsqueeze(0)?)?;
        Ok(Some([sum.get_on_dim(1, 0)?, sum.get_on_dim(1, 1)?, sum.get_on_dim(1, 2)?, sum.get_on_dim(1, 3)?]))
    }

    /// Pixel norm, then the optional (shift, scale), then `SiLU`: what precedes each conv. Framewise.
    pub fn norm_act(x: &Tensor, shift_scale: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
        crate::ops::norm::norm_modulate_silu(x, shift_scale)
    }

    /// The shortcut path: identity, or `norm3` and the 1×1×1 `conv_shortcut`. Framewise.
    pub fn shortcut(&self, x: &Tensor) -> Result<Tensor> {
        match &self.shortcut {
            None => Ok(x.clone()),
            Some((norm3, conv)) => {
                let normed = norm3.forward(&x.permute((0, 2, 3, 4, 1))?)?.permute((0, 4, 1, 2, 3))?.contiguous()?;
                conv.forward(&normed)
            }
        }
    }

    /// The first conv.
    pub fn conv1(&self) -> &CausalConv3d {
        &self.conv1
    }

    /// The second conv.
    pub fn conv2(&self) -> &CausalConv3d {
        &self.conv2
    }

    /// Draws the two (H, W) noise planes this block adds, in the reference's order (after conv1, after
    /// conv2), already multiplied by the per-channel scales: each is (1, C, 1, H, W).
    pub fn draw_noise(
        &self,
        height: usize,
        width: usize,
        noise: &mut dyn NoiseSource,
        device: &candle_core::Device,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let Some((scale1, scale2)) = &self.per_channel_scales else { return Ok(None) };
        let mut planes = Vec::with_capacity(2);
        for scale in [scale1, scale2] {
            let draw = noise.sample(&[height, width], device)?;
            if draw.dims() != [height, width] {
                candle_core::bail!("noise source returned shape {:?}, expected [{height}, {width}]", draw.dims());
            }
            let plane = scale.broadcast_mul(&draw.to_dtype(scale.dtype())?.unsqueeze(0)?)?;
            planes.push(plane.unsqueeze(0)?.unsqueeze(2)?);
        }
        let second = planes.pop().expect("two planes");
        let first = planes.pop().expect("two planes");
        Ok(Some((first, second)))
    }

    /// Runs the block on (B, C, T, H, W). `embedding` is the owning block's (B, 4C) timestep embedding;
    /// `noise` the planes from [`Self::draw_noise`].
    pub fn forward(
        &self,
        x: &Tensor,
        causal: bool,
        embedding: Option<&Tensor>,
        noise: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let modulation = self.modulation(embedding)?;
        let pair = |shift: usize| modulation.as_ref().map(|m| (&m[shift], &m[shift + 1]));
        let mut hidden = self.conv1.forward(&Self::norm_act(x, pair(0))?, causal)?;
        if let Some((first, _)) = noise {
            hidden = hidden.broadcast_add(first)?;
        }
        let normed = Self::norm_act(&hidden, pair(2))?;
        match noise {
            Some((_, second)) => self.conv2.forward(&normed, causal)?.broadcast_add(second)? + self.shortcut(x)?,
            // The shortcut goes in as conv2 starts its output.
            None => self.conv2.forward_plus(&normed, causal, &self.shortcut(x)?),
        }
    }
}
