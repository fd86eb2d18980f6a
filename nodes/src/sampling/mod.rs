//! Sampling maths: torch-compatible noise (schedules, samplers and guidance follow).

pub mod noise;
