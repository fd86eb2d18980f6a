//! The LTX-Video transformer (`LTXVideoTransformer3DModel` in diffusers, `LTXVModel` in ComfyUI).
//!
//! The module tree mirrors diffusers' `transformer_ltx.py`; the tensor names are the original code's,
//! which ComfyUI single files carry, and [`load`] reads diffusers checkpoints by renaming:
//!
//! | file | reference |
//! |---|---|
//! | [`config`] | the model config (2B, 13B, or read from the tensors and the checkpoint's config) |
//! | [`embeddings`] | `AdaLayerNormSingle` (timestep sinusoid + MLP), `PixArtAlphaTextProjection` |
//! | [`rope`] | `LTXVideoRotaryPosEmbed`, `apply_rotary_emb`, the pipelines' `video_coords` |
//! | [`attention`] | `LTXAttention` + `LTXVideoAttnProcessor`, with query-blocked softmax |
//! | [`block`] | `LTXVideoTransformerBlock`, `FeedForward` |
//! | [`model`] | `LTXVideoTransformer3DModel`, latent packing |
//! | [`load`] | single files (`model.diffusion_model.*`) and diffusers folders, renamed onto the original names |
//! | [`mod@bench`] | a 2B forward with random weights, for timing |
//!
//! Use:
//!
//! ```no_run
//! # use kinograph_models::ltxv::transformer::*;
//! # use candle_core::{Device, Tensor};
//! # fn run(latents: &Tensor, text: &Tensor, mask: &Tensor, sigma: f64) -> candle_core::Result<()> {
//! let device = Device::Cpu;
//! let model = LtxvTransformer::load_file("ltx-video-2b-v0.9.5.safetensors".as_ref(), &device)
//!     .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
//! let (_, _, frames, height, width) = latents.dims5()?;
//! let tokens = pack_latents(latents)?; // [B, C, F, H, W] -> [B, N, C]
//! let coords = pixel_video_coords(1, frames, height, width, 25.0, model.config().causal_temporal_positioning, &device)?;
//! let timestep = Tensor::new(&[(sigma * model.config().timestep_scale_multiplier) as f32], &device)?;
//! let velocity = model.forward(&tokens, text, Some(mask), &timestep, &RopePositions::Coords(coords))?;
//! let velocity = unpack_latents(&velocity, frames, height, width)?;
//! # Ok(()) }
//! ```

pub mod attention;
pub mod bench;
pub mod block;
pub mod config;
pub mod embeddings;
pub mod load;
pub mod model;
pub mod rope;

pub use attention::{GuideAttentionBias, LogitBias};
pub use config::LtxvTransformerConfig;
pub use load::{DetectedLayout, LtxvLoadOptions, WeightLayout, detect_layout, read_config};
pub use model::{LtxvTransformer, pack_latents, text_bias, unpack_latents};
pub use rope::{RopePositions, RopeTables, RotaryPosEmbed, pixel_video_coords};
