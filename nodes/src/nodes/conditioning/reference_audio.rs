//! `LTXVReferenceAudio`: a reference voice clip for LTX-2's ID-LoRA. The clip's audio latent goes into both
//! conditionings as tokens the model reads before the audio it generates, and the model gains identity
//! guidance: one more positive pass without the clip per step, its difference from the positive
//! prediction scaled and added (ComfyUI's post-CFG function of the same node).

use crate::values::tensor_error;
use crate::values::{Audio, AudioVaeModel, CondEntry, Conditioning, DiffusionModel, IdentityGuidance, Transformer};
use candle_core::Device;
use kinograph_engine::prelude::*;
use kinograph_models::ltx2::transformer::pack_audio_latents;
use kinograph_models::sampling::samplers::flux_percent_to_sigma;
use std::sync::Arc;

/// `LTXVReferenceAudio`.
pub struct LtxvReferenceAudio;

impl Node for LtxvReferenceAudio {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let percent = |name: &str, default: f64| InputSpec::float(name, default).min(0.0).max(1.0).step(0.001);
        NodeSchema::new("LTXVReferenceAudio")
            .display_name("LTXV Reference Audio (ID-LoRA)")
            .category("model/conditioning/ltxv")
            .description(
                "Gives an LTX-2 ID-LoRA a reference voice: the clip is encoded into both conditionings, and the \
                 model guides towards that voice with one extra pass per step without the clip.",
            )
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(
                InputSpec::socket("reference_audio", "AUDIO")
                    .tooltip("A clip of the voice to keep; about 5 seconds, as the ID-LoRA was trained on."),
            )
            .input(InputSpec::socket("audio_vae", "VAE").tooltip("The LTX-2 audio VAE (LTXVAudioVAELoader)."))
            .input(
                InputSpec::float("identity_guidance_scale", 3.0)
                    .min(0.0)
                    .max(100.0)
                    .step(0.01)
                    .round(0.01)
                    .tooltip("How strongly to pull towards the reference voice; 0 adds no extra pass."),
            )
            .input(percent("start_percent", 0.0).tooltip("Where in the schedule identity guidance starts."))
            .input(percent("end_percent", 1.0).tooltip("Where in the schedule identity guidance ends."))
            .output("MODEL", "MODEL")
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        if !matches!(model.transformer, Transformer::Ltx2(_)) {
            return Err(NodeError::input(
                "model",
                format!("{} is an LTX-Video 0.9 model; reference audio needs an LTX-2 model", model.file.display()),
            ));
        }
        let scale = inputs.float("identity_guidance_scale")?;
        let (start, end) = (inputs.float("start_percent")?, inputs.float("end_percent")?);
        for (name, value, range) in [
            ("identity_guidance_scale", scale, 0.0..=100.0),
            ("start_percent", start, 0.0..=1.0),
            ("end_percent", end, 0.0..=1.0),
        ] {
            if !range.contains(&value) {
                return Err(NodeError::input(
                    name,
                    format!("{value} is out of range; expected {} to {}", range.start(), range.end()),
                ));
            }
        }
        let audio = inputs.object::<Audio>("reference_audio")?;
        let vae = inputs.object::<AudioVaeModel>("audio_vae").map_err(|_| {
            NodeError::input("audio_vae", "this VAE is not LTX-2's audio VAE: connect the output of LTXVAudioVAELoader")
        })?;
        let (_, channels, samples) = audio.dims()?;
        if samples == 0 {
            return Err(NodeError::input(
                "reference_audio",
                "the reference clip has no samples; expected a few seconds of speech",
            ));
        }
        if channels == 0 || channels > 2 {
            return Err(NodeError::input(
                "reference_audio",
                format!("the audio VAE takes mono or stereo sound, got {channels} channels"),
            ));
        }
        context.check_interrupted()?;
        // The same encoding as LTXVAudioVAEEncode (ComfyUI resamples to the VAE's rate, encodes, normalises).
        let failed = |e: candle_core::Error| tensor_error("encoding the reference audio", &e);
        let waveform = audio.waveform.to_device(&vae.vae_device()).map_err(failed)?;
        let latent = vae.vae.encode_waveform(&waveform, audio.sample_rate).map_err(failed)?;
        let latent = vae.vae.normalize(&latent).map_err(failed)?.to_device(&Device::Cpu).map_err(failed)?;
        let tokens = pack_audio_latents(&latent).map_err(failed)?;
        let with_reference = |name: &str| -> Result<Value, NodeError> {
            let conditioning = inputs.object::<Conditioning>(name)?;
            let entries =
                conditioning.entries.iter().map(|entry| CondEntry { ref_audio: Some(tokens.clone()), ..entry.clone() });
            Ok(Value::from(Arc::new(Conditioning { entries: entries.collect() })))
        };
        let (positive, negative) = (with_reference("positive")?, with_reference("negative")?);
        let mut patched = (*model).clone();
        patched.identity_guidance.push(IdentityGuidance {
            scale,
            sigma_start: flux_percent_to_sigma(start, model.shift),
            sigma_end: flux_percent_to_sigma(end, model.shift),
        });
        Ok(NodeOutput::new(vec![Value::from(Arc::new(patched)), positive, negative]))
    }
}
