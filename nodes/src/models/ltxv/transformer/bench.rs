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
        // A copy, so that each weight has its own memory as a loaded one would (a view of the shared pool
        // would keep every matrix in cache and flatter the timing).
        values.narrow(0, 0, count)?.reshape(shape)?.to_dtype(dtype)?.to_device(device)?.copy()
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
    let mut output_shape = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = model.forward(&hidden, &text, Some(&mask), &timestep, &positions)?;
        output_shape = out.dims().to_vec();
        forwards.push(start.elapsed());
    }
    Ok(BenchReport { build, forwards, output_shape })
}
