//! Loader nodes: `CheckpointLoaderSimple`, `UNETLoader`, `VAELoader` and `CLIPLoader`, reading model files
//! from ComfyUI's folders (`kinograph_engine::ModelFolders`) into the MODEL, CLIP and VAE values the other nodes
//! use; `LoraLoader` and `LoraLoaderModelOnly`, which apply a LoRA file to them; LTX-2's text encoder,
//! audio VAE and latent upsampler loaders; ComfyUI-GGUF's `UnetLoaderGGUF`, `CLIPLoaderGGUF` and
//! `DualCLIPLoaderGGUF`.

mod gguf_clip_loaders;
mod gguf_loaders;
pub mod loaded_models;
mod lora_loaders;
mod ltx2_loaders;
mod model_loaders;

pub use gguf_clip_loaders::{ClipLoaderGguf, DualClipLoaderGguf};
pub use gguf_loaders::{UnetLoaderGguf, UnetLoaderGgufAdvanced};
pub use lora_loaders::{LoraLoader, LoraLoaderModelOnly};
pub use ltx2_loaders::{
    LatentUpscaleModelLoader, LtxavTextEncoderLoader, LtxvAudioVaeLoader, is_ltx2, load_ltx2_model,
};
pub use model_loaders::{
    Checkpoint, CheckpointLoaderSimple, ClipLoader, UnetLoader, VaeLoader, load_checkpoint, load_text_encoder,
};

use candle_core::Device;
use kinograph_engine::Node;
use std::sync::Arc;

/// The device models compute on: the first CUDA or Metal device when kinograph is built with that feature
/// and one is present, else the CPU.
pub fn compute_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    #[cfg(feature = "metal")]
    if let Ok(device) = Device::new_metal(0) {
        return device;
    }
    Device::Cpu
}

/// The loaders nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(CheckpointLoaderSimple),
        Arc::new(UnetLoader),
        Arc::new(VaeLoader),
        Arc::new(ClipLoader),
        Arc::new(LoraLoader),
        Arc::new(LoraLoaderModelOnly),
        Arc::new(LtxavTextEncoderLoader),
        Arc::new(LtxvAudioVaeLoader),
        Arc::new(LatentUpscaleModelLoader),
        Arc::new(UnetLoaderGguf),
        Arc::new(UnetLoaderGgufAdvanced),
        Arc::new(ClipLoaderGguf),
        Arc::new(DualClipLoaderGguf),
    ]
}
