//! What an LTX file holds. People download LTX-2 as one official single file (transformer, text
//! connectors and projection, video VAE, audio VAE and vocoder) or as ComfyUI's and the community's split
//! files (a diffusion model, a VAE, an audio VAE with its vocoder, a connector file, Gemma); a loader asks
//! [`Contents::require`] for the part it needs and the user gets an error naming the file, the part and
//! the tensor that would have shown it, instead of a missing-tensor error deep inside a model.

use super::transformer::{Ltx2Version, detect_layout, read_config};
use crate::weights::{WeightError, WeightSource};

/// A part of the LTX-2 family a file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The audio-video transformer.
    Transformer,
    /// The video and audio text connectors.
    TextConnectors,
    /// The Gemma feature projection (`text_embedding_projection`).
    TextProjection,
    /// The video VAE.
    VideoVae,
    /// The audio VAE.
    AudioVae,
    /// The vocoder.
    Vocoder,
    /// Gemma 3 (the text encoder).
    TextEncoder,
}

impl Part {
    /// The part's name for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Part::Transformer => "LTX-2 transformer",
            Part::TextConnectors => "text connectors",
            Part::TextProjection => "text feature projection",
            Part::VideoVae => "video VAE",
            Part::AudioVae => "audio VAE",
            Part::Vocoder => "vocoder",
            Part::TextEncoder => "Gemma 3 text encoder",
        }
    }

    /// A tensor whose presence shows the part (official names).
    pub fn marker(self) -> &'static str {
        match self {
            Part::Transformer => "model.diffusion_model.audio_adaln_single.linear.weight",
            Part::TextConnectors => "model.diffusion_model.video_embeddings_connector.learnable_registers",
            Part::TextProjection => "text_embedding_projection.aggregate_embed.weight",
            Part::VideoVae => "vae.decoder.conv_in.conv.weight",
            Part::AudioVae => "audio_vae.decoder.conv_in.conv.weight",
            Part::Vocoder => "vocoder.conv_pre.weight",
            Part::TextEncoder => "model.layers.0.self_attn.q_norm.weight",
        }
    }
}

/// The parts found in a weight source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The transformer's release, if the file has one.
    pub transformer: Option<Ltx2Version>,
    /// Whether the file holds an LTX-Video 0.9.x transformer instead (no audio stream).
    pub ltxv_transformer: bool,
    /// The other parts found.
    pub parts: Vec<Part>,
    /// `__metadata__.model_version` (2.3 files and later carry it).
    pub model_version: Option<String>,
}

impl Contents {
    /// Looks at the tensor names (and, for the transformer, shapes and metadata) of `source`.
    pub fn inspect(source: &WeightSource) -> Contents {
        let any = |test: &dyn Fn(&str) -> bool| source.names().any(test);
        let transformer =
            detect_layout(source).ok().and_then(|layout| read_config(source, &layout).ok()).map(|c| c.version());
        let ltxv_transformer = transformer.is_none()
            && any(&|n: &str| n.ends_with("adaln_single.linear.weight") || n.ends_with("time_embed.linear.weight"));
        let mut parts = Vec::new();
        if transformer.is_some() {
            parts.push(Part::Transformer);
        }
        if any(&|n: &str| {
            n.ends_with("video_embeddings_connector.learnable_registers")
                || n.ends_with("video_connector.learnable_registers")
        }) {
            parts.push(Part::TextConnectors);
        }
        if any(&|n: &str| n.contains("aggregate_embed.") || n.ends_with("text_proj_in.weight")) {
            parts.push(Part::TextProjection);
        }
        let has_prefixed = |prefix: &str| any(&|n: &str| n.starts_with(prefix));
        // Separate VAE files keep the names without the `vae.` prefix, beside the latent statistics.
        let bare_vae =
            has_prefixed("decoder.") && has_prefixed("per_channel_statistics.") && !has_prefixed("decoder.conv_pre");
        if has_prefixed("vae.decoder.") || has_prefixed("vae.encoder.") || bare_vae {
            parts.push(Part::VideoVae);
        }
        if has_prefixed("audio_vae.decoder.") || has_prefixed("audio_vae.encoder.") {
            parts.push(Part::AudioVae);
        }
        if has_prefixed("vocoder.") {
            parts.push(Part::Vocoder);
        }
        if any(&|n: &str| n.contains("layers.0.self_attn.q_norm.weight") && !n.contains("transformer_blocks")) {
            parts.push(Part::TextEncoder);
        }
        Contents {
            transformer,
            ltxv_transformer,
            parts,
            model_version: source.metadata("model_version").map(str::to_string),
        }
    }

    /// Whether `part` is there.
    pub fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// `Ok` when `part` is there; otherwise an error naming the file, what it holds and what was looked for.
    pub fn require(&self, part: Part, source: &WeightSource) -> Result<(), WeightError> {
        if self.has(part) {
            return Ok(());
        }
        let file = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let mut found: Vec<&str> = Vec::new();
        if self.ltxv_transformer {
            found.push("an LTX-Video 0.9.x transformer (an LTX-Video 0.9 checkpoint, not LTX-2)");
        }
        found.extend(self.parts.iter().map(|p| p.describe()));
        let holds = if found.is_empty() { "no LTX-2 part".to_string() } else { found.join(", ") };
        Err(WeightError::Invalid {
            file,
            message: format!(
                "this file holds {holds} but no {} (looked for tensors like '{}'); load it from the file that has it",
                part.describe(),
                part.marker()
            ),
        })
    }
}
