//! ComfyUI-GGUF's text-encoder loaders, `CLIPLoaderGGUF` and `DualCLIPLoaderGGUF`, on the llama.cpp-layout
//! tiny Gemma 3 and T5 of `models/tests/data/gguf_text/` (`tools/fixtures/make_gguf_text_fixtures.py`) and the
//! tiny LTX-2 checkpoint of `tests/data/ltx2_pipeline/`: the files they list, the CLIP they give (the GGUF Gemma
//! as LTX-2's text stack, equal to the safetensors Gemma through `LTXAVTextEncoderLoader`), and their errors.

use crate::support::{folders, inputs, node};
use candle_core::{Device, Tensor};
use kinograph_engine::{ExecutionContext, Value};
use kinograph_nodes::values::TextEncoder;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn install(env: &kinograph_engine::Environment, folder: &str, file: &Path, name: &str) {
    let target = env.models.models_dir().join(folder);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(file, target.join(name)).unwrap();
}

fn run(
    class: &str,
    values: Vec<(&str, Value)>,
    env: &kinograph_engine::Environment,
) -> Result<Arc<TextEncoder>, String> {
    let context = ExecutionContext::detached("1", class, env.clone());
    let output = node(class).execute(&inputs(values), &context).map_err(|error| error.to_string())?;
    Ok(output.values[0].downcast().unwrap())
}

fn text(value: &str) -> Value {
    Value::String(value.into())
}

const GEMMA_GGUF: &str = "gemma-3-tiny-Q8_0.gguf";
const GEMMA_F32_GGUF: &str = "gemma-3-tiny-F32.gguf";
const T5_GGUF: &str = "t5-tiny-encoder-Q8_0.gguf";
const GEMMA_SAFETENSORS: &str = "gemma-3-tiny-comfy.safetensors";
const CHECKPOINT: &str = "ltx-2-tiny-dev.safetensors";

fn models() -> crate::support::Folders {
    let folders = folders();
    let env = &folders.env;
    install(env, "text_encoders", &repo("models/tests/data/gguf_text/gemma3-tiny-Q8_0.gguf"), GEMMA_GGUF);
    install(env, "clip", &repo("models/tests/data/gguf_text/gemma3-tiny-F32.gguf"), GEMMA_F32_GGUF);
    install(env, "clip", &repo("models/tests/data/gguf_text/t5-tiny-encoder-Q8_0.gguf"), T5_GGUF);
    let pipeline = "tests/data/ltx2_pipeline/models";
    install(env, "text_encoders", &repo(&format!("{pipeline}/text_encoders/{GEMMA_SAFETENSORS}")), GEMMA_SAFETENSORS);
    install(env, "checkpoints", &repo(&format!("{pipeline}/checkpoints/{CHECKPOINT}")), CHECKPOINT);
    install(env, "text_encoders", &repo(&format!("{pipeline}/checkpoints/{CHECKPOINT}")), CHECKPOINT);
    folders
}

#[test]
fn schemas_list_gguf_and_safetensors_text_encoders_with_comfyui_ggufs_inputs() {
    let folders = models();
    let env = &folders.env;
    for class in ["CLIPLoaderGGUF", "DualCLIPLoaderGGUF"] {
        let schema = node(class).schema(env);
        assert_eq!(schema.category, "bootleg");
        let names: Vec<&str> = schema.inputs.iter().map(|input| input.name.as_str()).collect();
        let expected: &[&str] =
            if class == "CLIPLoaderGGUF" { &["clip_name", "type"] } else { &["clip_name1", "clip_name2", "type"] };
        assert_eq!(names, expected);
        let kinograph_engine::schema::InputKind::Combo(files) = &schema.inputs[0].kind else { panic!("a combo") };
        // Sorted as ComfyUI-GGUF sorts them (Python's `sorted`: by code point).
        assert_eq!(files.options, [GEMMA_F32_GGUF, GEMMA_GGUF, GEMMA_SAFETENSORS, CHECKPOINT, T5_GGUF]);
        let kinograph_engine::schema::InputKind::Combo(types) = &schema.inputs.last().unwrap().kind else {
            panic!("a combo")
        };
        assert!(types.options.iter().any(|option| option == "ltxv"));
    }
    let refused =
        node("CLIPLoaderGGUF").validate(&inputs(vec![("clip_name", text(T5_GGUF)), ("type", text("sd3"))]), env);
    assert_eq!(refused.len(), 1);
}

/// The Gemma stack's hidden states for one prompt.
fn hidden_states(clip: &TextEncoder, prompt: &str) -> Vec<Tensor> {
    let gemma = clip.gemma().unwrap();
    let ids = gemma.tokenizer.encode_prompt(prompt).unwrap();
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    gemma.model.hidden_states(&ids, None).unwrap()
}

#[test]
fn dual_loader_makes_the_gguf_gemma_ltx2s_text_stack_in_either_order() {
    let folders = models();
    let env = &folders.env;
    let safetensors = run(
        "LTXAVTextEncoderLoader",
        vec![("text_encoder", text(GEMMA_SAFETENSORS)), ("ckpt_name", text(CHECKPOINT))],
        env,
    )
    .unwrap();
    let prompt = "A woman walks through a rainy street at night.";
    let expected = hidden_states(&safetensors, prompt);
    for (first, second) in [(GEMMA_F32_GGUF, CHECKPOINT), (CHECKPOINT, GEMMA_F32_GGUF)] {
        let clip = run(
            "DualCLIPLoaderGGUF",
            vec![("clip_name1", text(first)), ("clip_name2", text(second)), ("type", text("ltxv"))],
            env,
        )
        .unwrap();
        let gemma = clip.gemma().unwrap();
        assert_eq!(
            gemma.tokenizer.encode_prompt(prompt).unwrap(),
            safetensors.gemma().unwrap().tokenizer.encode_prompt(prompt).unwrap()
        );
        for (found, expected) in hidden_states(&clip, prompt).iter().zip(&expected) {
            let error = (found - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(error.to_scalar::<f32>().unwrap() < 1e-4, "{first} + {second}");
        }
    }
    // The quantized file: Q8_0's rounding, within a few per cent of the largest value.
    let clip = run(
        "DualCLIPLoaderGGUF",
        vec![("clip_name1", text(GEMMA_GGUF)), ("clip_name2", text(CHECKPOINT)), ("type", text("ltxv"))],
        env,
    )
    .unwrap();
    for (found, expected) in hidden_states(&clip, prompt).iter().zip(&expected) {
        let largest = expected.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let error = (found - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(error.to_scalar::<f32>().unwrap() < 0.03 * largest.max(1.0));
    }
    // LTXAVTextEncoderLoader takes the GGUF Gemma too.
    let clip =
        run("LTXAVTextEncoderLoader", vec![("text_encoder", text(GEMMA_GGUF)), ("ckpt_name", text(CHECKPOINT))], env);
    assert!(clip.unwrap().gemma.is_some());
}

#[test]
fn clip_loader_reads_t5_ggufs_and_sends_gemma_to_the_dual_loader() {
    let folders = models();
    let env = &folders.env;
    let clip = run("CLIPLoaderGGUF", vec![("clip_name", text(T5_GGUF)), ("type", text("ltxv"))], env).unwrap();
    let encoder = clip.encoder.as_ref().unwrap();
    assert_eq!(encoder.config().d_model, 32);
    let ids = Tensor::new(&[[71u32, 1]], &Device::Cpu).unwrap();
    assert_eq!(encoder.forward(&ids, None).unwrap().dims(), [1, 2, 32]);

    let error = run("CLIPLoaderGGUF", vec![("clip_name", text(GEMMA_GGUF)), ("type", text("ltxv"))], env).unwrap_err();
    assert!(error.contains("DualCLIPLoaderGGUF"), "{error}");
    let error = run(
        "DualCLIPLoaderGGUF",
        vec![("clip_name1", text(T5_GGUF)), ("clip_name2", text(CHECKPOINT)), ("type", text("ltxv"))],
        env,
    )
    .unwrap_err();
    assert!(error.contains("neither"), "{error}");
}
