//! GGUF weights: the files ComfyUI-GGUF and llama.cpp write (LTX-Video and LTX-2 diffusion models as
//! `general.architecture = "ltxv"`, Gemma 3 and T5 text encoders), read over a memory map.
//!
//! - [`file`](mod@file): [`GgufFile`], a tolerant reader of GGUF versions 2 and 3: metadata of every kind, tensors
//!   of any rank up to [`header::MAX_DIMS`] (ComfyUI-GGUF's 5-D conv weights included), ComfyUI's
//!   `comfy.gguf.orig_shape.*` records; a tensor of a type kinograph does not know is refused only when
//!   it is used.
//! - [`dequant`]: widening F32, F16, BF16, `Q8_0`, `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q2_K` … `Q6_K`,
//!   `IQ4_NL` and `IQ4_XS` blocks to f32.
//! - [`llama_names`]: llama.cpp's tensor names for the Gemma 3 and T5 text encoders, and the names the
//!   models ask for; [`tokenizer`]: the SentencePiece model rebuilt from a GGUF's `tokenizer.ggml.*`
//!   metadata; [`llama_backend`]: a `VarBuilder` backend reading such a GGUF under the models' names.
//! - [`linear`]: [`QuantLinear`], `y = x Wᵀ + b` over a GGUF weight, through candle's quantized matmul
//!   where that is faster on this CPU and otherwise widening the weight a band of rows at a time.
//!
//! Shapes follow torch: GGUF lists dims fastest-varying first, so a linear weight stored with dims
//! `[in, out]` is the torch `[out, in]` (`TensorInfo::shape`).

pub mod bench;
pub mod dequant;
pub mod file;
pub mod header;
pub mod linear;
pub mod llama_backend;
pub mod llama_names;
pub mod tokenizer;
pub mod types;

pub use file::{GgufError, GgufFile, TensorInfo};
pub use header::MetadataValue;
pub use linear::{MatmulKernel, QuantLinear};
pub use types::GgmlType;
