//! Gemma 3's text configuration (transformers `Gemma3TextConfig`): sizes, the sliding/global layer pattern
//! and the two RoPE tables (local θ 10⁴; global θ 10⁶ with linear scaling ×8 in the 12B model).

use serde_json::Value;

/// How a layer attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Causal attention to the last `sliding_window` tokens, with the local RoPE table.
    Sliding,
    /// Causal attention to every earlier token, with the global RoPE table.
    Full,
}

/// One RoPE table: `θ` and a linear position scaling factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParameters {
    /// Base.
    pub theta: f64,
    /// Positions are divided by this (`rope_type: linear`); 1 for the default table.
    pub factor: f64,
}

/// The text model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    /// Vocabulary (262,208).
    pub vocab_size: usize,
    /// Width of the residual stream (3840 in the 12B model).
    pub hidden_size: usize,
    /// Width of the gated feed-forward (15,360).
    pub intermediate_size: usize,
    /// Decoder layers (48).
    pub num_hidden_layers: usize,
    /// Query heads (16).
    pub num_attention_heads: usize,
    /// Key/value heads (8).
    pub num_key_value_heads: usize,
    /// Width of one head (256).
    pub head_dim: usize,
    /// Keys a sliding layer sees, its own included (1024).
    pub sliding_window: usize,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2` (256).
    pub query_pre_attn_scalar: f64,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f64,
    /// Each layer's attention.
    pub layer_types: Vec<LayerType>,
    /// RoPE of the sliding layers.
    pub local_rope: RopeParameters,
    /// RoPE of the full layers.
    pub global_rope: RopeParameters,
}

impl Gemma3Config {
    /// Gemma 3 12B (`google/gemma-3-12b-it`), the LTX-2 text encoder.
    pub fn gemma3_12b() -> Self {
        Gemma3Config {
            vocab_size: 262_208,
            hidden_size: 3840,
            intermediate_size: 15_360,
            num_hidden_layers: 48,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 256,
            sliding_window: 1024,
            query_pre_attn_scalar: 256.0,
            rms_norm_eps: 1e-6,
            layer_types: Self::pattern(48, 6),
            local_rope: RopeParameters { theta: 10_000.0, factor: 1.0 },
            global_rope: RopeParameters { theta: 1_000_000.0, factor: 8.0 },
        }
    }

    /// Every `period`-th layer full, the others sliding.
    pub fn pattern(layers: usize, period: usize) -> Vec<LayerType> {
        (0..layers).map(|i| if (i + 1) % period.max(1) == 0 { LayerType::Full } else { LayerType::Sliding }).collect()
    }

    /// Takes the fields of a transformers config (`text_config` of `Gemma3ForConditionalGeneration`, or a
    /// `Gemma3TextConfig` itself), in the old (`rope_scaling`, `rope_local_base_freq`,
    /// `sliding_window_pattern`) or new (`rope_parameters`, `layer_types`) spelling.
    pub fn apply_json(&mut self, json: &Value) {
        let json = json.get("text_config").unwrap_or(json);
        let size = |key: &str| json.get(key).and_then(Value::as_u64).map(|v| v as usize);
        for (key, field) in [
            ("vocab_size", &mut self.vocab_size),
            ("hidden_size", &mut self.hidden_size),
            ("intermediate_size", &mut self.intermediate_size),
            ("num_hidden_layers", &mut self.num_hidden_layers),
            ("num_attention_heads", &mut self.num_attention_heads),
            ("num_key_value_heads", &mut self.num_key_value_heads),
            ("head_dim", &mut self.head_dim),
            ("sliding_window", &mut self.sliding_window),
        ] {
            if let Some(value) = size(key) {
                *field = value;
            }
        }
        if let Some(scalar) = json.get("query_pre_attn_scalar").and_then(Value::as_f64) {
            self.query_pre_attn_scalar = scalar;
        }
        if let Some(eps) = json.get("rms_norm_eps").and_then(Value::as_f64) {
            self.rms_norm_eps = eps;
        }
        self.layer_types = match json.get("layer_types").and_then(Value::as_array) {
            Some(types) => types
                .iter()
                .map(|t| if t.as_str() == Some("full_attention") { LayerType::Full } else { LayerType::Sliding })
                .collect(),
            None => Self::pattern(self.num_hidden_layers, size("sliding_window_pattern").unwrap_or(6)),
        };
        let read_rope = |value: &Value, rope: &mut RopeParameters| {
            if let Some(theta) = value.get("rope_theta").and_then(Value::as_f64) {
                rope.theta = theta;
            }
            let linear = value.get("rope_type").and_then(Value::as_str) == Some("linear");
            rope.factor = if linear { value.get("factor").and_then(Value::as_f64).unwrap_or(1.0) } else { 1.0 };
        };
        if let Some(parameters) = json.get("rope_parameters") {
            if let Some(full) = parameters.get("full_attention") {
                read_rope(full, &mut self.global_rope);
            }
            if let Some(sliding) = parameters.get("sliding_attention") {
                read_rope(sliding, &mut self.local_rope);
            }
        } else {
            if let Some(theta) = json.get("rope_theta").and_then(Value::as_f64) {
                self.global_rope.theta = theta;
            }
            if let Some(theta) = json.get("rope_local_base_freq").and_then(Value::as_f64) {
                self.local_rope.theta = theta;
            }
            match json.get("rope_scaling") {
                Some(scaling) if scaling.is_object() => read_rope(scaling, &mut self.global_rope),
                Some(_) => self.global_rope.factor = 1.0,
                None => {}
            }
        }
    }
}
