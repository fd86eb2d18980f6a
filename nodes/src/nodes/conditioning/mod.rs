//! Conditioning nodes: `CLIPTextEncode`, `ConditioningZeroOut`, `LTXVConditioning`, the keyframe guides
//! `LTXVAddGuide` and `LTXVCropGuides` (in `guides.rs`), `GetICLoRAParameters` (`ic_lora.rs`),
//! `LTXVReferenceAudio` (`reference_audio.rs`) and the prompt enhancer `TextGenerateLTX2Prompt`
//! (`text_generate.rs`).

mod guides;
mod ic_lora;
mod reference_audio;
mod text_generate;

pub use guides::{LtxvAddGuide, LtxvAddLatentGuide, LtxvCropGuides};
pub use ic_lora::{GetIcLoraParameters, reference_downscale_factor};
pub use reference_audio::LtxvReferenceAudio;

use crate::values::{CondEntry, Conditioning, tensor_error};
use crate::values::{GemmaText, TextEncoder};
use candle_core::Tensor;
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// The shortest token sequence ComfyUI's LTX-Video tokenizer pads to.
const MIN_TOKENS: usize = kinograph_models::t5::COMFY_MIN_LENGTH;

/// `CLIPTextEncode`: a prompt through T5, with ComfyUI's `(text:1.2)` weights and its attention mask.
pub struct ClipTextEncode;

impl Node for ClipTextEncode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("CLIPTextEncode")
            .display_name("CLIP Text Encode (Prompt)")
            .category("conditioning")
            .description("Encodes a text prompt with the text encoder into the conditioning a sampler follows.")
            .input(InputSpec::multiline("text", "").dynamic_prompts().tooltip("The text to be encoded."))
            .input(InputSpec::socket("clip", "CLIP").tooltip("The text encoder used to encode the text."))
            .output("CONDITIONING", "CONDITIONING")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let text = inputs.string("text")?;
        let clip = inputs.object::<TextEncoder>("clip")?;
        if let Some(gemma) = &clip.gemma {
            context.check_interrupted()?;
            let entry = encode_with_gemma(gemma, text)?;
            return Ok(NodeOutput::new(vec![Value::from(Arc::new(Conditioning { entries: vec![entry] }))]));
        }
        let encoder = clip.encoder()?;
        let tokens = clip.tokenizer.encode_weighted(text, MIN_TOKENS).map_err(|e| NodeError::input("text", e))?;
        context.check_interrupted()?;
        let context_tensor = encoder.encode_tokens(&tokens, true).map_err(|e| tensor_error("T5 encode", &e))?;
        let (_, mask) =
            tokens.to_tensors(&candle_core::Device::Cpu).map_err(|e| tensor_error("T5 attention mask", &e))?;
        let context_tensor =
            context_tensor.to_device(&candle_core::Device::Cpu).map_err(|e| tensor_error("T5 output", &e))?;
        let conditioning = Conditioning { entries: vec![CondEntry::new(context_tensor, Some(mask))] };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(conditioning))]))
    }
}

/// LTX-2's text encoding as ComfyUI does it: the stripped prompt with BOS, unpadded, through Gemma 3; every
/// hidden state through the feature projection; the video and audio connectors fill the context to 1024
/// tokens with their registers.
fn encode_with_gemma(gemma: &GemmaText, text: &str) -> Result<CondEntry, NodeError> {
    let failed = |e: candle_core::Error| tensor_error("Gemma text encoding", &e);
    let ids = gemma.tokenizer.encode_prompt(text).map_err(|e| NodeError::input("text", e))?;
    let device = gemma.model.device();
    let count = ids.len();
    let ids = Tensor::from_vec(ids, (1, count), device).map_err(failed)?;
    let hidden = gemma.model.hidden_states(&ids, None).map_err(failed)?;
    let mask = Tensor::ones((1, count), candle_core::DType::F32, device).map_err(failed)?;
    let length = gemma.connectors.context_length(count);
    let (video, audio) = gemma.connectors.forward(&hidden, &mask, length).map_err(failed)?;
    let cpu = |t: Tensor| t.to_device(&candle_core::Device::Cpu).map_err(failed);
    let mut entry = CondEntry::new(cpu(video)?, None);
    entry.audio_context = Some(cpu(audio)?);
    Ok(entry)
}

/// `ConditioningZeroOut`: the same conditioning with zeroed embeddings (masks and options kept).
pub struct ConditioningZeroOut;

impl Node for ConditioningZeroOut {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ConditioningZeroOut")
            .category("advanced/conditioning")
            .input(InputSpec::socket("conditioning", "CONDITIONING"))
            .output("CONDITIONING", "CONDITIONING")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let conditioning = inputs.object::<Conditioning>("conditioning")?;
        let entries = conditioning
            .entries
            .iter()
            .map(|entry| {
                let zero = |t: &Tensor| t.zeros_like().map_err(|e| tensor_error("zeroing", &e));
                Ok(CondEntry {
                    context: zero(&entry.context)?,
                    audio_context: entry.audio_context.as_ref().map(zero).transpose()?,
                    ..entry.clone()
                })
            })
            .collect::<Result<Vec<_>, NodeError>>()?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Conditioning { entries }))]))
    }
}

/// `LTXVConditioning`: sets the frame rate the model's positions use on both conditionings.
pub struct LtxvConditioning;

impl Node for LtxvConditioning {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("LTXVConditioning")
            .category("conditioning/video_models")
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(InputSpec::float("frame_rate", 25.0).min(0.0).max(1000.0).step(0.01))
            .output("CONDITIONING", "positive")
            .output("CONDITIONING", "negative")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let frame_rate = inputs.float("frame_rate")?;
        if frame_rate <= 0.0 {
            return Err(NodeError::input("frame_rate", "must be above 0: positions are divided by it"));
        }
        let with_rate = |name: &str| -> Result<Value, NodeError> {
            let conditioning = inputs.object::<Conditioning>(name)?;
            let entries = conditioning
                .entries
                .iter()
                .map(|entry| CondEntry { frame_rate: Some(frame_rate), ..entry.clone() })
                .collect();
            Ok(Value::from(Arc::new(Conditioning { entries })))
        };
        Ok(NodeOutput::new(vec![with_rate("positive")?, with_rate("negative")?]))
    }
}

/// The conditioning nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(ClipTextEncode),
        Arc::new(ConditioningZeroOut),
        Arc::new(LtxvConditioning),
        Arc::new(LtxvAddGuide),
        Arc::new(LtxvAddLatentGuide),
        Arc::new(LtxvCropGuides),
        Arc::new(text_generate::TextGenerateLtx2Prompt),
        Arc::new(GetIcLoraParameters),
        Arc::new(LtxvReferenceAudio),
    ]
}
