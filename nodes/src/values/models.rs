//! The MODEL, CLIP and VAE values the loaders produce.

use kinograph_engine::{NodeError, NodeValue};
use kinograph_models::gemma3::{Gemma3TextModel, GemmaTokenizer};
use kinograph_models::lora::LoraFile;
use kinograph_models::ltx2::text::TextConnectors;
use kinograph_models::ltxv::transformer::LtxvTransformer;
use kinograph_models::ltxv::vae::LtxvVae;
use kinograph_models::t5::{T5Encoder, T5Tokenizer};
use std::path::PathBuf;
use std::sync::Arc;

/// MODEL: an LTX-Video transformer and the file it came from.
#[derive(Debug, Clone)]
pub struct DiffusionModel {
    pub transformer: Arc<LtxvTransformer>,
    pub file: PathBuf,
    /// The model's built-in flow shift (`ModelSamplingFlux`), which ComfyUI's own schedulers use: 2.37
    /// for LTX-Video.
    pub shift: f64,
    /// Bytes of the weights in memory.
    pub bytes: usize,
    /// The LoRA files applied, in order (the model holds them: their tensors are its updates).
    pub loras: Vec<Arc<LoraFile>>,
}

impl NodeValue for DiffusionModel {
    fn type_name(&self) -> &'static str {
        "MODEL"
    }
    fn byte_size(&self) -> usize {
        self.bytes
    }
    fn describe(&self) -> String {
        let loras: Vec<String> = self.loras.iter().map(|lora| format!(" + LoRA {}", lora.path().display())).collect();
        let loras = loras.concat();
        format!("MODEL LTX-Video ({} blocks) from {}{loras}", self.transformer.blocks().len(), self.file.display())
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
    fn describe(&self) -> String {
        format!("VAE LTX-Video {:?} from {}", self.vae.version(), self.file.display())
    }
}
