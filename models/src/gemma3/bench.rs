//! A timing harness: one decoder layer of Gemma 3 12B (3840 wide, 16 heads × 256, 8 key/value heads,
//! 15,360-wide MLP) with random weights built in memory, on `tokens` tokens. The vocabulary is cut to
//! 1024 entries: the embedding lookup costs nothing, and the full 262k × 3840 table would only take
//! memory. `tools/bench/ltx2.py` times transformers on the same shapes.

use super::config::Gemma3Config;
use super::model::Gemma3TextModel;
use crate::bench_support::{process_cpu_time, random_var_builder};
use candle_core::{DType, Device, Result, Tensor};
use std::time::{Duration, Instant};

/// Timings of [`bench_gemma_layers`]: build time, then wall and CPU time of each encode.
#[derive(Debug, Clone)]
pub struct GemmaBenchReport {
    /// Building the random model.
    pub build: Duration,
    /// Each encode, in order.
    pub forwards: Vec<Duration>,
    /// CPU time of each encode (Linux).
    pub forward_cpu: Vec<Option<Duration>>,
}

/// Builds `layers` Gemma 3 12B layers (the first sliding, every sixth full) stored as `dtype` and times
/// `runs` encodes of `tokens` tokens returning every hidden state.
pub fn bench_gemma_layers(
    layers: usize,
    tokens: usize,
    runs: usize,
    dtype: DType,
    device: &Device,
) -> Result<GemmaBenchReport> {
    let mut config = Gemma3Config::gemma3_12b();
    config.vocab_size = 1024;
    config.num_hidden_layers = layers;
    config.layer_types = Gemma3Config::pattern(layers, 6);
    let start = Instant::now();
    let model =
        Gemma3TextModel::new(&config, &random_var_builder(dtype, device)?, crate::block_stack::BlockHolding::Resident)?;
    let build = start.elapsed();
    let ids: Vec<u32> = (0..tokens).map(|i| (i * 7 % config.vocab_size) as u32).collect();
    let ids = Tensor::from_vec(ids, (1, tokens), device)?;
    let mut forwards = Vec::with_capacity(runs);
    let mut forward_cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_start = process_cpu_time();
        let start = Instant::now();
        let states = model.hidden_states(&ids, None)?;
        debug_assert_eq!(states.len(), layers + 1);
        forwards.push(start.elapsed());
        forward_cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start)));
    }
    Ok(GemmaBenchReport { build, forwards, forward_cpu })
}
