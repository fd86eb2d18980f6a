//! The T5 encoder's hyper-parameters: read from a Hugging Face `config.json` when one is present,
//! otherwise inferred from the tensor shapes, so that the tiny fixture model and T5-XXL load through the
//! same code.

use crate::weights::{WeightError, WeightSource};
use std::path::Path;

/// The activation inside the gated feed-forward block (`wo(act(wi_0 x) * wi_1 x)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the tanh approximation: transformers' `gelu_new` and `gelu_pytorch_tanh`, which T5 v1.1
    /// uses (`feed_forward_proj = "gated-gelu"`).
    GeluTanh,
    /// GELU with the exact error function (`gelu`).
    GeluErf,
    /// `relu`.
    Relu,
}

/// Hyper-parameters of a T5 v1.1 encoder stack (transformers' `T5Config`, encoder fields only).
#[derive(Debug, Clone, PartialEq)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    pub activation: Activation,
}

impl T5Config {
    /// `google/t5-v1_1-xxl`, the text encoder of LTX-Video (that repository's `config.json` on the
    /// Hugging Face hub).
    pub fn v1_1_xxl() -> Self {
        T5Config {
            vocab_size: 32128,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            activation: Activation::GeluTanh,
        }
    }

    /// Infers the configuration from the tensors under `prefix`: the embedding gives the vocabulary and
    /// width, block 0's relative attention bias gives the bucket and head counts, the query projection the
    /// head width, `wi_0` the feed-forward width, and the blocks present the layer count. What shapes
    /// cannot tell (the maximum relative distance, the norm epsilon, the activation) takes the T5 v1.1
    /// values, which every T5 v1.1 and LTX-Video text encoder uses.
    pub fn from_weights(source: &WeightSource, prefix: &str) -> Result<Self, WeightError> {
        let shape_of = |name: &str, rank: usize| -> Result<Vec<usize>, WeightError> {
            let full = format!("{prefix}{name}");
            let shape = source.shape(&full).ok_or_else(|| WeightError::Missing {
                files: source.file_of(&full),
                tensor: full.clone(),
                expected: Vec::new(),
            })?;
            if shape.len() == rank {
                Ok(shape)
            } else {
                Err(WeightError::Invalid {
                    file: source.file_of(&full),
                    message: format!("tensor '{full}' has shape {shape:?}; a T5 encoder needs a {rank}-D tensor"),
                })
            }
        };
        let embedding = shape_of(embedding_name(source, prefix), 2)?;
        let bias = shape_of("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2)?;
        let query = shape_of("encoder.block.0.layer.0.SelfAttention.q.weight", 2)?;
        if !source.contains(&format!("{prefix}encoder.block.0.layer.1.DenseReluDense.wi_0.weight"))
            && source.contains(&format!("{prefix}encoder.block.0.layer.1.DenseReluDense.wi.weight"))
        {
            let name = format!("{prefix}encoder.block.0.layer.1.DenseReluDense.wi.weight");
            return Err(WeightError::Invalid {
                file: source.file_of(&name),
                message: format!(
                    "'{name}' is a T5 v1.0 feed-forward layer (no gate); only T5 v1.1 encoders (wi_0, wi_1) are supported"
                ),
            });
        }
        let feed_forward = shape_of("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", 2)?;
        let num_layers = (0..usize::MAX)
            .take_while(|index| {
                source.contains(&format!("{prefix}encoder.block.{index}.layer.0.SelfAttention.q.weight"))
            })
            .count();
        let num_heads = bias[1];
        if num_heads == 0 || query[0] % num_heads != 0 {
            let name = format!("{prefix}encoder.block.0.layer.0.SelfAttention.q.weight");
            return Err(WeightError::Invalid {
                file: source.file_of(&name),
                message: format!(
                    "'{name}' has {} rows, not a multiple of the {num_heads} heads of the relative attention bias",
                    query[0]
                ),
            });
        }
        Ok(T5Config {
            vocab_size: embedding[0],
            d_model: embedding[1],
            d_kv: query[0] / num_heads,
            d_ff: feed_forward[0],
            num_layers,
            num_heads,
            relative_attention_num_buckets: bias[0],
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            activation: Activation::GeluTanh,
        })
    }

    /// Reads a transformers `config.json` (`model_type` "t5"). Both the transformers spelling of the
    /// feed-forward (`feed_forward_proj: "gated-gelu"`) and ComfyUI's (`dense_act_fn` with
    /// `is_gated_act`) are understood; a feed-forward without a gate is refused.
    pub fn from_json_file(path: &Path) -> Result<Self, WeightError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| WeightError::Open { file: file.clone(), reason: error.to_string() })?;
        Self::from_json(&text).map_err(|message| WeightError::Invalid { file, message })
    }

    /// Parses the text of a transformers `config.json`; the error is a message without the file name.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("not a JSON configuration: {error}"))?;
        if let Some(kind) = json.get("model_type").and_then(serde_json::Value::as_str)
            && kind != "t5"
        {
            return Err(format!("model_type is '{kind}', expected 't5'"));
        }
        let count = |key: &str| -> Result<usize, String> {
            json.get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|value| value as usize)
                .ok_or_else(|| format!("'{key}' is missing or not a whole number"))
        };
        let count_or = |key: &str, default: usize| if json.get(key).is_some() { count(key) } else { Ok(default) };
        let (gated, activation_name) = match json.get("feed_forward_proj").and_then(serde_json::Value::as_str) {
            Some(projection) => match projection.strip_prefix("gated-") {
                Some(activation) => (true, activation.to_string()),
                None => (false, projection.to_string()),
            },
            None => (
                json.get("is_gated_act").and_then(serde_json::Value::as_bool).unwrap_or(false),
                json.get("dense_act_fn").and_then(serde_json::Value::as_str).unwrap_or("relu").to_string(),
            ),
        };
        if !gated {
            return Err(format!(
                "the feed-forward is not gated (activation '{activation_name}'); only T5 v1.1 encoders are supported"
            ));
        }
        // transformers maps "gated-gelu" to its tanh-approximated `gelu_new`.
        let activation = match activation_name.as_str() {
            "gelu" if json.get("feed_forward_proj").is_some() => Activation::GeluTanh,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            other => return Err(format!("unsupported feed-forward activation '{other}'")),
        };
        Ok(T5Config {
            vocab_size: count("vocab_size")?,
            d_model: count("d_model")?,
            d_kv: count("d_kv")?,
            d_ff: count("d_ff")?,
            num_layers: count("num_layers")?,
            num_heads: count("num_heads")?,
            relative_attention_num_buckets: count_or("relative_attention_num_buckets", 32)?,
            relative_attention_max_distance: count_or("relative_attention_max_distance", 128)?,
            layer_norm_epsilon: json.get("layer_norm_epsilon").and_then(serde_json::Value::as_f64).unwrap_or(1e-6),
            activation,
        })
    }

    /// Number of parameters of the encoder stack, embedding included.
    pub fn parameter_count(&self) -> usize {
        let inner = self.num_heads * self.d_kv;
        let attention = 4 * inner * self.d_model;
        let feed_forward = 3 * self.d_ff * self.d_model;
        let norms = 2 * self.d_model;
        self.vocab_size * self.d_model
            + self.num_layers * (attention + feed_forward + norms)
            + self.relative_attention_num_buckets * self.num_heads
            + self.d_model
    }
}

/// The name of the token embedding under `prefix`: `shared.weight` as transformers saves it, or the tied
/// `encoder.embed_tokens.weight` that some single-file exports keep instead.
pub(crate) fn embedding_name(source: &WeightSource, prefix: &str) -> &'static str {
    if !source.contains(&format!("{prefix}shared.weight"))
        && source.contains(&format!("{prefix}encoder.embed_tokens.weight"))
    {
        "encoder.embed_tokens.weight"
    } else {
        "shared.weight"
    }
}
