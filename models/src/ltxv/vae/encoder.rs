//! `Encoder` of the original LTX-Video VAE (diffusers `LTXVideoEncoder3d`): patchify, causal `conv_in`,
//! the flat `down_blocks` list, pixel norm, `SiLU`, `conv_out` to the latent means plus one shared
//! log-variance channel. Covers the 0.9.0/0.9.1 strided-conv layout and the space-to-depth layout of 0.9.5+
//! and LTX-2.0 / 2.3 (diffusers `LTX2VideoEncoder3d`).

use super::blocks::{SpaceToDepthDownsample, UNetMidBlock3D};
use super::config::{EncoderBlock, VaeConfig};
use super::conv3d::CausalConv3d;
use super::resnet::{ResnetBlock3D, ResnetOptions};
use crate::ops::norm::norm_modulate_silu;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// (B, C, T, H, W) → (B, C·p², T, H/p, W/p), channel `c·p² + pw·p + ph` (width offset before height).
pub fn patchify(x: &Tensor, patch: usize) -> Result<Tensor> {
    let (batch, channels, frames, height, width) = x.dims5()?;
    x.reshape(vec![batch, channels, frames, height / patch, patch, width / patch, patch])?
        .permute(vec![0, 1, 6, 4, 2, 3, 5])?
        .reshape((batch, channels * patch * patch, frames, height / patch, width / patch))
}

/// One entry of the encoder's block list.
#[derive(Debug, Clone)]
pub(crate) enum DownBlock {
    Res(UNetMidBlock3D),
    ResChannels(ResnetBlock3D),
    Compress(CausalConv3d),
    SpaceToDepth(SpaceToDepthDownsample),
}

/// The encoder.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub(crate) patch_size: usize,
    latent_channels: usize,
    pub(crate) conv_in: CausalConv3d,
    pub(crate) down_blocks: Vec<DownBlock>,
    pub(crate) conv_out: CausalConv3d,
}

impl Encoder {
    /// Builds the encoder; `vb` points at `encoder`.
    pub fn new(config: &VaeConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let padding = config.encoder_padding;
        let options =
            ResnetOptions { padding, timestep_conditioning: false, inject_noise: false, norm_eps: config.norm_eps };
        let in_channels = 3 * config.patch_size * config.patch_size;
        let widths = config.encoder_widths();
        let conv_in = CausalConv3d::new(in_channels, widths[0], 3, [1, 1, 1], padding, &vb.pp("conv_in"))?;
        let mut down_blocks = Vec::with_capacity(config.encoder_blocks.len());
        for (index, block) in config.encoder_blocks.iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(index);
            let (input, output) = (widths[index], widths[index + 1]);
            down_blocks.push(match *block {
                EncoderBlock::Res { layers } => DownBlock::Res(UNetMidBlock3D::new(input, layers, options, &vb)?),
                EncoderBlock::ResChannels { .. } => {
                    DownBlock::ResChannels(ResnetBlock3D::new(input, output, options, &vb)?)
                }
                EncoderBlock::Compress { stride } => {
                    DownBlock::Compress(CausalConv3d::new(input, output, 3, stride, padding, &vb)?)
                }
                EncoderBlock::SpaceToDepth { stride, .. } => {
                    DownBlock::SpaceToDepth(SpaceToDepthDownsample::new(input, output, stride, padding, &vb)?)
                }
            });
        }
        let last = *widths.last().expect("at least the conv_in width");
        let conv_out = CausalConv3d::new(last, config.latent_channels + 1, 3, [1, 1, 1], padding, &vb.pp("conv_out"))?;
        Ok(Self {
            patch_size: config.patch_size,
            latent_channels: config.latent_channels,
            conv_in,
            down_blocks,
            conv_out,
        })
    }

    /// Encodes a (B, 3, T, H, W) video in [−1, 1]. Returns the raw `conv_out` output: (B, latent + 1,
    /// T', H', W'), means then the shared log-variance. `stages` receives each block's output if given.
    pub fn forward(&self, video: &Tensor, mut stages: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        let mut hidden = self.conv_in.forward(&patchify(video, self.patch_size)?, true)?;
        if let Some(stages) = stages.as_deref_mut() {
            stages.push(hidden.clone());
        }
        for block in &self.down_blocks {
            hidden = match block {
                DownBlock::Res(block) => block.forward(&hidden, true, None, &Vec::new())?,
                DownBlock::ResChannels(block) => block.forward(&hidden, true, None, None)?,
                DownBlock::Compress(conv) => conv.forward(&hidden, true)?,
                DownBlock::SpaceToDepth(block) => block.forward(&hidden, true)?,
            };
            if let Some(stages) = stages.as_deref_mut() {
                stages.push(hidden.clone());
            }
        }
        let hidden = norm_modulate_silu(&hidden, None)?;
        self.conv_out.forward(&hidden, true)
    }

    /// Splits a `conv_out` output into (mean, logvar), each (B, latent, T', H', W'), with logvar clamped
    /// to [−30, 20] and shared by every channel.
    pub fn moments(&self, raw: &Tensor) -> Result<(Tensor, Tensor)> {
        let mean = raw.narrow(1, 0, self.latent_channels)?;
        let logvar = raw.narrow(1, self.latent_channels, 1)?.clamp(-30f32, 20f32)?;
        let logvar = logvar.broadcast_as(mean.shape())?.contiguous()?;
        Ok((mean, logvar))
    }
}
