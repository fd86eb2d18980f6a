//! Sampling maths: torch-compatible noise, sigma schedules and the samplers (guidance follows).

pub mod model_schedules;
pub mod samplers;
pub mod schedules;
pub mod torch_noise;
