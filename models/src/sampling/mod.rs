//! Sampling maths: torch-compatible noise, sigma schedules, the samplers and LTX-2's multimodal guidance.

pub mod model_schedules;
pub mod multimodal_guidance;
pub mod samplers;
pub mod schedules;
pub mod torch_noise;
