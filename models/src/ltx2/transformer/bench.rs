//! A timing harness: one block of the real LTX-2 19B transformer (both streams, every attention) with
//! random weights built in memory, at 768×512×97 (latent 13×16×24 = 4992 video tokens), 101 audio tokens
//! and 1024 text tokens, as the released model runs it. `tools/bench/ltx2.py` times diffusers on the
//! same shapes.

use super::config::Ltx2TransformerConfig;
use super::model::{AvInputs, Ltx2Transformer, Perturbation};
use crate::bench_support::{process_cpu_time, random_var_builder};
use candle_core::{DType, Device, Result, Tensor};
use std::time::{Duration, Instant};

/// Timings of [`bench_ltx2_block`].
#[derive(Debug, Clone)]
pub struct Ltx2BenchReport {
    /// Building the random one-block model.
    pub build: Duration,
    /// Each forward pass, in order.
    pub forwards: Vec<Duration>,
    /// CPU time of each forward pass (Linux).
    pub forward_cpu: Vec<Option<Duration>>,
    /// Video and audio output shapes.
    pub output_shapes: (Vec<usize>, Vec<usize>),
}

/// Builds the 19B configuration with `layers` blocks from random weights (stored as `dtype`) and times
/// `runs` forward passes at latent `frames × height × width`, `audio_tokens` audio latents and
/// `text_tokens` text tokens, batch 1.
#[allow(clippy::too_many_arguments)]
pub fn bench_ltx2_block(
    layers: usize,
    [frames, height, width]: [usize; 3],
    audio_tokens: usize,
    text_tokens: usize,
    runs: usize,
    dtype: DType,
    device: &Device,
) -> Result<Ltx2BenchReport> {
    let config = Ltx2TransformerConfig { num_layers: layers, ..Ltx2TransformerConfig::ltx2_19b() };
    let start = Instant::now();
    let model = Ltx2Transformer::new(&config, &random_var_builder(dtype, device)?, false)?;
    let build = start.elapsed();

    let tokens = frames * height * width;
    let video = Tensor::randn(0f32, 1.0, (1, tokens, config.in_channels), device)?;
    let audio = Tensor::randn(0f32, 1.0, (1, audio_tokens, config.audio_in_channels), device)?;
    let video_context = Tensor::randn(0f32, 1.0, (1, text_tokens, config.caption_channels), device)?;
    let audio_context = Tensor::randn(0f32, 1.0, (1, text_tokens, config.caption_channels), device)?;
    let t = Tensor::new(&[500f32], device)?;
    let video_positions = model.video_positions(1, frames, height, width, 24.0)?;
    let audio_positions = model.audio_positions(1, audio_tokens)?;
    let inputs = AvInputs::at_one_timestep(
        (&video, &audio),
        (&video_context, &audio_context),
        &t,
        (&video_positions, &audio_positions),
    );
    let mut forwards = Vec::with_capacity(runs);
    let mut forward_cpu = Vec::with_capacity(runs);
    let mut output_shapes = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let cpu_start = process_cpu_time();
        let start = Instant::now();
        let (video_out, audio_out) = model.forward(&inputs, &Perturbation::default())?;
        output_shapes = (video_out.dims().to_vec(), audio_out.dims().to_vec());
        forwards.push(start.elapsed());
        forward_cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start)));
    }
    Ok(Ltx2BenchReport { build, forwards, forward_cpu, output_shapes })
}
