//! LTX-Video (Lightricks): the video transformer and the causal video VAE.

pub mod transformer;
pub mod vae;
