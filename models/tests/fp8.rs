//! Scaled fp8 weights against torch (`tools/fixtures/make_fp8_fixtures.py`, `tests/data/fp8/`): every code of
//! both formats, torch's rounding, scaled weights decoded and multiplied exactly as torch does, linear
//! layers over them, clear errors for malformed scales, and a tiny LTX-2 transformer saved as scaled fp8.

use crate::compare::{assert_close, ltx2_data, max_abs_diff};
use crate::ltx2_transformer::{fixture_inputs, reference};
use candle_core::{DType, Device, Tensor};
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::fp8::{Fp8Format, LinearStorage, LinearWeight, WeightStorage, read_linear_weight};
use kinograph_models::ltx2::transformer::{AvTimestepRouting, LoadOptions, Ltx2Transformer, Perturbation};
use kinograph_models::ops::linear::Linear;
use kinograph_models::ops::stored_linear::StoredLinear;
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fp8").join(name)
}

/// Every tensor of a fixture file: bytes as `U8`, anything else decoded (and scaled) to f32. candle's own
/// reader does not know e5m2.
fn load(name: &str) -> HashMap<String, Tensor> {
    let weights = source(name);
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|name| {
            let dtype = if weights.dtype(&name) == Some(safetensors::Dtype::U8) { DType::U8 } else { DType::F32 };
            let tensor = weights.load(&name, dtype, &Device::Cpu).unwrap();
            (name, tensor)
        })
        .collect()
}

fn source(name: &str) -> Arc<WeightSource> {
    Arc::new(WeightSource::open(&[data(name)]).unwrap())
}

fn floats(tensor: &Tensor) -> Vec<f32> {
    tensor.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Equal bit for bit, NaNs equal to NaNs.
fn assert_same_values(what: &str, found: &[f32], expected: &[f32]) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths");
    for (index, (a, b)) in found.iter().zip(expected).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}[{index}]: {a:e} != torch's {b:e}");
    }
}

fn format_name(format: Fp8Format) -> &'static str {
    match format {
        Fp8Format::E4M3Fn => "e4m3fn",
        Fp8Format::E5M2 => "e5m2",
    }
}

#[test]
fn every_code_of_both_formats_decodes_as_torch_upcasts_it() {
    let file = load("codes.safetensors");
    let weights = source("codes.safetensors");
    for format in Fp8Format::ALL {
        let name = format_name(format);
        let expected = floats(&file[&format!("{name}_values")]);
        let table: Vec<f32> = (0..=255u8).map(|code| format.decode(code)).collect();
        assert_same_values(&format!("{name} decode"), &table, &expected);
        assert_same_values(&format!("{name} table"), format.table(), &expected);
        // Through the weight source (dense load) and through a widened weight.
        let dense = weights.load(&format!("{name}_codes"), DType::F32, &Device::Cpu).unwrap();
        assert_same_values(&format!("{name} load"), &floats(&dense), &expected);
        let codes = Tensor::from_vec((0..=255u8).collect::<Vec<u8>>(), (16, 16), &Device::Cpu).unwrap();
        let weight = kinograph_models::fp8::Fp8Weight::new(codes, format, 1.0).unwrap();
        assert_same_values(&format!("{name} widen"), &floats(&weight.widen().unwrap()), &expected);
        assert_same_values(&format!("{name} rows"), &floats(&weight.widen_rows(3, 5).unwrap()), &expected[48..128]);
        let columns = weight.widen_columns(2, 3).unwrap();
        let expected_columns: Vec<f32> =
            (0..16).flat_map(|row| expected[row * 16 + 2..row * 16 + 5].to_vec()).collect();
        assert_same_values(&format!("{name} columns"), &floats(&columns), &expected_columns);
    }
}

#[test]
fn encoding_rounds_as_torch_casts() {
    let file = load("codes.safetensors");
    let inputs = floats(&file["encode_inputs"]);
    for format in Fp8Format::ALL {
        let name = format_name(format);
        let expected: Vec<u8> = file[&format!("{name}_encoded")].to_vec1().unwrap();
        let mut mismatches = 0;
        for (value, code) in inputs.iter().zip(&expected) {
            if format.encode(*value) != *code {
                mismatches += 1;
                println!("{name}: {value:e} -> {:#04x}, torch {code:#04x}", format.encode(*value));
            }
        }
        assert_eq!(mismatches, 0, "{name}: {mismatches} of {} values round differently from torch", inputs.len());
    }
}

#[test]
fn scaled_weights_decode_to_torchs_upcast_times_scale() {
    let reference = load("scaled_linears_ref.safetensors");
    let weights = source("scaled_linears.safetensors");
    let builder = weights.var_builder("blocks", DType::F32, &Device::Cpu);
    let expected_formats = [Some(Fp8Format::E4M3Fn), Some(Fp8Format::E5M2), Some(Fp8Format::E4M3Fn)];
    for (index, format) in expected_formats.into_iter().enumerate() {
        let name = format!("blocks.{index}.proj.weight");
        let expected = floats(&reference[&name]);
        let dense = weights.load(&name, DType::F32, &Device::Cpu).unwrap();
        assert_same_values(&format!("{name} dense"), &floats(&dense), &expected);
        let weight = read_linear_weight(&builder.pp(index).pp("proj"), 24, 40).unwrap();
        assert_eq!(weight.storage(), WeightStorage::Fp8(format.unwrap()), "{name}");
        assert_same_values(&format!("{name} kept fp8"), &floats(&weight.widen().unwrap()), &expected);
        let LinearWeight::Fp8(fp8) = &weight else { panic!("{name} is fp8") };
        assert_eq!(fp8.scale() != 1.0, index < 2, "{name}: scaled layers have their scale");
    }
    // A weight widened at load carries its scale too.
    let widened = weights.var_builder_with("blocks.1", DType::BF16, &Device::Cpu, LinearStorage::Widen);
    let weight = read_linear_weight(&widened.pp("proj"), 24, 40).unwrap();
    assert_eq!(weight.storage(), WeightStorage::Dense(DType::BF16));
    let rounded = reference["blocks.1.proj.weight"].to_dtype(DType::BF16).unwrap();
    assert_eq!(max_abs_diff(&weight.widen().unwrap(), &rounded), 0.0);
}

#[test]
fn linear_layers_over_scaled_weights_compute_what_torch_computes() {
    let reference = load("scaled_linears_ref.safetensors");
    let x = &reference["x"];
    for storage in [LinearStorage::AsStored, LinearStorage::Widen] {
        let weights = source("scaled_linears.safetensors");
        let builder = weights.var_builder_with("blocks", DType::F32, &Device::Cpu, storage);
        for index in 0..3 {
            let vb = builder.pp(index).pp("proj");
            let expected = &reference[&format!("blocks.{index}.proj.out")];
            let linear = Linear::new(40, 24, &vb).unwrap();
            assert_close(&format!("{storage:?} Linear {index}"), &linear.forward(x).unwrap(), expected, 1e-5);
            let stored = StoredLinear::with_bias(&vb, 40, 24).unwrap();
            assert_close(&format!("{storage:?} StoredLinear {index}"), &stored.forward(x).unwrap(), expected, 1e-5);
            let banded = stored.forward_in_bands(x, 80).unwrap();
            assert_close(&format!("{storage:?} StoredLinear {index}, bands of 2 rows"), &banded, expected, 1e-5);
        }
        // The scales, activation scales and the marker were all read with their weights.
        assert_eq!(weights.unused(""), Vec::<String>::new());
    }
    // Without its scale the first layer would be about 2000 times off: the comparison above can see it.
    let scale = source("scaled_linears.safetensors")
        .load("blocks.0.proj.weight_scale", DType::F32, &Device::Cpu)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(scale < 1e-3, "{scale}");
    let unscaled = (&reference["blocks.0.proj.weight"] / f64::from(scale)).unwrap();
    let unscaled_out = x.broadcast_matmul(&unscaled.t().unwrap()).unwrap();
    assert!(max_abs_diff(&unscaled_out, &reference["blocks.0.proj.out"]) > 1.0);
}

#[test]
fn malformed_scales_are_errors_naming_the_file_and_tensor() {
    for (file, detail) in [("bad_scale_shape.safetensors", "[4]"), ("bad_scale_dtype.safetensors", "F8_E4M3")] {
        let weights = source(file);
        let error = weights.load("layer.weight", DType::F32, &Device::Cpu).unwrap_err().to_string();
        for part in [file, "layer.weight_scale", "layer.weight", detail] {
            assert!(error.contains(part), "{file}: '{part}' is not in: {error}");
        }
        let builder = weights.var_builder("layer", DType::F32, &Device::Cpu);
        let failure = Linear::without_bias(4, 4, &builder).unwrap_err();
        let explained = weights.explain(&failure).to_string();
        assert!(explained.contains(file) && explained.contains("layer.weight_scale"), "{explained}");
    }
}

/// A LoRA on a layer kept as scaled fp8 updates the scaled weight, as ComfyUI's does (it widens, scales,
/// adds the update and multiplies): the same as the LoRA on the dequantised weight.
#[test]
fn loras_add_to_the_scaled_weight() {
    use kinograph_models::lora::{KeyMap, LoraFile};
    let reference = load("scaled_linears_ref.safetensors");
    let weights = source("scaled_linears.safetensors");
    let builder = weights.var_builder("blocks.1", DType::F32, &Device::Cpu);
    let linear = Linear::new(40, 24, &builder.pp("proj")).unwrap();
    assert_eq!(linear.storage(), WeightStorage::Fp8(Fp8Format::E5M2));
    let down = Tensor::randn(0f32, 0.3, (4, 40), &Device::Cpu).unwrap();
    let up = Tensor::randn(0f32, 0.3, (24, 4), &Device::Cpu).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("lora.safetensors");
    let tensors = HashMap::from([
        ("diffusion_model.proj.lora_down.weight".to_string(), down.clone()),
        ("diffusion_model.proj.lora_up.weight".to_string(), up.clone()),
    ]);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let keys = KeyMap::diffusion_model(&[("proj".to_string(), (24, 40))]);
    let patches = LoraFile::open(&path).unwrap().patches(&keys, &[("unet", 0.5)]).unwrap();
    let patched = linear.patched(&patches.layers["unet"]["proj"]).unwrap();
    let merged = (&reference["blocks.1.proj.weight"] + (up.matmul(&down).unwrap() * 0.5).unwrap()).unwrap();
    let bias = load("scaled_linears.safetensors")["blocks.1.proj.bias"].clone();
    let x = &reference["x"];
    let expected = x.broadcast_matmul(&merged.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
    assert_close("LoRA on scaled e5m2", &patched.forward(x).unwrap(), &expected, 1e-5);
}

/// The tiny LTX-2.0 transformer saved as scaled fp8 by torch (attention in e4m3fn with `weight_scale` and
/// `input_scale`, feed-forwards in e5m2 with `scale_weight`, the marker, the rest bf16) loads with no
/// unexpected tensor, keeps its block weights fp8, computes what its dequantised weights compute, and lands
/// close to the f32 model's output (diffusers').
#[test]
fn an_ltx2_transformer_saved_as_scaled_fp8_runs_close_to_the_f32_model() {
    let device = Device::Cpu;
    let path = data("ltx2_transformer_20_fp8.safetensors");
    let fp8 = Arc::new(WeightSource::open(std::slice::from_ref(&path)).unwrap());
    let dequantised = load("ltx2_transformer_20_fp8_ref.safetensors");
    for (name, expected) in &dequantised {
        let found = fp8.load(name, DType::F32, &device).unwrap();
        assert_same_values(name, &floats(&found), &floats(expected));
    }

    // The same file with each fp8 weight replaced by torch's dequantised one, the rest as stored (bf16).
    let mut dense: HashMap<String, Tensor> = fp8
        .names()
        .filter(|name| !kinograph_models::weights::is_quantization_companion(name) && !dequantised.contains_key(*name))
        .map(|name| (name.to_string(), fp8.load(name, DType::BF16, &device).unwrap()))
        .collect();
    dense.extend(dequantised.clone());
    let folder = tempfile::tempdir().unwrap();
    let dense_path = folder.path().join("dequantised.safetensors");
    let config = fp8.metadata("config").unwrap().to_string();
    safetensors::serialize_to_file(
        dense.iter().map(|(name, tensor)| (name.as_str(), tensor)),
        Some([("config".to_string(), config)].into()),
        &dense_path,
    )
    .unwrap();
    let mut expected_model = Ltx2Transformer::load_file(&dense_path, &device, LoadOptions::default()).unwrap();
    let mut f32_model =
        Ltx2Transformer::load_file(&ltx2_data("transformer_20.safetensors"), &device, LoadOptions::default()).unwrap();

    let r = reference("transformer_20_t2v");
    let run = |model: &mut Ltx2Transformer| {
        model.set_av_routing(AvTimestepRouting::Own);
        model.set_v2a_after_a2v(false);
        let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
        let audio_positions = model.audio_positions(1, 5).unwrap();
        let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
        model.forward(&inputs, &Perturbation::default()).unwrap()
    };
    let (expected_video, expected_audio) = run(&mut expected_model);
    let (f32_video, f32_audio) = run(&mut f32_model);
    for blocks in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
        let options = LoadOptions { blocks, ..LoadOptions::default() };
        let mut model = Ltx2Transformer::load(&fp8, &device, options).unwrap();
        let (video, audio) = run(&mut model);
        assert_close(&format!("fp8 video, {blocks:?}"), &video, &expected_video, 1e-5);
        assert_close(&format!("fp8 audio, {blocks:?}"), &audio, &expected_audio, 1e-5);
        let relative = |found: &Tensor, expected: &Tensor| {
            let difference = (found - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            (difference / expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()).sqrt()
        };
        let (video_error, audio_error) = (relative(&video, &f32_video), relative(&audio, &f32_audio));
        println!("relative L2 error against the f32 model: video {video_error:.2e}, audio {audio_error:.2e}");
        assert!(video_error < 0.05 && audio_error < 0.05, "video {video_error}, audio {audio_error}");
    }
    // The weights the blocks keep are the fp8 codes.
    let source = Arc::new(WeightSource::open(std::slice::from_ref(&path)).unwrap());
    let builder = source.var_builder("model.diffusion_model.transformer_blocks.0", DType::BF16, &device);
    let attention = read_linear_weight(&builder.pp("attn1").pp("to_q"), 32, 32).unwrap();
    let feed_forward = read_linear_weight(&builder.pp("ff").pp("net").pp(2), 32, 128).unwrap();
    assert_eq!(
        (attention.storage(), feed_forward.storage()),
        (WeightStorage::Fp8(Fp8Format::E4M3Fn), WeightStorage::Fp8(Fp8Format::E5M2))
    );
}

/// `weight_dtype` fp8: a wider checkpoint's linear weights rounded to fp8 at load as torch casts them.
#[test]
fn wider_weights_can_be_rounded_to_fp8_at_load() {
    let device = Device::Cpu;
    let path = ltx2_data("transformer_20.safetensors");
    let source = Arc::new(WeightSource::open(std::slice::from_ref(&path)).unwrap());
    let tensors = candle_core::safetensors::load(&path, &device).unwrap();
    let mut outputs = Vec::new();
    for format in Fp8Format::ALL {
        let builder = source.var_builder_with("model.diffusion_model", DType::F32, &device, LinearStorage::Fp8(format));
        let weight = read_linear_weight(&builder.pp("transformer_blocks.0.attn1.to_q"), 32, 32).unwrap();
        assert_eq!(weight.storage(), WeightStorage::Fp8(format));
        let original = floats(&tensors["model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"]);
        let rounded: Vec<f32> = original.iter().map(|value| format.decode(format.encode(*value))).collect();
        assert_same_values("rounded", &floats(&weight.widen().unwrap()), &rounded);

        let options = LoadOptions { fp8_storage: Some(format), ..LoadOptions::default() };
        let mut model = Ltx2Transformer::load(&source, &device, options).unwrap();
        assert_eq!(model.storage(), WeightStorage::Fp8(format));
        model.set_av_routing(AvTimestepRouting::Own);
        model.set_v2a_after_a2v(false);
        let r = reference("transformer_20_t2v");
        let video_positions = model.video_positions(1, 3, 2, 3, 24.0).unwrap();
        let audio_positions = model.audio_positions(1, 5).unwrap();
        let inputs = fixture_inputs(&r, &video_positions, &audio_positions, true);
        let (video, _) = model.forward(&inputs, &Perturbation::default()).unwrap();
        let expected = &r["video_out"];
        let difference = (&video - expected).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        let error = (difference / expected.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()).sqrt();
        println!("{format}: video relative L2 error against diffusers' f32 output {error:.3e}");
        outputs.push((format, error));
    }
    // e5m2 keeps two mantissa bits to e4m3fn's three, so its error is the larger; both stay small.
    assert!(outputs[0].1 < outputs[1].1 && outputs[1].1 < 0.25, "{outputs:?}");
}

/// Widening a 4096 × 4096 scaled fp8 weight to f32: candle's `to_dtype` then the scale, against the table
/// lookup with the scale folded in, whole and in the 16 MB bands the linear layers use. Timings only mean
/// something in a release build:
/// `cargo test --release -p kinograph-models --test integration fp8::widening -- --ignored --nocapture`.
#[test]
#[ignore = "a timing; run explicitly in release"]
fn widening_speed_against_candle() {
    use std::time::Instant;
    let device = Device::Cpu;
    let (rows, columns) = (4096, 4096);
    let codes: Vec<u8> = (0..rows * columns).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    // No NaN codes, so that both paths produce comparable numbers.
    let codes: Vec<u8> = codes.into_iter().map(|code| if code & 0x7f == 0x7f { 0x7e } else { code }).collect();
    let codes = Tensor::from_vec(codes, (rows, columns), &device).unwrap();
    let scale = 0.0013f32;
    let best = |what: &str, work: &mut dyn FnMut() -> Tensor| -> f64 {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let started = Instant::now();
            last = Some(work());
            times.push(started.elapsed().as_secs_f64());
        }
        let best = times.into_iter().fold(f64::INFINITY, f64::min);
        let elements = (rows * columns) as f64;
        println!("{what:<64} {:>8.2} ms  {:>6.2} ns/weight", best * 1e3, best * 1e9 / elements);
        drop(last);
        best
    };
    println!("threads: {}", candle_core::utils::get_num_threads());
    // candle's own path for e4m3fn: the codes as an F8E4M3 tensor, widened, then scaled.
    let bytes: Vec<u8> = codes.flatten_all().unwrap().to_vec1().unwrap();
    let candle_fp8 = Tensor::from_raw_buffer(&bytes, DType::F8E4M3, &[rows, columns], &device).unwrap();
    let candle_time = best("candle to_dtype(F32) then * scale (e4m3fn)", &mut || {
        (candle_fp8.to_dtype(DType::F32).unwrap() * f64::from(scale)).unwrap()
    });
    let weight = kinograph_models::fp8::Fp8Weight::new(codes.clone(), Fp8Format::E4M3Fn, scale).unwrap();
    let table_time = best("table lookup with scale, whole matrix (e4m3fn)", &mut || weight.widen().unwrap());
    let band = (4 << 20) / columns;
    let candle_band_time = best("candle to_dtype(F32) then * scale, 16 MB bands of rows (e4m3fn)", &mut || {
        let mut last = None;
        for start in (0..rows).step_by(band) {
            let narrow = candle_fp8.narrow(0, start, band.min(rows - start)).unwrap();
            last = Some((narrow.to_dtype(DType::F32).unwrap() * f64::from(scale)).unwrap());
        }
        last.unwrap()
    });
    let table_band_time = best("table lookup with scale, 16 MB bands of rows (e4m3fn)", &mut || {
        let mut last = None;
        for start in (0..rows).step_by(band) {
            last = Some(weight.widen_rows(start, band.min(rows - start)).unwrap());
        }
        last.unwrap()
    });
    best("table lookup with scale, 16 MB bands of columns (e4m3fn)", &mut || {
        let mut last = None;
        for start in (0..columns).step_by(band) {
            last = Some(weight.widen_columns(start, band.min(columns - start)).unwrap());
        }
        last.unwrap()
    });
    let e5m2 = kinograph_models::fp8::Fp8Weight::new(codes.clone(), Fp8Format::E5M2, scale).unwrap();
    best("table lookup with scale, whole matrix (e5m2)", &mut || e5m2.widen().unwrap());
    // candle has no e5m2 dtype; its nearest path keeps e5m2 weights as f16 (exact, twice the memory).
    let as_f16 = e5m2.widen().unwrap().to_dtype(DType::F16).unwrap();
    best("candle to_dtype(F32) of the same weight kept as f16", &mut || as_f16.to_dtype(DType::F32).unwrap());
    let same =
        max_abs_diff(&(candle_fp8.to_dtype(DType::F32).unwrap() * f64::from(scale)).unwrap(), &weight.widen().unwrap());
    assert_eq!(same, 0.0, "both paths give the same values");
    println!(
        "table lookup: {:.1}x candle's to_dtype whole, {:.1}x in bands",
        candle_time / table_time,
        candle_band_time / table_band_time
    );
}
