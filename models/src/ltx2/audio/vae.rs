//! The LTX-2 audio VAE: diffusers 0.42.1 `AutoencoderKLLTX2Audio` (`LTX2AudioEncoder`, `LTX2AudioDecoder`),
//! ltx-core `AudioEncoder`/`AudioDecoder`, ComfyUI `CausalAudioAutoencoder`. The same network for LTX-2.0
//! and 2.3 (and 2.5's separate audio VAE file).
//!
//! Encoder: log-mel `[B, 2, T, 64]` → causal conv → per level: resnets, then (not after the last) a
//! stride-2 causal downsample → mid resnets → pixel norm, `SiLU`, conv → `[B, 16, ⌈T/4⌉, 16]`, whose first
//! 8 channels are the latent mean. Decoder: the mirror with one more resnet per level and nearest-×2
//! upsampling that drops the first frame, giving `[B, 2, 4·T − 3, 64]`.
//!
//! The per-channel statistics (`per_channel_statistics.mean-of-means` / `std-of-means`, diffusers
//! `latents_mean` / `latents_std`) live in the 128-wide packed space (channel·16 + mel bin): the
//! diffusion model sees `(latent − mean) / std`, see [`AudioVae::normalize`].

use super::config::AudioVaeConfig;
use super::mel::MelSpectrogram;
use super::vae_blocks::{Downsample, PaddedConv2d, ResnetBlock, Upsample, pixel_norm_silu};
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;
use std::sync::Arc;

/// Prefix of the audio VAE in the official single files.
pub const SINGLE_FILE_PREFIX: &str = "audio_vae";

/// Official names of the statistics and their diffusers names.
const STATISTICS: [(&str, &str); 2] =
    [("per_channel_statistics.mean-of-means", "latents_mean"), ("per_channel_statistics.std-of-means", "latents_std")];

/// The encoder (`LTX2AudioEncoder`).
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    conv_in: PaddedConv2d,
    /// Per level: its resnets and (all but the last level) the downsample.
    levels: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: [ResnetBlock; 2],
    conv_out: PaddedConv2d,
    latent_channels: usize,
    in_channels: usize,
}

impl AudioEncoder {
    /// Reads the encoder under `vb` (`conv_in`, `down.{level}`, `mid`, `conv_out`).
    pub fn new(config: &AudioVaeConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let base = config.base_channels;
        let conv_in = PaddedConv2d::causal(config.in_channels, base, 3, &vb.pp("conv_in"))?;
        let mut channels = base;
        let mut levels = Vec::new();
        let last = config.channel_multipliers.len() - 1;
        for (level, multiplier) in config.channel_multipliers.iter().enumerate() {
            let vb = vb.pp("down").pp(level);
            let out = base * multiplier;
            let blocks = (0..config.num_res_blocks)
                .map(|j| {
                    let block = ResnetBlock::new(channels, out, &vb.pp("block").pp(j));
                    channels = out;
                    block
                })
                .collect::<Result<Vec<_>>>()?;
            let downsample = if level == last { None } else { Some(Downsample::new(channels, &vb.pp("downsample"))?) };
            levels.push((blocks, downsample));
        }
        let mid = [
            ResnetBlock::new(channels, channels, &vb.pp("mid.block_1"))?,
            ResnetBlock::new(channels, channels, &vb.pp("mid.block_2"))?,
        ];
        let z = if config.double_z { 2 * config.latent_channels } else { config.latent_channels };
        let conv_out = PaddedConv2d::causal(channels, z, 3, &vb.pp("conv_out"))?;
        Ok(AudioEncoder {
            conv_in,
            levels,
            mid,
            conv_out,
            latent_channels: config.latent_channels,
            in_channels: config.in_channels,
        })
    }

    /// Log-mel `[B, 2, T, F]` → latent mean `[B, 8, ⌈T/4⌉, F/4]` (the posterior's mode), f32.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let (_, channels, _, _) = mel.dims4()?;
        if channels != self.in_channels {
            candle_core::bail!("audio VAE encoder: the mel has {channels} channels, expected {}", self.in_channels);
        }
        let mut h = self.conv_in.forward(mel)?;
        for (blocks, downsample) in &self.levels {
            for block in blocks {
                h = block.forward(&h)?;
            }
            if let Some(downsample) = downsample {
                h = downsample.forward(&h)?;
            }
        }
        for block in &self.mid {
            h = block.forward(&h)?;
        }
        let moments = self.conv_out.forward(&pixel_norm_silu(&h)?)?;
        moments.narrow(1, 0, self.latent_channels)
    }
}

/// The decoder (`LTX2AudioDecoder`).
#[derive(Debug, Clone)]
pub struct AudioDecoder {
    conv_in: PaddedConv2d,
    mid: [ResnetBlock; 2],
    /// From the deepest level to the first: its resnets and (all but the first level) the upsample.
    levels: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    conv_out: PaddedConv2d,
    config: AudioVaeConfig,
}

impl AudioDecoder {
    /// Reads the decoder under `vb` (`conv_in`, `mid`, `up.{level}`, `conv_out`).
    pub fn new(config: &AudioVaeConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let base = config.base_channels;
        let multipliers = &config.channel_multipliers;
        let mut channels = base * multipliers[multipliers.len() - 1];
        let conv_in = PaddedConv2d::causal(config.latent_channels, channels, 3, &vb.pp("conv_in"))?;
        let mid = [
            ResnetBlock::new(channels, channels, &vb.pp("mid.block_1"))?,
            ResnetBlock::new(channels, channels, &vb.pp("mid.block_2"))?,
        ];
        let mut levels = Vec::new();
        for level in (0..multipliers.len()).rev() {
            let vb = vb.pp("up").pp(level);
            let out = base * multipliers[level];
            let blocks = (0..=config.num_res_blocks)
                .map(|j| {
                    let block = ResnetBlock::new(channels, out, &vb.pp("block").pp(j));
                    channels = out;
                    block
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = if level == 0 { None } else { Some(Upsample::new(channels, &vb.pp("upsample"))?) };
            levels.push((blocks, upsample));
        }
        let conv_out = PaddedConv2d::causal(channels, config.out_channels, 3, &vb.pp("conv_out"))?;
        Ok(AudioDecoder { conv_in, mid, levels, conv_out, config: config.clone() })
    }

    /// Latent `[B, 8, T, 16]` (un-normalised) → log-mel `[B, 2, 4·T − 3, 64]`, f32.
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let (_, channels, frames, _) = latent.dims4()?;
        if channels != self.config.latent_channels {
            candle_core::bail!(
                "audio VAE decoder: the latent has {channels} channels, expected {}",
                self.config.latent_channels
            );
        }
        let mut h = self.conv_in.forward(latent)?;
        for block in &self.mid {
            h = block.forward(&h)?;
        }
        for (blocks, upsample) in &self.levels {
            for block in blocks {
                h = block.forward(&h)?;
            }
            if let Some(upsample) = upsample {
                h = upsample.forward(&h)?;
            }
        }
        let mel = self.conv_out.forward(&pixel_norm_silu(&h)?)?;
        // Crop or zero-pad to the target shape (a no-op for the released sizes).
        let target = [self.config.out_channels, self.config.decoded_mel_frames(frames), self.config.mel_bins];
        let mut mel = mel;
        for (axis, &size) in target.iter().enumerate() {
            let dim = axis + 1;
            let current = mel.dim(dim)?;
            mel = if current >= size { mel.narrow(dim, 0, size)? } else { mel.pad_with_zeros(dim, 0, size - current)? };
        }
        Ok(mel)
    }
}

/// Which halves of the VAE to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeParts {
    /// Encoder and decoder.
    Both,
    /// Only the encoder (audio-to-video conditioning).
    Encoder,
    /// Only the decoder (generation).
    Decoder,
}

/// The audio VAE with its latent statistics.
#[derive(Debug, Clone)]
pub struct AudioVae {
    config: AudioVaeConfig,
    encoder: Option<AudioEncoder>,
    decoder: Option<AudioDecoder>,
    /// `[1, C, 1, F]`: the 128 statistics laid out over a latent.
    mean: Tensor,
    std: Tensor,
}

impl AudioVae {
    /// Builds the parts from `vb` (official names, relative to the VAE).
    pub fn new(config: &AudioVaeConfig, parts: VaeParts, vb: &VarBuilder<'_>) -> Result<Self> {
        let encoder =
            if parts == VaeParts::Decoder { None } else { Some(AudioEncoder::new(config, &vb.pp("encoder"))?) };
        let decoder =
            if parts == VaeParts::Encoder { None } else { Some(AudioDecoder::new(config, &vb.pp("decoder"))?) };
        let shape = (1, config.latent_channels, 1, config.latent_mel_bins());
        let statistic =
            |name: &str| -> Result<Tensor> { vb.get(config.patch_width(), name)?.to_dtype(DType::F32)?.reshape(shape) };
        let mean = statistic(STATISTICS[0].0)?;
        let std = statistic(STATISTICS[1].0)?;
        Ok(AudioVae { config: config.clone(), encoder, decoder, mean, std })
    }

    /// The configuration.
    pub fn config(&self) -> &AudioVaeConfig {
        &self.config
    }

    /// Log-mel `[B, 2, T, 64]` → un-normalised latent mean `[B, 8, ⌈T/4⌉, 16]`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let Some(encoder) = &self.encoder else { candle_core::bail!("the audio VAE was loaded without its encoder") };
        encoder.forward(mel)
    }

    /// Un-normalised latent `[B, 8, T, 16]` → log-mel `[B, 2, 4·T − 3, 64]`.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let Some(decoder) = &self.decoder else { candle_core::bail!("the audio VAE was loaded without its decoder") };
        decoder.forward(latent)
    }

    /// Waveform `[B, C, N]` at `sample_rate` Hz → un-normalised latent mean, as ComfyUI's `AudioVAE.encode`
    /// does it: a mono waveform is used for both stereo channels, then the log-mel front end, then the
    /// encoder.
    pub fn encode_waveform(&self, waveform: &Tensor, sample_rate: u32) -> Result<Tensor> {
        let (batch, channels, samples) = waveform.dims3()?;
        let expected = self.config.in_channels;
        let waveform = match channels {
            c if c == expected => waveform.clone(),
            1 => waveform.broadcast_as((batch, expected, samples))?.contiguous()?,
            _ => candle_core::bail!("the audio VAE takes {expected}-channel (or mono) audio, got {channels} channels"),
        };
        let mel = MelSpectrogram::new(self.config.mel())?.log_mel(&waveform, sample_rate)?;
        self.encode(&mel)
    }

    /// `(latent − mean) / std` over `[B, 8, T, 16]`: the pipelines' `_normalize_audio_latents` on the packed
    /// `[B, T, 128]` tokens, done in place of the packing.
    pub fn normalize(&self, latent: &Tensor) -> Result<Tensor> {
        self.check_latent(latent)?;
        latent.to_dtype(DType::F32)?.broadcast_sub(&self.mean)?.broadcast_div(&self.std)
    }

    /// `latent · std + mean`: the inverse of [`Self::normalize`], before [`Self::decode`].
    pub fn denormalize(&self, latent: &Tensor) -> Result<Tensor> {
        self.check_latent(latent)?;
        latent.to_dtype(DType::F32)?.broadcast_mul(&self.std)?.broadcast_add(&self.mean)
    }

    fn check_latent(&self, latent: &Tensor) -> Result<()> {
        let (_, channels, _, bins) = latent.dims4()?;
        if (channels, bins) != (self.config.latent_channels, self.config.latent_mel_bins()) {
            candle_core::bail!(
                "audio latents must be [B, {}, T, {}], got {:?}",
                self.config.latent_channels,
                self.config.latent_mel_bins(),
                latent.dims()
            );
        }
        Ok(())
    }
}

/// Where the audio VAE sits in a weight source, and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioVaeLayout {
    /// The prefix before every VAE tensor (no trailing dot; empty for none).
    pub prefix: String,
    /// diffusers names (`latents_mean`, `latents_std`) instead of the official statistics names.
    pub diffusers: bool,
}

impl AudioVaeLayout {
    /// The stored name of the tensor the model calls `name` (official, relative to the VAE).
    pub fn stored_name(&self, name: &str) -> String {
        let name = if self.diffusers {
            STATISTICS.iter().find(|(official, _)| *official == name).map_or(name, |(_, d)| d)
        } else {
            name
        };
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// A `VarBuilder` taking the official names, handing tensors out in their stored dtype (f32 when the
    /// file mixes dtypes); the convs widen them per call.
    fn var_builder(
        &self,
        source: &Arc<WeightSource>,
        device: &Device,
    ) -> std::result::Result<VarBuilder<'static>, WeightError> {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}.", self.prefix) };
        let dtype = source.dense_dtype_under(&prefix, "audio VAE weights")?;
        let layout = AudioVaeLayout { prefix: String::new(), diffusers: self.diffusers };
        Ok(source.renamed_var_builder(&self.prefix, dtype, device, move |name| layout.stored_name(name)))
    }
}

/// Finds the audio VAE in `source`: official names under `audio_vae.` (single files), bare official names
/// (separate audio VAE files), or diffusers names.
pub fn detect_vae_layout(source: &WeightSource) -> std::result::Result<AudioVaeLayout, WeightError> {
    for prefix in [SINGLE_FILE_PREFIX, ""] {
        let layout = AudioVaeLayout { prefix: prefix.to_string(), diffusers: false };
        let is_audio_conv = |part: &str| {
            source.shape(&layout.stored_name(&format!("{part}.conv_in.conv.weight"))).is_some_and(|s| s.len() == 4)
        };
        if is_audio_conv("encoder") || is_audio_conv("decoder") {
            let diffusers =
                source.contains(&AudioVaeLayout { diffusers: true, ..layout.clone() }.stored_name(STATISTICS[0].0));
            return Ok(AudioVaeLayout { diffusers, ..layout });
        }
    }
    Err(WeightError::Invalid {
        file: describe(source),
        message: format!(
            "no LTX-2 audio VAE found: expected '{SINGLE_FILE_PREFIX}.decoder.conv_in.conv.weight' (single file), \
             'decoder.conv_in.conv.weight' (separate audio VAE or diffusers) or the encoder's"
        ),
    })
}

/// The configuration of the audio VAE in `source`: the `audio_vae` section of the `config` metadata when
/// present, otherwise the tensor shapes.
pub fn read_vae_config(
    source: &WeightSource,
    layout: &AudioVaeLayout,
) -> std::result::Result<AudioVaeConfig, WeightError> {
    let mut config = AudioVaeConfig::ltx2();
    if let Some(json) = metadata_section(source, "audio_vae")? {
        config.apply_json(&json).map_err(|message| WeightError::Invalid { file: describe(source), message })?;
        return Ok(config);
    }
    // Conv weights only: a tensor of another rank under a conv's name counts as absent.
    let shape = |name: &str| source.shape(&layout.stored_name(name)).filter(|s| s.len() == 4);
    let count = |name: &dyn Fn(usize) -> String| (0..usize::MAX).take_while(|&i| shape(&name(i)).is_some()).count();
    let decoder_conv_in = shape("decoder.conv_in.conv.weight");
    if let Some(conv_in) = shape("encoder.conv_in.conv.weight") {
        config.base_channels = conv_in[0];
        config.in_channels = conv_in[1];
        config.num_res_blocks = count(&|j| format!("encoder.down.0.block.{j}.conv1.conv.weight"));
        let levels = count(&|l| format!("encoder.down.{l}.block.0.conv1.conv.weight"));
        config.channel_multipliers = (0..levels)
            .map(|l| shape(&format!("encoder.down.{l}.block.0.conv1.conv.weight")).map_or(0, |s| s[0] / conv_in[0]))
            .collect();
        if let Some(out) = shape("encoder.conv_out.conv.weight") {
            config.latent_channels = decoder_conv_in.as_ref().map_or(out[0] / 2, |s| s[1]);
            config.double_z = out[0] == 2 * config.latent_channels;
        }
    } else if let Some(conv_in) = &decoder_conv_in {
        config.latent_channels = conv_in[1];
        let levels = count(&|l| format!("decoder.up.{l}.block.0.conv1.conv.weight"));
        config.num_res_blocks = count(&|j| format!("decoder.up.0.block.{j}.conv1.conv.weight")).saturating_sub(1);
        if let Some(out) = shape("decoder.conv_out.conv.weight") {
            config.base_channels = out[1];
        }
        let base = config.base_channels.max(1);
        config.channel_multipliers = (0..levels)
            .map(|l| shape(&format!("decoder.up.{l}.block.0.conv2.conv.weight")).map_or(0, |s| s[0] / base))
            .collect();
    }
    if let Some(out) = shape("decoder.conv_out.conv.weight") {
        config.out_channels = out[0];
    }
    if let Some(stats) = source.shape(&layout.stored_name(STATISTICS[0].0)).filter(|s| s.len() == 1) {
        config.mel_bins = stats[0] / config.latent_channels.max(1) * config.downsample_factor();
    }
    config.validate().map_err(|message| WeightError::Invalid { file: describe(source), message })?;
    Ok(config)
}

/// The section `key` of the `config` metadata, if the file has one.
pub(crate) fn metadata_section(
    source: &WeightSource,
    key: &str,
) -> std::result::Result<Option<serde_json::Value>, WeightError> {
    let Some(text) = source.metadata("config") else { return Ok(None) };
    let json: serde_json::Value = serde_json::from_str(text).map_err(|error| WeightError::Invalid {
        file: describe(source),
        message: format!("the 'config' metadata is not valid JSON: {error}"),
    })?;
    Ok(json.get(key).cloned())
}

pub(crate) fn describe(source: &WeightSource) -> String {
    source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl AudioVae {
    /// Loads `parts` of the audio VAE from `source`, detecting layout and configuration. Every tensor of
    /// the loaded parts must be used.
    pub fn load(
        source: &Arc<WeightSource>,
        device: &Device,
        parts: VaeParts,
    ) -> std::result::Result<Self, WeightError> {
        let layout = detect_vae_layout(source)?;
        let config = read_vae_config(source, &layout)?;
        Self::load_with_config(source, &layout, &config, device, parts)
    }

    /// Loads with an explicit layout and configuration.
    pub fn load_with_config(
        source: &Arc<WeightSource>,
        layout: &AudioVaeLayout,
        config: &AudioVaeConfig,
        device: &Device,
        parts: VaeParts,
    ) -> std::result::Result<Self, WeightError> {
        let vb = layout.var_builder(source, device)?;
        let vae = AudioVae::new(config, parts, &vb).map_err(|e| source.explain(&e))?;
        let mut checked = Vec::new();
        if parts != VaeParts::Decoder {
            checked.push(layout.stored_name("encoder."));
        }
        if parts != VaeParts::Encoder {
            checked.push(layout.stored_name("decoder."));
        }
        let prefix = if layout.prefix.is_empty() { String::new() } else { format!("{}.", layout.prefix) };
        let unexpected: Vec<String> = source
            .unused(&prefix)
            .into_iter()
            .filter(|name| checked.iter().any(|part| name.starts_with(part.as_str())))
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(vae)
    }

    /// Opens `path` (a single file, a separate audio VAE file or a diffusers `audio_vae` weight file) and
    /// loads `parts`.
    pub fn load_file(path: &Path, device: &Device, parts: VaeParts) -> std::result::Result<Self, WeightError> {
        Self::load(&Arc::new(WeightSource::open(&[path])?), device, parts)
    }
}
