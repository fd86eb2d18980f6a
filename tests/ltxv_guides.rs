//! `LTXVAddGuide`, `LTXVAddLatentGuide` and `LTXVCropGuides` against current ComfyUI's guides
//! (`tools/fixtures/make_guide_fixtures.py`, on ComfyUI's VAE, network and sampler): node by node on the tiny
//! pipeline checkpoint's VAE (`tests/data/guides/nodes.safetensors`: latents within 5e-5 of their largest value, noise masks within
//! 1e-7, guide intervals and guide entries equal; IC-LoRA references at half size, attention masks, strength
//! above 1, latent guides), and a whole guided workflow sampled by ComfyUI's `SamplerCustom`
//! (`tests/data/pipeline/ltxv_guides_tiny.json`) run with `kinograph run`.

use super::ltxv_reference::{max_abs, run_against_reference};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::prelude::*;
use kinograph_nodes::nodes::conditioning::{LtxvAddGuide, LtxvAddLatentGuide, LtxvCropGuides};
use kinograph_nodes::nodes::loaders::load_checkpoint;
use kinograph_nodes::values::{CondEntry, Conditioning, IcLoraParameters, Image, Latent, Mask, VideoVae};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn vae() -> Arc<VideoVae> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pipeline/models/checkpoints/ltxv-tiny-pipeline.safetensors");
    load_checkpoint("ckpt_name", &path).unwrap().vae
}

fn fixture() -> (HashMap<String, Tensor>, Json) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/guides/nodes.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    // The cases are in the file's metadata: an 8-byte header length, then the JSON header.
    let bytes = std::fs::read(&path).unwrap();
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Json = serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    let cases = serde_json::from_str(header["__metadata__"]["cases"].as_str().unwrap()).unwrap();
    (tensors, cases)
}

fn conditioning() -> Arc<Conditioning> {
    let context = Tensor::zeros((1, 4, 8), DType::F32, &Device::Cpu).unwrap();
    Arc::new(Conditioning { entries: vec![CondEntry::new(context, None)] })
}

fn outputs(output: &NodeOutput) -> (Arc<Conditioning>, Arc<Conditioning>, Arc<Latent>) {
    (
        output.values[0].downcast::<Conditioning>().unwrap(),
        output.values[1].downcast::<Conditioning>().unwrap(),
        output.values[2].downcast::<Latent>().unwrap(),
    )
}

fn keyframes(conditioning: &Conditioning) -> Vec<i64> {
    conditioning.keyframe_idxs().unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn guide_nodes_match_comfyui() {
    let (tensors, cases) = fixture();
    let vae = vae();
    let context = ExecutionContext::detached("1", "LTXVAddGuide", Environment::default());
    let video = (tensors["video"].to_dtype(DType::F32).unwrap() / 255.0).unwrap();
    let mut worst = 0f32;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut latent = Arc::new(Latent {
            samples: tensors[&format!("{name}.input.samples")].clone(),
            noise_mask: tensors.get(&format!("{name}.input.noise_mask")).cloned(),
            batch_index: None,
            audio: None,
        });
        let (mut positive, mut negative) = (conditioning(), conditioning());
        for (index, guide) in case["guides"].as_array().unwrap().iter().enumerate() {
            let key = |what: &str| format!("{name}.guide{index}.{what}");
            let first = guide["first"].as_u64().unwrap() as usize;
            let count = guide["count"].as_u64().unwrap() as usize;
            let frames = video.narrow(0, first, count).unwrap();
            let mut inputs = NodeInputs::default();
            inputs.insert("positive", Value::from(positive.clone()));
            inputs.insert("negative", Value::from(negative.clone()));
            inputs.insert("vae", Value::from(vae.clone()));
            inputs.insert("latent", Value::from(latent.clone()));
            inputs.insert("strength", Value::Float(guide["strength"].as_f64().unwrap()));
            if guide["mask"].as_bool() == Some(true) {
                let red = frames.narrow(3, 0, 1).unwrap().squeeze(3).unwrap().contiguous().unwrap();
                inputs.insert("attention_mask", Value::from(Arc::new(Mask { values: red })));
            }
            let output = if let Some(latent_idx) = guide["latent_idx"].as_i64() {
                let guiding = Latent::new(tensors[&key("guiding_latent")].clone());
                inputs.insert("guiding_latent", Value::from(Arc::new(guiding)));
                inputs.insert("latent_idx", Value::Int(latent_idx.into()));
                LtxvAddLatentGuide.execute(&inputs, &context).unwrap()
            } else {
                inputs.insert("image", Value::from(Arc::new(Image::new(frames))));
                inputs.insert("frame_idx", Value::Int(guide["frame_idx"].as_i64().unwrap().into()));
                if let Some(factor) = guide["factor"].as_i64() {
                    let parameters = IcLoraParameters { reference_downscale_factor: factor };
                    inputs.insert("iclora_parameters", Value::from(Arc::new(parameters)));
                }
                LtxvAddGuide.execute(&inputs, &context).unwrap()
            };
            (positive, negative, latent) = outputs(&output);
            let recorded: Vec<f32> = tensors[&key("entries")].flatten_all().unwrap().to_vec1().unwrap();
            for conditioning in [&positive, &negative] {
                let entries = conditioning.guide_attention_entries().unwrap();
                let ours: Vec<f32> = entries
                    .iter()
                    .flat_map(|e| {
                        let [f, h, w] = e.latent_shape;
                        [e.pre_filter_count as f32, e.strength as f32, f as f32, h as f32, w as f32]
                    })
                    .collect();
                assert_eq!(ours, recorded, "{name} guide {index}: guide entries");
                let has_mask = guide["mask"].as_bool() == Some(true);
                assert_eq!(entries.last().unwrap().pixel_mask.is_some(), has_mask, "{name} guide {index}: mask");
            }
            let expected = &tensors[&key("samples")];
            assert_eq!(latent.samples.dims(), expected.dims(), "{name} guide {index}: latent shape");
            // The guides are the VAE's f32 encodings of up to 18 frames: within 5e-5 of the latent's largest value.
            let scale = max_abs(expected, &expected.zeros_like().unwrap()).max(1.0);
            let error = max_abs(&latent.samples, expected);
            assert!(
                error <= 5e-5 * scale,
                "{name} guide {index}: latent max abs error {error} (largest value {scale})"
            );
            worst = worst.max(error);
            let mask = latent.noise_mask.as_ref().unwrap();
            assert_eq!(mask.dims(), tensors[&key("noise_mask")].dims(), "{name} guide {index}: mask shape");
            assert!(max_abs(mask, &tensors[&key("noise_mask")]) <= 1e-7, "{name} guide {index}: noise mask");
            let expected: Vec<i64> = tensors[&key("keyframe_idxs")].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(keyframes(&positive), expected, "{name} guide {index}: keyframe_idxs");
            assert_eq!(keyframes(&negative), expected, "{name} guide {index}: negative keyframe_idxs");
        }
        let mut inputs = NodeInputs::default();
        inputs.insert("positive", Value::from(positive));
        inputs.insert("negative", Value::from(negative));
        inputs.insert("latent", Value::from(latent));
        let (positive, negative, latent) = outputs(&LtxvCropGuides.execute(&inputs, &context).unwrap());
        assert!(positive.keyframe_idxs().is_none() && negative.keyframe_idxs().is_none(), "{name}: crop forgets");
        assert_eq!(latent.samples.dims(), tensors[&format!("{name}.crop.samples")].dims(), "{name}: cropped shape");
        assert!(max_abs(&latent.samples, &tensors[&format!("{name}.crop.samples")]) <= 1e-4, "{name}: cropped");
        let mask = latent.noise_mask.as_ref().unwrap();
        assert!(max_abs(mask, &tensors[&format!("{name}.crop.noise_mask")]) <= 1e-7, "{name}: cropped mask");
    }
    println!("guide latents: max abs error {worst:e}");
}

fn add_guide_inputs(latent: Arc<Latent>, frames: usize, frame_idx: i64) -> NodeInputs {
    let mut inputs = NodeInputs::default();
    inputs.insert("positive", Value::from(conditioning()));
    inputs.insert("negative", Value::from(conditioning()));
    inputs.insert("vae", Value::from(vae()));
    inputs.insert("latent", Value::from(latent));
    let pixels = Tensor::full(0.5f32, (frames, 40, 56, 3), &Device::Cpu).unwrap();
    inputs.insert("image", Value::from(Arc::new(Image::new(pixels))));
    inputs.insert("frame_idx", Value::Int(frame_idx.into()));
    inputs.insert("strength", Value::Float(1.0));
    inputs
}

fn empty_latent(frames: usize) -> Arc<Latent> {
    Arc::new(Latent::new(Tensor::zeros((1, 128, frames, 2, 3), DType::F32, &Device::Cpu).unwrap()))
}

#[test]
fn a_guide_past_the_end_of_the_video_names_the_frame_index() {
    let context = ExecutionContext::detached("5", "LTXVAddGuide", Environment::default());
    // 17 frames (3 latent frames) starting at frame 16 of a 17-frame video.
    let error = LtxvAddGuide.execute(&add_guide_inputs(empty_latent(3), 17, 16), &context).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("frame_idx") && message.contains("exceed"), "{message}");
    // An empty image batch is refused before anything is encoded.
    let mut inputs = add_guide_inputs(empty_latent(3), 1, 0);
    let empty = Tensor::zeros((0, 40, 56, 3), DType::F32, &Device::Cpu).unwrap();
    inputs.insert("image", Value::from(Arc::new(Image::new(empty))));
    let message = LtxvAddGuide.execute(&inputs, &context).unwrap_err().to_string();
    assert!(message.contains("image") && message.contains("empty"), "{message}");
}

#[test]
fn cropping_guides_from_a_latent_without_them_is_an_error_not_an_empty_latent() {
    let context = ExecutionContext::detached("6", "LTXVCropGuides", Environment::default());
    let added = LtxvAddGuide.execute(&add_guide_inputs(empty_latent(3), 9, 0), &context).unwrap();
    let (positive, negative, _) = outputs(&added);
    let mut inputs = NodeInputs::default();
    inputs.insert("positive", Value::from(positive));
    inputs.insert("negative", Value::from(negative));
    inputs.insert("latent", Value::from(empty_latent(2)));
    let message = LtxvCropGuides.execute(&inputs, &context).unwrap_err().to_string();
    assert!(message.contains("latent") && message.contains("2 guide frames"), "{message}");
}

#[test]
fn guided_workflow_matches_comfyui() {
    run_against_reference("ltxv_guides_tiny.json", "ltxv_guides_tiny.safetensors", ("74", 2));
}

fn latent_guide_inputs(target: (usize, usize), guide: (usize, usize), frames: usize, latent_idx: i64) -> NodeInputs {
    let mut inputs = NodeInputs::default();
    inputs.insert("positive", Value::from(conditioning()));
    inputs.insert("negative", Value::from(conditioning()));
    inputs.insert("vae", Value::from(vae()));
    let zeros = |(h, w): (usize, usize), f: usize| Tensor::zeros((1, 128, f, h, w), DType::F32, &Device::Cpu).unwrap();
    inputs.insert("latent", Value::from(Arc::new(Latent::new(zeros(target, 3)))));
    inputs.insert("guiding_latent", Value::from(Arc::new(Latent::new(zeros(guide, frames)))));
    inputs.insert("latent_idx", Value::Int(latent_idx.into()));
    inputs.insert("strength", Value::Float(1.0));
    inputs
}

#[test]
fn latent_guides_that_do_not_fit_the_latent_say_why() {
    let context = ExecutionContext::detached("7", "LTXVAddLatentGuide", Environment::default());
    let message = |inputs: NodeInputs| LtxvAddLatentGuide.execute(&inputs, &context).unwrap_err().to_string();
    let past = message(latent_guide_inputs((2, 4), (2, 4), 2, 2));
    assert!(past.contains("latent_idx") && past.contains("runs past the end"), "{past}");
    let uneven = message(latent_guide_inputs((2, 4), (2, 3), 1, 0));
    assert!(uneven.contains("guiding_latent") && uneven.contains("whole number"), "{uneven}");
    let oblong = message(latent_guide_inputs((2, 4), (2, 2), 1, 0));
    assert!(oblong.contains("guiding_latent") && oblong.contains("square"), "{oblong}");
    // A guide half the size is dilated: twice the rows and columns, empty cells masked below 0.
    let (_, _, latent) =
        outputs(&LtxvAddLatentGuide.execute(&latent_guide_inputs((2, 4), (1, 2), 1, 0), &context).unwrap());
    let mask: Vec<f32> =
        latent.noise_mask.as_ref().unwrap().narrow(2, 3, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(
        mask,
        [0.0, -2.0, 0.0, -2.0, -2.0, -2.0, -2.0, -2.0],
        "kept cells 1 − strength, empty cells −1 − strength"
    );
    // Above 1 the mask stays at the hard pin's (the excess weights the attention instead).
    let mut strong = latent_guide_inputs((2, 4), (1, 2), 1, 0);
    strong.insert("strength", Value::Float(2.5));
    let (positive, _, latent) = outputs(&LtxvAddLatentGuide.execute(&strong, &context).unwrap());
    let mask: Vec<f32> =
        latent.noise_mask.as_ref().unwrap().narrow(2, 3, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(mask, [0.0, -2.0, 0.0, -2.0, -2.0, -2.0, -2.0, -2.0]);
    assert_eq!(positive.guide_attention_entries().unwrap()[0].strength, 2.5);
}

#[test]
fn an_iclora_factor_that_does_not_divide_the_latent_names_the_input() {
    let context = ExecutionContext::detached("8", "LTXVAddGuide", Environment::default());
    // The latent is 2 × 3 cells: a factor of 2 cannot place the reference on its grid.
    let mut inputs = add_guide_inputs(empty_latent(3), 1, 0);
    inputs.insert("iclora_parameters", Value::from(Arc::new(IcLoraParameters { reference_downscale_factor: 2 })));
    let message = LtxvAddGuide.execute(&inputs, &context).unwrap_err().to_string();
    assert!(message.contains("iclora_parameters") && message.contains("divisible"), "{message}");
}
