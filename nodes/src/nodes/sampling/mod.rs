//! Sampling nodes: schedulers (SIGMAS), noise (NOISE), guiders (GUIDER), sampler selection (SAMPLER) and
//! the samplers themselves (`SamplerCustom`, `SamplerCustomAdvanced`, `KSampler`).

mod noise_guiders;
mod run_sampling;
mod samplers;
mod schedulers;

pub use noise_guiders::{BasicGuider, CfgGuider, DisableNoise, RandomNoise, cfg_input, seed_input};
pub use run_sampling::{Sampled, run_sampling};
pub use samplers::{KSampler, KSamplerSelect, SamplerCustom, SamplerCustomAdvanced};
pub use schedulers::{BasicScheduler, LtxvScheduler, ManualSigmas, parse_sigmas};

use kinograph_engine::{Node, Registry};
use kinograph_models::sampling::samplers::SamplerRegistry;
use std::sync::Arc;

/// Registers the sampling nodes; `KSamplerSelect` and `KSampler` offer the samplers in `samplers`.
pub fn register(registry: &mut Registry, samplers: &Arc<SamplerRegistry>) {
    let nodes: [Arc<dyn Node>; 11] = [
        Arc::new(LtxvScheduler),
        Arc::new(BasicScheduler),
        Arc::new(ManualSigmas),
        Arc::new(RandomNoise),
        Arc::new(DisableNoise),
        Arc::new(CfgGuider),
        Arc::new(BasicGuider),
        Arc::new(KSamplerSelect { samplers: samplers.clone() }),
        Arc::new(SamplerCustom),
        Arc::new(SamplerCustomAdvanced),
        Arc::new(KSampler { samplers: samplers.clone() }),
    ];
    for node in nodes {
        registry.register_arc(node).expect("built-in node names are unique");
    }
}
