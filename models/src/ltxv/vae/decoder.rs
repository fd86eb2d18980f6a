//! `Decoder` of the original LTX-Video VAE (diffusers `LTXVideoDecoder3d`): `conv_in`, the flat `up_blocks`
//! list (resnet blocks, width-changing resnets, depth-to-space upsamplers), pixel norm, the final
//! timestep scale/shift (`last_time_embedder`, `last_scale_shift_table`; 0.9.1+), `SiLU`, `conv_out` and
//! unpatchify. Covers 0.9.0, 0.9.1 (with noise injection), 0.9.5+ and the LTX-2.0 / 2.3 decoders (diffusers
//! `LTX2VideoDecoder3d`: no timestep conditioning; 2.3 with temporal-only and spatial-only upsamplers).

use super::blocks::{BlockNoise, DepthToSpaceUpsample, UNetMidBlock3D};
use super::config::{DecoderBlock, VaeConfig};
use super::conv3d::CausalConv3d;
use super::noise::NoiseSource;
use super::resnet::{ResnetBlock3D, ResnetOptions, TimestepEmbedder};
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

/// (B, 3·p², T, h, w) → (B, 3, T, p·h, p·w): the inverse of the encoder's patchify.
pub fn unpatchify(x: &Tensor, patch: usize) -> Result<Tensor> {
    let (batch, channels, frames, height, width) = x.dims5()?;
    let colours = channels / (patch * patch);
    x.reshape(vec![batch, colours, patch, patch, frames, height, width])?.permute(vec![0, 1, 4, 5, 3, 6, 2])?.reshape((
        batch,
        colours,
        frames,
        height * patch,
        width * patch,
    ))
}

/// One entry of the decoder's block list.
#[derive(Debug, Clone)]
pub(crate) enum UpBlock {
    Res(UNetMidBlock3D),
    ResChannels(ResnetBlock3D),
    Upsample(DepthToSpaceUpsample),
}

/// What a decode needs besides the latent: per-block timestep embeddings and noise planes, prepared
/// once so that a chunked decode uses the same values for every chunk.
#[derive(Debug, Clone, Default)]
pub struct DecodeInputs {
    /// Per up block, its (B, 4C) embedding.
    pub(crate) embeddings: Vec<Option<Tensor>>,
    /// Per up block, the noise planes of its resnets.
    pub(crate) noise: Vec<BlockNoise>,
    /// (shift, scale) of the final modulation, each (B, C).
    pub(crate) last_modulation: Option<(Tensor, Tensor)>,
}

impl DecodeInputs {
    /// The inputs for the latent tile at (`y`, `x`) of `height` × `width` out of a
    /// `latent_height` × `latent_width` latent: embeddings as they are, noise planes cropped to the tile.
    pub fn crop(
        &self,
        y: usize,
        x: usize,
        height: usize,
        width: usize,
        latent_height: usize,
        latent_width: usize,
    ) -> Result<Self> {
        let crop = |plane: &Tensor| -> Result<Tensor> {
            let (scale_y, scale_x) = (plane.dim(3)? / latent_height, plane.dim(4)? / latent_width);
            plane.narrow(3, y * scale_y, height * scale_y)?.narrow(4, x * scale_x, width * scale_x)?.contiguous()
        };
        let noise = self
            .noise
            .iter()
            .map(|block| {
                block
                    .iter()
                    .map(|planes| match planes {
                        Some((first, second)) => Ok(Some((crop(first)?, crop(second)?))),
                        None => Ok(None),
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { embeddings: self.embeddings.clone(), noise, last_modulation: self.last_modulation.clone() })
    }
}

/// The decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub(crate) patch_size: usize,
    pub(crate) causal: bool,
    pub(crate) conv_in: CausalConv3d,
    pub(crate) up_blocks: Vec<UpBlock>,
    /// `timestep_scale_multiplier` (a 0-d tensor, 1000 in releases) and the final embedder and table.
    pub(crate) conditioning: Option<(Tensor, TimestepEmbedder, Tensor)>,
    pub(crate) conv_out: CausalConv3d,
    pub(crate) blocks: Vec<DecoderBlock>,
}

impl Decoder {
    /// Builds the decoder; `vb` points at `decoder`.
    pub fn new(config: &VaeConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let padding = config.decoder_padding;
        let widths = config.decoder_widths();
        let conditioned = config.timestep_conditioning;
        let conv_in = CausalConv3d::new(config.latent_channels, widths[0], 3, [1, 1, 1], padding, &vb.pp("conv_in"))?;
        let mut up_blocks = Vec::with_capacity(config.decoder_blocks.len());
        for (index, block) in config.decoder_blocks.iter().enumerate() {
            let vb = vb.pp("up_blocks").pp(index);
            let (input, output) = (widths[index], widths[index + 1]);
            let options = |inject_noise| ResnetOptions {
                padding,
                timestep_conditioning: conditioned,
                inject_noise,
                norm_eps: config.norm_eps,
            };
            up_blocks.push(match *block {
                DecoderBlock::Res { layers, inject_noise } => {
                    UpBlock::Res(UNetMidBlock3D::new(input, layers, options(inject_noise), &vb)?)
                }
                DecoderBlock::ResChannels { .. } => {
                    // A width-changing resnet is a bare `ResnetBlock3D`, which the reference never conditions.
                    let options = ResnetOptions { timestep_conditioning: false, ..options(false) };
                    UpBlock::ResChannels(ResnetBlock3D::new(input, output, options, &vb)?)
                }
                DecoderBlock::Upsample { stride, residual, multiplier } => {
                    UpBlock::Upsample(DepthToSpaceUpsample::new(input, stride, residual, multiplier, padding, &vb)?)
                }
            });
        }
        let last = *widths.last().expect("at least the conv_in width");
        let conditioning = if conditioned {
            let multiplier = vb.get((), "timestep_scale_multiplier")?;
            let embedder = TimestepEmbedder::new(2 * last, &vb.pp("last_time_embedder"))?;
            let table = vb.get((2, last), "last_scale_shift_table")?;
            Some((multiplier, embedder, table))
        } else {
            None
        };
        let out_channels = 3 * config.patch_size * config.patch_size;
        let conv_out = CausalConv3d::new(last, out_channels, 3, [1, 1, 1], padding, &vb.pp("conv_out"))?;
        Ok(Self {
            patch_size: config.patch_size,
            causal: config.causal_decoder,
            conv_in,
            up_blocks,
            conditioning,
            conv_out,
            blocks: config.decoder_blocks.clone(),
        })
    }

    /// Output pixels per latent pixel along H and W (32 in every release).
    pub fn spatial_factor(&self) -> usize {
        let mut factor = self.patch_size;
        for block in &self.blocks {
            if let DecoderBlock::Upsample { stride, .. } = block {
                factor *= stride[1];
            }
        }
        factor
    }

    /// Whether the decoder takes a timestep.
    pub fn is_conditioned(&self) -> bool {
        self.conditioning.is_some()
    }

    /// Embeds the timestep and draws the noise for a latent of `batch` × (`height`, `width`).
    /// `timestep` is the decode timestep in [0, 1] (0.05 is usual); unconditioned decoders ignore it and
    /// conditioned ones use 0 when it is None.
    pub fn prepare(
        &self,
        batch: usize,
        height: usize,
        width: usize,
        timestep: Option<f64>,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<DecodeInputs> {
        let scaled = match &self.conditioning {
            Some((multiplier, _, _)) => {
                let t = Tensor::full(timestep.unwrap_or(0.0) as f32, batch, device)?;
                Some(t.broadcast_mul(&multiplier.to_dtype(candle_core::DType::F32)?)?)
            }
            None => None,
        };
        let mut inputs = DecodeInputs::default();
        let (mut h, mut w) = (height, width);
        for block in &self.up_blocks {
            match block {
                UpBlock::Res(block) => {
                    inputs.embeddings.push(block.embed(scaled.as_ref())?);
                    inputs.noise.push(block.draw_noise(h, w, noise, device)?);
                }
                UpBlock::ResChannels(_) | UpBlock::Upsample(_) => {
                    inputs.embeddings.push(None);
                    inputs.noise.push(Vec::new());
                }
            }
            if let UpBlock::Upsample(_) = block {
                let index = inputs.noise.len() - 1;
                if let DecoderBlock::Upsample { stride, .. } = self.blocks[index] {
                    h *= stride[1];
                    w *= stride[2];
                }
            }
        }
        if let (Some((_, embedder, table)), Some(t)) = (&self.conditioning, &scaled) {
            let embedding = embedder.forward(t)?;
            let channels = table.dim(1)?;
            let sum = embedding.reshape((batch, 2, channels))?.broadcast_add(&table.unsqueeze(0)?)?;
            inputs.last_modulation = Some((sum.get_on_dim(1, 0)?, sum.get_on_dim(1, 1)?));
        }
        Ok(inputs)
    }

    /// Runs up block `index` on a whole sequence.
    pub(crate) fn run_block(&self, index: usize, x: &Tensor, inputs: &DecodeInputs) -> Result<Tensor> {
        match &self.up_blocks[index] {
            UpBlock::Res(block) => {
                block.forward(x, self.causal, inputs.embeddings[index].as_ref(), &inputs.noise[index])
            }
            UpBlock::ResChannels(block) => block.forward(x, self.causal, None, None),
            UpBlock::Upsample(block) => block.forward(x, self.causal),
        }
    }

    /// The final norm, modulation and `SiLU` before `conv_out`.
    pub(crate) fn head(x: &Tensor, inputs: &DecodeInputs) -> Result<Tensor> {
        crate::ops::norm::norm_modulate_silu(x, inputs.last_modulation.as_ref().map(|(shift, scale)| (shift, scale)))
    }

    /// Decodes a whole (B, C, T', H', W') latent into (B, 3, 8(T' − 1) + 1, 32H', 32W'). `stages`
    /// receives `conv_in`'s output and each up block's output if given.
    pub fn forward(
        &self,
        latent: &Tensor,
        inputs: &DecodeInputs,
        mut stages: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let mut hidden = self.conv_in.forward(latent, self.causal)?;
        if let Some(stages) = stages.as_deref_mut() {
            stages.push(hidden.clone());
        }
        for index in 0..self.up_blocks.len() {
            hidden = self.run_block(index, &hidden, inputs)?;
            if let Some(stages) = stages.as_deref_mut() {
                stages.push(hidden.clone());
            }
        }
        let hidden = self.conv_out.forward(&Self::head(&hidden, inputs)?, self.causal)?;
        unpatchify(&hidden, self.patch_size)
    }
}
