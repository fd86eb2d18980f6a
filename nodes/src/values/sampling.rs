//! The values of a sampling setup: SIGMAS, NOISE, SAMPLER and GUIDER.

use super::conditioning::Conditioning;
use super::latent::Latent;
use super::{DiffusionModel, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::{NodeError, NodeValue};
use kinograph_models::sampling::samplers::Sampler;
use std::sync::Arc;

/// SIGMAS: the noise levels a sampler steps through, from high to low (ComfyUI keeps them in f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Sigmas {
    pub values: Vec<f32>,
}

impl NodeValue for Sigmas {
    fn type_name(&self) -> &'static str {
        "SIGMAS"
    }
    fn byte_size(&self) -> usize {
        self.values.len() * 4
    }
    fn describe(&self) -> String {
        let shown: Vec<String> = self.values.iter().map(|s| format!("{s:.4}")).collect();
        format!("SIGMAS [{}]", shown.join(", "))
    }
}

/// NOISE: where a sampler's starting noise comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noise {
    /// `torch.manual_seed(seed)` then `torch.randn(latent shape)` on the CPU.
    Random { seed: i128 },
    /// Zeros: sample from the latent as it is.
    Disabled,
}

impl Noise {
    /// The seed the sampler's own randomness (ancestral, SDE) derives from.
    pub fn seed(&self) -> i128 {
        match self {
            Noise::Random { seed } => *seed,
            Noise::Disabled => 0,
        }
    }

    /// The starting noise for `latent`, shaped like its samples.
    pub fn generate(&self, latent: &Latent) -> Result<Tensor, NodeError> {
        let shape = latent.samples.dims().to_vec();
        let values = match self {
            Noise::Random { seed } => {
                kinograph_models::sampling::torch_noise::prepare_noise(*seed, &shape, latent.batch_index.as_deref())
            }
            Noise::Disabled => vec![0.0; shape.iter().product()],
        };
        Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| tensor_error("making noise", &e))
    }
}

impl Noise {
    /// The starting noise of each part of a nested latent (LTX-2's video, then audio): one generator draws
    /// them in turn, as ComfyUI's `prepare_noise` does for a nested tensor.
    pub fn generate_parts<const N: usize>(
        &self,
        parts: &[&Tensor; N],
        batch_index: Option<&[usize]>,
    ) -> Result<[Tensor; N], NodeError> {
        let shapes: Vec<Vec<usize>> = parts.iter().map(|part| part.dims().to_vec()).collect();
        let values: Vec<Vec<f32>> = match self {
            Noise::Random { seed } => {
                let borrowed: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
                kinograph_models::sampling::torch_noise::prepare_noise_parts(*seed, &borrowed, batch_index)
            }
            Noise::Disabled => shapes.iter().map(|shape| vec![0.0; shape.iter().product()]).collect(),
        };
        let tensors = values
            .into_iter()
            .zip(shapes)
            .map(|(values, shape)| Tensor::from_vec(values, shape, &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| tensor_error("making noise", &e))?;
        tensors.try_into().map_err(|_| NodeError::msg("noise parts miscounted"))
    }
}

impl NodeValue for Noise {
    fn type_name(&self) -> &'static str {
        "NOISE"
    }
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// SAMPLER: a sampling algorithm chosen by name.
#[derive(Clone)]
pub struct SamplerChoice {
    pub sampler: Arc<dyn Sampler>,
}

impl std::fmt::Debug for SamplerChoice {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SamplerChoice").field("name", &self.sampler.name()).finish()
    }
}

impl NodeValue for SamplerChoice {
    fn type_name(&self) -> &'static str {
        "SAMPLER"
    }
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
    fn describe(&self) -> String {
        format!("SAMPLER {}", self.sampler.name())
    }
}

/// GUIDER: a model with its conditionings and guidance scale.
#[derive(Debug, Clone)]
pub struct Guider {
    pub model: Arc<DiffusionModel>,
    pub positive: Arc<Conditioning>,
    /// `None` for `BasicGuider`: the positive prediction alone.
    pub negative: Option<Arc<Conditioning>>,
    /// The CFG scale; for `LTXVDualCFGGuider` the video scale.
    pub cfg: f64,
    /// `LTXVDualCFGGuider`'s audio scale: the audio stream of an audio-video latent is guided with it and
    /// the video stream with `cfg`. `None` for the other guiders (one scale for everything).
    pub audio_cfg: Option<f64>,
}

impl NodeValue for Guider {
    fn type_name(&self) -> &'static str {
        "GUIDER"
    }
    fn byte_size(&self) -> usize {
        self.positive.byte_size() + self.negative.as_ref().map_or(0, |n| n.byte_size())
    }
    fn describe(&self) -> String {
        match self.audio_cfg {
            Some(audio_cfg) => format!("GUIDER video cfg {}, audio cfg {audio_cfg}", self.cfg),
            None => format!("GUIDER cfg {}{}", self.cfg, if self.negative.is_some() { "" } else { " (positive only)" }),
        }
    }
}
