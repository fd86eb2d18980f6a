//! A timing harness: one block of the real LTX-2 19B transformer (both streams, every attention) with
//! random weights built in memory, at 768×512×97 (latent 13×16×24 = 4992 video tokens), 101 audio tokens
//! and 1024 text tokens, as the released model runs it. `tools/bench/ltx2.py` times diffusers on the
//! same shapes. [`bench_ltx2_block_gguf`] times the same block read from a GGUF whose matrices are quantized,
//! as a ComfyUI-GGUF file of the model would store them.

use super::config::Ltx2TransformerConfig;
use super::model::{AvInputs, Ltx2Transformer, Perturbation};
use crate::bench_support::{process_cpu_time, random_var_builder};
use crate::block_stack::BlockHolding;
use crate::weights::WeightSource;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use std::sync::{Arc, Mutex};
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
    let model = Ltx2Transformer::new(&config, &random_var_builder(dtype, device)?, BlockHolding::Resident)?;
    let build = start.elapsed();
    time_forwards(&model, &config, [frames, height, width], audio_tokens, text_tokens, runs, build, device)
}

/// [`bench_ltx2_block`] with the block read from a GGUF file (written to the system's temporary folder and
/// removed afterwards) whose block matrices are stored as `ty` where their rows are whole quantization blocks,
/// everything else F32, as a ComfyUI-GGUF file keeps them: the linear layers multiply through the quantized
/// blocks. `build` is the time to quantize, write and load.
pub fn bench_ltx2_block_gguf(
    layers: usize,
    latent: [usize; 3],
    audio_tokens: usize,
    text_tokens: usize,
    runs: usize,
    ty: GgmlDType,
    device: &Device,
) -> Result<Ltx2BenchReport> {
    let config = Ltx2TransformerConfig { num_layers: layers, ..Ltx2TransformerConfig::ltx2_19b() };
    let start = Instant::now();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { inner: random_var_builder(DType::F32, &Device::Cpu)?, tensors: recorded.clone() };
    drop(Ltx2Transformer::new(
        &config,
        &VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu),
        BlockHolding::Resident,
    )?);
    let tensors = std::mem::take(&mut *recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let path = std::env::temp_dir().join(format!("kinograph-bench-{}-{ty:?}.gguf", std::process::id()));
    let written = write_gguf(&path, &tensors, ty);
    drop(tensors);
    let loaded = written.and_then(|()| {
        let source = Arc::new(WeightSource::open(&[&path]).map_err(|e| candle_core::Error::Msg(e.to_string()))?);
        Ltx2Transformer::new(&config, &source.var_builder("", DType::F32, device), BlockHolding::Resident)
    });
    let _ = std::fs::remove_file(&path);
    let model = loaded?;
    let build = start.elapsed();
    time_forwards(&model, &config, latent, audio_tokens, text_tokens, runs, build, device)
}

/// A weight backend that serves what `inner` serves and keeps a copy of every tensor it served, by name.
struct Recorder {
    inner: VarBuilder<'static>,
    tensors: Arc<Mutex<Vec<(String, Tensor)>>>,
}

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(&self, shape: Shape, name: &str, _: candle_nn::Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let tensor = self.inner.get(shape, name)?.to_dtype(dtype)?.to_device(device)?;
        self.tensors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name.to_string(), tensor.clone()));
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("recorded random weights need a shape for '{name}'")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Writes `tensors` as a GGUF: matrices of the blocks whose rows are whole blocks of `ty` quantized, the rest F32.
fn write_gguf(path: &std::path::Path, tensors: &[(String, Tensor)], ty: GgmlDType) -> Result<()> {
    let mut quantized = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let matrix = name.starts_with("transformer_blocks.")
            && tensor.rank() == 2
            && !name.contains("scale_shift_table")
            && tensor.dims()[1] % ty.block_size() == 0;
        quantized.push((name.as_str(), QTensor::quantize(tensor, if matrix { ty } else { GgmlDType::F32 })?));
    }
    let architecture = gguf_file::Value::String("ltxv".into());
    let metadata = [("general.architecture", &architecture)];
    let refs: Vec<(&str, &QTensor)> = quantized.iter().map(|(name, tensor)| (*name, tensor)).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf_file::write(&mut file, &metadata, &refs)
}

/// Times `runs` forward passes of `model` on random inputs of the given sizes.
#[allow(clippy::too_many_arguments)]
fn time_forwards(
    model: &Ltx2Transformer,
    config: &Ltx2TransformerConfig,
    [frames, height, width]: [usize; 3],
    audio_tokens: usize,
    text_tokens: usize,
    runs: usize,
    build: Duration,
    device: &Device,
) -> Result<Ltx2BenchReport> {
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
