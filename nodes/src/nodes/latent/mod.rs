//! Latent nodes: empty and image-conditioned LTX-Video latents, VAE encode and decode, `.latent` files.

mod files;
mod ltx2;
mod ltxv;
mod noise_mask;
pub mod resize;
mod vae;

pub use files::{LoadLatent, SaveLatent, read_latent_file};
pub use ltx2::{
    LtxvAudioVaeDecode, LtxvAudioVaeEncode, LtxvConcatAvLatent, LtxvEmptyLatentAudio, LtxvImgToVideoInplace,
    LtxvLatentUpsampler, LtxvSeparateAvLatent, audio_latent_count,
};
pub use ltxv::{EmptyLtxvLatentVideo, LATENT_CHANNELS, LtxvImgToVideo};
pub use vae::{
    DECODE_NOISE_SCALE, DECODE_NOISE_SEED, DECODE_TIMESTEP, TorchNoise, VaeDecode, VaeDecodeTiled, VaeEncode,
    decode_latent, encode_frames,
};

use kinograph_engine::Node;
use std::sync::Arc;

/// The latent nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(EmptyLtxvLatentVideo),
        Arc::new(LtxvImgToVideo),
        Arc::new(VaeDecode),
        Arc::new(VaeDecodeTiled),
        Arc::new(VaeEncode),
        Arc::new(SaveLatent),
        Arc::new(LoadLatent),
        Arc::new(LtxvEmptyLatentAudio),
        Arc::new(LtxvConcatAvLatent),
        Arc::new(LtxvSeparateAvLatent),
        Arc::new(LtxvAudioVaeDecode),
        Arc::new(LtxvAudioVaeEncode),
        Arc::new(LtxvLatentUpsampler),
        Arc::new(LtxvImgToVideoInplace),
        Arc::new(noise_mask::SetLatentNoiseMask),
    ]
}
