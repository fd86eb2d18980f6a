//! Sampling maths: torch-compatible noise and sigma schedules (samplers and guidance follow).

pub mod model_schedules;
pub mod noise;
pub mod schedules;
