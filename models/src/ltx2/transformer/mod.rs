//! The LTX-2 audio-video transformer: diffusers 0.42.1 `transformer_ltx2.py`, ComfyUI
//! `comfy/ldm/lightricks/av_model.py`.
//!
//! | file | reference |
//! |---|---|
//! | [`config`] | sizes, release layout (2.0, 2.3, 2.5) and the audio↔video timestep routing |
//! | [`modulation`] | per-sample and per-token modulation vectors, each distinct timestep embedded once |
//! | [`attention`] | `LTX2Attention`: separate q/k RoPE tables, per-head gates |
//! | [`block`] | `LTX2VideoTransformerBlock` |
//! | [`model`] | `LTX2VideoTransformer3DModel`: embeddings, positions, blocks (resident or streamed), output heads |
//! | [`load`] | official single files and diffusers folders, with release detection |
//! | [`mod@bench`] | one full-size block with random weights, for timing |
//!
//! Use:
//!
//! ```no_run
//! # use kinograph_models::ltx2::transformer::*;
//! # use candle_core::{Device, Tensor};
//! # fn run(video: &Tensor, audio: &Tensor, video_context: &Tensor, audio_context: &Tensor) -> candle_core::Result<()> {
//! # use kinograph_models::block_stack::BlockHolding;
//! let options = LoadOptions { blocks: BlockHolding::STREAMED, ..LoadOptions::default() };
//! let model = Ltx2Transformer::load_file("ltx-2-19b-dev.safetensors".as_ref(), &Device::Cpu, options)
//!     .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
//! // A 97-frame 768×512 video at 24 fps: latent 13×16×24, 101 audio latents.
//! let video_positions = model.video_positions(1, 13, 16, 24, 24.0)?;
//! let audio_positions = model.audio_positions(1, 101)?;
//! let t = Tensor::new(&[1000f32], &Device::Cpu)?;
//! let inputs = AvInputs {
//!     video, audio, video_context, audio_context, context_mask: None,
//!     video_timestep: &t, audio_timestep: &t, video_sigma: &t, audio_sigma: &t,
//!     video_positions: &video_positions, audio_positions: &audio_positions, keyframe_mask: None,
//!     video_guides: None,
//! };
//! let (video_velocity, audio_velocity) = model.forward(&inputs, &Perturbation::default())?;
//! # Ok(()) }
//! ```

pub mod attention;
pub mod bench;
pub mod block;
pub mod config;
pub mod load;
pub mod model;
pub mod modulation;

pub use config::{AvTimestepRouting, Ltx2TransformerConfig, Ltx2Version};
pub use load::{LoadOptions, Ltx2Layout, detect_layout, read_config};
pub use model::{AvInputs, Ltx2Transformer, Perturbation, pack_audio_latents, unpack_audio_latents};
