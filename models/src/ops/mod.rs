//! CPU kernels shared by the model families: what candle lacks (a conv3d) or runs too slowly for these
//! models on the CPU (GELU and softmax on one thread, separate passes for a norm and its modulation, a
//! transposed matmul). The model trees (`ltxv::transformer`, `ltxv::vae`, ...) mirror the reference
//! modules and call these; each kernel falls back to candle's ops on other devices and dtypes.
//!
//! - [`gemm`]: the one wrapper around `gemm::gemm`, with named sizes and strides.
//! - [`conv1d`]: the vocoders' `Conv1d`/`ConvTranspose1d` and the audio VAE's per-tap sums, one GEMM per tap.
//! - [`conv3d`]: the stride-1 conv3d as one custom op (tiled with an AVX-512 micro-kernel, or im2col
//!   over the whole sequence).
//! - [`norm`]: the pixel norm, the timestep modulation and their fused CPU pass with `SiLU`.
//! - [`activations`]: threaded tanh GELU and softmax.
//! - [`linear`]: `torch.nn.Linear` with the weight stored transposed and the bias added in place.
//! - [`stored_linear`]: a linear layer whose weight stays in its stored dtype, widened a band at a time.
//! - [`add_product`]: `y += a · b` into `y`, threaded, for LoRA updates beside a layer's weight.
//! - [`tiles`]: `x Wᵀ` in bf16 on Intel AMX tiles, for weights widened a band at a time (quantized GGUF).

pub mod activations;
pub mod add_product;
pub mod conv1d;
pub mod conv3d;
pub mod gemm;
pub mod linear;
pub mod norm;
pub mod stored_linear;
pub mod tiles;
