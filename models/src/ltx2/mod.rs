//! LTX-2 (Lightricks, 2026) and its successors 2.3 and 2.5: the joint audio-video transformer.
//!
//! | module | reference |
//! |---|---|
//! | [`audio`] | the audio VAE (`AutoencoderKLLTX2Audio`), its log-mel front end and the vocoders (2.0, 2.3 with BWE) |
//! | [`checkpoint`] | which parts (transformer, connectors, VAEs, vocoder, Gemma) a file holds, and errors naming a missing one |
//! | [`rope`] | the split rotary embedding shared by the transformer and the text connectors |
//! | [`text`] | the feature extractor and the video/audio text connectors (`LTX2TextConnectors`) |
//! | [`transformer`] | `LTX2VideoTransformer3DModel` (diffusers) / `LTXAVModel` (ComfyUI) |
//! | [`upsampler`] | the latent upsampler (spatial ×2, ×1.5, temporal ×2) of the two-stage pipelines |

pub mod audio;
pub mod checkpoint;
pub mod rope;
pub mod text;
pub mod transformer;
pub mod upsampler;
