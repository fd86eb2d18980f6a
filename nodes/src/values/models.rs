//! The MODEL, CLIP and VAE values the loaders produce.

use kinograph_engine::{NodeError, NodeValue};
use kinograph_models::gemma3::{Gemma3TextModel, GemmaTokenizer};
use kinograph_models::lora::{LayerPatch, LoraFile};
use kinograph_models::ltx2::audio::{AudioVae, Vocoder};
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::ltx2::transformer::Ltx2Transformer;
use kinograph_models::ltx2::upsampler::LatentUpsampler;
use kinograph_models::ltxv::transformer::LtxvTransformer;
use kinograph_models::ltxv::vae::LtxvVae;
use kinograph_models::t5::{T5Encoder, T5Tokenizer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The transformer a MODEL holds.
#[derive(Debug, Clone)]
pub enum Transformer {
    /// LTX-Video 0.9.x (video only).
    Ltxv(Arc<LtxvTransformer>),
    /// LTX-2 (video with sound).
    Ltx2(Arc<Ltx2Transformer>),
}

impl Transformer {
    /// The linear layers a LoRA may patch, with their `(out, in)` sizes.
    pub fn linear_layers(&self) -> candle_core::Result<Vec<(String, (usize, usize))>> {
        match self {
            Transformer::Ltxv(model) => model.linear_layers(),
            Transformer::Ltx2(model) => model.linear_layers(),
        }
    }

    /// Other parameters a LoRA file may name (so that they are not reported as unknown keys).
    pub fn other_parameter_names(&self) -> Vec<String> {
        match self {
            Transformer::Ltxv(model) => model.other_parameter_names(),
            Transformer::Ltx2(_) => Vec::new(),
        }
    }

    /// The same transformer with the LoRA updates `patches` applied.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> candle_core::Result<Self> {
        Ok(match self {
            Transformer::Ltxv(model) => Transformer::Ltxv(Arc::new(model.with_patches(patches)?)),
            Transformer::Ltx2(model) => Transformer::Ltx2(Arc::new(model.with_patches(patches)?)),
        })
    }

    /// The latent channels the model denoises.
    pub fn in_channels(&self) -> usize {
        match self {
            Transformer::Ltxv(model) => model.config().in_channels,
            Transformer::Ltx2(model) => model.config().in_channels,
        }
    }
}

/// MODEL: an LTX-Video or LTX-2 transformer and the file it came from.
#[derive(Debug, Clone)]
pub struct DiffusionModel {
    pub transformer: Transformer,
    pub file: PathBuf,
    /// The model's built-in flow shift (`ModelSamplingFlux`), which ComfyUI's own schedulers use: 2.37
    /// for LTX-Video.
    pub shift: f64,
    /// Bytes of the weights in memory.
    pub bytes: usize,
    /// The LoRA files applied, in order (the model holds them: their tensors are its updates).
    pub loras: Vec<Arc<LoraFile>>,
    /// `LTXVReferenceAudio`'s identity guidance, in the order the nodes added it (ComfyUI's post-CFG
    /// functions on the model).
    pub identity_guidance: Vec<IdentityGuidance>,
}

/// ComfyUI's `LTXVReferenceAudio` post-CFG step: where `sigma_end < σ ≤ sigma_start`, the guided prediction
/// gains `scale·(cond − cond without the reference audio)`, one more positive pass per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdentityGuidance {
    pub scale: f64,
    /// The sigma of `start_percent` (the model's `percent_to_sigma`).
    pub sigma_start: f64,
    /// The sigma of `end_percent`.
    pub sigma_end: f64,
}

impl IdentityGuidance {
    /// Whether it changes the prediction at `sigma`.
    pub fn active_at(&self, sigma: f64) -> bool {
        self.scale != 0.0 && sigma <= self.sigma_start && sigma > self.sigma_end
    }
}

impl DiffusionModel {
    /// The `__metadata__` of the last LoRA applied whose file has any: ComfyUI's `lora_metadata`
    /// attachment, which each LoRA loader replaces when its file carries metadata and passes on otherwise.
    pub fn lora_metadata(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.loras.iter().rev().map(|lora| lora.metadata()).find(|metadata| !metadata.is_empty())
    }

    /// The LTX-Video transformer, or an error naming `input` when this is an LTX-2 model.
    pub fn ltxv(&self, input: &str) -> Result<&Arc<LtxvTransformer>, NodeError> {
        match &self.transformer {
            Transformer::Ltxv(model) => Ok(model),
            Transformer::Ltx2(_) => Err(NodeError::input(
                input,
                format!("{} is an LTX-2 model; this node works with LTX-Video 0.9.x models", self.file.display()),
            )),
        }
    }
}

impl NodeValue for DiffusionModel {
    fn type_name(&self) -> &'static str {
        "MODEL"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn model_bytes(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        let loras: Vec<String> = self.loras.iter().map(|lora| format!(" + LoRA {}", lora.path().display())).collect();
        let loras = loras.concat();
        let kind = match &self.transformer {
            Transformer::Ltxv(model) => format!("LTX-Video ({} blocks)", model.block_count()),
            Transformer::Ltx2(model) => {
                format!("LTX-2 {:?} ({} blocks)", model.config().version(), model.config().num_layers)
            }
        };
        format!("MODEL {kind} from {}{loras}", self.file.display())
    }
}

/// LTX-2's text stack: Gemma 3 (which also writes prompts for `TextGenerateLTX2Prompt`), its tokenizer,
/// and the feature projection and connectors from the LTX-2 checkpoint.
#[derive(Debug, Clone)]
pub struct GemmaText {
    pub model: Arc<Gemma3TextModel>,
    pub tokenizer: Arc<GemmaTokenizer>,
    pub connectors: Arc<TextConnectors>,
    /// The Gemma file and the checkpoint the connectors came from.
    pub gemma_file: PathBuf,
    pub connector_file: PathBuf,
}

/// CLIP: the T5 text encoder and its tokenizer (LTX-Video), or LTX-2's Gemma stack (`gemma`). A
/// checkpoint without a text encoder gives one without an encoder, which fails only if something tries to
/// encode with it (as in ComfyUI).
#[derive(Debug, Clone)]
pub struct TextEncoder {
    pub encoder: Option<Arc<T5Encoder>>,
    pub tokenizer: Arc<T5Tokenizer>,
    /// LTX-2's text stack, when this CLIP came from `LTXAVTextEncoderLoader`.
    pub gemma: Option<Arc<GemmaText>>,
    pub file: PathBuf,
    pub bytes: usize,
}

impl TextEncoder {
    /// LTX-2's Gemma stack, or an error saying how to load one.
    pub fn gemma(&self) -> Result<&Arc<GemmaText>, NodeError> {
        self.gemma.as_ref().ok_or_else(|| {
            NodeError::input(
                "clip",
                format!(
                    "this CLIP is T5 from {}; LTX-2 needs Gemma 3 with the checkpoint's connectors: load it with \
                     LTXAVTextEncoderLoader",
                    self.file.display()
                ),
            )
        })
    }

    /// The encoder, or an error saying where to get one.
    pub fn encoder(&self) -> Result<&Arc<T5Encoder>, NodeError> {
        self.encoder.as_ref().ok_or_else(|| {
            NodeError::input(
                "clip",
                format!(
                    "the checkpoint {} carries no text encoder; load T5 with CLIPLoader (type ltxv) and connect that",
                    self.file.display()
                ),
            )
        })
    }
}

impl NodeValue for TextEncoder {
    fn type_name(&self) -> &'static str {
        "CLIP"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn model_bytes(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        if let Some(gemma) = &self.gemma {
            return format!(
                "CLIP Gemma 3 ({} layers) from {} with connectors from {}",
                gemma.model.config().num_hidden_layers,
                gemma.gemma_file.display(),
                gemma.connector_file.display()
            );
        }
        match &self.encoder {
            Some(encoder) => format!("CLIP T5 ({} blocks) from {}", encoder.config().num_layers, self.file.display()),
            None => format!("CLIP (none: {} has no text encoder)", self.file.display()),
        }
    }
}

/// VAE: the LTX-Video video VAE.
#[derive(Debug, Clone)]
pub struct VideoVae {
    pub vae: Arc<LtxvVae>,
    pub file: PathBuf,
    pub bytes: usize,
}

impl NodeValue for VideoVae {
    fn type_name(&self) -> &'static str {
        "VAE"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn model_bytes(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        format!("VAE LTX-Video {:?} from {}", self.vae.version(), self.file.display())
    }
}

/// VAE (audio): LTX-2's audio VAE with its vocoder, from `LTXVAudioVAELoader`.
#[derive(Debug, Clone)]
pub struct AudioVaeModel {
    pub vae: Arc<AudioVae>,
    pub vocoder: Arc<Vocoder>,
    /// Where both compute.
    pub device: candle_core::Device,
    pub file: PathBuf,
    pub bytes: usize,
}

impl AudioVaeModel {
    /// The device the VAE and vocoder compute on.
    pub fn vae_device(&self) -> candle_core::Device {
        self.device.clone()
    }
}

impl NodeValue for AudioVaeModel {
    fn type_name(&self) -> &'static str {
        "VAE"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn model_bytes(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        format!("VAE LTX-2 audio ({} Hz vocoder) from {}", self.vocoder.sample_rate(), self.file.display())
    }
}

/// `LATENT_UPSCALE_MODEL`: LTX-2's latent upsampler.
#[derive(Debug, Clone)]
pub struct LatentUpscaleModel {
    pub upsampler: Arc<LatentUpsampler>,
    pub file: PathBuf,
    pub bytes: usize,
}

impl NodeValue for LatentUpscaleModel {
    fn type_name(&self) -> &'static str {
        "LATENT_UPSCALE_MODEL"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn model_bytes(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        format!("LATENT_UPSCALE_MODEL {:?} from {}", self.upsampler.config().mode, self.file.display())
    }
}
