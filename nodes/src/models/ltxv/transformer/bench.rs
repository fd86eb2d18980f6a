//! A timing harness: the real 2B transformer with random weights built in memory, run once at the
//! 512×768×9 size (latent 2×16×24 = 768 tokens) with 128 text tokens. `tools/bench/transformer.py` times
//! diffusers on the same shapes.

use super::config::LtxvTransformerConfig;
use super::loading::WeightLayout;
use super::model::LtxvTransformer;
use super::rope::RopePositions;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use std::time::{Duration, Instant};

/// Values in the shared pool of random numbers that every weight is cut from.
const POOL_SIZE: usize = 1 << 22;

/// A weight backend that serves any requested shape with N(0, 0.02²) values: norms and tables need no
/// special values for timing, and cutting from one pool is much faster than drawing 1.9 billion numbers.
struct RandomBackend {
    pool: Tensor,
}

impl candle_nn::var_builder::SimpleBackend for RandomBackend {
    fn get(&self, shape: Shape, _: &str, _: candle_nn::Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let count = shape.elem_count();
        let repeats = count.div_ceil(POOL_SIZE);
        let values = if repeats > 1 { self.pool.repeat(repeats)? } else { self.pool.clone() };
        // Copy out exactly `count` values, so that each weight has its own memory of its own size, as a
        // loaded one would (a view of the shared pool would keep every matrix in cache and flatter the
        // timing, and a copy of the whole pool would waste 16 MB per bias).
        let values = values.narrow(0, 0, count)?.to_vec1::<f32>()?;
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape for '{name}'")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A `VarBuilder` over random weights (any name, any shape).
pub fn random_var_builder(device: &Device) -> Result<VarBuilder<'static>> {
    let pool = Tensor::randn(0f32, 0.02, POOL_SIZE, &Device::Cpu)?;
    Ok(VarBuilder::from_backend(Box::new(RandomBackend { pool }), DType::F32, device.clone()))
}

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
    let model = LtxvTransformer::new(&config, WeightLayout::Diffusers, &random_var_builder(device)?)?;
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

/// User + system CPU time of this process from `/proc/self/stat` (Linux; clock ticks of 10 ms), so that
/// timings taken while other work shares the cores can still be compared.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
