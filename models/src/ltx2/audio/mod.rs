//! LTX-2's audio path: the log-mel front end, the audio VAE, and the vocoders of LTX-2.0 (HiFi-GAN,
//! 24 kHz) and LTX-2.3 (BigVGAN with bandwidth extension, 48 kHz). References: diffusers 0.42.1
//! `autoencoder_kl_ltx2_audio.py` and `pipelines/ltx2/vocoder.py`, ltx-core `model/audio_vae`, ComfyUI
//! `comfy/ldm/lightricks/vae/audio_vae.py` and `vocoders/vocoder.py`.
//!
//! | module | reference |
//! |---|---|
//! | [`config`] | sizes of the VAE and the vocoders, from the `config` metadata or the released values |
//! | [`mel`] | waveform → log-mel (`AudioProcessor`: torchaudio resampling and Slaney mel spectrogram) |
//! | [`vae_blocks`] | causal conv, pixel norm, resnet, down/upsampling of `AutoencoderKLLTX2Audio` |
//! | [`vae`] | `AutoencoderKLLTX2Audio`: encoder, decoder, latent statistics, loading |
//! | [`antialias`] | BigVGAN's anti-aliased snake activations and the ×3 resampler |
//! | [`vocoder`] | `LTX2Vocoder`, the generator of both releases |
//! | [`bwe`] | `LTX2VocoderWithBWE` (2.3) |
//! | [`load`] | vocoder layouts (official, bare, diffusers) and release detection |
//!
//! Decoding generated audio latents (`[B, 8, T, 16]`, normalised as the transformer sees them):
//!
//! ```no_run
//! # use kinograph_models::ltx2::audio::{AudioVae, VaeParts, Vocoder};
//! # use candle_core::{Device, Tensor};
//! # fn run(latent: &Tensor) -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::path::Path::new("ltx-2-19b-dev.safetensors");
//! let vae = AudioVae::load_file(path, &Device::Cpu, VaeParts::Decoder)?;
//! let vocoder = Vocoder::load_file(path, &Device::Cpu)?;
//! let mel = vae.decode(&vae.denormalize(latent)?)?; // [B, 2, 4T − 3, 64]
//! let waveform = vocoder.forward(&mel)?; // [B, 2, samples] at vocoder.sample_rate()
//! # Ok(()) }
//! ```

pub mod antialias;
pub mod bwe;
pub mod config;
pub mod load;
pub mod mel;
pub mod vae;
pub mod vae_blocks;
pub mod vocoder;

pub use bwe::VocoderWithBwe;
pub use config::{AudioVaeConfig, BweConfig, FinalActivation, GeneratorConfig, ResBlockKind};
pub use load::{Vocoder, VocoderConfig, VocoderLayout, detect_vocoder_layout, read_vocoder_config};
pub use mel::{MelConfig, MelSpectrogram, resample};
pub use vae::{AudioDecoder, AudioEncoder, AudioVae, AudioVaeLayout, VaeParts, detect_vae_layout, read_vae_config};
pub use vocoder::Generator;
