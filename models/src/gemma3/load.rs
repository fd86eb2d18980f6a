//! Loading Gemma 3's text model from the files people have: ComfyUI's `text_encoders/gemma_3_12B_it*.
//! safetensors` (`model.layers.*`, with the vision tower and the SentencePiece model beside it), a
//! transformers folder of `Gemma3ForConditionalGeneration` (`language_model.model.*` or
//! `model.language_model.*`, `config.json`) or `Gemma3ForCausalLM` (`model.*`).

use super::config::Gemma3Config;
use super::model::Gemma3TextModel;
use crate::block_stack::BlockHolding;
use crate::weights::{WeightError, WeightSource};
use candle_core::Device;
use std::sync::Arc;

/// Prefixes under which the text model's `embed_tokens.weight` may sit, most specific first.
const PREFIXES: [&str; 4] = ["model.language_model.", "language_model.model.", "model.", ""];

/// How to hold the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GemmaLoadOptions {
    /// Which layers stay in memory; the others are read from the mapped file when they are used.
    pub layers: BlockHolding,
}

/// The prefix of the text model in `source`.
pub fn find_prefix(source: &WeightSource) -> Result<String, WeightError> {
    PREFIXES
        .iter()
        .find(|prefix| source.contains(&format!("{prefix}embed_tokens.weight")))
        .map(|p| (*p).to_string())
        .ok_or_else(|| WeightError::Invalid {
            file: describe(source),
            message: "no Gemma 3 text model found (expected 'model.embed_tokens.weight' or \
                      'language_model.model.embed_tokens.weight')"
                .into(),
        })
}

/// The configuration: the 12B model's, with sizes from the tensors, then the file's or folder's config.
pub fn read_config(source: &WeightSource, prefix: &str) -> Result<Gemma3Config, WeightError> {
    let shape = |name: &str| -> Result<Vec<usize>, WeightError> {
        let full = format!("{prefix}{name}");
        source.shape(&full).ok_or_else(|| WeightError::Missing {
            files: describe(source),
            tensor: full,
            expected: Vec::new(),
        })
    };
    let mut config = Gemma3Config::gemma3_12b();
    let embed = shape("embed_tokens.weight")?;
    if let [vocab, hidden] = embed.as_slice() {
        config.vocab_size = *vocab;
        config.hidden_size = *hidden;
    }
    config.head_dim = shape("layers.0.self_attn.q_norm.weight")?.first().copied().unwrap_or(config.head_dim);
    let rows = |name: &str| shape(name).map(|s| s.first().copied().unwrap_or_default());
    config.num_attention_heads = rows("layers.0.self_attn.q_proj.weight")? / config.head_dim.max(1);
    config.num_key_value_heads = rows("layers.0.self_attn.k_proj.weight")? / config.head_dim.max(1);
    config.intermediate_size = rows("layers.0.mlp.gate_proj.weight")?;
    config.num_hidden_layers =
        (0..usize::MAX).take_while(|i| source.contains(&format!("{prefix}layers.{i}.input_layernorm.weight"))).count();
    config.layer_types = Gemma3Config::pattern(config.num_hidden_layers, 6);
    config.query_pre_attn_scalar = config.head_dim as f64;

    let json = if let Some(text) = source.metadata("config") {
        Some(serde_json::from_str::<serde_json::Value>(text).map_err(|e| invalid_json(describe(source), &e))?)
    } else if let Some(path) = source.files().first().and_then(|f| f.parent()).map(|d| d.join("config.json"))
        && path.is_file()
    {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| WeightError::Open { file: name.clone(), reason: e.to_string() })?;
        Some(serde_json::from_str(&text).map_err(|e| invalid_json(name, &e))?)
    } else {
        None
    };
    if let Some(json) = json {
        let layers = config.num_hidden_layers;
        config.apply_json(&json);
        if config.num_hidden_layers != layers || config.layer_types.len() != layers {
            return Err(WeightError::Invalid {
                file: describe(source),
                message: format!(
                    "the config describes {} layers ({} layer types) but the file has {layers}",
                    config.num_hidden_layers,
                    config.layer_types.len()
                ),
            });
        }
    }
    Ok(config)
}

fn invalid_json(file: String, error: &dyn std::fmt::Display) -> WeightError {
    WeightError::Invalid { file, message: format!("the model config is not valid JSON: {error}") }
}

fn describe(source: &WeightSource) -> String {
    source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl Gemma3TextModel {
    /// Loads the text model from `source`, keeping the weights in their stored dtype (bf16, f16, f32, or
    /// fp8 with per-tensor scales for the projections; layers described as another quantisation, such as
    /// the nvfp4 layers of `gemma_3_12B_it_fp4_mixed`, are refused when read).
    pub fn load(source: &Arc<WeightSource>, device: &Device, options: GemmaLoadOptions) -> Result<Self, WeightError> {
        let prefix = find_prefix(source)?;
        let config = read_config(source, &prefix)?;
        let text_names = || {
            source.names().filter(|n| {
                n.starts_with(&prefix) && !PREFIXES.iter().any(|p| p.len() > prefix.len() && n.starts_with(p))
            })
        };
        let dtype = source.common_dtype(text_names(), "Gemma 3 weights")?;
        let vb = source.var_builder(prefix.trim_end_matches('.'), dtype, device);
        let model = Gemma3TextModel::new(&config, &vb, options.layers).map_err(|e| source.explain(&e))?;
        let unexpected: Vec<String> = source
            .unused(&prefix)
            .into_iter()
            .filter(|name| {
                let local = &name[prefix.len()..];
                let other_model = PREFIXES.iter().any(|p| p.len() > prefix.len() && name.starts_with(p));
                let streamed = options.layers.streams() && local.starts_with("layers.");
                !(other_model || streamed || local.starts_with("vision") || local.starts_with("multi_modal_projector"))
            })
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(model)
    }
}
