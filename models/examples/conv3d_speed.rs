//! Times the 3×3×3 convs at the 0.9.5 decoder's shapes (latent 3×4×6), so that kernel changes can be
//! compared without a whole decode, then decodes a 3×4×6 latent with the 0.9.0, 0.9.1 and 0.9.5
//! decoders (random weights), whole and streamed one or two latent frames at a time (as the `VAEDecode`
//! node does for longer latents). Prints wall time and process CPU time (the latter is steadier when
//! other work shares the cores).
//!
//!     cargo run --release -p kinograph-models --example conv3d_speed
//!
//! `CONV_CHANNELS=128` times only that conv layer; `DECODERS=0` skips the decodes.

use candle_core::{DType, Device, Tensor};
use kinograph_models::bench_support::{process_cpu_time, random_var_builder};
use kinograph_models::ltxv::vae::config::VaeConfig;
use kinograph_models::ltxv::vae::conv3d::{CausalConv3d, SpatialPadding};
use kinograph_models::ltxv::vae::decoder::Decoder;
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::streaming;
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let device = Device::Cpu;
    let vb = random_var_builder(DType::F32, &device)?;
    let shapes = [(128, [17, 32, 48]), (256, [9, 16, 24]), (512, [5, 8, 12]), (1024, [3, 4, 6])];
    let mut total = 0.0;
    // `CONV_CHANNELS=128` times only that layer (for `perf stat`).
    let only: Option<usize> = std::env::var("CONV_CHANNELS").ok().and_then(|v| v.parse().ok());
    for (index, (channels, [frames, height, width])) in shapes.into_iter().enumerate() {
        if only.is_some_and(|only| only != channels) {
            continue;
        }
        let conv = CausalConv3d::new(channels, channels, 3, [1, 1, 1], SpatialPadding::Zeros, &vb.pp(index))?;
        let x = Tensor::randn(0f32, 1f32, (1, channels, frames, height, width), &device)?;
        conv.forward(&x, false)?;
        let runs = 6;
        let mut best = f64::INFINITY;
        let cpu = process_cpu_time();
        for _ in 0..runs {
            let start = Instant::now();
            conv.forward(&x, false)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        let cpu_per_run = match (process_cpu_time(), cpu) {
            (Some(end), Some(start)) => end.saturating_sub(start).as_secs_f64() / f64::from(runs),
            _ => f64::NAN,
        };
        let flops = 2.0 * (channels * channels * 27 * frames * height * width) as f64;
        total += best * 10.0;
        println!(
            "conv {channels:4} ch at {frames}x{height}x{width}: {best:.4} s wall ({:.0} GFLOP/s), cpu {cpu_per_run:.3} s per run",
            flops / best / 1e9
        );
    }
    println!("ten convs per stage: {total:.3} s");
    if std::env::var("DECODERS").as_deref() != Ok("0") {
        for (name, config) in [("0.9.0", VaeConfig::v090()), ("0.9.1", VaeConfig::v091()), ("0.9.5", VaeConfig::v095())]
        {
            time_decoder(name, &config, &vb)?;
        }
    }
    Ok(())
}

/// Decodes a random 3×4×6 latent twice and prints the faster run.
fn time_decoder(name: &str, config: &VaeConfig, vb: &candle_nn::VarBuilder<'_>) -> candle_core::Result<()> {
    let device = Device::Cpu;
    let decoder = Decoder::new(config, &vb.pp(name).pp("decoder"))?;
    let latent = Tensor::randn(0f32, 1f32, (1, config.latent_channels, 3, 4, 6), &device)?;
    let inputs = decoder.prepare(1, 4, 6, Some(0.05), &mut ZeroNoise, &device)?;
    let mut best = (f64::INFINITY, f64::NAN);
    for _ in 0..2 {
        let cpu = process_cpu_time();
        let start = Instant::now();
        decoder.forward(&latent, &inputs, None)?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (process_cpu_time(), cpu) {
            (Some(end), Some(start)) => end.saturating_sub(start).as_secs_f64(),
            _ => f64::NAN,
        };
        if wall < best.0 {
            best = (wall, cpu);
        }
    }
    println!("decoder {name}, latent 3x4x6: {:.3} s wall, cpu {:.2} s", best.0, best.1);
    // The VAEDecode node streams the latent through the decoder a few frames at a time.
    for chunk in [1, 2] {
        let start = Instant::now();
        streaming::decode_chunked(&decoder, &latent, &inputs, chunk)?;
        println!("  streamed {chunk} latent frame(s) at a time: {:.3} s wall", start.elapsed().as_secs_f64());
    }
    Ok(())
}
