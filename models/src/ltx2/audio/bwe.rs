//! The LTX-2.3 vocoder with bandwidth extension: diffusers 0.42.1 `LTX2VocoderWithBWE` (`CausalSTFT`,
//! `MelSTFT`), official ltx-core `VocoderWithBWE`, ComfyUI `VocoderWithBWE`.
//!
//! 1. The main generator turns the mel into a 16 kHz waveform, zero-padded to a whole number of hops (80).
//! 2. A causal log-mel of that waveform: left padding of `window − hop` zeros, an STFT as a strided conv
//!    with the windowed DFT bases stored in the file (`mel_stft.stft_fn.forward_basis`, real rows then
//!    imaginary rows), magnitudes through the stored mel filters (`mel_stft.mel_basis`), `log(max(·, 1e-5))`.
//! 3. The residual generator turns that mel into a 48 kHz residual; the 16 kHz waveform resampled ×3 (a
//!    Hann-windowed sinc) is added, the sum clamped to [−1, 1] and cut to 3 × the unpadded length.

use super::antialias::Upsampler;
use super::config::BweConfig;
use super::vocoder::Generator;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// `LTX2VocoderWithBWE`.
#[derive(Debug, Clone)]
pub struct VocoderWithBwe {
    config: BweConfig,
    vocoder: Generator,
    generator: Generator,
    /// `[2·F, 1, n_fft]`, f32.
    forward_basis: Tensor,
    /// `[mel_bins, F]`, f32.
    mel_basis: Tensor,
    resampler: Upsampler,
}

impl VocoderWithBwe {
    /// Reads `vocoder.*`, `bwe_generator.*` and `mel_stft.*` under `vb` (official names, without the
    /// single file's `vocoder.` prefix). The stored inverse STFT basis is not needed.
    pub fn new(config: &BweConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let frequencies = config.n_fft / 2 + 1;
        let mel = vb.pp("mel_stft");
        let forward_basis =
            mel.get((2 * frequencies, 1, config.n_fft), "stft_fn.forward_basis")?.to_dtype(DType::F32)?;
        let mel_basis = mel.get((config.mel_bins, frequencies), "mel_basis")?.to_dtype(DType::F32)?;
        Ok(VocoderWithBwe {
            config: config.clone(),
            vocoder: Generator::new(&config.vocoder, &vb.pp("vocoder"))?,
            generator: Generator::new(&config.generator, &vb.pp("bwe_generator"))?,
            forward_basis,
            mel_basis,
            resampler: Upsampler::hann(config.ratio()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BweConfig {
        &self.config
    }

    /// The causal log-mel of `waveform` `[B, C, N]` (N a multiple of the hop) → `[B, C, N / hop, mel_bins]`.
    pub fn causal_log_mel(&self, waveform: &Tensor) -> Result<Tensor> {
        let (batch, channels, samples) = waveform.dims3()?;
        let frequencies = self.config.n_fft / 2 + 1;
        let left = self.config.win_length.saturating_sub(self.config.hop_length);
        let flat = waveform.reshape((batch * channels, 1, samples))?.pad_with_zeros(2, left, 0)?;
        if flat.dim(2)? < self.config.n_fft {
            candle_core::bail!("vocoder: {samples} samples are too few for a {}-point STFT", self.config.n_fft);
        }
        let spectrum = flat.conv1d(&self.forward_basis, 0, self.config.hop_length, 1, 1)?;
        let real = spectrum.narrow(1, 0, frequencies)?;
        let imaginary = spectrum.narrow(1, frequencies, frequencies)?;
        let magnitude = (real.sqr()? + imaginary.sqr()?)?.sqrt()?;
        let mel = self.mel_basis.broadcast_matmul(&magnitude)?.clamp(1e-5f32, f32::MAX)?.log()?;
        let frames = mel.dim(2)?;
        mel.reshape((batch, channels, self.config.mel_bins, frames))?.transpose(2, 3)?.contiguous()
    }

    /// Mel `[B, 2, T, 64]` → waveform `[B, 2, T · 160 · 3]` at 48 kHz (released sizes), f32.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let low_rate = self.vocoder.forward(mel)?;
        let samples = low_rate.dim(2)?;
        let output_samples = samples * self.config.ratio();
        let remainder = samples % self.config.hop_length;
        let padded = if remainder == 0 {
            low_rate
        } else {
            low_rate.pad_with_zeros(2, 0, self.config.hop_length - remainder)?
        };
        let residual = self.generator.forward(&self.causal_log_mel(&padded)?)?;
        let skip = self.resampler.forward(&padded)?;
        if residual.dims() != skip.dims() {
            candle_core::bail!(
                "vocoder: the bandwidth extension gives {:?} but the resampled waveform is {:?}",
                residual.dims(),
                skip.dims()
            );
        }
        (residual + skip)?.clamp(-1f32, 1f32)?.narrow(2, 0, output_samples)
    }

    /// The 16 kHz waveform of the main generator alone.
    pub fn low_rate(&self, mel: &Tensor) -> Result<Tensor> {
        self.vocoder.forward(mel)
    }
}
