//! From Gemma 3's hidden states to the two text contexts the LTX-2 transformer attends to: the feature
//! extractor ([`features`]) and the video and audio connectors ([`connector`]). diffusers
//! `LTX2TextConnectors`; in the official single file the projection is `text_embedding_projection.*` and
//! the connectors `model.diffusion_model.{video,audio}_embeddings_connector.*` (ComfyUI and Kijai ship
//! the same names in separate connector files).

pub mod connector;
pub mod features;

use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Tensor};
use connector::{Connector, ConnectorConfig};
use features::FeatureExtractor;
use std::sync::Arc;

/// The sequence length the connectors produce at least (the official pipelines pad prompts to 1024).
pub const CONTEXT_LENGTH: usize = 1024;

/// The projection and both connectors.
#[derive(Debug)]
pub struct TextConnectors {
    features: FeatureExtractor,
    video: Connector,
    audio: Connector,
}

impl TextConnectors {
    /// Reads the projection and the connectors from `source`, wherever their prefixes are;
    /// `encoder_width` is the text encoder's hidden width (3840 for Gemma 3 12B).
    pub fn load(source: &Arc<WeightSource>, encoder_width: usize, device: &Device) -> Result<Self, WeightError> {
        let files = || source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let find = |suffix: &str, what: &str| -> Result<String, WeightError> {
            source.names().find_map(|name| name.strip_suffix(suffix).map(str::to_string)).ok_or_else(|| {
                WeightError::Invalid {
                    file: files(),
                    message: format!("no LTX-2 {what} found (expected a tensor named '…{suffix}')"),
                }
            })
        };
        let video_prefix = find("video_embeddings_connector.learnable_registers", "video text connector")?;
        let audio_prefix = find("audio_embeddings_connector.learnable_registers", "audio text connector")?;
        let projection = match find("text_embedding_projection.aggregate_embed.weight", "") {
            Ok(prefix) => prefix,
            Err(_) => find("text_embedding_projection.video_aggregate_embed.weight", "text feature projection")?,
        };
        let json = match source.metadata("config") {
            Some(text) => serde_json::from_str::<serde_json::Value>(text).map_err(|e| WeightError::Invalid {
                file: files(),
                message: format!("the model config is not valid JSON: {e}"),
            })?,
            None => serde_json::Value::Null,
        };
        let config = json.get("transformer").unwrap_or(&json);
        let number = |key: &str| config.get(key).and_then(serde_json::Value::as_f64);
        let dtype = source.common_dtype(
            source.names().filter(|n| n.starts_with(&format!("{projection}text_embedding_projection."))),
            "LTX-2 text projection weights",
        )?;
        let dtype = if dtype == DType::F8E4M3 { DType::F32 } else { dtype };

        let connector = |prefix: &str, name: &str, audio: bool| -> Result<Connector, WeightError> {
            let root = format!("{prefix}{name}");
            let width = source
                .shape(&format!("{root}.learnable_registers"))
                .and_then(|shape| shape.get(1).copied())
                .unwrap_or_default();
            let key = |video_key: &str, audio_key: &str| {
                if audio { number(audio_key).or_else(|| number(video_key)) } else { number(video_key) }
            };
            let head_dim = key("connector_attention_head_dim", "audio_connector_attention_head_dim")
                .map_or(if width == 2048 { 64 } else { 128 }, |v| v as usize);
            let heads = key("connector_num_attention_heads", "audio_connector_num_attention_heads")
                .map_or(width / head_dim.max(1), |v| v as usize);
            let layers = (0..usize::MAX)
                .take_while(|i| source.contains(&format!("{root}.transformer_1d_blocks.{i}.attn1.to_q.weight")))
                .count();
            let max_position = config
                .get("connector_positional_embedding_max_pos")
                .and_then(|v| v.get(0))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(4096.0) as f32;
            let connector_config = ConnectorConfig {
                heads,
                head_dim,
                layers,
                gated: source.contains(&format!("{root}.transformer_1d_blocks.0.attn1.to_gate_logits.weight")),
                max_position,
                theta: number("positional_embedding_theta").unwrap_or(10_000.0),
                eps: 1e-6,
            };
            let vb = source.var_builder(&root, dtype, device);
            Connector::new(connector_config, &vb).map_err(|e| source.explain(&e))
        };
        let vb = source.var_builder(&format!("{projection}text_embedding_projection"), dtype, device);
        let inputs = ["aggregate_embed.weight", "video_aggregate_embed.weight"]
            .iter()
            .find_map(|name| source.shape(&format!("{projection}text_embedding_projection.{name}")))
            .and_then(|shape| shape.get(1).copied())
            .unwrap_or_default();
        if encoder_width == 0 || inputs % encoder_width != 0 {
            return Err(WeightError::Invalid {
                file: files(),
                message: format!("the text projection takes {inputs} features, not a multiple of {encoder_width}"),
            });
        }
        let features =
            FeatureExtractor::new(&vb, encoder_width, inputs / encoder_width).map_err(|e| source.explain(&e))?;
        Ok(TextConnectors {
            features,
            video: connector(&video_prefix, "video_embeddings_connector", false)?,
            audio: connector(&audio_prefix, "audio_embeddings_connector", true)?,
        })
    }

    /// The feature extractor.
    pub fn features(&self) -> &FeatureExtractor {
        &self.features
    }

    /// The length [`Self::forward`] gives `valid` tokens by default: at least [`CONTEXT_LENGTH`], a multiple
    /// of the register count.
    pub fn context_length(&self, valid: usize) -> usize {
        let registers = self.video.register_count().max(1);
        CONTEXT_LENGTH.max(valid.div_ceil(registers) * registers)
    }

    /// `hidden_states` (every hidden state of the encoder, each `[B, T, D]`) with `mask` `[B, T]` →
    /// (video context, audio context), each `[B, length, ·]` with every position valid. Padded and unpadded
    /// prompts give the same contexts.
    pub fn forward(
        &self,
        hidden_states: &[Tensor],
        mask: &Tensor,
        length: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (video, audio) = self.features.forward(hidden_states, mask)?;
        Ok((self.video.forward(&video, Some(mask), length)?, self.audio.forward(&audio, Some(mask), length)?))
    }
}
