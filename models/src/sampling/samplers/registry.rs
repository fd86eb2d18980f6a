//! Samplers by name, in the order a `KSamplerSelect` combo lists them.

use std::sync::Arc;

use super::{DpmPp2m, DpmPp2mSde, Euler, EulerAncestral, GradientEstimation, Heun, Lcm, Sampler};

/// The samplers a workflow can name.
#[derive(Clone, Default)]
pub struct SamplerRegistry {
    samplers: Vec<Arc<dyn Sampler>>,
}

impl SamplerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in samplers, in ComfyUI's order: `euler`, `euler_ancestral`, `heun`, `dpmpp_2m`, `dpmpp_2m_sde`, `lcm`, `gradient_estimation`.
    pub fn builtin() -> Self {
        let mut registry = Self::new();
        registry.register(Arc::new(Euler));
        registry.register(Arc::new(EulerAncestral::default()));
        registry.register(Arc::new(Heun));
        registry.register(Arc::new(DpmPp2m));
        registry.register(Arc::new(DpmPp2mSde::default()));
        registry.register(Arc::new(Lcm));
        registry.register(Arc::new(GradientEstimation));
        registry
    }

    /// Adds `sampler` under its name; a sampler already registered under that name is replaced in place.
    pub fn register(&mut self, sampler: Arc<dyn Sampler>) {
        match self.samplers.iter_mut().find(|known| known.name() == sampler.name()) {
            Some(known) => *known = sampler,
            None => self.samplers.push(sampler),
        }
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.samplers.iter().map(|sampler| sampler.name().to_owned()).collect()
    }

    /// The sampler called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Sampler>> {
        self.samplers.iter().find(|sampler| sampler.name() == name).cloned()
    }
}
