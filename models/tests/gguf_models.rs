//! Diffusion models read from GGUF files in ComfyUI-GGUF's layout, their matrices kept as blocks: the tiny
//! LTX-Video and LTX-2 transformers of the other fixtures (`models/tests/data/gguf_models/`, written by the
//! `gguf` package: `tools/fixtures/make_gguf_model_fixtures.py`), and a wider LTX-Video transformer written here
//! as `Q4_K` and `Q6_K` with candle's GGUF writer (the package cannot make K-quants, and they need rows of 256).
//!
//! Each model's output is compared with the f32 model's (relative L2 error, printed) and with the output of
//! the same weights dequantized into an f32 safetensors file (which isolates the quantized kernels from the
//! quantization error itself).

use crate::compare::{assert_kernel_close, ltx2_data, max_abs_diff};
use crate::ltx2_transformer::{fixture_inputs, reference as ltx2_reference};
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::fp8::{LinearStorage, WeightStorage};
use kinograph_models::gguf::GgmlType;
use kinograph_models::lora::{KeyMap, LoraFile};
use kinograph_models::ltx2::transformer::{AvTimestepRouting, LoadOptions, Ltx2Transformer, Perturbation};
use kinograph_models::ltxv::transformer::{LtxvTransformer, RopePositions};
use kinograph_models::weights::WeightSource;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_models").join(name)
}

fn ltxv_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltxv").join(name)
}

fn open(path: &Path) -> Arc<WeightSource> {
    Arc::new(WeightSource::open(&[path]).unwrap())
}

/// `‖found − expected‖ / ‖expected‖`.
fn relative_error(found: &Tensor, expected: &Tensor) -> f32 {
    let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    (difference / expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()).sqrt()
}

/// Every tensor of `source` dequantized to f32 and saved as safetensors (names and `config` kept).
fn dequantized_copy(source: &WeightSource, folder: &Path) -> PathBuf {
    let tensors: HashMap<String, Tensor> =
        source.names().map(|name| (name.to_string(), source.load(name, DType::F32, &Device::Cpu).unwrap())).collect();
    let path = folder.join("dequantized.safetensors");
    let metadata = source.metadata("config").map(|config| [("config".to_string(), config.to_string())].into());
    safetensors::serialize_to_file(tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)), metadata, &path)
        .unwrap();
    path
}

fn run_ltxv(model: &LtxvTransformer) -> Tensor {
    let reference =
        candle_core::safetensors::load(ltxv_data("ref/transformer_global.safetensors"), &Device::Cpu).unwrap();
    model
        .forward(
            &reference["hidden_states"],
            &reference["encoder_hidden_states"],
            Some(&reference["encoder_attention_mask"]),
            &reference["timestep"],
            &RopePositions::grid(2, 3, 4, 25.0),
        )
        .unwrap()
}

fn storage_of(model: &LtxvTransformer, layer: &str) -> WeightStorage {
    model.linear_storage().unwrap().into_iter().find(|(name, _)| name == layer).unwrap().1
}

/// The tiny LTX-Video transformer from each file the `gguf` package wrote: block matrices kept in the file's
/// type, output equal to the dequantized weights' and close to the f32 model's.
#[test]
fn ltxv_gguf_files_keep_their_blocks_and_run_close_to_the_f32_model() {
    let f32_model = LtxvTransformer::load_file(&ltxv_data("single/ltxv-tiny-v095.safetensors"), &Device::Cpu).unwrap();
    let f32_output = run_ltxv(&f32_model);
    let cases = [
        ("ltxv_q8_0.gguf", WeightStorage::Gguf(GgmlType::Q8_0), 0.02),
        ("ltxv_q4_0.gguf", WeightStorage::Gguf(GgmlType::Q4_0), 0.15),
        ("ltxv_f16.gguf", WeightStorage::Dense(DType::F16), 0.002),
        ("ltxv_bf16.gguf", WeightStorage::Dense(DType::BF16), 0.01),
    ];
    let folder = tempfile::tempdir().unwrap();
    for (file, storage, limit) in cases {
        let source = open(&data(file));
        let model = LtxvTransformer::load(&source, &Device::Cpu).unwrap();
        assert_eq!(storage_of(&model, "transformer_blocks.1.ff.net.2"), storage, "{file}");
        // llama.cpp's patch keeps these in F16 in quantized files: widened at load like safetensors' f16.
        assert!(matches!(storage_of(&model, "proj_out"), WeightStorage::Dense(_)), "{file}");
        let output = run_ltxv(&model);
        let error = relative_error(&output, &f32_output);
        println!("{file}: relative L2 error against the f32 model {error:.3e} (limit {limit})");
        assert!(error < limit, "{file}: {error}");
        assert!(error > 0.0, "{file}: the output cannot equal the f32 model's exactly");

        let dequantized = LtxvTransformer::load_file(&dequantized_copy(&source, folder.path()), &Device::Cpu).unwrap();
        assert_kernel_close(&format!("{file} against its dequantized weights"), &output, &run_ltxv(&dequantized), 1e-5);
        // Widening at load gives the same model with every weight f32.
        let widened = LtxvTransformer::load_with_storage(&source, &Device::Cpu, LinearStorage::Widen).unwrap();
        assert_eq!(storage_of(&widened, "transformer_blocks.1.ff.net.2"), WeightStorage::Dense(DType::F32));
        assert_kernel_close(&format!("{file} widened at load"), &run_ltxv(&widened), &output, 1e-5);
    }
}

/// `Q8_0` blocks dequantize to exactly the `gguf` package's values, through a dense load and through the
/// quantized linear layer's own widening.
#[test]
fn q8_0_weights_dequantize_bit_for_bit_like_the_gguf_package() {
    let source = open(&data("ltxv_q8_0.gguf"));
    let expected = candle_core::safetensors::load(data("ltxv_q8_0_dequantized.safetensors"), &Device::Cpu).unwrap();
    assert!(expected.len() >= 12, "every block matrix of both blocks");
    let bits = |tensor: &Tensor| -> Vec<u32> {
        tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    let builder = source.var_builder("", DType::F32, &Device::Cpu);
    for (name, reference) in &expected {
        assert_eq!(source.ggml_type(name), Some(GgmlType::Q8_0), "{name}");
        assert_eq!(bits(&source.load(name, DType::F32, &Device::Cpu).unwrap()), bits(reference), "{name}");
        let (rows, columns) = reference.dims2().unwrap();
        let layer = name.strip_suffix(".weight").unwrap();
        let weight = kinograph_models::fp8::read_linear_weight(&builder.pp(layer), rows, columns).unwrap();
        assert_eq!(weight.storage(), WeightStorage::Gguf(GgmlType::Q8_0));
        assert_eq!(weight.bytes(), rows * columns / 32 * 34, "{name}: held as its blocks");
        assert_eq!(bits(&weight.widen().unwrap()), bits(reference), "{name}");
        assert_eq!(bits(&weight.widen_rows(1, 3).unwrap()), bits(&reference.narrow(0, 1, 3).unwrap()), "{name}");
    }
}

/// A LoRA on the `Q8_0` model (updates beside the blocks) computes what the LoRA computes on the dequantized
/// weights, as ComfyUI-GGUF applies LoRAs to the dequantized weight.
#[test]
fn a_lora_on_a_gguf_model_matches_the_lora_on_its_dequantized_weights() {
    let source = open(&data("ltxv_q8_0.gguf"));
    let model = LtxvTransformer::load(&source, &Device::Cpu).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let dequantized = LtxvTransformer::load_file(&dequantized_copy(&source, folder.path()), &Device::Cpu).unwrap();
    let layers = model.linear_layers().unwrap();
    let shapes: BTreeMap<String, (usize, usize)> = layers.iter().cloned().collect();
    let mut tensors = HashMap::new();
    for (index, layer) in
        ["transformer_blocks.0.attn1.to_q", "transformer_blocks.1.ff.net.0.proj", "proj_out"].into_iter().enumerate()
    {
        let (outputs, inputs) = shapes[layer];
        let scale = 0.2 + 0.1 * index as f64;
        let down = Tensor::randn(0f32, 1.0, (4, inputs), &Device::Cpu).unwrap().affine(scale, 0.0).unwrap();
        let up = Tensor::randn(0f32, 1.0, (outputs, 4), &Device::Cpu).unwrap().affine(scale, 0.0).unwrap();
        tensors.insert(format!("diffusion_model.{layer}.lora_down.weight"), down);
        tensors.insert(format!("diffusion_model.{layer}.lora_up.weight"), up);
    }
    let path = folder.path().join("lora.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let patches = LoraFile::open(&path).unwrap().patches(&KeyMap::diffusion_model(&layers), &[("unet", 0.8)]).unwrap();
    let patches = &patches.layers["unet"];
    assert_eq!(patches.len(), 3);
    let patched = model.with_patches(patches).unwrap();
    assert_eq!(storage_of(&patched, "transformer_blocks.0.attn1.to_q"), WeightStorage::Gguf(GgmlType::Q8_0));
    let output = run_ltxv(&patched);
    let expected = run_ltxv(&dequantized.with_patches(patches).unwrap());
    assert_kernel_close("LoRA on Q8_0 against LoRA on the dequantized weights", &output, &expected, 1e-5);
    let change = max_abs_diff(&output, &run_ltxv(&model));
    assert!(change > 1e-2, "the LoRA must change the output ({change})");
}

fn run_ltx2(model: &mut Ltx2Transformer) -> (Tensor, Tensor) {
    let r = ltx2_reference("transformer_20_t2v");
    model.set_av_routing(AvTimestepRouting::Own);
    model.set_v2a_after_a2v(false);
    let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
    let audio_positions = model.audio_positions(1, 5).unwrap();
    let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
    model.forward(&inputs, &Perturbation::default()).unwrap()
}

/// The tiny LTX-2 transformer as `Q8_0` (its 16-wide audio matrices F16): resident and streamed blocks give
/// the same output, the dequantized weights' output, and land close to the f32 model.
#[test]
fn ltx2_gguf_runs_resident_and_streamed_close_to_the_f32_model() {
    let source = open(&data("ltx2_q8_0.gguf"));
    let mut f32_model =
        Ltx2Transformer::load_file(&ltx2_data("transformer_20.safetensors"), &Device::Cpu, LoadOptions::default())
            .unwrap();
    let (f32_video, f32_audio) = run_ltx2(&mut f32_model);
    let folder = tempfile::tempdir().unwrap();
    let mut dequantized =
        Ltx2Transformer::load_file(&dequantized_copy(&source, folder.path()), &Device::Cpu, LoadOptions::default())
            .unwrap();
    let (expected_video, expected_audio) = run_ltx2(&mut dequantized);
    let mut outputs = Vec::new();
    for blocks in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let options = LoadOptions { blocks, ..LoadOptions::default() };
        let mut model = Ltx2Transformer::load(&source, &Device::Cpu, options).unwrap();
        assert_eq!(model.block_holding(), blocks);
        let (video, audio) = run_ltx2(&mut model);
        assert_kernel_close(&format!("Q8_0 video, {blocks:?}"), &video, &expected_video, 1e-5);
        assert_kernel_close(&format!("Q8_0 audio, {blocks:?}"), &audio, &expected_audio, 1e-5);
        let (video_error, audio_error) = (relative_error(&video, &f32_video), relative_error(&audio, &f32_audio));
        println!("LTX-2 Q8_0, {blocks:?}: relative L2 error video {video_error:.3e}, audio {audio_error:.3e}");
        assert!(video_error < 0.02 && audio_error < 0.02, "video {video_error}, audio {audio_error}");
        outputs.push((video, audio));
    }
    assert_eq!(max_abs_diff(&outputs[0].0, &outputs[1].0), 0.0, "streamed and resident video are identical");
    assert_eq!(max_abs_diff(&outputs[0].1, &outputs[1].1), 0.0, "streamed and resident audio are identical");
    // The blocks' video matrices are the file's blocks; the 16-wide audio ones stayed F16.
    let builder = source.var_builder("transformer_blocks.1", DType::F32, &Device::Cpu);
    let video = kinograph_models::fp8::read_linear_weight(&builder.pp("attn1").pp("to_q"), 32, 32).unwrap();
    let audio = kinograph_models::fp8::read_linear_weight(&builder.pp("audio_attn1").pp("to_q"), 16, 16).unwrap();
    assert_eq!(
        (video.storage(), audio.storage()),
        (WeightStorage::Gguf(GgmlType::Q8_0), WeightStorage::Dense(DType::F16))
    );
}

/// Deterministic N(0, 1) values (xorshift and Box–Muller), so that the wide model is the same in every run.
fn normals(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count).map(|_| ((-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32).collect()
}

/// The tiny LTX-Video transformer's tensors at width 256 (4 heads of 64, feed-forward 1024), random, with the
/// tiny model's config made to match: rows of 256 and 1024 values, which K-quants need.
fn wide_ltxv() -> (HashMap<String, Tensor>, String) {
    let tiny = ltxv_data("single/ltxv-tiny-v095.safetensors");
    let source = WeightSource::open(&[&tiny]).unwrap();
    let prefix = "model.diffusion_model.";
    let mut names: Vec<&str> = source.names().filter(|name| name.starts_with(prefix)).collect();
    names.sort_unstable();
    let mut tensors = HashMap::new();
    for (index, name) in names.into_iter().enumerate() {
        let shape: Vec<usize> = source
            .shape(name)
            .unwrap()
            .into_iter()
            .map(|dim| match dim {
                32 => 256,
                128 => 1024,
                192 => 1536,
                other => other,
            })
            .collect();
        let count = shape.iter().product();
        let values = normals(count, index as u64 + 1);
        let last = *shape.last().unwrap() as f32;
        let values: Vec<f32> = if shape.len() >= 2 {
            values.iter().map(|v| v / last.sqrt()).collect()
        } else if name.contains("norm") {
            values.iter().map(|v| 1.0 + 0.1 * v).collect()
        } else {
            values.iter().map(|v| 0.02 * v).collect()
        };
        tensors.insert(name[prefix.len()..].to_string(), Tensor::from_vec(values, shape, &Device::Cpu).unwrap());
    }
    let mut config: serde_json::Value = serde_json::from_str(source.metadata("config").unwrap()).unwrap();
    config["transformer"]["num_attention_heads"] = 4.into();
    config["transformer"]["attention_head_dim"] = 64.into();
    config["transformer"]["cross_attention_dim"] = 256.into();
    (tensors, config.to_string())
}

/// Writes `tensors` as a GGUF with candle's writer: block matrices (rows of whole 256-blocks, outside the
/// modules llama.cpp keeps unquantized for `ltxv`) as `ty`, the rest F32.
fn write_with_candle(path: &Path, tensors: &HashMap<String, Tensor>, config: &str, ty: GgmlDType) {
    let mut quantized = Vec::new();
    for (name, tensor) in tensors {
        let block_matrix = name.starts_with("transformer_blocks.")
            && tensor.rank() == 2
            && !name.contains("scale_shift_table")
            && tensor.dims()[1] % 256 == 0;
        let qtensor = QTensor::quantize(tensor, if block_matrix { ty } else { GgmlDType::F32 }).unwrap();
        quantized.push((name.as_str(), qtensor));
    }
    let architecture = gguf_file::Value::String("ltxv".into());
    let config = gguf_file::Value::String(config.into());
    let metadata = [("general.architecture", &architecture), ("config", &config)];
    let tensors: Vec<(&str, &QTensor)> = quantized.iter().map(|(name, tensor)| (*name, tensor)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

/// `Q4_K` and `Q6_K` files written by candle: loaded with their blocks kept, within the errors K-quants
/// have at this width, and (for the dequantize-then-f32 path versus candle's quantized matmul, which also
/// quantizes the activations) within 2 % of the dequantized weights' output.
#[test]
fn k_quant_files_written_by_candle_run_close_to_the_f32_model() {
    let folder = tempfile::tempdir().unwrap();
    let (tensors, config) = wide_ltxv();
    let f32_path = folder.path().join("wide.safetensors");
    safetensors::serialize_to_file(
        tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)),
        Some([("config".to_string(), config.clone())].into()),
        &f32_path,
    )
    .unwrap();
    let f32_model = LtxvTransformer::load_file(&f32_path, &Device::Cpu).unwrap();
    assert_eq!(f32_model.config().inner_dim(), 256);
    let f32_output = run_ltxv(&f32_model);
    for (ty, ggml, limit) in [(GgmlDType::Q4K, GgmlType::Q4_K, 0.15), (GgmlDType::Q6K, GgmlType::Q6_K, 0.05)] {
        let path = folder.path().join(format!("wide_{ggml}.gguf"));
        write_with_candle(&path, &tensors, &config, ty);
        let source = open(&path);
        assert_eq!(source.metadata("general.architecture"), Some("ltxv"));
        let start = std::time::Instant::now();
        let model = LtxvTransformer::load(&source, &Device::Cpu).unwrap();
        let loaded = start.elapsed();
        assert_eq!(storage_of(&model, "transformer_blocks.0.attn1.to_q"), WeightStorage::Gguf(ggml));
        assert_eq!(storage_of(&model, "transformer_blocks.0.ff.net.2"), WeightStorage::Gguf(ggml));
        let start = std::time::Instant::now();
        let output = run_ltxv(&model);
        let ran = start.elapsed();
        let error = relative_error(&output, &f32_output);
        let dequantized = LtxvTransformer::load_file(&dequantized_copy(&source, folder.path()), &Device::Cpu).unwrap();
        let kernel_error = relative_error(&output, &run_ltxv(&dequantized));
        println!(
            "{ggml}: relative L2 error against the f32 model {error:.3e} (limit {limit}), against its dequantized \
             weights {kernel_error:.3e}; load {loaded:.2?}, forward {ran:.2?}"
        );
        assert!(error < limit && error > 1e-4, "{ggml}: {error}");
        assert!(kernel_error < 0.02, "{ggml}: {kernel_error}");
    }
}
