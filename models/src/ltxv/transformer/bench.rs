//! A timing harness: the real 2B transformer with random weights built in memory, run once at the
//! 512×768×9 size (latent 2×16×24 = 768 tokens) with 128 text tokens. `tools/bench/transformer.py` times
//! diffusers on the same shapes.

use super::config::LtxvTransformerConfig;
use super::model::LtxvTransformer;
use super::rope::RopePositions;
use crate::bench_support::{process_cpu_time, random_var_builder};
use candle_core::{DType, Device, Result, Tensor};
use std::time::{Duration, Instant};

/// Timings of [`bench_2b_forward`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Building the random 2B model.
    pub build: Duration,
    /// Each forward pass, in order (the first includes warm-up effects).
    pub forwards: Vec<Duration>,
    /// CPU time (user + system, all threads) of each forward pass, where the platform reports it (Linux).
    pub forward_cpu: Vec<Option<Duration>>,
    /// Shape of the output.
    pub output_shape: Vec<usize>,
}

/// Builds the 2B transformer with random weights and times `runs` forward passes at latent
/// `frames × height × width` (2 × 16 × 24 for 512×768×9) with `text_tokens` text tokens, batch 1, f32.
pub fn bench_2b_forward(
    frames: usize,
    height: usize,
    width: usize,
    text_tokens: usize,
    runs: usize,
    device: &Device,
) -> Result<BenchReport> {
    let config = LtxvTransformerConfig::ltxv_2b();
    let start = Instant::now();
    let model = LtxvTransformer::new(&config, &random_var_builder(DType::F32, device)?)?;
    let build = start.elapsed();

    let tokens = frames * height * width;
    let hidden = Tensor::randn(0f32, 1.0, (1, tokens, config.in_channels), device)?;
    let text = Tensor::randn(0f32, 1.0, (1, text_tokens, config.caption_channels), device)?;
    let mask = Tensor::ones((1, text_tokens), DType::F32, device)?;
    let timestep = Tensor::new(&[500f32], device)?;
    let positions = RopePositions::grid(frames, height, width, 25.0);
    let mut forwards = Vec::with_capacity(runs);
    let mut forward_cpu = Vec::with_capacity(runs);
    let mut output_shape = Vec::new();
    for _ in 0..runs {
        let cpu_start = process_cpu_time();
        let start = Instant::now();
        let out = model.forward(&hidden, &text, Some(&mask), &timestep, &positions)?;
        output_shape = out.dims().to_vec();
        forwards.push(start.elapsed());
        forward_cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start)));
    }
    Ok(BenchReport { build, forwards, forward_cpu, output_shape })
}
