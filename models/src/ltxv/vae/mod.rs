//! The LTX-Video causal video VAE (`CausalVideoAutoencoder` in the original code,
//! `AutoencoderKLLTXVideo` / `AutoencoderKLLTX2Video` in diffusers), layouts 0.9.0, 0.9.1, 0.9.5 (the last
//! also covers 0.9.6 – 0.9.8) and the video VAEs of LTX-2.0 (the 0.9.5 layout without timestep conditioning,
//! `reflect` padding in the decoder) and LTX-2.3 (a slimmer encoder; a decoder of plain depth-to-space
//! upsamplers, some only temporal or only spatial, `zeros` padding). See [`config::VaeVersion`].
//!
//! The module tree mirrors the original code, whose names the ComfyUI single-file checkpoints carry:
//! [`encoder::Encoder`] and [`decoder::Decoder`] run flat block lists ([`config::EncoderBlock`],
//! [`config::DecoderBlock`]) of [`blocks::UNetMidBlock3D`], [`resnet::ResnetBlock3D`],
//! [`blocks::SpaceToDepthDownsample`] and [`blocks::DepthToSpaceUpsample`], all built on
//! [`conv3d::CausalConv3d`] (a conv3d made of im2col + GEMM, see that module). diffusers folders are
//! renamed onto these names as they are read ([`load`]).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use kinograph_models::{weights::WeightSource, ltxv::vae::{LtxvVae, DecodeOptions, noise::ZeroNoise}};
//! # fn run(video: &candle_core::Tensor) -> Result<(), Box<dyn std::error::Error>> {
//! let source = Arc::new(WeightSource::open(&["ltx-video-2b-v0.9.5.safetensors"])?);
//! let vae = LtxvVae::load(&source, "vae", &candle_core::Device::Cpu)?;
//! let latent = vae.normalize(&vae.encode(video)?)?;           // (B, 128, F', H/32, W/32)
//! let options = DecodeOptions { temporal_chunk: Some(2), ..Default::default() }; // same result
//! let video = vae.decode(&vae.denormalize(&latent)?, Some(0.05), &mut ZeroNoise, &options)?;
//! # Ok(()) }
//! ```
//!
//! - [`LtxvVae::load`] (in [`load`]) reads either layout from a [`WeightSource`] under a prefix (`vae` for a
//!   single file, `""` for a diffusers `vae/` folder or a separate VAE file without prefix;
//!   [`load::find_prefix`] tells which), stored as f32, f16 or bf16, widened to f32. The configuration comes
//!   from the single file's `__metadata__.config` when present, otherwise from the tensor names and shapes
//!   ([`config::VaeConfig::infer`]), which also gives the version.
//! - [`LtxvVae::new`] builds from any `VarBuilder` (original names) and a [`config::VaeConfig`], e.g. the
//!   real 0.9.5 model with random weights for benchmarks.
//! - [`LtxvVae::encode`] returns the latent mean; [`LtxvVae::encode_moments`] also the log-variance;
//!   [`LtxvVae::encode_moments_with`] can stream the video through the causal encoder in chunks
//!   ([`EncodeOptions`]), with the same result.
//! - [`LtxvVae::decode`] takes an optional decode timestep (0.9.1+; the decoder scales it by its
//!   `timestep_scale_multiplier`), a [`noise::NoiseSource`] for 0.9.1's noise injection, and
//!   [`DecodeOptions`]: with `temporal_chunk`, the latent is fed a few frames at a time through a
//!   streaming decoder ([`streaming`]) that carries each conv's last input frames from chunk to chunk, so
//!   the result equals the whole decode and peak memory grows far more slowly with the frame count
//!   (measurements in [`streaming`]); with
//!   `spatial_tiles`, overlapping latent tiles are decoded separately and blended ([`tiling`], not exact).
//! - [`LtxvVae::normalize`] / [`LtxvVae::denormalize`] apply the per-channel latent statistics, which the
//!   pipelines (not the VAE) use around the transformer.
//!
//! [`WeightSource`]: crate::weights::WeightSource

pub mod blocks;
pub mod config;
pub mod conv3d;
pub mod decoder;
pub mod encoder;
pub mod load;
pub mod noise;
pub mod resnet;
pub mod statistics;
pub mod streaming;
pub mod tiling;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use config::{DecoderBlock, EncoderBlock, VaeConfig, VaeVersion};
use conv3d::SpatialPadding;
use noise::NoiseSource;
use statistics::PerChannelStatistics;

/// How to run a decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Latent frames fed to the streaming decoder at a time; None decodes the whole latent at once.
    /// The output is the same either way (up to float summation order).
    pub temporal_chunk: Option<usize>,
    /// Decode in overlapping spatial tiles, blended at the seams; not exact (see [`tiling`]).
    pub spatial_tiles: Option<tiling::SpatialTiles>,
}

/// How to run an encode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Latent frames produced per chunk (8 video frames each, plus the first frame in the first chunk);
    /// None encodes the whole video at once. The output is the same either way (up to float summation
    /// order).
    pub temporal_chunk: Option<usize>,
}

/// The LTX-Video VAE.
#[derive(Debug, Clone)]
pub struct LtxvVae {
    config: VaeConfig,
    encoder: encoder::Encoder,
    decoder: decoder::Decoder,
    statistics: PerChannelStatistics,
    device: Device,
}

impl LtxvVae {
    /// Builds the VAE from `vb` (original names: `encoder.*`, `decoder.*`, `per_channel_statistics.*`).
    pub fn new(config: VaeConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        config.validate().map_err(|message| candle_core::Error::Msg(format!("invalid VAE config: {message}")))?;
        let encoder = encoder::Encoder::new(&config, &vb.pp("encoder"))?;
        let decoder = decoder::Decoder::new(&config, &vb.pp("decoder"))?;
        let statistics = PerChannelStatistics::new(config.latent_channels, &vb.pp("per_channel_statistics"))?;
        Ok(Self { config, encoder, decoder, statistics, device: vb.device().clone() })
    }

    /// The detected version.
    pub fn version(&self) -> VaeVersion {
        self.config.version()
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The encoder.
    pub fn encoder(&self) -> &encoder::Encoder {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &decoder::Decoder {
        &self.decoder
    }

    /// The per-channel latent statistics.
    pub fn statistics(&self) -> &PerChannelStatistics {
        &self.statistics
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Spatial and temporal compression factors (32 and 8 for every release).
    pub fn compression(&self) -> (usize, usize) {
        let mut spatial = self.config.patch_size;
        let mut temporal = 1;
        for block in &self.config.encoder_blocks {
            if let EncoderBlock::Compress { stride } | EncoderBlock::SpaceToDepth { stride, .. } = block {
                spatial *= stride[1];
                temporal *= stride[0];
            }
        }
        (spatial, temporal)
    }

    fn check_video(&self, video: &Tensor) -> Result<()> {
        let (_, channels, frames, height, width) = video.dims5()?;
        let (spatial, temporal) = self.compression();
        if channels != 3
            || frames == 0
            || height == 0
            || width == 0
            || height % spatial != 0
            || width % spatial != 0
            || (frames - 1) % temporal != 0
        {
            candle_core::bail!(
                "the VAE encodes (B, 3, {temporal}k + 1, H, W) videos with H and W multiples of {spatial}, got {:?}",
                video.dims()
            );
        }
        Ok(())
    }

    /// Encodes a (B, 3, F, H, W) video in [−1, 1] (F = 8k + 1, H and W multiples of 32) into the latent
    /// mean (B, 128, k + 1, H/32, W/32). The result is not normalised.
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        Ok(self.encode_moments(video)?.0)
    }

    /// Encodes into (mean, logvar) of the latent distribution; logvar is clamped to [−30, 20].
    pub fn encode_moments(&self, video: &Tensor) -> Result<(Tensor, Tensor)> {
        self.encode_moments_with(video, &EncodeOptions::default())
    }

    /// [`Self::encode_moments`] with options: `temporal_chunk` streams the video through the causal
    /// encoder a few latent frames at a time, bounding memory (see [`streaming`]).
    pub fn encode_moments_with(&self, video: &Tensor, options: &EncodeOptions) -> Result<(Tensor, Tensor)> {
        self.check_video(video)?;
        let video = video.to_dtype(DType::F32)?.to_device(&self.device)?;
        let (_, temporal) = self.compression();
        let latent_frames = (video.dim(2)? - 1) / temporal + 1;
        let raw = match options.temporal_chunk {
            Some(chunk) if chunk < latent_frames && temporal == 8 => {
                streaming::encode_chunked(&self.encoder, &video, chunk.max(1))?
            }
            _ => self.encoder.forward(&video, None)?,
        };
        self.encoder.moments(&raw)
    }

    /// Decodes a (B, C, F', H', W') latent (not normalised) into a (B, 3, 8(F' − 1) + 1, 32H', 32W')
    /// video in about [−1, 1]. `timestep` is the decode timestep for conditioned decoders (0.9.1+;
    /// 0.05 is usual; None means 0) and is ignored by 0.9.0. `noise` feeds 0.9.1's noise injection.
    pub fn decode(
        &self,
        latent: &Tensor,
        timestep: Option<f64>,
        noise: &mut dyn NoiseSource,
        options: &DecodeOptions,
    ) -> Result<Tensor> {
        let (batch, channels, frames, height, width) = latent.dims5()?;
        if channels != self.config.latent_channels || frames == 0 {
            candle_core::bail!(
                "the VAE decodes (B, {}, F, H, W) latents, got {:?}",
                self.config.latent_channels,
                latent.dims()
            );
        }
        if self.config.decoder_padding == SpatialPadding::Reflect && (height < 2 || width < 2) {
            let (spatial, _) = self.compression();
            candle_core::bail!(
                "the latent is {height}×{width}; this VAE's decoder pads with reflect (ComfyUI's default when the \
                 checkpoint names no padding mode), which needs a latent of at least 2×2 ({}×{} pixels)",
                2 * spatial,
                2 * spatial
            );
        }
        let latent = latent.to_dtype(DType::F32)?.to_device(&self.device)?;
        let inputs = self.decoder.prepare(batch, height, width, timestep, noise, &self.device)?;
        match (options.spatial_tiles, options.temporal_chunk) {
            (Some(tiles), chunk) if tiles.tile < height.max(width) => {
                tiling::decode_tiled(&self.decoder, &latent, &inputs, tiles, chunk)
            }
            (_, Some(chunk)) if chunk < frames => {
                streaming::decode_chunked(&self.decoder, &latent, &inputs, chunk.max(1))
            }
            _ => self.decoder.forward(&latent, &inputs, None),
        }
    }

    /// `(z − mean) / std` per channel.
    pub fn normalize(&self, latent: &Tensor) -> Result<Tensor> {
        self.statistics.normalize(latent)
    }

    /// `z · std + mean` per channel.
    pub fn denormalize(&self, latent: &Tensor) -> Result<Tensor> {
        self.statistics.denormalize(latent)
    }

    /// Whether the decoder injects noise (0.9.1).
    pub fn injects_noise(&self) -> bool {
        self.config.decoder_blocks.iter().any(|b| matches!(b, DecoderBlock::Res { inject_noise: true, .. }))
    }
}
