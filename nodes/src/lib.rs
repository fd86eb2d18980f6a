//! # kinograph-nodes
//!
//! Kinograph's built-in node library. Class names, input names, defaults and ranges follow ComfyUI
//! wherever ComfyUI has the same node, so that its workflows load unchanged.

pub mod demo;
pub mod demo_ltx2;
pub mod diffusion;
pub mod media;
pub mod nodes;
pub mod values;

use kinograph_engine::Registry;
use kinograph_models::sampling::samplers::SamplerRegistry;
use nodes::{audio, conditioning, image, latent, loaders, mask, primitives, sampling, video};
use std::sync::Arc;

/// A registry holding every built-in node.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register_all(&mut registry);
    registry
}

/// A registry holding every built-in node, with `samplers` (the built-in ones plus any custom sampler
/// registered into it) offered by `KSamplerSelect` and `KSampler`.
pub fn registry_with_samplers(samplers: SamplerRegistry) -> Registry {
    let mut registry = Registry::new();
    register_all_with_samplers(&mut registry, samplers);
    registry
}

/// Adds every built-in node to `registry`, with the built-in samplers.
pub fn register_all(registry: &mut Registry) {
    register_all_with_samplers(registry, SamplerRegistry::builtin());
}

/// Adds every built-in node to `registry`, offering `samplers` for selection.
pub fn register_all_with_samplers(registry: &mut Registry, samplers: SamplerRegistry) {
    let samplers = Arc::new(samplers);
    let built_in = [
        primitives::nodes(),
        loaders::nodes(),
        conditioning::nodes(),
        latent::nodes(),
        sampling::nodes(&samplers),
        image::nodes(),
        mask::nodes(),
        video::nodes(),
        audio::nodes(),
    ];
    registry.register_all(built_in.into_iter().flatten()).expect("built-in node names are unique");
    values::register_decoders(registry);
}
