//! The T5 v1.1 encoder used as LTX-Video's text encoder, and its tokenizer.
//!
//! - [`T5Tokenizer`] turns a prompt into [`Tokens`]: ids, attention mask and prompt weights.
//!   [`T5Tokenizer::encode_weighted`] is ComfyUI's LTXV path (its `(text:1.2)` weight syntax, padding to
//!   at least 128, no truncation); [`T5Tokenizer::encode`] takes the text as it is, with
//!   [`TokenLength::AtLeast`] (ComfyUI's padding) or [`TokenLength::Exactly`] (diffusers' 128 or 256,
//!   truncating).
//! - [`T5Encoder`] mirrors transformers' `T5EncoderModel`. [`T5Encoder::open`] takes a ComfyUI file
//!   (`t5xxl_fp16.safetensors`, optionally under a prefix such as `text_encoders.t5xxl.transformer.`) or a
//!   diffusers `text_encoder/` folder; [`T5Encoder::load`] does the same from an open
//!   [`WeightSource`](crate::weights::WeightSource); [`T5Encoder::new`] builds from any candle
//!   `VarBuilder` and a [`T5Config`].
//! - [`T5Encoder::forward`] takes `[batch, length]` ids and an optional mask and returns the f32
//!   `last_hidden_state`. Weights stay in their stored dtype (T5-XXL: 9.5 GB in bf16 or f16, 4.8 GB in
//!   ComfyUI's plain fp8 e4m3 file) and are widened to f32 a 16 MB band at a time; arithmetic is f32
//!   (T5-XXL overflows in fp16). [`T5Encoder::load_gguf`] reads llama.cpp's T5 GGUFs (`t5encoder`).
//! - With [`T5LoadOptions::blocks`] ([`T5Encoder::load_with`], [`T5Encoder::load_gguf_with`]) all of the
//!   24 blocks but the first few kept are read from the file as each forward pass reaches them, the next
//!   while the current one computes: streaming all of them, T5-XXL holds its embedding table, final norm and
//!   two blocks (about 1 GB in bf16) instead of 9.5 GB, and computes the same outputs.
//! - [`T5Encoder::encode_tokens`] runs the forward on [`Tokens`] as ComfyUI's `CLIPTextEncode` does,
//!   mask and prompt weights included.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kinograph_models::t5::{T5Encoder, T5Tokenizer, TokenLength};
//! let device = candle_core::Device::Cpu;
//! let encoder = T5Encoder::open(std::path::Path::new("models/text_encoders/t5xxl_fp16.safetensors"), &device)?;
//! let tokenizer = T5Tokenizer::new()?;
//! // ComfyUI: weights parsed, masked T5, at least 128 tokens.
//! let tokens = tokenizer.encode_weighted("a (cat:1.2) playing piano", 128)?;
//! let hidden = encoder.encode_tokens(&tokens, true)?; // [1, 128, 4096]
//! // diffusers LTXPipeline: exactly 128 tokens, T5 without the mask (the mask goes to the DiT only).
//! let tokens = tokenizer.encode("a cat playing piano", TokenLength::Exactly(128))?;
//! let (ids, mask) = tokens.to_tensors(&device)?;
//! let hidden = encoder.forward(&ids, None)?;
//! # Ok(()) }
//! ```

mod block;
mod config;
mod encoder;
mod gguf;
mod load;
mod prompt_weights;
mod tokenizer;

pub use block::relative_position_bucket;
pub use config::{Activation, T5Config};
pub use encoder::T5Encoder;
pub use gguf::gguf_config;
pub use load::{COMFY_BUNDLED_PREFIX, T5LoadOptions, find_prefix, storage_dtype, weight_files};
pub use prompt_weights::{WeightedText, parse_prompt_weights};
pub use tokenizer::{COMFY_MIN_LENGTH, END_TOKEN, PAD_TOKEN, T5Tokenizer, TokenLength, TokenizerError, Tokens};
