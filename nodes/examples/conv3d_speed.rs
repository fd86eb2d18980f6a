//! Times the decoder's 3×3×3 convs at the 0.9.5 decoder's shapes (latent 3×4×6), and the raw GEMM
//! behind them, so that kernel changes can be compared without a whole decode.
//!
//!     cargo run --release -p kinograph-nodes --example conv3d_speed

use candle_core::{DType, Device, Tensor};
use kinograph_nodes::models::bench::{process_cpu_time, random_var_builder};
use kinograph_nodes::models::ltxv::vae::conv3d::{CausalConv3d, SpatialPadding};
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
    Ok(())
}
