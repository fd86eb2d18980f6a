//! A whole LTX-2 text-to-video-with-sound run on the tiny 2.0 parts against diffusers 0.42.1
//! `LTX2Pipeline` (`tools/fixtures/make_ltx2_fixtures.py`, `ref/pipeline_20.safetensors`): the prompt's
//! and the negative prompt's Gemma features through the connectors, 2 Euler steps on the pipeline's
//! shifted sigmas, each with the four forwards of the official guidance (negative prompt, perturbed
//! block 1, isolated modalities) combined per stream with rescaling, and the latents de-normalised with
//! the VAEs' statistics. Video and audio latents within 1e-4.

use crate::compare::{ltx2_data as data, max_abs_diff};
use candle_core::{Device, IndexOp, Tensor};
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::ltx2::transformer::{
    AvInputs, AvTimestepRouting, LoadOptions, Ltx2Transformer, Perturbation, unpack_audio_latents,
};
use kinograph_models::ltxv::transformer::unpack_latents;
use kinograph_models::sampling::multimodal_guidance::{GuidanceScales, Predictions, guide};
use kinograph_models::weights::WeightSource;
use std::collections::HashMap;
use std::sync::Arc;

/// The flattened `[B, T, D·L]` hidden states (channel-major) as the list of L states.
fn hidden_states(flat: &Tensor, width: usize) -> Vec<Tensor> {
    let (b, t, total) = flat.dims3().unwrap();
    let layers = total / width;
    let stacked = flat.reshape((b, t, width, layers)).unwrap();
    (0..layers).map(|l| stacked.i((.., .., .., l)).unwrap().contiguous().unwrap()).collect()
}

#[test]
fn two_guided_steps_match_the_diffusers_pipeline() {
    let device = Device::Cpu;
    let r: HashMap<String, Tensor> =
        candle_core::safetensors::load(data("ref/pipeline_20.safetensors"), &device).unwrap();
    let source = WeightSource::open(&[data("ref/pipeline_20.safetensors")]).unwrap();
    let settings: serde_json::Value = serde_json::from_str(source.metadata("pipeline").unwrap()).unwrap();
    let grid: Vec<usize> = serde_json::from_value(settings["latent_grid"].clone()).unwrap();
    let fps = settings["frame_rate"].as_f64().unwrap() as f32;
    let number = |key: &str| settings[key].as_f64().unwrap();
    let video_scales = GuidanceScales {
        cfg: number("guidance_scale"),
        stg: number("stg_scale"),
        modality: number("modality_scale"),
        rescale: number("guidance_rescale"),
    };
    let audio_scales = GuidanceScales {
        cfg: number("audio_guidance_scale"),
        stg: number("audio_stg_scale"),
        modality: number("audio_modality_scale"),
        rescale: number("audio_guidance_rescale"),
    };
    let stg_blocks: Vec<usize> = serde_json::from_value(settings["spatio_temporal_guidance_blocks"].clone()).unwrap();

    let connectors =
        TextConnectors::load(&Arc::new(WeightSource::open(&[data("connectors_20.safetensors")]).unwrap()), 16, &device)
            .unwrap();
    let encode = |embeds: &str, mask: &str| {
        let states = hidden_states(&r[embeds], 16);
        connectors.forward(&states, &r[mask], r[mask].dim(1).unwrap()).unwrap()
    };
    let (video_context, audio_context) = encode("prompt_embeds", "prompt_mask");
    let (negative_video_context, negative_audio_context) = encode("negative_embeds", "negative_mask");

    let mut model =
        Ltx2Transformer::load_file(&data("transformer_20.safetensors"), &device, LoadOptions::default()).unwrap();
    model.set_av_routing(AvTimestepRouting::Cross);
    model.set_v2a_after_a2v(false);
    let (frames, height, width) = (grid[0], grid[1], grid[2]);
    let audio_tokens = r["audio_latents"].dim(1).unwrap();
    let video_positions = model.video_positions(1, frames, height, width, fps).unwrap();
    let audio_positions = model.audio_positions(1, audio_tokens).unwrap();
    let sigmas: Vec<f32> = r["sigmas"].to_vec1().unwrap();

    // Packed audio latents given to the pipeline are normalised with the audio VAE's statistics (video
    // latents given packed are taken as they are).
    let mut video = r["latents"].clone();
    let mut audio = r["audio_latents"]
        .broadcast_sub(&r["audio_latents_mean"])
        .unwrap()
        .broadcast_div(&r["audio_latents_std"])
        .unwrap();
    for step in 0..sigmas.len() - 1 {
        let (sigma, next) = (sigmas[step], sigmas[step + 1]);
        let t = Tensor::new(&[sigma * 1000.0], &device).unwrap();
        let run = |video_context: &Tensor, audio_context: &Tensor, perturbation: Perturbation| {
            let inputs = AvInputs::at_one_timestep(
                (&video, &audio),
                (video_context, audio_context),
                &t,
                (&video_positions, &audio_positions),
            );
            let (v, a) = model.forward(&inputs, &perturbation).unwrap();
            // x₀ = x − σ·v
            ((&video - (v * f64::from(sigma)).unwrap()).unwrap(), (&audio - (a * f64::from(sigma)).unwrap()).unwrap())
        };
        let conditional = run(&video_context, &audio_context, Perturbation::default());
        let unconditional = run(&negative_video_context, &negative_audio_context, Perturbation::default());
        let perturbed = run(
            &video_context,
            &audio_context,
            Perturbation { stg_blocks: stg_blocks.clone(), isolate_modalities: false },
        );
        let isolated =
            run(&video_context, &audio_context, Perturbation { stg_blocks: Vec::new(), isolate_modalities: true });
        let guided_video = guide(
            &Predictions {
                conditional: &conditional.0,
                unconditional: Some(&unconditional.0),
                perturbed: Some(&perturbed.0),
                isolated: Some(&isolated.0),
            },
            &video_scales,
        )
        .unwrap();
        let guided_audio = guide(
            &Predictions {
                conditional: &conditional.1,
                unconditional: Some(&unconditional.1),
                perturbed: Some(&perturbed.1),
                isolated: Some(&isolated.1),
            },
            &audio_scales,
        )
        .unwrap();
        // Euler on the velocity (x − x̂₀)/σ.
        let euler = |x: &Tensor, x0: &Tensor| {
            let velocity = ((x - x0).unwrap() / f64::from(sigma)).unwrap();
            (x + (velocity * f64::from(next - sigma)).unwrap()).unwrap()
        };
        video = euler(&video, &guided_video);
        audio = euler(&audio, &guided_audio);
    }

    let scaling = settings["scaling_factor"].as_f64().unwrap();
    let video = unpack_latents(&video, frames, height, width).unwrap();
    let mean = r["latents_mean"].reshape((1, (), 1, 1, 1)).unwrap();
    let std = r["latents_std"].reshape((1, (), 1, 1, 1)).unwrap();
    let video = ((video.broadcast_mul(&std).unwrap() / scaling).unwrap()).broadcast_add(&mean).unwrap();
    let audio = audio.broadcast_mul(&r["audio_latents_std"]).unwrap().broadcast_add(&r["audio_latents_mean"]).unwrap();
    let audio = unpack_audio_latents(&audio, r["audio_out"].dim(1).unwrap()).unwrap();

    let video_error = max_abs_diff(&video, &r["video_out"]);
    let audio_error = max_abs_diff(&audio, &r["audio_out"]);
    println!("LTX2Pipeline, 2 steps: video latents {video_error:.3e}, audio latents {audio_error:.3e}");
    assert!(video_error <= 1e-4, "video latents differ by {video_error}");
    assert!(audio_error <= 1e-4, "audio latents differ by {audio_error}");
}
