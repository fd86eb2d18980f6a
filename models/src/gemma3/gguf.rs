//! Gemma 3 from a llama.cpp GGUF (`gemma-3-12b-it-Q4_K_M.gguf` as unsloth and others share them, arch
//! `gemma3`): the text model under llama.cpp's names with the converter's norm shift undone
//! ([`crate::gguf::llama_backend`]), its configuration from the `gemma3.*` metadata and the tensor shapes, and
//! its tokenizer rebuilt from the `tokenizer.ggml.*` metadata ([`crate::gguf::tokenizer`]).
//!
//! Configuration, as llama.cpp's `llama-model.cpp` reads these files: sizes from the tensors (the converter
//! trims the embedding to the tokenizer's rows), `attention.layer_norm_rms_epsilon`, `attention.sliding_window`,
//! `rope.freq_base` and `rope.scaling.{type,factor}` for the global layers, `rope.freq_base_swa` (10⁴ when
//! absent) for the sliding ones, every sixth layer global, and the attention scale `head_dim^-1/2` (the 62-layer
//! 27B model: `(hidden / heads)^-1/2`). The vision tower is not in these files (llama.cpp keeps it in a separate
//! `mmproj` file).

use super::config::{Gemma3Config, RopeParameters};
use super::load::GemmaLoadOptions;
use super::model::Gemma3TextModel;
use super::tokenizer::{GemmaTokenizer, TokenizerError};
use crate::gguf::header::MetadataValue;
use crate::gguf::llama_backend::{LlamaCppBackend, architecture_number, open_text_gguf};
use crate::gguf::llama_names::TextArchitecture;
use crate::gguf::tokenizer::sentencepiece_from_gguf;
use crate::gguf::{GgufFile, TensorInfo};
use crate::weights::{WeightError, WeightSource};
use candle_core::Device;
use std::sync::Arc;

/// The configuration of the Gemma 3 text model in a llama.cpp GGUF (see the module documentation).
pub fn gguf_config(gguf: &GgufFile) -> Result<Gemma3Config, WeightError> {
    let file = gguf.path().display().to_string();
    let tensor = |name: &str| -> Result<&TensorInfo, WeightError> {
        gguf.tensor(name).ok_or_else(|| WeightError::Missing {
            files: file.clone(),
            tensor: name.to_string(),
            expected: Vec::new(),
        })
    };
    let rows = |name: &str| tensor(name).map(|info| info.shape().first().copied().unwrap_or(0));
    let number = |key: &str| architecture_number(gguf, key);
    let mut config = Gemma3Config::gemma3_12b();
    if let [vocab, hidden] = tensor("token_embd.weight")?.shape() {
        config.vocab_size = *vocab;
        config.hidden_size = *hidden;
    }
    config.head_dim = rows("blk.0.attn_q_norm.weight")?;
    if config.head_dim == 0 {
        return Err(WeightError::Invalid { file, message: "blk.0.attn_q_norm.weight is empty".into() });
    }
    config.num_attention_heads = rows("blk.0.attn_q.weight")? / config.head_dim;
    config.num_key_value_heads = rows("blk.0.attn_k.weight")? / config.head_dim;
    config.intermediate_size = rows("blk.0.ffn_gate.weight")?;
    config.num_hidden_layers =
        (0..usize::MAX).take_while(|i| gguf.tensor(&format!("blk.{i}.attn_norm.weight")).is_some()).count();
    if let Some(blocks) = number("block_count")
        && blocks as usize != config.num_hidden_layers
    {
        return Err(WeightError::Invalid {
            file,
            message: format!(
                "gemma3.block_count says {blocks} layers but the file has {} (blk.N.attn_norm.weight); is it \
                 truncated?",
                config.num_hidden_layers
            ),
        });
    }
    let period = number("attention.sliding_window_pattern").map_or(6, |p| p as usize);
    config.layer_types = Gemma3Config::pattern(config.num_hidden_layers, period);
    config.query_pre_attn_scalar = if config.num_hidden_layers == 62 {
        config.hidden_size as f64 / config.num_attention_heads.max(1) as f64
    } else {
        config.head_dim as f64
    };
    if let Some(eps) = number("attention.layer_norm_rms_epsilon") {
        // Stored as f32: 1e-6 reads back as 9.99999997e-7; transformers' value is the decimal one.
        config.rms_norm_eps = (eps as f32).to_string().parse().unwrap_or(eps);
    }
    if let Some(window) = number("attention.sliding_window") {
        config.sliding_window = window as usize;
    }
    let linear = gguf.metadata("gemma3.rope.scaling.type").and_then(MetadataValue::as_str) == Some("linear");
    config.global_rope = RopeParameters {
        theta: number("rope.freq_base").unwrap_or(config.global_rope.theta),
        factor: if linear { number("rope.scaling.factor").unwrap_or(1.0) } else { 1.0 },
    };
    config.local_rope = RopeParameters { theta: number("rope.freq_base_swa").unwrap_or(10_000.0), factor: 1.0 };
    Ok(config)
}

impl Gemma3TextModel {
    /// Loads the text model of a llama.cpp GGUF (arch `gemma3`) from `source`, its quantized matrices kept as
    /// the weight source keeps them and the norms as the checkpoint's `w`. Tensors the model does not use are
    /// an error (except llama.cpp's untied `output.weight`).
    pub fn load_gguf(
        source: &Arc<WeightSource>,
        device: &Device,
        options: GemmaLoadOptions,
    ) -> Result<Self, WeightError> {
        let (_, gguf) = open_text_gguf(source, Some(TextArchitecture::Gemma3))?;
        let config = gguf_config(&gguf)?;
        let dtype = source.common_dtype(source.names(), "Gemma 3 weights")?;
        let vb = LlamaCppBackend::var_builder(source, TextArchitecture::Gemma3, dtype, device);
        let model = Gemma3TextModel::new(&config, &vb, options.layers).map_err(|e| source.explain(&e))?;
        let unexpected: Vec<String> = source
            .unused("")
            .into_iter()
            .filter(|name| name != "output.weight" && !(options.layers.streams() && name.starts_with("blk.")))
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(model)
    }
}

impl GemmaTokenizer {
    /// Gemma's tokenizer from a llama.cpp GGUF's metadata (see [`crate::gguf::tokenizer`]).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        let name = gguf.path().display().to_string();
        let model = sentencepiece_from_gguf(gguf)
            .map_err(|error| TokenizerError::Read { source_name: name.clone(), reason: error.to_string() })?;
        Self::from_sentencepiece_model(model, &name)
    }
}

/// Whether `source` is a llama.cpp GGUF of Gemma 3 (`general.architecture = "gemma3"`).
pub fn is_gemma3_gguf(source: &WeightSource) -> bool {
    source
        .gguf_files()
        .next()
        .and_then(|gguf| gguf.metadata("general.architecture").and_then(MetadataValue::as_str).map(str::to_owned))
        .is_some_and(|name| name == "gemma3")
}
