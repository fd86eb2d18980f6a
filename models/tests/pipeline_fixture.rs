//! The weight files of the ComfyUI pipeline fixture (`tests/data/pipeline/` of the root crate, written by
//! `tools/fixtures/make_pipeline_fixtures.py`) load through the ordinary loaders, and the model code
//! reproduces the reference's text encoding, every model call of both workflows, and the VAE's encode
//! and decode.
//!
//! Tolerances (f32, max absolute error):
//! - T5 context: 1e-4 (RMS-normalised outputs of order 1; observed about 1e-6);
//! - denoised predictions `x − v·σ`, per step and per prompt: 1e-4;
//! - encoded image latent and decoded frames (0..1): 1e-4.

use candle_core::{DType, Device, Tensor};
use kinograph_models::ltxv::transformer::{
    LtxvTransformer, RopePositions, pack_latents, pixel_video_coords, unpack_latents,
};
use kinograph_models::ltxv::vae::noise::ZeroNoise;
use kinograph_models::ltxv::vae::{DecodeOptions, LtxvVae};
use kinograph_models::t5::{COMFY_MIN_LENGTH, T5Encoder, T5Tokenizer};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const WORKFLOWS: [&str; 2] = ["ltxv_t2v_tiny", "ltxv_i2v_tiny"];
const TOLERANCE: f32 = 1e-4;

fn pipeline(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pipeline").join(path)
}

fn checkpoint() -> PathBuf {
    pipeline("models/checkpoints/ltxv-tiny-pipeline.safetensors")
}

fn expected(workflow: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(pipeline(&format!("expected/{workflow}.safetensors")), &Device::Cpu).unwrap()
}

fn workflow(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(pipeline(&format!("{name}.json"))).unwrap()).unwrap()
}

fn input<'a>(workflow: &'a serde_json::Value, node: &str, name: &str) -> &'a serde_json::Value {
    &workflow[node]["inputs"][name]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn assert_close(what: &str, found: &Tensor, expected: &Tensor) {
    let error = max_abs_diff(found, expected);
    println!("{what}: max abs error {error:.3e}");
    assert!(error <= TOLERANCE, "{what}: max abs error {error:e} > {TOLERANCE:e}");
}

#[test]
fn text_encoder_file_loads_and_encodes_the_prompts_like_the_reference() {
    let encoder = T5Encoder::open(&pipeline("models/text_encoders/t5-tiny-fp16.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(encoder.config().vocab_size, 32128, "the real vocabulary, so the real tokenizer fits");
    assert_eq!(encoder.config().d_model, 8);
    assert_eq!(encoder.storage_dtype(), DType::F16, "kept in the file's fp16, as t5xxl_fp16.safetensors");
    let tokenizer = T5Tokenizer::new().unwrap();
    for name in WORKFLOWS {
        let prompt = workflow(name);
        let reference = expected(name);
        for (node, role) in [("6", "positive"), ("7", "negative")] {
            let text = input(&prompt, node, "text").as_str().unwrap();
            let tokens = tokenizer.encode_weighted(text, COMFY_MIN_LENGTH).unwrap();
            let ids: Vec<i64> = tokens.ids.iter().map(|&id| i64::from(id)).collect();
            let mask: Vec<i64> = tokens.attention_mask.iter().map(|&keep| i64::from(keep)).collect();
            assert_eq!(ids, reference[&format!("{role}.input_ids")].flatten_all().unwrap().to_vec1::<i64>().unwrap());
            assert_eq!(
                mask,
                reference[&format!("{role}.attention_mask")].flatten_all().unwrap().to_vec1::<i64>().unwrap()
            );
            let context = encoder.encode_tokens(&tokens, true).unwrap();
            assert_close(&format!("{name} {role} context"), &context, &reference[&format!("{role}.context")]);
        }
    }
}

/// The sampler's input at step `step`: the initial noise (σ₀ = 1), then the previous step's result; with
/// a noise mask, `KSamplerX0Inpaint`'s `x·m + latent·(1 − m)`.
fn model_input(reference: &HashMap<String, Tensor>, step: usize) -> Tensor {
    let x = if step == 0 { reference["noise"].clone() } else { reference[&format!("step{}.x", step - 1)].clone() };
    let Some(mask) = reference.get("noise_mask") else { return x };
    let mask = mask.broadcast_as(x.shape()).unwrap();
    let latent = &reference["latent"];
    ((&x * &mask).unwrap() + (latent * (mask.ones_like().unwrap() - &mask).unwrap()).unwrap()).unwrap()
}

#[test]
fn checkpoint_transformer_reproduces_every_model_call() {
    let model = LtxvTransformer::load_file(&checkpoint(), &Device::Cpu).unwrap();
    assert_eq!(model.config().in_channels, 128, "128 latent channels, as EmptyLTXVLatentVideo makes");
    assert_eq!(model.config().caption_channels, 8, "caption_channels equals the T5 d_model");
    for name in WORKFLOWS {
        let reference = expected(name);
        let prompt = workflow(name);
        let frame_rate = input(&prompt, "69", "frame_rate").as_f64().unwrap() as f32;
        let sigmas = reference["sigmas"].to_vec1::<f32>().unwrap();
        let (_, _, frames, height, width) = reference["latent"].dims5().unwrap();
        let positions = RopePositions::Coords(
            pixel_video_coords(1, frames, height, width, frame_rate, false, &Device::Cpu).unwrap(),
        );
        for (step, sigma) in sigmas.iter().take(sigmas.len() - 1).enumerate() {
            let x = model_input(&reference, step);
            let timestep = &reference[&format!("step{step}.timestep")];
            for role in ["positive", "negative"] {
                let velocity = model
                    .forward(
                        &pack_latents(&x).unwrap(),
                        &reference[&format!("{role}.context")],
                        Some(&reference[&format!("{role}.attention_mask")]),
                        timestep,
                        &positions,
                    )
                    .unwrap();
                let velocity = unpack_latents(&velocity, frames, height, width).unwrap();
                let denoised = (&x - (velocity * f64::from(*sigma)).unwrap()).unwrap();
                let what = format!("{name} step {step} {role} denoised");
                assert_close(&what, &denoised, &reference[&format!("step{step}.denoised_{role}")]);
            }
        }
    }
}

#[test]
fn checkpoint_vae_encodes_the_image_and_decodes_the_samples_like_the_reference() {
    let source = Arc::new(WeightSource::open(&[checkpoint()]).unwrap());
    let vae = LtxvVae::load(&source, "vae.", &Device::Cpu).unwrap();
    assert_eq!(vae.config().latent_channels, 128);

    let reference = expected("ltxv_i2v_tiny");
    let pixels = &reference["image_resized"];
    let video = ((pixels * 2.0).unwrap() - 1.0).unwrap().permute((3, 0, 1, 2)).unwrap().unsqueeze(0).unwrap();
    let latent = vae.normalize(&vae.encode(&video).unwrap()).unwrap();
    assert_close("image latent", &latent, &reference["image_latent"]);

    for name in WORKFLOWS {
        let reference = expected(name);
        let latent = vae.denormalize(&reference["samples"]).unwrap();
        let video = vae.decode(&latent, None, &mut ZeroNoise, &DecodeOptions::default()).unwrap();
        let images = ((video + 1.0).unwrap() / 2.0).unwrap().clamp(0f32, 1f32).unwrap();
        let (_, channels, frames, height, width) = images.dims5().unwrap();
        let images = images.permute((0, 2, 3, 4, 1)).unwrap().reshape((frames, height, width, channels)).unwrap();
        assert_close(&format!("{name} frames"), &images, &reference["frames"]);
    }
}

/// One denoised prediction `x − v·σ` of the checkpoint's transformer.
fn denoise(
    model: &LtxvTransformer,
    x: &Tensor,
    sigma: f32,
    timestep: &Tensor,
    reference: &HashMap<String, Tensor>,
    role: &str,
    positions: &RopePositions,
) -> Tensor {
    let (_, _, frames, height, width) = x.dims5().unwrap();
    let velocity = model
        .forward(
            &pack_latents(x).unwrap(),
            &reference[&format!("{role}.context")],
            Some(&reference[&format!("{role}.attention_mask")]),
            timestep,
            positions,
        )
        .unwrap();
    let velocity = unpack_latents(&velocity, frames, height, width).unwrap();
    (x - (velocity * f64::from(sigma)).unwrap()).unwrap()
}

/// Runs the whole euler + CFG loop on our own outputs (only the reference's text contexts, noise, latent
/// and sigmas are taken as given), so that errors accumulate as they would in a real run. The
/// tolerance is the same 1e-4; observed errors are printed.
#[test]
fn chained_sampling_and_decode_reproduce_the_final_latent_and_frames() {
    let model = LtxvTransformer::load_file(&checkpoint(), &Device::Cpu).unwrap();
    let source = Arc::new(WeightSource::open(&[checkpoint()]).unwrap());
    let vae = LtxvVae::load(&source, "vae.", &Device::Cpu).unwrap();
    for name in WORKFLOWS {
        let reference = expected(name);
        let prompt = workflow(name);
        let frame_rate = input(&prompt, "69", "frame_rate").as_f64().unwrap() as f32;
        let cfg = input(&prompt, "72", "cfg").as_f64().unwrap();
        let sigmas = reference["sigmas"].to_vec1::<f32>().unwrap();
        let latent = &reference["latent"];
        let (_, _, frames, height, width) = latent.dims5().unwrap();
        let positions = RopePositions::Coords(
            pixel_video_coords(1, frames, height, width, frame_rate, false, &Device::Cpu).unwrap(),
        );
        let mask = reference.get("noise_mask").map(|mask| mask.broadcast_as(latent.shape()).unwrap());
        let blend = |x: &Tensor| match &mask {
            Some(mask) => {
                ((x * mask).unwrap() + (latent * (mask.ones_like().unwrap() - mask).unwrap()).unwrap()).unwrap()
            }
            None => x.clone(),
        };
        let mut x = reference["noise"].clone();
        for (step, pair) in sigmas.windows(2).enumerate() {
            let (sigma, next) = (pair[0], pair[1]);
            let timestep = match &mask {
                // LTXV.process_timestep: mask·σ per token (channel 0 of the mask), then ×1000 in the DiT.
                Some(mask) => {
                    let per_token = pack_latents(&(mask.narrow(1, 0, 1).unwrap() * f64::from(sigma)).unwrap()).unwrap();
                    (per_token.squeeze(2).unwrap() * 1000.0).unwrap()
                }
                None => Tensor::new(&[sigma * 1000.0], &Device::Cpu).unwrap(),
            };
            assert_close(
                &format!("{name} step {step} timestep"),
                &timestep,
                &reference[&format!("step{step}.timestep")],
            );
            let model_in = blend(&x);
            let positive = denoise(&model, &model_in, sigma, &timestep, &reference, "positive", &positions);
            let negative = denoise(&model, &model_in, sigma, &timestep, &reference, "negative", &positions);
            let guided = (&negative + ((positive - &negative).unwrap() * cfg).unwrap()).unwrap();
            let denoised = match &mask {
                Some(mask) => ((guided * mask).unwrap()
                    + (latent * (mask.ones_like().unwrap() - mask).unwrap()).unwrap())
                .unwrap(),
                None => guided,
            };
            let derivative = ((&x - denoised).unwrap() / f64::from(sigma)).unwrap();
            x = (&x + (derivative * f64::from(next - sigma)).unwrap()).unwrap();
            assert_close(&format!("{name} step {step} x (chained)"), &x, &reference[&format!("step{step}.x")]);
        }
        assert_close(&format!("{name} samples (chained)"), &x, &reference["samples"]);
        let video = vae.decode(&vae.denormalize(&x).unwrap(), None, &mut ZeroNoise, &DecodeOptions::default()).unwrap();
        let images = ((video + 1.0).unwrap() / 2.0).unwrap().clamp(0f32, 1f32).unwrap();
        let (_, channels, frames, height, width) = images.dims5().unwrap();
        let images = images.permute((0, 2, 3, 4, 1)).unwrap().reshape((frames, height, width, channels)).unwrap();
        assert_close(&format!("{name} frames (chained)"), &images, &reference["frames"]);
    }
}
