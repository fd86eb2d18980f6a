//! llama.cpp's tensor names for the text encoders people share as GGUF (`gemma-3-12b-it-Q4_K_M.gguf`,
//! `t5-v1_1-xxl-encoder-Q8_0.gguf`), and the names our models ask for.
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`, names from gguf-py's `constants.py` and
//! `tensor_mapping.py`) renames every tensor; ComfyUI-GGUF's `loader.py` maps them back to the Hugging Face
//! names for T5 and LLaMA-like models. The maps here go the other way, from the name a model's `VarBuilder`
//! asks for to the name stored in the file, so that the models keep their reference names.
//!
//! | architecture | llama.cpp (`blk.N.` / `enc.blk.N.`) | transformers |
//! |---|---|---|
//! | `gemma3` | `token_embd`, `output_norm` | `embed_tokens`, `norm` |
//! | | `attn_q`, `attn_k`, `attn_v`, `attn_output` | `self_attn.{q,k,v,o}_proj` |
//! | | `attn_q_norm`, `attn_k_norm` | `self_attn.q_norm`, `self_attn.k_norm` |
//! | | `attn_norm`, `post_attention_norm` | `input_layernorm`, `post_attention_layernorm` |
//! | | `ffn_norm`, `post_ffw_norm` | `pre_feedforward_layernorm`, `post_feedforward_layernorm` |
//! | | `ffn_gate`, `ffn_up`, `ffn_down` | `mlp.{gate,up,down}_proj` |
//! | `t5encoder`, `t5` | `token_embd`, `enc.output_norm` | `shared`, `encoder.final_layer_norm` |
//! | | `attn_q`, `attn_k`, `attn_v`, `attn_o`, `attn_rel_b` | `layer.0.SelfAttention.{q,k,v,o,relative_attention_bias}` |
//! | | `attn_norm`, `ffn_norm` | `layer.0.layer_norm`, `layer.1.layer_norm` |
//! | | `ffn_gate`, `ffn_up`, `ffn_down` | `layer.1.DenseReluDense.{wi_0,wi_1,wo}` |
//!
//! Two things besides the names: in Gemma's `ffn_norm` is the norm *before* the feed-forward (in Llama files
//! it is `post_attention_layernorm`, which is why ComfyUI-GGUF's Llama map cannot be reused for Gemma), and the
//! converter stores every Gemma RMS-norm weight (names ending in `norm.weight`) with the 1 of `x̂·(1 + w)`
//! already added ([`gemma3_norm_shift`]).

/// The text-encoder architectures (`general.architecture`) kinograph reads from llama.cpp GGUFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextArchitecture {
    /// `gemma3`: Gemma 3's text model (LTX-2's encoder).
    Gemma3,
    /// `t5encoder` (an encoder-only conversion) or `t5` (the whole encoder-decoder; the decoder is ignored).
    T5,
}

impl TextArchitecture {
    /// The architecture a `general.architecture` value names, if kinograph reads it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gemma3" => Some(TextArchitecture::Gemma3),
            "t5encoder" | "t5" => Some(TextArchitecture::T5),
            _ => None,
        }
    }

    /// The llama.cpp name of the tensor the model asks for as `name`, or `None` when the file cannot hold it.
    pub fn stored_name(self, name: &str) -> Option<String> {
        match self {
            TextArchitecture::Gemma3 => gemma3_stored_name(name),
            TextArchitecture::T5 => t5_stored_name(name),
        }
    }

    /// How the model calls it in messages.
    pub fn describe(self) -> &'static str {
        match self {
            TextArchitecture::Gemma3 => "Gemma 3",
            TextArchitecture::T5 => "T5",
        }
    }
}

/// The text architectures kinograph reads, as `general.architecture` spells them, for error messages.
pub const SUPPORTED_TEXT_ARCHITECTURES: &str = "gemma3, t5encoder, t5";

/// Splits `layers.N.rest` (or `block.N.rest`) into `(N, rest)`.
fn layer_part<'a>(name: &'a str, head: &str) -> Option<(usize, &'a str)> {
    let tail = name.strip_prefix(head)?.strip_prefix('.')?;
    let (index, rest) = tail.split_once('.')?;
    Some((index.parse().ok()?, rest))
}

/// Splits `stem.suffix` at the last dot: `("mlp.gate_proj", "weight")`.
fn split_suffix(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
}

/// The llama.cpp name of a Gemma 3 text-model tensor named as transformers' `Gemma3TextModel` names it (no
/// `model.` prefix): `layers.3.mlp.gate_proj.weight` → `blk.3.ffn_gate.weight`.
pub fn gemma3_stored_name(name: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(name)?;
    match stem {
        "embed_tokens" => return Some(format!("token_embd.{suffix}")),
        "norm" => return Some(format!("output_norm.{suffix}")),
        _ => {}
    }
    let (index, rest) = layer_part(stem, "layers")?;
    let short = match rest {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "post_attention_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{index}.{short}.{suffix}"))
}

/// What llama.cpp's converter added to the Gemma 3 tensor the model asks for as `name` (transformers'
/// name): 1 for every RMS-norm weight (`Gemma3Model.norm_shift`: names ending in `norm.weight`), 0 otherwise.
pub fn gemma3_norm_shift(name: &str) -> f64 {
    if name.ends_with("norm.weight") { 1.0 } else { 0.0 }
}

/// The llama.cpp name of a T5 encoder tensor named as transformers' `T5EncoderModel` names it:
/// `encoder.block.0.layer.1.DenseReluDense.wi_0.weight` → `enc.blk.0.ffn_gate.weight`.
pub fn t5_stored_name(name: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(name)?;
    match stem {
        "shared" | "encoder.embed_tokens" => return Some(format!("token_embd.{suffix}")),
        "encoder.final_layer_norm" => return Some(format!("enc.output_norm.{suffix}")),
        _ => {}
    }
    let (index, rest) = layer_part(stem, "encoder.block")?;
    let short = match rest {
        "layer.0.SelfAttention.q" => "attn_q",
        "layer.0.SelfAttention.k" => "attn_k",
        "layer.0.SelfAttention.v" => "attn_v",
        "layer.0.SelfAttention.o" => "attn_o",
        "layer.0.SelfAttention.relative_attention_bias" => "attn_rel_b",
        "layer.0.layer_norm" => "attn_norm",
        "layer.1.DenseReluDense.wi_0" => "ffn_gate",
        "layer.1.DenseReluDense.wi_1" => "ffn_up",
        "layer.1.DenseReluDense.wo" => "ffn_down",
        "layer.1.layer_norm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("enc.blk.{index}.{short}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_names_follow_llama_cpp() {
        let cases = [
            ("embed_tokens.weight", "token_embd.weight"),
            ("norm.weight", "output_norm.weight"),
            ("layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"),
            ("layers.11.self_attn.o_proj.weight", "blk.11.attn_output.weight"),
            ("layers.2.self_attn.k_norm.weight", "blk.2.attn_k_norm.weight"),
            ("layers.2.input_layernorm.weight", "blk.2.attn_norm.weight"),
            ("layers.2.post_attention_layernorm.weight", "blk.2.post_attention_norm.weight"),
            ("layers.2.pre_feedforward_layernorm.weight", "blk.2.ffn_norm.weight"),
            ("layers.2.post_feedforward_layernorm.weight", "blk.2.post_ffw_norm.weight"),
            ("layers.47.mlp.down_proj.weight", "blk.47.ffn_down.weight"),
        ];
        for (ours, stored) in cases {
            assert_eq!(gemma3_stored_name(ours).as_deref(), Some(stored), "{ours}");
        }
        assert_eq!(gemma3_stored_name("layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gemma3_stored_name("vision_tower.weight"), None);
        assert_eq!(gemma3_norm_shift("layers.0.self_attn.q_norm.weight"), 1.0);
        assert_eq!(gemma3_norm_shift("norm.weight"), 1.0);
        assert_eq!(gemma3_norm_shift("layers.0.mlp.up_proj.weight"), 0.0);
    }

    #[test]
    fn t5_names_follow_llama_cpp() {
        let cases = [
            ("shared.weight", "token_embd.weight"),
            ("encoder.embed_tokens.weight", "token_embd.weight"),
            ("encoder.final_layer_norm.weight", "enc.output_norm.weight"),
            ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "enc.blk.0.attn_rel_b.weight"),
            ("encoder.block.23.layer.0.SelfAttention.o.weight", "enc.blk.23.attn_o.weight"),
            ("encoder.block.1.layer.1.DenseReluDense.wi_0.weight", "enc.blk.1.ffn_gate.weight"),
            ("encoder.block.1.layer.1.DenseReluDense.wi_1.weight", "enc.blk.1.ffn_up.weight"),
            ("encoder.block.1.layer.1.layer_norm.weight", "enc.blk.1.ffn_norm.weight"),
        ];
        for (ours, stored) in cases {
            assert_eq!(t5_stored_name(ours).as_deref(), Some(stored), "{ours}");
        }
        assert_eq!(t5_stored_name("decoder.block.0.layer.0.SelfAttention.q.weight"), None);
        assert_eq!(TextArchitecture::from_name("llama"), None);
        assert_eq!(TextArchitecture::from_name("t5encoder"), Some(TextArchitecture::T5));
    }
}
