//! ComfyUI-GGUF's loader nodes, `UnetLoaderGGUF` and `UnetLoaderGGUFAdvanced`, on the tiny LTX-Video and
//! LTX-2 transformers written as GGUF by `tools/fixtures/make_gguf_model_fixtures.py`
//! (`models/tests/data/gguf_models/`): the files they list, the MODEL they give (blocks kept quantized, the
//! same model the library loads from the file), a LoRA on it through `LoraLoaderModelOnly`, and their errors.

use crate::support::{folders, inputs, node};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::{ExecutionContext, Value};
use kinograph_models::fp8::WeightStorage;
use kinograph_models::gguf::GgmlType;
use kinograph_models::ltxv::transformer::{LtxvTransformer, RopePositions};
use kinograph_models::weights::WeightSource;
use kinograph_nodes::values::{DiffusionModel, Transformer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/gguf_models").join(name)
}

/// Copies `file` into `models/<folder>/<name>`.
fn install(env: &kinograph_engine::Environment, folder: &str, file: &Path, name: &str) {
    let target = env.models.models_dir().join(folder);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(file, target.join(name)).unwrap();
}

fn advanced_inputs(name: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("unet_name", Value::String(name.into())),
        ("dequant_dtype", Value::String("default".into())),
        ("patch_dtype", Value::String("bfloat16".into())),
        ("patch_on_device", Value::Bool(false)),
    ]
}

fn run(
    class: &str,
    values: Vec<(&str, Value)>,
    env: &kinograph_engine::Environment,
) -> Result<Arc<DiffusionModel>, String> {
    let context = ExecutionContext::detached("1", class, env.clone());
    let output = node(class).execute(&inputs(values), &context).map_err(|error| error.to_string())?;
    Ok(output.values[0].downcast().unwrap())
}

fn ltxv(model: &DiffusionModel) -> Arc<LtxvTransformer> {
    match &model.transformer {
        Transformer::Ltxv(transformer) => transformer.clone(),
        Transformer::Ltx2(_) => panic!("an LTX-Video transformer"),
    }
}

/// One forward pass on fixed inputs (a 2×2×3 latent, 5 text tokens).
fn forward(model: &LtxvTransformer) -> Tensor {
    let fixed = |shape: (usize, usize, usize), phase: f64| {
        let count = shape.0 * shape.1 * shape.2;
        let values = Tensor::arange(0f32, count as f32, &Device::Cpu).unwrap();
        ((values * 0.731).unwrap() + phase).unwrap().sin().unwrap().reshape(shape).unwrap()
    };
    let config = model.config();
    let latent = fixed((1, 12, config.in_channels), 0.3);
    let text = fixed((1, 5, config.caption_channels), 1.1);
    let timestep = Tensor::new(&[500f32], &Device::Cpu).unwrap();
    model.forward(&latent, &text, None, &timestep, &RopePositions::grid(2, 2, 3, 25.0)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// The loaders list `.gguf` files from `models/unet` and `models/diffusion_models` only, and give the
/// LTX-Video or LTX-2 model the file holds with its matrices as blocks.
#[test]
fn the_gguf_loaders_list_gguf_files_and_load_ltxv_and_ltx2_models_quantized() {
    let folders = folders();
    let env = &folders.env;
    install(env, "unet", &fixture("ltxv_q8_0.gguf"), "ltxv-tiny-Q8_0.gguf");
    install(env, "diffusion_models", &fixture("ltx2_q8_0.gguf"), "ltx2-tiny-Q8_0.gguf");
    let safetensors =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/ltxv/single/ltxv-tiny-v095.safetensors");
    install(env, "diffusion_models", &safetensors, "ltxv-tiny.safetensors");
    assert_eq!(env.models.list("unet_gguf"), ["ltx2-tiny-Q8_0.gguf", "ltxv-tiny-Q8_0.gguf"]);
    let schema = node("UnetLoaderGGUF").schema(env);
    assert_eq!(schema.category, "bootleg");
    let advanced = node("UnetLoaderGGUFAdvanced").schema(env);
    let names: Vec<&str> = advanced.inputs.iter().map(|input| input.name.as_str()).collect();
    assert_eq!(names, ["unet_name", "dequant_dtype", "patch_dtype", "patch_on_device"]);

    let model = run("UnetLoaderGGUF", vec![("unet_name", Value::String("ltxv-tiny-Q8_0.gguf".into()))], env).unwrap();
    let transformer = ltxv(&model);
    let storage: Vec<WeightStorage> =
        transformer.linear_storage().unwrap().into_iter().map(|(_, storage)| storage).collect();
    assert_eq!(storage.iter().filter(|s| **s == WeightStorage::Gguf(GgmlType::Q8_0)).count(), 20, "every block matrix");
    let direct =
        LtxvTransformer::load(&Arc::new(WeightSource::open(&[fixture("ltxv_q8_0.gguf")]).unwrap()), &Device::Cpu)
            .unwrap();
    assert_eq!(max_abs_diff(&forward(&transformer), &forward(&direct)), 0.0);
    let f32_bytes: usize = direct.linear_layers().unwrap().iter().map(|(_, (rows, columns))| rows * columns * 4).sum();
    assert!(model.bytes < f32_bytes * 2 / 3, "held as blocks: {} bytes, {f32_bytes} in f32", model.bytes);

    let model = run("UnetLoaderGGUFAdvanced", advanced_inputs("ltx2-tiny-Q8_0.gguf"), env).unwrap();
    let Transformer::Ltx2(transformer) = &model.transformer else { panic!("an LTX-2 transformer") };
    assert_eq!(transformer.config().num_layers, 2);
    assert!(model.bytes > 0, "the transformer's stored bytes, without a prefix");
}

/// A LoRA through `LoraLoaderModelOnly` on the GGUF model computes what it computes on the dequantized
/// weights.
#[test]
fn a_lora_applies_to_a_gguf_model() {
    let folders = folders();
    let env = &folders.env;
    install(env, "diffusion_models", &fixture("ltxv_q8_0.gguf"), "tiny.gguf");
    let source = WeightSource::open(&[fixture("ltxv_q8_0.gguf")]).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> =
        source.names().map(|name| (name.to_string(), source.load(name, DType::F32, &Device::Cpu).unwrap())).collect();
    let dequantized_path = env.models.models_dir().join("dequantized.safetensors");
    safetensors::serialize_to_file(
        tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)),
        Some([("config".to_string(), source.metadata("config").unwrap().to_string())].into()),
        &dequantized_path,
    )
    .unwrap();
    install(env, "diffusion_models", &dequantized_path, "dequantized.safetensors");
    let lora = std::collections::HashMap::from([
        (
            "diffusion_model.transformer_blocks.0.attn1.to_v.lora_down.weight".to_string(),
            Tensor::randn(0f32, 0.5, (2, 32), &Device::Cpu).unwrap(),
        ),
        (
            "diffusion_model.transformer_blocks.0.attn1.to_v.lora_up.weight".to_string(),
            Tensor::randn(0f32, 0.5, (32, 2), &Device::Cpu).unwrap(),
        ),
    ]);
    let loras = env.models.models_dir().join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    candle_core::safetensors::save(&lora, loras.join("tiny-lora.safetensors")).unwrap();

    let gguf = run("UnetLoaderGGUF", vec![("unet_name", Value::String("tiny.gguf".into()))], env).unwrap();
    let dense = run(
        "UNETLoader",
        vec![
            ("unet_name", Value::String("dequantized.safetensors".into())),
            ("weight_dtype", Value::String("default".into())),
        ],
        env,
    )
    .unwrap();
    let with_lora = |model: Arc<DiffusionModel>| {
        let values = vec![
            ("model", Value::from(model)),
            ("lora_name", Value::String("tiny-lora.safetensors".into())),
            ("strength_model", Value::Float(0.9)),
        ];
        ltxv(&run("LoraLoaderModelOnly", values, env).unwrap())
    };
    let (gguf_patched, dense_patched) = (with_lora(gguf.clone()), with_lora(dense));
    let output = forward(&gguf_patched);
    assert!(max_abs_diff(&output, &forward(&dense_patched)) < 1e-5);
    assert!(max_abs_diff(&output, &forward(&ltxv(&gguf))) > 1e-3, "the LoRA changes the output");
}

/// A safetensors file, a GGUF of another architecture, a truncated GGUF and a bad dtype choice are refused
/// with messages naming the input, the file and what is wrong.
#[test]
fn the_gguf_loaders_refuse_other_files_with_clear_errors() {
    let folders = folders();
    let env = &folders.env;
    let models = env.models.models_dir().join("diffusion_models");
    std::fs::create_dir_all(&models).unwrap();
    let load = |name: &str| run("UnetLoaderGGUF", vec![("unet_name", Value::String(name.into()))], env).unwrap_err();

    let safetensors =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data/ltxv/single/ltxv-tiny-v095.safetensors");
    install(env, "diffusion_models", &safetensors, "tiny.safetensors");
    let error = load("tiny.safetensors");
    assert!(
        error.contains("unet_name") && error.contains("is not a GGUF file") && error.contains("UNETLoader"),
        "{error}"
    );

    let flux = models.join("flux-Q4_0.gguf");
    {
        use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
        let weight =
            QTensor::quantize(&Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap(), GgmlDType::Q4_0).unwrap();
        let architecture = gguf_file::Value::String("flux".into());
        let mut file = std::fs::File::create(&flux).unwrap();
        gguf_file::write(
            &mut file,
            &[("general.architecture", &architecture)],
            &[("double_blocks.0.img_attn.qkv.weight", &weight)],
        )
        .unwrap();
    }
    let error = load("flux-Q4_0.gguf");
    assert!(error.contains("flux-Q4_0.gguf") && error.contains("architecture 'flux'"), "{error}");

    let bytes = std::fs::read(fixture("ltxv_q4_0.gguf")).unwrap();
    std::fs::write(models.join("cut.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    let error = load("cut.gguf");
    assert!(error.contains("cut.gguf") && error.contains("truncated"), "{error}");

    std::fs::write(models.join("notes.gguf"), "not a model").unwrap();
    let error = load("notes.gguf");
    assert!(error.contains("notes.gguf") && error.contains("too short to be a GGUF file"), "{error}");

    install(env, "diffusion_models", &fixture("ltxv_q4_0.gguf"), "fine.gguf");
    let mut values = advanced_inputs("fine.gguf");
    values[1].1 = Value::String("float64".into());
    let error = run("UnetLoaderGGUFAdvanced", values, env).unwrap_err();
    assert!(error.contains("dequant_dtype") && error.contains("bfloat16"), "{error}");
    assert!(run("UnetLoaderGGUFAdvanced", advanced_inputs("fine.gguf"), env).is_ok());
}
