//! Transformer configuration: diffusers' `LTXVideoTransformer3DModel` config and the original
//! `Transformer3DModel` config of single-file checkpoints, reduced to what inference needs.
//!
//! Sizes are read from the tensors ([`LtxvTransformerConfig::from_shapes`]) so that the tiny test model and
//! the released 2B and 13B models go through the same code; the head split, which no shape reveals, comes
//! from the checkpoint's own config when it has one ([`LtxvTransformerConfig::apply_json`]).

use serde_json::Value;

/// Hyper-parameters of the LTX-Video transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct LtxvTransformerConfig {
    /// Channels of a packed latent token (128 for every release).
    pub in_channels: usize,
    /// Channels of the predicted velocity (128).
    pub out_channels: usize,
    /// Attention heads (32 in the 2B and 13B models).
    pub num_attention_heads: usize,
    /// Width of one head (64 in 2B, 128 in 13B).
    pub attention_head_dim: usize,
    /// Transformer blocks (28 in 2B, 48 in 13B).
    pub num_layers: usize,
    /// Width of the text tokens entering cross-attention after the caption projection (equals the inner width).
    pub cross_attention_dim: usize,
    /// Width of the text encoder output (4096 for T5-XXL).
    pub caption_channels: usize,
    /// Epsilon of the block norms and the final layer norm.
    pub norm_eps: f64,
    /// Epsilon of the q/k RMS norms.
    pub qk_norm_eps: f64,
    /// Spatial patch size (1 in every release).
    pub patch_size: usize,
    /// Temporal patch size (1 in every release).
    pub patch_size_t: usize,
    /// Base θ of the rotary embedding.
    pub rope_theta: f32,
    /// Rotary-embedding normalisers of the (time, height, width) coordinates.
    pub rope_base: [f32; 3],
    /// Whether the original pipeline shifts pixel time coordinates by `1 - 8` (the causal fix), from the
    /// single-file config's `causal_temporal_positioning`.
    pub causal_temporal_positioning: bool,
    /// Multiplier that turns σ into the model's timestep (1000).
    pub timestep_scale_multiplier: f64,
}

impl LtxvTransformerConfig {
    /// The 2B model of releases 0.9.0 to 0.9.8 (the defaults of diffusers 0.42.1
    /// `LTXVideoTransformer3DModel`, `models/transformers/transformer_ltx.py`).
    pub fn ltxv_2b() -> Self {
        Self::with_sizes(128, 128, 32, 64, 28, 4096)
    }

    /// The 13B model of releases 0.9.7 and 0.9.8.
    pub fn ltxv_13b() -> Self {
        Self::with_sizes(128, 128, 32, 128, 48, 4096)
    }

    fn with_sizes(
        in_channels: usize,
        out_channels: usize,
        num_attention_heads: usize,
        attention_head_dim: usize,
        num_layers: usize,
        caption_channels: usize,
    ) -> Self {
        LtxvTransformerConfig {
            in_channels,
            out_channels,
            num_attention_heads,
            attention_head_dim,
            num_layers,
            cross_attention_dim: num_attention_heads * attention_head_dim,
            caption_channels,
            norm_eps: 1e-6,
            qk_norm_eps: 1e-5,
            patch_size: 1,
            patch_size_t: 1,
            rope_theta: 10_000.0,
            rope_base: [20.0, 2048.0, 2048.0],
            causal_temporal_positioning: false,
            timestep_scale_multiplier: 1000.0,
        }
    }

    /// A configuration from the tensor shapes: `inner_dim` (`proj_in` rows), `in_channels` (its columns),
    /// `out_channels`, `caption_channels` and the number of blocks. The head split follows the released
    /// models (32 heads), or 64-wide heads when the width is not a multiple of 32 · 64; a checkpoint config,
    /// when present, overrides it.
    pub fn from_shapes(
        inner_dim: usize,
        in_channels: usize,
        out_channels: usize,
        caption_channels: usize,
        num_layers: usize,
    ) -> Self {
        let num_attention_heads =
            if inner_dim.is_multiple_of(32) && inner_dim >= 32 * 64 { 32 } else { (inner_dim / 64).max(1) };
        let mut config = Self::with_sizes(
            in_channels,
            out_channels,
            num_attention_heads,
            inner_dim / num_attention_heads,
            num_layers,
            caption_channels,
        );
        config.cross_attention_dim = inner_dim;
        config
    }

    /// Width of the residual stream: heads × head width.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Takes the fields that a diffusers `config.json` or an original single-file `transformer` config
    /// sets (both use the same key names for these). Unknown keys are ignored; sizes that the tensors
    /// determine are checked against them by the loader.
    pub fn apply_json(&mut self, json: &Value) {
        let read_usize = |key: &str| json.get(key).and_then(Value::as_u64).map(|v| v as usize);
        if let Some(heads) = read_usize("num_attention_heads") {
            self.num_attention_heads = heads;
        }
        if let Some(head_dim) = read_usize("attention_head_dim") {
            self.attention_head_dim = head_dim;
        }
        if let Some(eps) = json.get("norm_eps").and_then(Value::as_f64) {
            self.norm_eps = eps;
        }
        if let Some(causal) = json.get("causal_temporal_positioning").and_then(Value::as_bool) {
            self.causal_temporal_positioning = causal;
        }
        if let Some(theta) = json.get("positional_embedding_theta").and_then(Value::as_f64) {
            self.rope_theta = theta as f32;
        }
        if let Some(Value::Array(max_pos)) = json.get("positional_embedding_max_pos")
            && let [t, h, w] = max_pos.as_slice()
            && let (Some(t), Some(h), Some(w)) = (t.as_f64(), h.as_f64(), w.as_f64())
        {
            self.rope_base = [t as f32, h as f32, w as f32];
        }
        if let Some(multiplier) = json.get("timestep_scale_multiplier").and_then(Value::as_f64) {
            self.timestep_scale_multiplier = multiplier;
        }
        if let Some(patch) = read_usize("patch_size") {
            self.patch_size = patch;
        }
        if let Some(patch) = read_usize("patch_size_t") {
            self.patch_size_t = patch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_models_are_recovered_from_their_shapes() {
        assert_eq!(LtxvTransformerConfig::from_shapes(2048, 128, 128, 4096, 28), LtxvTransformerConfig::ltxv_2b());
        assert_eq!(LtxvTransformerConfig::from_shapes(4096, 128, 128, 4096, 48), LtxvTransformerConfig::ltxv_13b());
        assert_eq!(LtxvTransformerConfig::ltxv_2b().inner_dim(), 2048);
        assert_eq!(LtxvTransformerConfig::ltxv_13b().cross_attention_dim, 4096);
    }

    #[test]
    fn checkpoint_config_overrides_the_head_split_and_flags() {
        let mut config = LtxvTransformerConfig::from_shapes(32, 8, 8, 16, 2);
        let json = serde_json::json!({
            "num_attention_heads": 2, "attention_head_dim": 16, "causal_temporal_positioning": true,
            "positional_embedding_max_pos": [20, 2048, 2048], "timestep_scale_multiplier": 1000
        });
        config.apply_json(&json);
        assert_eq!((config.num_attention_heads, config.attention_head_dim), (2, 16));
        assert!(config.causal_temporal_positioning);
        assert_eq!(config.rope_base, [20.0, 2048.0, 2048.0]);
    }
}
