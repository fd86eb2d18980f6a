//! The values that travel between the built-in nodes, one type per socket type, with ComfyUI's shapes:
//! LATENT `[B, C, T, H, W]`, IMAGE `[B, H, W, C]` in 0..1, MASK `[B, H, W]`, VIDEO (frames and a rate),
//! AUDIO (a waveform `[B, C, S]` and its rate), CONDITIONING (text embeddings with their options), SIGMAS, NOISE, SAMPLER, GUIDER, `IC_LORA_PARAMETERS`, and the loaded
//! models MODEL, CLIP and VAE. Every type that travels on a link is defined here.
//!
//! Tensors live on the CPU in f32 between nodes; the models move them where they compute.

use candle_core::{DType, Device, Tensor};
use kinograph_engine::{NodeError, StoredTensor};

mod audio;
mod conditioning;
mod ic_lora;
mod image;
mod latent;
mod models;
mod sampling;
mod video;

pub use audio::Audio;
pub use conditioning::{CondEntry, Conditioning, GuideAttentionEntry};
pub use ic_lora::IcLoraParameters;
pub use image::{IMAGE_KIND, Image, MASK_KIND, Mask};
pub use latent::{AudioLatent, LATENT_KIND, Latent};
pub use models::{
    AudioVaeModel, DiffusionModel, GemmaText, IdentityGuidance, LatentUpscaleModel, TextEncoder, Transformer, VideoVae,
};
pub use sampling::{Guider, Noise, SamplerChoice, Sigmas};
pub use video::Video;

/// The bytes a tensor holds.
pub fn tensor_bytes(tensor: &Tensor) -> usize {
    tensor.elem_count() * tensor.dtype().size_in_bytes()
}

/// A candle error on `input` of the running node, in words.
pub fn tensor_error(what: &str, error: &candle_core::Error) -> NodeError {
    NodeError::msg(format!("{what}: {error}"))
}

/// A float32 tensor as a stored tensor (little-endian bytes).
pub fn store_tensor(name: &str, tensor: &Tensor) -> Option<StoredTensor> {
    let data: Vec<f32> = tensor.to_dtype(DType::F32).ok()?.flatten_all().ok()?.to_vec1().ok()?;
    Some(StoredTensor {
        name: name.to_string(),
        dtype: safetensors::Dtype::F32,
        shape: tensor.dims().to_vec(),
        data: data.iter().flat_map(|value| value.to_le_bytes()).collect(),
    })
}

/// A stored float32 tensor back as a CPU tensor.
pub fn restore_tensor(stored: &StoredTensor) -> Result<Tensor, String> {
    if stored.dtype != safetensors::Dtype::F32 {
        return Err(format!("tensor '{}' is {:?}, expected F32", stored.name, stored.dtype));
    }
    let expected = stored.shape.iter().product::<usize>() * 4;
    if stored.data.len() != expected {
        return Err(format!("tensor '{}' has {} bytes, its shape needs {expected}", stored.name, stored.data.len()));
    }
    let values: Vec<f32> =
        stored.data.chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect();
    Tensor::from_vec(values, stored.shape.clone(), &Device::Cpu).map_err(|e| e.to_string())
}

/// Registers the decoders that read stored values back from the disk cache.
pub fn register_decoders(registry: &mut kinograph_engine::Registry) {
    registry.register_decoder(LATENT_KIND, Latent::from_stored);
    registry.register_decoder(IMAGE_KIND, Image::from_stored);
    registry.register_decoder(MASK_KIND, Mask::from_stored);
}
