//! From Gemma 3's hidden states to the two text contexts the LTX-2 transformer attends to: the feature
//! extractor ([`features`]) and the video and audio connectors ([`connector`]). diffusers
//! `LTX2TextConnectors`; in the official single file the projection is `text_embedding_projection.*` and
//! the connectors `model.diffusion_model.{video,audio}_embeddings_connector.*` (ComfyUI and Kijai ship
//! the same names in separate connector files).

pub mod connector;
pub mod features;

use crate::weights::{WeightError, WeightSource, rename_parts};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
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

/// The names the projection and the connectors are stored under.
struct Layout {
    /// The official single-file names (`video_embeddings_connector`, `transformer_1d_blocks`,
    /// `text_embedding_projection.*aggregate_embed`), or diffusers' (`video_connector`, `transformer_blocks`,
    /// `*text_proj_in`, `norm_q`).
    diffusers: bool,
    video_root: String,
    audio_root: String,
    projection_root: String,
}

impl Layout {
    fn find(source: &WeightSource) -> Result<Self, WeightError> {
        let find = |suffix: &str| source.names().find_map(|name| name.strip_suffix(suffix).map(str::to_string));
        if let (Some(video), Some(audio)) = (
            find("video_embeddings_connector.learnable_registers"),
            find("audio_embeddings_connector.learnable_registers"),
        ) {
            let projection = find("text_embedding_projection.aggregate_embed.weight")
                .or_else(|| find("text_embedding_projection.video_aggregate_embed.weight"))
                .ok_or_else(|| {
                    missing(source, "text_embedding_projection.aggregate_embed.weight", "text feature projection")
                })?;
            return Ok(Layout {
                diffusers: false,
                video_root: format!("{video}video_embeddings_connector"),
                audio_root: format!("{audio}audio_embeddings_connector"),
                projection_root: format!("{projection}text_embedding_projection"),
            });
        }
        if let (Some(video), Some(audio)) =
            (find("video_connector.learnable_registers"), find("audio_connector.learnable_registers"))
        {
            let projection = find("text_proj_in.weight")
                .filter(|p| !p.ends_with("video_") && !p.ends_with("audio_"))
                .or_else(|| find("video_text_proj_in.weight"))
                .ok_or_else(|| missing(source, "text_proj_in.weight", "text feature projection"))?;
            return Ok(Layout {
                diffusers: true,
                video_root: format!("{video}video_connector"),
                audio_root: format!("{audio}audio_connector"),
                projection_root: projection.trim_end_matches('.').to_string(),
            });
        }
        Err(missing(source, "video_embeddings_connector.learnable_registers", "video text connector"))
    }

    /// The stored name under a connector's root of what the model calls `name` (official names).
    fn connector_name(&self, name: &str) -> String {
        if !self.diffusers {
            return name.to_string();
        }
        rename_parts(
            name,
            &[("transformer_1d_blocks", "transformer_blocks"), ("q_norm", "norm_q"), ("k_norm", "norm_k")],
        )
    }

    /// A builder over one connector taking the official names.
    fn connector_builder(
        &self,
        source: &Arc<WeightSource>,
        root: &str,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        if self.diffusers {
            let layout = Layout {
                diffusers: true,
                video_root: String::new(),
                audio_root: String::new(),
                projection_root: String::new(),
            };
            source.renamed_var_builder(root, dtype, device, move |name| layout.connector_name(name))
        } else {
            source.var_builder(root, dtype, device)
        }
    }

    /// A builder over the projection taking the official names (`aggregate_embed`, `video_aggregate_embed`).
    fn projection_builder(&self, source: &Arc<WeightSource>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        if self.diffusers {
            source.renamed_var_builder(&self.projection_root, dtype, device, |name| {
                name.replacen("video_aggregate_embed", "video_text_proj_in", 1)
                    .replacen("audio_aggregate_embed", "audio_text_proj_in", 1)
                    .replacen("aggregate_embed", "text_proj_in", 1)
            })
        } else {
            source.var_builder(&self.projection_root, dtype, device)
        }
    }

    /// The stored name of the projection's tensor the model calls `name`.
    fn projection_name(&self, name: &str) -> String {
        let local = if self.diffusers {
            name.replacen("video_aggregate_embed", "video_text_proj_in", 1).replacen(
                "aggregate_embed",
                "text_proj_in",
                1,
            )
        } else {
            name.to_string()
        };
        if self.projection_root.is_empty() { local } else { format!("{}.{local}", self.projection_root) }
    }
}

fn missing(source: &WeightSource, suffix: &str, what: &str) -> WeightError {
    WeightError::Invalid {
        file: source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        message: format!("no LTX-2 {what} found (expected a tensor named '…{suffix}')"),
    }
}

impl TextConnectors {
    /// Reads the projection and the connectors from `source` (an official single file, ComfyUI's or Kijai's
    /// connector files, or a diffusers `connectors/` folder), wherever their prefixes are; `encoder_width`
    /// is the text encoder's hidden width (3840 for Gemma 3 12B).
    pub fn load(source: &Arc<WeightSource>, encoder_width: usize, device: &Device) -> Result<Self, WeightError> {
        let files = || source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let layout = Layout::find(source)?;
        let invalid_json = |file: String, e: &dyn std::fmt::Display| WeightError::Invalid {
            file,
            message: format!("the model config is not valid JSON: {e}"),
        };
        let json = if let Some(text) = source.metadata("config") {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| invalid_json(files(), &e))?
        } else if let Some(path) = source.files().first().and_then(|f| f.parent()).map(|d| d.join("config.json"))
            && layout.diffusers
            && path.is_file()
        {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| WeightError::Open { file: name.clone(), reason: e.to_string() })?;
            serde_json::from_str(&text).map_err(|e| invalid_json(name, &e))?
        } else {
            serde_json::Value::Null
        };
        let config = json.get("transformer").unwrap_or(&json);
        let number = |keys: &[&str]| keys.iter().find_map(|key| config.get(*key).and_then(serde_json::Value::as_f64));
        let projection_weights: Vec<String> =
            ["aggregate_embed.weight", "video_aggregate_embed.weight", "audio_aggregate_embed.weight"]
                .iter()
                .map(|name| layout.projection_name(name))
                .filter(|name| source.contains(name))
                .collect();
        let dtype =
            source.common_dtype(projection_weights.iter().map(String::as_str), "LTX-2 text projection weights")?;
        let dtype = if dtype == DType::F8E4M3 { DType::F32 } else { dtype };

        let connector = |root: &str, audio: bool| -> Result<Connector, WeightError> {
            let registers_shape = source.shape(&format!("{root}.learnable_registers")).unwrap_or_default();
            let (registers, width) = match registers_shape.as_slice() {
                &[registers, width] => (registers, width),
                _ => (0, 0),
            };
            let key = |official: &str, official_audio: &str, diffusers_video: &str, diffusers_audio: &str| {
                if audio {
                    number(&[official_audio, diffusers_audio]).or_else(|| number(&[official]))
                } else {
                    number(&[official, diffusers_video])
                }
            };
            let head_dim = key(
                "connector_attention_head_dim",
                "audio_connector_attention_head_dim",
                "video_connector_attention_head_dim",
                "audio_connector_attention_head_dim",
            )
            .map_or(if width == 2048 { 64 } else { 128 }, |v| v as usize);
            let heads = key(
                "connector_num_attention_heads",
                "audio_connector_num_attention_heads",
                "video_connector_num_attention_heads",
                "audio_connector_num_attention_heads",
            )
            .map_or(width / head_dim.max(1), |v| v as usize);
            let block = |i: usize, name: &str| {
                format!("{root}.{}", layout.connector_name(&format!("transformer_1d_blocks.{i}.attn1.{name}")))
            };
            let layers = (0..usize::MAX).take_while(|i| source.contains(&block(*i, "to_q.weight"))).count();
            let max_position = config
                .get("connector_positional_embedding_max_pos")
                .and_then(|v| v.get(0))
                .and_then(serde_json::Value::as_f64)
                .or_else(|| number(&["connector_rope_base_seq_len"]))
                .unwrap_or(4096.0) as f32;
            let connector_config = ConnectorConfig {
                heads,
                head_dim,
                layers,
                registers,
                gated: source.contains(&block(0, "to_gate_logits.weight")),
                max_position,
                theta: number(&["positional_embedding_theta", "rope_theta"]).unwrap_or(10_000.0),
                eps: 1e-6,
            };
            let vb = layout.connector_builder(source, root, dtype, device);
            Connector::new(connector_config, &vb).map_err(|e| source.explain(&e))
        };
        let vb = layout.projection_builder(source, dtype, device);
        let inputs = ["aggregate_embed.weight", "video_aggregate_embed.weight"]
            .iter()
            .find_map(|name| source.shape(&layout.projection_name(name)))
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
            video: connector(&layout.video_root, false)?,
            audio: connector(&layout.audio_root, true)?,
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
