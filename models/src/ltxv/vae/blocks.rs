//! The VAE's multi-layer blocks, named as in the original LTX-Video code
//! (`causal_video_autoencoder.py`): `UNetMidBlock3D` (the `res_x` entries of both block lists, diffusers'
//! resnet lists and mid blocks), `SpaceToDepthDownsample` (0.9.5+ and LTX-2 encoders, diffusers
//! `LTXVideoDownsampler3d` / `LTX2VideoDownsampler3d`) and `DepthToSpaceUpsample` (every decoder, diffusers
//! `LTXVideoUpsampler3d` / `LTX2VideoUpsampler3d`; residual in 0.9.1 – 2.0, plain and also temporal-only or
//! spatial-only in LTX-2.3).

use super::conv3d::{CausalConv3d, SpatialPadding};
use super::noise::NoiseSource;
use super::resnet::{ResnetBlock3D, ResnetOptions, TimestepEmbedder};
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

/// `UNetMidBlock3D`: `layers` resnets at one width; in a conditioned decoder it owns a
/// `time_embedder` giving each resnet's (B, 4C) scale/shift embedding.
#[derive(Debug, Clone)]
pub struct UNetMidBlock3D {
    time_embedder: Option<TimestepEmbedder>,
    res_blocks: Vec<ResnetBlock3D>,
}

/// Noise planes drawn for each resnet of a block (None for resnets without injection).
pub type BlockNoise = Vec<Option<(Tensor, Tensor)>>;

impl UNetMidBlock3D {
    /// Builds the block; `vb` points at it.
    pub fn new(channels: usize, layers: usize, options: ResnetOptions, vb: &VarBuilder<'_>) -> Result<Self> {
        let time_embedder = if options.timestep_conditioning {
            Some(TimestepEmbedder::new(4 * channels, &vb.pp("time_embedder"))?)
        } else {
            None
        };
        let res_blocks = (0..layers)
            .map(|i| ResnetBlock3D::new(channels, channels, options, &vb.pp("res_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { time_embedder, res_blocks })
    }

    /// The (B, 4C) embedding of the scaled timesteps, if the block is conditioned.
    pub fn embed(&self, timesteps: Option<&Tensor>) -> Result<Option<Tensor>> {
        match (&self.time_embedder, timesteps) {
            (Some(embedder), Some(t)) => Ok(Some(embedder.forward(t)?)),
            (Some(_), None) => candle_core::bail!("this decoder is timestep-conditioned and needs a timestep"),
            _ => Ok(None),
        }
    }

    /// Draws each resnet's noise for an (H, W) plane, in forward order.
    pub fn draw_noise(
        &self,
        height: usize,
        width: usize,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<BlockNoise> {
        self.res_blocks.iter().map(|block| block.draw_noise(height, width, noise, device)).collect()
    }

    /// Runs the resnets.
    pub fn forward(&self, x: &Tensor, causal: bool, embedding: Option<&Tensor>, noise: &BlockNoise) -> Result<Tensor> {
        let mut hidden = x.clone();
        for (index, block) in self.res_blocks.iter().enumerate() {
            hidden = block.forward(&hidden, causal, embedding, noise.get(index).and_then(Option::as_ref))?;
        }
        Ok(hidden)
    }

    /// The resnets, for the streaming decoder.
    pub fn res_blocks(&self) -> &[ResnetBlock3D] {
        &self.res_blocks
    }
}

/// Moves (st, sh, sw) blocks of (B, C, T, H, W) into channels: channel `((c·st + i)·sh + j)·sw + k`.
pub fn space_to_depth(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let (batch, channels, frames, height, width) = x.dims5()?;
    let [st, sh, sw] = stride;
    x.reshape(vec![batch, channels, frames / st, st, height / sh, sh, width / sw, sw])?
        .permute(vec![0, 1, 3, 5, 7, 2, 4, 6])?
        .reshape((batch, channels * st * sh * sw, frames / st, height / sh, width / sw))
}

/// The inverse of [`space_to_depth`].
pub fn depth_to_space(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let (batch, channels, frames, height, width) = x.dims5()?;
    let [st, sh, sw] = stride;
    let out_channels = channels / (st * sh * sw);
    x.reshape(vec![batch, out_channels, st, sh, sw, frames, height, width])?
        .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
        .reshape((batch, out_channels, frames * st, height * sh, width * sw))
}

/// `SpaceToDepthDownsample` (0.9.5+ encoder): causal conv to `C_out/∏s` channels then space-to-depth, plus
/// a parameter-free residual: space-to-depth of the input, averaged over groups of channels.
#[derive(Debug, Clone)]
pub struct SpaceToDepthDownsample {
    conv: CausalConv3d,
    stride: [usize; 3],
    group_size: usize,
}

impl SpaceToDepthDownsample {
    /// Builds the downsampler; `vb` points at it (conv under `conv.conv`).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: [usize; 3],
        padding: SpatialPadding,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let factor = stride.iter().product::<usize>();
        let conv = CausalConv3d::new(in_channels, out_channels / factor, 3, [1, 1, 1], padding, &vb.pp("conv"))?;
        Ok(Self { conv, stride, group_size: in_channels * factor / out_channels })
    }

    /// Downsamples (B, C, T, H, W); a temporal stride first repeats frame 0 so that T = 1 + 8k stays causal.
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let x = if self.stride[0] == 2 { Tensor::cat(&[&x.narrow(2, 0, 1)?, x], 2)? } else { x.clone() };
        self.finish(&self.conv.forward(&x, causal)?, &x)
    }

    /// Space-to-depth of a conv output plus the grouped residual of the conv's input `input` (after the
    /// frame-0 repeat); both have a multiple of the temporal stride frames.
    pub fn finish(&self, convolved: &Tensor, input: &Tensor) -> Result<Tensor> {
        let residual = space_to_depth(input, self.stride)?;
        let (batch, channels, frames, height, width) = residual.dims5()?;
        let residual = residual
            .reshape(vec![batch, channels / self.group_size, self.group_size, frames, height, width])?
            .mean(2)?;
        space_to_depth(convolved, self.stride)? + residual
    }

    /// The conv, for the chunked encoder.
    pub fn conv(&self) -> &CausalConv3d {
        &self.conv
    }

    /// The (t, h, w) stride.
    pub fn stride(&self) -> [usize; 3] {
        self.stride
    }
}

/// [`depth_to_space`] of channels ordered time-major, `((i·C + c)·sh + j)·sw + k`: the layout of an
/// upsampler conv whose outputs were reordered so that the sub-frames dropped at the start of the video
/// are one block of channels.
fn depth_to_space_time_major(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let (batch, channels, frames, height, width) = x.dims5()?;
    let [st, sh, sw] = stride;
    let out_channels = channels / (st * sh * sw);
    x.reshape(vec![batch, st, out_channels, sh, sw, frames, height, width])?
        .permute(vec![0, 2, 5, 1, 6, 3, 7, 4])?
        .reshape((batch, out_channels, frames * st, height * sh, width * sw))
}

/// `DepthToSpaceUpsample`: conv to ∏s·C/multiplier channels, depth-to-space, drop the first frame (the
/// causal duplicate); when `residual`, add the depth-to-space of the input tiled over channels.
///
/// With a temporal stride, the conv's output channels are kept time-major (reordered once at load):
/// the sub-frames dropped at the start are then the first block of channels of the first frame, which
/// the CPU conv does not compute.
#[derive(Debug, Clone)]
pub struct DepthToSpaceUpsample {
    conv: CausalConv3d,
    stride: [usize; 3],
    residual: bool,
    multiplier: usize,
}

impl DepthToSpaceUpsample {
    /// Builds the upsampler; `vb` points at it (conv under `conv.conv`).
    pub fn new(
        in_channels: usize,
        stride: [usize; 3],
        residual: bool,
        multiplier: usize,
        padding: SpatialPadding,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let factor = stride.iter().product::<usize>();
        let out_channels = factor * in_channels / multiplier;
        let mut conv = CausalConv3d::new(in_channels, out_channels, 3, [1, 1, 1], padding, &vb.pp("conv"))?;
        if stride[0] > 1 {
            // Stored channel ((c·st + i)·sh + j)·sw + k becomes ((i·C + c)·sh + j)·sw + k.
            let [st, spatial] = [stride[0], stride[1] * stride[2]];
            let per_frame = out_channels / st;
            let order: Vec<u32> = (0..out_channels)
                .map(|p| {
                    let (i, rest) = (p / per_frame, p % per_frame);
                    let (c, within) = (rest / spatial, rest % spatial);
                    u32::try_from((c * st + i) * spatial + within).expect("channel counts fit in u32")
                })
                .collect();
            conv = conv.reorder_outputs(&order)?;
        }
        Ok(Self { conv, stride, residual, multiplier })
    }

    /// Upsamples (B, C, T, H, W) to (B, C/multiplier, st·T − (st − 1), sh·H, sw·W).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let dropped = (self.stride[0] - 1) * self.conv.out_channels() / self.stride[0];
        self.finish(&self.conv.forward_unused_first(x, causal, dropped)?, x, true)
    }

    /// Depth-to-space of a conv output `convolved` whose frames match `input`'s; drops the leading
    /// st − 1 frames when `first` (the start of the video).
    pub fn finish(&self, convolved: &Tensor, input: &Tensor, first: bool) -> Result<Tensor> {
        let drop = if first { self.stride[0] - 1 } else { 0 };
        let hidden = if self.stride[0] > 1 {
            depth_to_space_time_major(convolved, self.stride)?
        } else {
            depth_to_space(convolved, self.stride)?
        };
        let frames = hidden.dim(2)?;
        let hidden = hidden.narrow(2, drop, frames - drop)?;
        if !self.residual {
            return Ok(hidden);
        }
        let residual = depth_to_space(input, self.stride)?;
        let repeats = self.stride.iter().product::<usize>() / self.multiplier;
        let residual = residual.repeat((1, repeats, 1, 1, 1))?;
        hidden + residual.narrow(2, drop, frames - drop)?
    }

    /// The conv, for the streaming decoder.
    pub fn conv(&self) -> &CausalConv3d {
        &self.conv
    }
}
