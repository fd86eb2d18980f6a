//! `kinograph bench`: times the model code on random weights of the real shapes, built in memory (no
//! files), and prints JSON with seconds and peak memory. `tools/bench/` times the PyTorch reference on
//! the same shapes so both can be run side by side (`tools/bench/compare.py`).

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use kinograph_models::bench_support::{peak_resident_bytes, process_cpu_time, reset_peak_resident};
use kinograph_models::gemma3::bench::bench_gemma_layers;
use kinograph_models::ltx2::transformer::bench::bench_ltx2_block;
use kinograph_models::ltxv::transformer::bench::bench_2b_forward;
use kinograph_models::ltxv::vae::config::VaeConfig;
use kinograph_models::ltxv::vae::decoder::Decoder;
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::t5::{T5Config, T5Encoder, T5Tokenizer, TokenLength};
use serde_json::{Value as Json, json};
use std::time::Instant;

/// A part of the model code to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The LTX-Video 2B transformer forward.
    Transformer,
    /// The T5-XXL text encoder on 128 tokens.
    T5,
    /// The 0.9.5 VAE decoder.
    Vae,
    /// One block of the LTX-2 19B audio-video transformer.
    Ltx2Block,
    /// One layer of Gemma 3 12B, LTX-2's text encoder.
    GemmaLayer,
    /// LTX-2's audio VAE decoder and both vocoders on 5 s of audio.
    Audio,
    /// GGUF linear layers of a transformer block's size (4096 → 4096 and 4096 → 16384), each quantized
    /// type through candle's quantized matmul and through band-wise dequantization, against f32.
    GgufLinear,
    /// One block of the LTX-2 19B transformer with f32 weights and, in the same run, read from a GGUF whose
    /// block matrices are each of `--gguf-types` (as ComfyUI-GGUF stores them), with the speed-up over f32.
    Ltx2BlockGguf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Parts to time, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Transformer latent size FRAMES,HEIGHT,WIDTH; 2,16,24 is a 512×768 video of 9 frames (768 tokens).
    #[arg(long, value_name = "F,H,W", default_value = "2,16,24", value_parser = parse_triple)]
    pub transformer_latent: [usize; 3],
    /// Text tokens given to the transformer.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub text_tokens: usize,
    /// VAE latent size FRAMES,HEIGHT,WIDTH for the 0.9.5 decoder (3,4,6 decodes to 17×128×192).
    #[arg(long, value_name = "F,H,W", default_value = "3,4,6", value_parser = parse_triple)]
    pub vae_latent: [usize; 3],
    /// T5 blocks to build (24 is T5-XXL; fewer for a quick look on a small machine).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub t5_layers: usize,
    /// LTX-2 latent size FRAMES,HEIGHT,WIDTH; 13,16,24 is 768×512×97 (4992 video tokens).
    #[arg(long, value_name = "F,H,W", default_value = "13,16,24", value_parser = parse_triple)]
    pub ltx2_latent: [usize; 3],
    /// LTX-2 audio latents (101 for 97 frames at 24 fps).
    #[arg(long, value_name = "N", default_value_t = 101)]
    pub audio_tokens: usize,
    /// LTX-2 text tokens (the connectors always give 1024).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub ltx2_text_tokens: usize,
    /// Tokens of the Gemma 3 layer benchmark.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub gemma_tokens: usize,
    /// Keep the LTX-2 and Gemma weights in bf16 (as the released files store them) instead of f32.
    #[arg(long)]
    pub bf16: bool,
    /// Token counts of the GGUF linear benchmark, comma-separated.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_values_t = [256, 1024])]
    pub gguf_tokens: Vec<usize>,
    /// Weight types of the GGUF linear benchmark (ggml names, comma-separated).
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',', default_values = ["Q4_K", "Q8_0", "Q6_K"])]
    pub gguf_types: Vec<String>,
    /// Timed runs of each part after building it (the best is reported too).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub runs: usize,
}

fn parse_triple(text: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|part| part.trim().parse::<usize>().map_err(|_| format!("'{part}' is not a whole number")))
        .collect::<std::result::Result<_, _>>()?;
    match parts.as_slice() {
        [a, b, c] if *a > 0 && *b > 0 && *c > 0 => Ok([*a, *b, *c]),
        _ => Err(format!("'{text}': expected three positive numbers such as 2,16,24")),
    }
}

pub fn run(args: &BenchArgs) -> u8 {
    match bench(args) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).expect("JSON serialises"));
            0
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            crate::EXIT_RUNTIME
        }
    }
}

fn bench(args: &BenchArgs) -> Result<Json> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.gguf_tokens.contains(&0) {
        bail!("--gguf-tokens must be positive token counts such as 256,1024");
    }
    let device = Device::Cpu;
    let wanted = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), json!({"threads": candle_core::utils::get_num_threads(), "avx512": avx512()}));
    if wanted(Part::Transformer) {
        report.insert("transformer".into(), transformer(args, &device)?);
    }
    if wanted(Part::Vae) {
        report.insert("vae".into(), vae(args, &device)?);
    }
    if wanted(Part::T5) {
        report.insert("t5".into(), t5(args, &device)?);
    }
    if wanted(Part::Ltx2Block) {
        report.insert("ltx2_block".into(), ltx2_block(args, &device)?);
    }
    if wanted(Part::GemmaLayer) {
        report.insert("gemma_layer".into(), gemma_layer(args, &device)?);
    }
    if wanted(Part::Audio) {
        report.insert("audio".into(), audio(args, &device)?);
    }
    if wanted(Part::GgufLinear) {
        report.insert("gguf_linear".into(), gguf_linear(args, &device)?);
    }
    // Only on request: it builds the block once per type (about a minute each on two cores).
    if args.only.contains(&Part::Ltx2BlockGguf) {
        report.insert("ltx2_block_gguf".into(), ltx2_block_gguf(args, &device)?);
    }
    Ok(Json::Object(report))
}

fn transformer(args: &BenchArgs, device: &Device) -> Result<Json> {
    let [frames, height, width] = args.transformer_latent;
    reset_peak_resident();
    let measured = bench_2b_forward(frames, height, width, args.text_tokens, args.runs, device)
        .context("timing the 2B transformer")?;
    let seconds: Vec<f64> = measured.forwards.iter().map(std::time::Duration::as_secs_f64).collect();
    let cpu: Vec<Option<f64>> = measured.forward_cpu.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
    Ok(json!({
        "model": "LTX-Video 2B transformer, f32",
        "latent": [frames, height, width],
        "tokens": frames * height * width,
        "text_tokens": args.text_tokens,
        "build_seconds": measured.build.as_secs_f64(),
        "seconds": seconds,
        "best_seconds": best(&seconds),
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_resident_bytes(),
    }))
}

fn weight_dtype(args: &BenchArgs) -> (DType, &'static str) {
    if args.bf16 { (DType::BF16, "bf16") } else { (DType::F32, "f32") }
}

fn ltx2_block(args: &BenchArgs, device: &Device) -> Result<Json> {
    let (dtype, dtype_name) = weight_dtype(args);
    reset_peak_resident();
    let measured =
        bench_ltx2_block(1, args.ltx2_latent, args.audio_tokens, args.ltx2_text_tokens, args.runs, dtype, device)
            .context("timing the LTX-2 block")?;
    let seconds: Vec<f64> = measured.forwards.iter().map(std::time::Duration::as_secs_f64).collect();
    let cpu: Vec<Option<f64>> = measured.forward_cpu.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
    let [frames, height, width] = args.ltx2_latent;
    Ok(json!({
        "model": format!("LTX-2 19B transformer, one block (both streams), weights {dtype_name}, compute f32"),
        "latent": [frames, height, width],
        "video_tokens": frames * height * width,
        "audio_tokens": args.audio_tokens,
        "text_tokens": args.ltx2_text_tokens,
        "build_seconds": measured.build.as_secs_f64(),
        "seconds": seconds,
        "best_seconds": best(&seconds),
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_resident_bytes(),
    }))
}

fn gemma_layer(args: &BenchArgs, device: &Device) -> Result<Json> {
    let (dtype, dtype_name) = weight_dtype(args);
    reset_peak_resident();
    let measured =
        bench_gemma_layers(1, args.gemma_tokens, args.runs, dtype, device).context("timing the Gemma layer")?;
    let seconds: Vec<f64> = measured.forwards.iter().map(std::time::Duration::as_secs_f64).collect();
    let cpu: Vec<Option<f64>> = measured.forward_cpu.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
    Ok(json!({
        "model": format!("Gemma 3 12B, one layer, weights {dtype_name}, compute f32"),
        "tokens": args.gemma_tokens,
        "build_seconds": measured.build.as_secs_f64(),
        "seconds": seconds,
        "best_seconds": best(&seconds),
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_resident_bytes(),
    }))
}

/// Wall seconds, CPU seconds (where the platform reports them) and the last output's shape.
type Timings = (Vec<f64>, Vec<Option<f64>>, Vec<usize>);

/// Times `run` `runs` times.
fn timed(runs: usize, run: &dyn Fn() -> candle_core::Result<Tensor>) -> Result<Timings> {
    let (mut seconds, mut cpu, mut shape) = (Vec::with_capacity(runs), Vec::with_capacity(runs), Vec::new());
    for _ in 0..runs {
        let cpu_start = process_cpu_time();
        let started = Instant::now();
        let out = run()?;
        seconds.push(started.elapsed().as_secs_f64());
        cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start).as_secs_f64()));
        shape = out.dims().to_vec();
    }
    Ok((seconds, cpu, shape))
}

fn audio(args: &BenchArgs, device: &Device) -> Result<Json> {
    use kinograph_models::ltx2::audio::{
        AudioVae, AudioVaeConfig, BweConfig, GeneratorConfig, VaeParts, Vocoder, VocoderConfig,
    };
    reset_peak_resident();
    let builder = kinograph_models::bench_support::random_var_builder(DType::F32, device)?;
    // 5 s of audio: 126 latents at 25 per second, 501 mel frames at 100 per second.
    let latent = Tensor::randn(0f32, 1f32, (1, 8, 126, 16), device)?;
    let mel = Tensor::randn(-4f32, 1f32, (1, 2, 501, 64), device)?;
    let mut report = serde_json::Map::new();
    let vae = AudioVae::new(&AudioVaeConfig::ltx2(), VaeParts::Decoder, &builder.pp("audio_vae"))
        .context("building the audio VAE decoder")?;
    let (seconds, cpu, shape) = timed(args.runs, &|| vae.decode(&latent))?;
    report.insert(
        "vae_decode".into(),
        json!({"latent": [1, 8, 126, 16], "mel": shape, "seconds": seconds, "best_seconds": best(&seconds), "cpu_seconds": cpu}),
    );
    for (name, config) in [
        ("vocoder_20", VocoderConfig::Hifigan(GeneratorConfig::ltx2())),
        ("vocoder_23_bwe", VocoderConfig::WithBwe(BweConfig::ltx23())),
    ] {
        let vocoder = Vocoder::new(&config, &builder.pp(name)).with_context(|| format!("building {name}"))?;
        let (seconds, cpu, shape) = timed(args.runs, &|| vocoder.forward(&mel))?;
        report.insert(
            name.into(),
            json!({"sample_rate": vocoder.sample_rate(), "waveform": shape, "seconds": seconds,
                   "best_seconds": best(&seconds), "cpu_seconds": cpu}),
        );
    }
    report.insert("model".into(), json!("LTX-2 audio VAE decoder and vocoders, 5 s of audio, f32"));
    report.insert("peak_rss_bytes".into(), json!(peak_resident_bytes()));
    Ok(Json::Object(report))
}

fn vae(args: &BenchArgs, device: &Device) -> Result<Json> {
    let [frames, height, width] = args.vae_latent;
    reset_peak_resident();
    let started = Instant::now();
    let builder = kinograph_models::bench_support::random_var_builder(DType::F32, device)?;
    let config = VaeConfig::v095();
    let decoder = Decoder::new(&config, &builder.pp("decoder")).context("building the 0.9.5 decoder")?;
    let build = started.elapsed().as_secs_f64();
    let latent = Tensor::randn(0f32, 1f32, (1, 128, frames, height, width), device)?;
    let inputs = decoder.prepare(1, height, width, Some(0.05), &mut ZeroNoise, device)?;
    let mut seconds = Vec::with_capacity(args.runs);
    let mut cpu = Vec::with_capacity(args.runs);
    let mut video_shape = Vec::new();
    for _ in 0..args.runs {
        let cpu_start = process_cpu_time();
        let started = Instant::now();
        let video = decoder.forward(&latent, &inputs, None)?;
        seconds.push(started.elapsed().as_secs_f64());
        cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start).as_secs_f64()));
        video_shape = video.dims().to_vec();
    }
    Ok(json!({
        "model": "LTX-Video 0.9.5 VAE decoder, f32, decode timestep 0.05",
        "latent": [frames, height, width],
        "video": video_shape,
        "build_seconds": build,
        "seconds": seconds,
        "best_seconds": best(&seconds),
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_resident_bytes(),
    }))
}

fn t5(args: &BenchArgs, device: &Device) -> Result<Json> {
    reset_peak_resident();
    let config = T5Config { num_layers: args.t5_layers, ..T5Config::v1_1_xxl() };
    let started = Instant::now();
    let builder = kinograph_models::bench_support::random_var_builder(DType::BF16, device)?;
    let encoder = T5Encoder::new(&builder, &config).context("building T5-XXL with random weights")?;
    let build = started.elapsed().as_secs_f64();
    let tokens = T5Tokenizer::new()?.encode(
        "A woman with long brown hair smiles at the camera in warm evening light.",
        TokenLength::AtLeast(128),
    )?;
    let (ids, mask) = tokens.to_tensors(device)?;
    let mut seconds = Vec::with_capacity(args.runs);
    let mut cpu = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let cpu_start = process_cpu_time();
        let started = Instant::now();
        let hidden = encoder.forward(&ids, Some(&mask))?;
        seconds.push(started.elapsed().as_secs_f64());
        cpu.push(process_cpu_time().zip(cpu_start).map(|(end, start)| end.saturating_sub(start).as_secs_f64()));
        debug_assert_eq!(hidden.dims(), [1, ids.dims()[1], config.d_model]);
    }
    Ok(json!({
        "model": "T5 v1.1 XXL encoder, bf16 weights, f32 compute",
        "layers": args.t5_layers,
        "parameters": config.parameter_count(),
        "tokens": ids.dims()[1],
        "build_seconds": build,
        "seconds": seconds,
        "best_seconds": best(&seconds),
        "cpu_seconds": cpu,
        "peak_rss_bytes": peak_resident_bytes(),
    }))
}

fn ltx2_block_gguf(args: &BenchArgs, device: &Device) -> Result<Json> {
    use kinograph_models::gguf::GgmlType;
    use kinograph_models::ltx2::transformer::bench::bench_ltx2_block_gguf;
    let [frames, height, width] = args.ltx2_latent;
    let timing = |measured: kinograph_models::ltx2::transformer::bench::Ltx2BenchReport| {
        let seconds: Vec<f64> = measured.forwards.iter().map(std::time::Duration::as_secs_f64).collect();
        let cpu: Vec<Option<f64>> = measured.forward_cpu.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
        (
            best(&seconds),
            json!({
                "build_seconds": measured.build.as_secs_f64(),
                "seconds": seconds,
                "best_seconds": best(&seconds),
                "cpu_seconds": cpu,
                "peak_rss_bytes": peak_resident_bytes(),
            }),
        )
    };
    reset_peak_resident();
    let dense =
        bench_ltx2_block(1, args.ltx2_latent, args.audio_tokens, args.ltx2_text_tokens, args.runs, DType::F32, device)
            .context("timing the f32 LTX-2 block")?;
    let (dense_best, dense_json) = timing(dense);
    let mut weights = vec![json!({"weight": "F32", "timing": dense_json})];
    for name in &args.gguf_types {
        let ty = GgmlType::from_name(name).with_context(|| format!("--gguf-types: '{name}' is not a ggml type"))?;
        let candle = ty.candle_dtype().with_context(|| format!("--gguf-types: candle cannot quantize to {name}"))?;
        reset_peak_resident();
        let measured = bench_ltx2_block_gguf(
            1,
            args.ltx2_latent,
            args.audio_tokens,
            args.ltx2_text_tokens,
            args.runs,
            candle,
            device,
        )
        .with_context(|| format!("timing the {name} LTX-2 block"))?;
        let (quant_best, quant_json) = timing(measured);
        weights.push(json!({"weight": name, "timing": quant_json, "speedup_over_f32": dense_best / quant_best}));
    }
    Ok(json!({
        "model": "LTX-2 19B transformer, one block (both streams), compute f32; block matrices quantized as GGUF",
        "latent": [frames, height, width],
        "video_tokens": frames * height * width,
        "audio_tokens": args.audio_tokens,
        "text_tokens": args.ltx2_text_tokens,
        "weights": weights,
    }))
}

fn gguf_linear(args: &BenchArgs, device: &Device) -> Result<Json> {
    use kinograph_models::gguf::GgmlType;
    use kinograph_models::gguf::bench::bench_quant_linear;
    let types = args
        .gguf_types
        .iter()
        .map(|name| GgmlType::from_name(name).with_context(|| format!("--gguf-types: '{name}' is not a ggml type")))
        .collect::<Result<Vec<_>>>()?;
    let mut cases = Vec::new();
    for (outputs, inputs) in [(4096, 4096), (16384, 4096)] {
        for &tokens in &args.gguf_tokens {
            reset_peak_resident();
            let measured = bench_quant_linear(outputs, inputs, tokens, &types, args.runs, device)
                .with_context(|| format!("timing GGUF linears {inputs} → {outputs} on {tokens} tokens"))?;
            let timings: Vec<Json> = measured
                .timings
                .iter()
                .map(|timing| {
                    let seconds: Vec<f64> = timing.forwards.iter().map(std::time::Duration::as_secs_f64).collect();
                    let cpu: Vec<Option<f64>> = timing.forward_cpu.iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
                    json!({
                        "weight": if timing.kernel.is_some() { timing.ty.name() } else { "F32 (dense)".into() },
                        "kernel": timing.kernel.map(|kernel| format!("{kernel:?}")),
                        "seconds": seconds,
                        "best_seconds": best(&seconds),
                        "gflops": 2.0 * (outputs * inputs * tokens) as f64 / best(&seconds) / 1e9,
                        "cpu_seconds": cpu,
                        "relative_error": timing.relative_error,
                    })
                })
                .collect();
            let auto: serde_json::Map<String, Json> =
                measured.picks.iter().map(|(ty, kernel)| (ty.name(), json!(format!("{kernel:?}")))).collect();
            cases.push(json!({
                "inputs": inputs, "outputs": outputs, "tokens": tokens,
                "timings": timings, "auto_kernel": auto, "peak_rss_bytes": peak_resident_bytes(),
            }));
        }
    }
    Ok(json!({"model": "one linear layer, random N(0, 0.02²) weight, f32 activations", "cases": cases}))
}

/// Whether this processor has AVX-512 (gemm's `x86-v4` kernels use it when present).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn best(seconds: &[f64]) -> f64 {
    seconds.iter().copied().fold(f64::INFINITY, f64::min)
}
