//! Latent nodes: empty and image-conditioned LTX-Video latents, VAE encode and decode, `.latent` files.

mod files;
mod ltxv;
pub mod resize;
mod vae;

pub use files::{LoadLatent, SaveLatent, read_latent_file};
pub use ltxv::{EmptyLtxvLatentVideo, LATENT_CHANNELS, LtxvImgToVideo};
pub use vae::{
    DECODE_NOISE_SCALE, DECODE_NOISE_SEED, DECODE_TIMESTEP, TorchNoise, VaeDecode, VaeDecodeTiled, VaeEncode,
    decode_latent, encode_frames,
};

use kinograph_engine::{Node, Registry};
use std::sync::Arc;

/// Registers the latent nodes.
pub fn register(registry: &mut Registry) {
    let nodes: [Arc<dyn Node>; 7] = [
        Arc::new(EmptyLtxvLatentVideo),
        Arc::new(LtxvImgToVideo),
        Arc::new(VaeDecode),
        Arc::new(VaeDecodeTiled),
        Arc::new(VaeEncode),
        Arc::new(SaveLatent),
        Arc::new(LoadLatent),
    ];
    for node in nodes {
        registry.register_arc(node).expect("built-in node names are unique");
    }
}
