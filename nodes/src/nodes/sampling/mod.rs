//! Sampling nodes: the model's flow shift (`ModelSamplingLTXV`), schedulers and sigma edits (SIGMAS),
//! noise (NOISE), guiders (GUIDER), sampler selection and options (SAMPLER) and the samplers themselves
//! (`SamplerCustom`, `SamplerCustomAdvanced`, `KSampler`).

mod model_sampling;
mod noise_guiders;
mod run_sampling;
mod samplers;
mod schedulers;

pub use model_sampling::ModelSamplingLtxv;
pub use noise_guiders::{BasicGuider, CfgGuider, DisableNoise, LtxvDualCfgGuider, RandomNoise, cfg_input, seed_input};
pub use run_sampling::{Sampled, run_sampling};
pub use samplers::{KSampler, KSamplerSelect, SamplerCustom, SamplerCustomAdvanced, SamplerEulerAncestral};
pub use schedulers::{BasicScheduler, LtxvScheduler, ManualSigmas, SetFirstSigma, parse_sigmas};

use kinograph_engine::Node;
use kinograph_models::sampling::samplers::SamplerRegistry;
use std::sync::Arc;

/// The sampling nodes, to register with `Registry::register_all`.
pub fn nodes(samplers: &Arc<SamplerRegistry>) -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(LtxvScheduler),
        Arc::new(BasicScheduler),
        Arc::new(ModelSamplingLtxv),
        Arc::new(ManualSigmas),
        Arc::new(SetFirstSigma),
        Arc::new(RandomNoise),
        Arc::new(DisableNoise),
        Arc::new(CfgGuider),
        Arc::new(BasicGuider),
        Arc::new(LtxvDualCfgGuider),
        Arc::new(KSamplerSelect { samplers: samplers.clone() }),
        Arc::new(SamplerEulerAncestral),
        Arc::new(SamplerCustom),
        Arc::new(SamplerCustomAdvanced),
        Arc::new(KSampler { samplers: samplers.clone() }),
    ]
}
