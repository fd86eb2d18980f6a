//! The LTX-Video transformer against the diffusers fixtures in `tests/data/ltxv/` (see
//! `tools/fixtures/README.md`): tiny random models in both checkpoint layouts, reference outputs
//! computed with diffusers 0.42.1. All comparisons are f32 max absolute errors.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use kinograph_models::block_stack::BlockHolding;
use kinograph_models::ltxv::transformer::{
    LtxvTransformer, RopePositions, RopeTables, RotaryPosEmbed, WeightLayout, detect_layout, pack_latents,
    pixel_video_coords, read_config, text_bias, unpack_latents,
};
use kinograph_models::weights::{RenamingBackend, WeightError, WeightSource};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltxv").join(path)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data(&format!("ref/{name}.safetensors")), &Device::Cpu).unwrap()
}

fn single_file() -> PathBuf {
    data("single/ltxv-tiny-v095.safetensors")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn assert_close(what: &str, found: &Tensor, expected: &Tensor, tolerance: f32) -> f32 {
    let error = max_abs_diff(found, expected);
    println!("{what}: max abs error {error:.3e} (tolerance {tolerance:.0e})");
    assert!(error <= tolerance, "{what}: max abs error {error:e} > {tolerance:e}");
    error
}

fn tiny_model() -> LtxvTransformer {
    LtxvTransformer::load_file(&single_file(), &Device::Cpu).unwrap()
}

#[test]
fn config_is_read_from_shapes_and_metadata() {
    let source = WeightSource::open(&[single_file()]).unwrap();
    let detected = detect_layout(&source).unwrap();
    assert_eq!(detected.layout, WeightLayout::Original);
    assert_eq!(detected.prefix, "model.diffusion_model");
    let config = read_config(&source, &detected).unwrap();
    assert_eq!((config.num_attention_heads, config.attention_head_dim, config.num_layers), (2, 16, 2));
    assert_eq!((config.in_channels, config.out_channels, config.caption_channels), (8, 8, 16));
    assert!(config.causal_temporal_positioning, "v095 metadata sets causal_temporal_positioning");

    let files = [data("diffusers/transformer/diffusion_pytorch_model.safetensors")];
    let source = WeightSource::open(&files).unwrap();
    let detected = detect_layout(&source).unwrap();
    assert_eq!((detected.layout, detected.prefix.as_str()), (WeightLayout::Diffusers, ""));
    let config = read_config(&source, &detected).unwrap();
    assert_eq!((config.num_attention_heads, config.attention_head_dim, config.num_layers), (2, 16, 2));
}

/// Sinusoid and MLP. The angles `t·f` are rounded to f32 where torch rounds them, and the frequencies
/// `exp(−ln(1e4)·i/128)` are correctly rounded; torch's vectorised `expf` (Sleef, 1 ULP) rounds two of
/// the 128 frequencies (i = 12, 106) the other way, which at t = 1000 moves the angle, and so cos/sin,
/// by up to 2.4e-5. So the sinusoid gets 3e-5 overall and 1e-6 for t ≤ 25.5, where that ULP is
/// invisible; the MLP outputs get 1e-5.
#[test]
fn timestep_embedding_matches_diffusers() {
    let reference = reference("timestep_embedding");
    let model = tiny_model();
    let timestep = &reference["timestep"];
    let sinusoid = kinograph_models::ltxv::transformer::embeddings::timestep_sinusoid(timestep, 256).unwrap();
    assert_close("sinusoid", &sinusoid, &reference["sinusoid"], 3e-5);
    let small = |t: &Tensor| t.narrow(0, 0, 3).unwrap();
    assert_close("sinusoid, t <= 25.5", &small(&sinusoid), &small(&reference["sinusoid"]), 1e-6);
    let (temb, embedded) = model.time_embed().forward(timestep).unwrap();
    assert_close("embedded_timestep", &embedded, &reference["embedded_timestep"], 1e-5);
    assert_close("temb", &temb, &reference["temb"], 1e-5);
}

fn rope_case(reference: &HashMap<String, Tensor>, case: &str, dim: usize, positions: &RopePositions, tolerance: f32) {
    let tables = RotaryPosEmbed::with_dim(dim).tables(1, positions, &Device::Cpu).unwrap();
    let (cos, sin) = tables.to_full().unwrap();
    assert_close(&format!("{case}.cos"), &cos, &reference[&format!("{case}.cos")], tolerance);
    assert_close(&format!("{case}.sin"), &sin, &reference[&format!("{case}.sin")], tolerance);
}

/// Tiny (dim 32) tables and one application, tolerance 1e-5.
#[test]
fn rope_tiny_cases_match_diffusers() {
    let reference = reference("rope");
    let cpu = Device::Cpu;
    rope_case(&reference, "tiny_scale", 32, &RopePositions::grid(2, 3, 4, 25.0), 1e-5);
    for (case, causal) in [("tiny_coords_causal", true), ("tiny_coords_nocausal", false)] {
        let coords = pixel_video_coords(1, 2, 3, 4, 24.0, causal, &cpu).unwrap();
        assert_close(&format!("{case}.video_coords"), &coords, &reference[&format!("{case}.video_coords")], 0.0);
        rope_case(&reference, case, 32, &RopePositions::Coords(coords), 1e-5);
    }
    let tables = RotaryPosEmbed::with_dim(32).tables(1, &RopePositions::grid(2, 3, 4, 25.0), &cpu).unwrap();
    assert_close("apply", &tables.apply(&reference["apply.x"]).unwrap(), &reference["apply.out"], 1e-5);
}

/// Real widths. The highest frequency is 5000π rad, where one f32 ULP of the frequency (or of the
/// coordinate it multiplies) is about 5e-4 rad; torch's vectorised `pow` and `linspace` are not
/// reproducible bit for bit, so the angles, and so cos/sin, can differ by about 1e-3 (the fixture README
/// measures 2.5e-4 with the same linspace and a correctly rounded pow, which is what this code does). A
/// bound of 2e-3 still catches any layout, padding or frequency error, which moves values by O(1).
#[test]
fn rope_real_widths_match_diffusers_to_float_precision() {
    let reference = reference("rope");
    let cpu = Device::Cpu;
    rope_case(&reference, "d2048_scale", 2048, &RopePositions::grid(2, 2, 3, 25.0), 2e-3);
    let coords = pixel_video_coords(1, 2, 2, 3, 24.0, true, &cpu).unwrap();
    assert_close("d2048 video_coords", &coords, &reference["d2048_coords_causal.video_coords"], 0.0);
    rope_case(&reference, "d2048_coords_causal", 2048, &RopePositions::Coords(coords), 2e-3);
    let coords = pixel_video_coords(1, 2, 1, 2, 24.0, true, &cpu).unwrap();
    assert_close("d4096 video_coords", &coords, &reference["d4096_coords_causal.video_coords"], 0.0);
    rope_case(&reference, "d4096_coords_causal", 4096, &RopePositions::Coords(coords), 2e-3);
}

const CASES: [&str; 3] = ["transformer_global", "transformer_per_token", "transformer_coords_causal"];

fn positions(case: &str, reference: &HashMap<String, Tensor>) -> RopePositions {
    if case == "transformer_coords_causal" {
        RopePositions::Coords(reference["video_coords"].clone())
    } else {
        RopePositions::grid(2, 3, 4, 25.0)
    }
}

/// Block 0 on the captured inputs, tolerance 1e-4 (observed about 1e-6).
#[test]
fn block_zero_matches_diffusers() {
    let model = tiny_model();
    for case in CASES {
        let reference = reference(case);
        let rope = RopeTables::from_full(&reference["block0.in.rope_cos"], &reference["block0.in.rope_sin"]).unwrap();
        let bias = text_bias(&reference["encoder_attention_mask"]).unwrap();
        assert_close(&format!("{case} bias"), &bias, &reference["block0.in.encoder_attention_bias"], 0.0);
        let out = model.resident_blocks()[0]
            .forward(
                &reference["block0.in.hidden_states"],
                &reference["block0.in.encoder_hidden_states"],
                &reference["block0.in.temb"],
                &rope,
                Some(&bias),
                None,
            )
            .unwrap();
        assert_close(&format!("{case} block0.out"), &out, &reference["block0.out"], 1e-4);
        // The model's own tables for this case agree with the ones diffusers handed to the block.
        let ours = model.rope_tables(2, &positions(case, &reference)).unwrap().to_full().unwrap();
        assert_close(&format!("{case} rope cos"), &ours.0, &reference["block0.in.rope_cos"], 1e-5);
        assert_close(&format!("{case} rope sin"), &ours.1, &reference["block0.in.rope_sin"], 1e-5);
    }
}

/// The whole model: global timestep, per-token timesteps and causal coordinates, each with a padded
/// text mask. Tolerance 1e-4 (observed about 1e-6).
#[test]
fn transformer_matches_diffusers() {
    for model in [tiny_model(), LtxvTransformer::load_diffusers(&data("diffusers"), &Device::Cpu).unwrap()] {
        for case in CASES {
            let reference = reference(case);
            let (temb, embedded) = model.time_embed().forward(&reference["timestep"]).unwrap();
            assert_close(&format!("{case} temb"), &temb, &reference["temb"], 1e-5);
            assert_close(&format!("{case} embedded_timestep"), &embedded, &reference["embedded_timestep"], 1e-5);
            let out = model
                .forward(
                    &reference["hidden_states"],
                    &reference["encoder_hidden_states"],
                    Some(&reference["encoder_attention_mask"]),
                    &reference["timestep"],
                    &positions(case, &reference),
                )
                .unwrap();
            assert_close(&format!("{case} output"), &out, &reference["output"], 1e-4);
        }
    }
}

/// Streamed blocks (read from the file as the forward pass reaches them) compute what resident blocks
/// compute, bit for bit: in both layouts, from a bf16 copy (widened as each block is read), with a LoRA on a
/// block layer and a top-level one, and with fp8 `weight_dtype` storage. A file missing a later block's
/// tensor fails at load time.
#[test]
fn streamed_blocks_compute_what_resident_blocks_compute() {
    use kinograph_models::fp8::{Fp8Format, LinearStorage};
    use kinograph_models::lora::LayerPatch;
    use kinograph_models::ltxv::transformer::LtxvLoadOptions;
    let device = Device::Cpu;
    let folder = tempfile::tempdir().unwrap();
    let bf16: HashMap<String, Tensor> = candle_core::safetensors::load(single_file(), &device)
        .unwrap()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.to_dtype(DType::BF16).unwrap()))
        .collect();
    let bf16_path = folder.path().join("ltxv-tiny-bf16.safetensors");
    candle_core::safetensors::save(&bf16, &bf16_path).unwrap();
    let sources = [
        ("single file", vec![single_file()]),
        ("diffusers", vec![data("diffusers/transformer/diffusion_pytorch_model.safetensors")]),
        ("bf16", vec![bf16_path]),
    ];
    let case = reference("transformer_per_token");
    let forward = |model: &LtxvTransformer| {
        model
            .forward(
                &case["hidden_states"],
                &case["encoder_hidden_states"],
                Some(&case["encoder_attention_mask"]),
                &case["timestep"],
                &positions("transformer_per_token", &case),
            )
            .unwrap()
    };
    for (what, files) in sources {
        for storage in [LinearStorage::AsStored, LinearStorage::Fp8(Fp8Format::E4M3Fn)] {
            let what = format!("{what}, {storage:?}");
            let source = Arc::new(WeightSource::open(&files).unwrap());
            let load = |blocks| {
                LtxvTransformer::load_with_options(&source, &device, LtxvLoadOptions { storage, blocks }).unwrap()
            };
            let resident = load(BlockHolding::Resident);
            assert!(!resident.streams_blocks() && resident.resident_blocks().len() == 2, "{what}");
            for blocks in [BlockHolding::STREAMED, BlockHolding::Streamed { kept: 1 }] {
                let what = format!("{what}, {blocks:?}");
                let streamed = load(blocks);
                assert!(streamed.streams_blocks() && streamed.block_count() == 2, "{what}");
                assert_eq!(streamed.block_holding(), blocks, "{what}");
                let kept = match blocks {
                    BlockHolding::Streamed { kept } => kept,
                    BlockHolding::Resident => 2,
                };
                assert_eq!(streamed.resident_blocks().len(), kept, "{what}");
                let layers = resident.linear_layers().unwrap();
                assert_eq!(streamed.linear_layers().unwrap(), layers, "{what}");
                assert_eq!(streamed.linear_storage().unwrap(), resident.linear_storage().unwrap(), "{what}");
                assert_eq!(streamed.other_parameter_names(), resident.other_parameter_names(), "{what}");
                let expected = forward(&resident);
                assert_eq!(max_abs_diff(&forward(&streamed), &expected), 0.0, "{what}");

                let shapes: BTreeMap<String, (usize, usize)> = layers.into_iter().collect();
                let mut patches = BTreeMap::new();
                for name in ["transformer_blocks.1.attn1.to_q", "transformer_blocks.0.attn1.to_k", "patchify_proj"] {
                    patches.insert(name.to_string(), crate::compare::low_rank_patch(shapes[name]));
                }
                let patched = forward(&resident.with_patches(&patches).unwrap());
                assert!(max_abs_diff(&patched, &expected) > 1e-3, "{what}: the LoRA changes the output");
                assert_eq!(max_abs_diff(&forward(&streamed.with_patches(&patches).unwrap()), &patched), 0.0, "{what}");
                let unknown = BTreeMap::from([("transformer_blocks.5.attn1.to_q".to_string(), LayerPatch::default())]);
                assert!(streamed.with_patches(&unknown).is_err(), "{what}");
            }
        }
    }

    // Block 1 without its feed-forward output: refused at load, not in the middle of sampling.
    let mut tensors = candle_core::safetensors::load(single_file(), &device).unwrap();
    let missing = "model.diffusion_model.transformer_blocks.1.ff.net.2.weight";
    tensors.remove(missing);
    let path = folder.path().join("missing.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let source = Arc::new(WeightSource::open(&[&path]).unwrap());
    let options = LtxvLoadOptions { blocks: BlockHolding::STREAMED, ..LtxvLoadOptions::default() };
    let error = LtxvTransformer::load_with_options(&source, &device, options).unwrap_err();
    assert!(matches!(&error, WeightError::Missing { tensor, .. } if tensor == missing), "{error}");
}

#[test]
fn latents_pack_and_unpack() {
    let latents =
        Tensor::arange(0f32, 2.0 * 8.0 * 2.0 * 3.0 * 4.0, &Device::Cpu).unwrap().reshape((2, 8, 2, 3, 4)).unwrap();
    let tokens = pack_latents(&latents).unwrap();
    assert_eq!(tokens.dims(), &[2, 24, 8]);
    // Token n = (f·H + h)·W + w holds the channels of that position.
    let (f, h, w) = (1, 2, 3);
    let token = tokens.get(1).unwrap().get((f * 3 + h) * 4 + w).unwrap().to_vec1::<f32>().unwrap();
    let position = latents.get(1).unwrap().permute((1, 2, 3, 0)).unwrap();
    let expected = position.get(f).unwrap().get(h).unwrap().get(w).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(token, expected);
    assert_eq!(max_abs_diff(&unpack_latents(&tokens, 2, 3, 4).unwrap(), &latents), 0.0);
}

/// Records every tensor a model fetches while it is built.
struct Recorder {
    inner: VarBuilder<'static>,
    seen: Arc<Mutex<BTreeMap<String, Tensor>>>,
}

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        _: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.inner.get_with_hints_dtype(shape, name, init, dtype)?;
        self.seen.lock().unwrap().insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked_dtype(name, dtype)?.to_device(device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Builds the transformer in `files` and returns every parameter it fetched, under its diffusers name.
fn parameters(files: &[PathBuf]) -> BTreeMap<String, Tensor> {
    let source = Arc::new(WeightSource::open(files).unwrap());
    let detected = detect_layout(&source).unwrap();
    let config = read_config(&source, &detected).unwrap();
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let recorder = Recorder { inner: source.var_builder("", DType::F32, &Device::Cpu), seen: seen.clone() };
    let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
    let vb = if detected.prefix.is_empty() { vb } else { vb.pp(&detected.prefix) };
    let layout = detected.layout;
    let vb = RenamingBackend::new(vb, move |name| layout.stored_name(name)).into_var_builder();
    LtxvTransformer::new(&config, &vb).unwrap();
    let prefix = if detected.prefix.is_empty() { String::new() } else { format!("{}.", detected.prefix) };
    assert!(source.unused(&prefix).is_empty(), "unused tensors: {:?}", source.unused(&prefix));
    let seen = seen.lock().unwrap();
    // The recorder saw stored names: diffusers ones, or original ones, which map onto the diffusers ones.
    seen.iter()
        .map(|(name, tensor)| (WeightLayout::Diffusers.stored_name(&name[prefix.len()..]), tensor.clone()))
        .collect()
}

#[test]
fn single_file_and_diffusers_layouts_load_identical_parameters() {
    let single = parameters(&[single_file()]);
    let diffusers = parameters(&[data("diffusers/transformer/diffusion_pytorch_model.safetensors")]);
    assert_eq!(single.keys().collect::<Vec<_>>(), diffusers.keys().collect::<Vec<_>>());
    assert_eq!(single.len(), 2 * 25 + 15, "every block (25 tensors each) and the 15 top-level tensors");
    let total: usize = single.values().map(Tensor::elem_count).sum();
    assert_eq!(total, 52_072, "parameter count of the tiny model");
    for (name, tensor) in &single {
        assert_eq!(max_abs_diff(tensor, &diffusers[name]), 0.0, "{name}");
    }
}

/// A copy of the single file with `edit` applied to its tensors (metadata kept).
fn edited_copy(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let mut tensors = candle_core::safetensors::load(single_file(), &Device::Cpu).unwrap();
    edit(&mut tensors);
    let (_, metadata) = kinograph_models::weights::read_header(&single_file()).unwrap();
    let path = dir.join("edited.safetensors");
    safetensors::serialize_to_file(tensors.iter().map(|(k, v)| (k.clone(), v)), Some(metadata), &path).unwrap();
    path
}

fn load_error(path: &Path) -> WeightError {
    match LtxvTransformer::load_file(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(error) => error,
    }
}

#[test]
fn bad_weight_files_give_precise_errors() {
    let dir = tempfile::tempdir().unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(single_file()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let error = load_error(&truncated);
    assert!(matches!(error, WeightError::Format { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("truncated.safetensors") && message.contains("truncated"), "{message}");

    let name = "model.diffusion_model.transformer_blocks.1.attn2.to_k.weight";
    let missing = edited_copy(dir.path(), |tensors| {
        tensors.remove(name);
    });
    let error = load_error(&missing);
    assert!(
        matches!(&error, WeightError::Missing { tensor, expected, .. } if tensor == name && expected == &vec![32, 32])
    );
    assert!(error.to_string().contains(&format!("tensor '{name}' is missing (expected shape [32, 32])")), "{error}");

    let name = "model.diffusion_model.transformer_blocks.0.ff.net.0.proj.weight";
    let reshaped = edited_copy(dir.path(), |tensors| {
        let tensor = tensors[name].reshape((64, 64)).unwrap();
        tensors.insert(name.to_string(), tensor);
    });
    let error = load_error(&reshaped);
    assert!(
        matches!(&error, WeightError::Shape { tensor, expected, found, .. }
            if tensor == name && expected == &vec![128, 32] && found == &vec![64, 64]),
        "{error}"
    );
    assert!(error.to_string().contains("edited.safetensors"), "{error}");

    let extra = "model.diffusion_model.transformer_blocks.0.attn1.extra.weight";
    let with_extra = edited_copy(dir.path(), |tensors| {
        tensors.insert(extra.to_string(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    });
    let error = load_error(&with_extra);
    assert!(
        matches!(&error, WeightError::Unexpected { tensors, .. } if tensors == &vec![extra.to_string()]),
        "{error}"
    );

    let half = edited_copy(dir.path(), |tensors| {
        for tensor in tensors.values_mut() {
            *tensor = tensor.to_dtype(DType::BF16).unwrap();
        }
    });
    let model = LtxvTransformer::load_file(&half, &Device::Cpu).unwrap();
    let reference = reference("transformer_global");
    let out = model
        .forward(
            &reference["hidden_states"],
            &reference["encoder_hidden_states"],
            Some(&reference["encoder_attention_mask"]),
            &reference["timestep"],
            &RopePositions::grid(2, 3, 4, 25.0),
        )
        .unwrap();
    // bf16 storage (8 bits of mantissa) moves the output by about 1.5e-2; it must load and stay close.
    assert_close("bf16 storage output", &out, &reference["output"], 0.05);
}

/// `cargo test --release -p kinograph-models --test integration -- --ignored ltxv_transformer::bench --nocapture`
#[test]
#[ignore = "builds the 2B model (7.7 GB in f32) and takes tens of seconds"]
fn bench_2b_forward_512x768x9() {
    let report = kinograph_models::ltxv::transformer::bench::bench_2b_forward(2, 16, 24, 128, 2, &Device::Cpu).unwrap();
    println!("build {:.2} s", report.build.as_secs_f64());
    for (i, (forward, cpu)) in report.forwards.iter().zip(&report.forward_cpu).enumerate() {
        let cpu = cpu.map_or_else(|| "unknown".to_string(), |cpu| format!("{:.2} s", cpu.as_secs_f64()));
        println!("forward {i}: {:.3} s wall, cpu {cpu}", forward.as_secs_f64());
    }
    assert_eq!(report.output_shape, vec![1, 768, 128]);
}
