//! The T5 encoder from a llama.cpp GGUF (`t5-v1_1-xxl-encoder-Q8_0.gguf`, arch `t5encoder`; or `t5` with a
//! decoder, which is ignored), under llama.cpp's names ([`crate::gguf::llama_names`]).
//!
//! The configuration comes from the tensors as for ComfyUI's files ([`T5Config::from_weights`]): the
//! embedding gives the vocabulary and width, block 0's `attn_rel_b` the buckets and heads, `attn_q` the head
//! width, `ffn_gate` the feed-forward width; the norm epsilon from `*.attention.layer_norm_epsilon` when the
//! file has it. T5 v1.1's gated GELU is the only feed-forward kinograph runs, so a file without `ffn_gate` (T5
//! v1.0) is refused. The tokenizer is T5's own, as ComfyUI-GGUF keeps ComfyUI's for T5-XXL.

use super::config::{Activation, T5Config};
use super::encoder::T5Encoder;
use super::load::{FIRST_BLOCK_ONLY, T5LoadOptions};
use crate::gguf::llama_backend::{LlamaCppBackend, architecture_number, open_text_gguf};
use crate::gguf::llama_names::TextArchitecture;
use crate::gguf::{GgufFile, TensorInfo};
use crate::weights::{WeightError, WeightSource};
use candle_core::Device;
use std::sync::Arc;

/// The configuration of the T5 encoder in a llama.cpp GGUF (see the module documentation).
pub fn gguf_config(gguf: &GgufFile) -> Result<T5Config, WeightError> {
    let file = gguf.path().display().to_string();
    let shape = |name: &str, rank: usize| -> Result<&[usize], WeightError> {
        let info: &TensorInfo = gguf.tensor(name).ok_or_else(|| WeightError::Missing {
            files: file.clone(),
            tensor: name.to_string(),
            expected: Vec::new(),
        })?;
        if info.shape().len() != rank || info.shape().contains(&0) {
            return Err(WeightError::Invalid {
                file: file.clone(),
                message: format!("tensor '{name}' has shape {:?}, expected {rank} non-zero dimensions", info.shape()),
            });
        }
        Ok(info.shape())
    };
    if gguf.tensor("enc.blk.0.ffn_gate.weight").is_none() && gguf.tensor("enc.blk.0.ffn_up.weight").is_some() {
        return Err(WeightError::Invalid {
            file,
            message: "this T5 has no gated feed-forward (enc.blk.0.ffn_gate.weight): kinograph runs T5 v1.1 \
                      encoders (T5-XXL of LTX-Video), not T5 v1.0"
                .into(),
        });
    }
    let embedding = shape("token_embd.weight", 2)?;
    let bias = shape("enc.blk.0.attn_rel_b.weight", 2)?;
    let (buckets, heads) = (bias[0], bias[1]);
    let inner = shape("enc.blk.0.attn_q.weight", 2)?[0];
    let num_layers =
        (0..usize::MAX).take_while(|i| gguf.tensor(&format!("enc.blk.{i}.attn_norm.weight")).is_some()).count();
    if let Some(blocks) = architecture_number(gguf, "block_count")
        && blocks as usize != num_layers
    {
        return Err(WeightError::Invalid {
            file,
            message: format!("block_count says {blocks} blocks but the file has {num_layers}; is it truncated?"),
        });
    }
    let defaults = T5Config::v1_1_xxl();
    let epsilon = architecture_number(gguf, "attention.layer_norm_epsilon")
        .map_or(defaults.layer_norm_epsilon, |eps| (eps as f32).to_string().parse().unwrap_or(eps));
    Ok(T5Config {
        vocab_size: embedding[0],
        d_model: embedding[1],
        d_kv: inner / heads,
        d_ff: shape("enc.blk.0.ffn_gate.weight", 2)?[0],
        num_layers,
        num_heads: heads,
        relative_attention_num_buckets: buckets,
        relative_attention_max_distance: defaults.relative_attention_max_distance,
        layer_norm_epsilon: epsilon,
        activation: Activation::GeluTanh,
    })
}

impl T5Encoder {
    /// Loads the encoder of a llama.cpp GGUF (arch `t5encoder` or `t5`) from `source`, every block in memory:
    /// [`Self::load_gguf_with`] with the default options.
    pub fn load_gguf(source: &Arc<WeightSource>, device: &Device) -> Result<Self, WeightError> {
        Self::load_gguf_with(source, device, T5LoadOptions::default())
    }

    /// Loads the encoder of a llama.cpp GGUF (arch `t5encoder` or `t5`) from `source`, its quantized matrices
    /// kept as the weight source keeps them and its blocks held as `options` says. Encoder tensors the model
    /// does not use are an error; the decoder of a `t5` file is left alone.
    pub fn load_gguf_with(
        source: &Arc<WeightSource>,
        device: &Device,
        options: T5LoadOptions,
    ) -> Result<Self, WeightError> {
        let (_, gguf) = open_text_gguf(source, Some(TextArchitecture::T5))?;
        let config = gguf_config(&gguf)?;
        let names = || source.names().filter(|name| name.starts_with("enc.") || name.starts_with("token_embd."));
        let dtype = source.common_dtype(names(), "T5 weights")?;
        let vb = LlamaCppBackend::var_builder(source, TextArchitecture::T5, dtype, device);
        let encoder = T5Encoder::new_held(&vb, &config, options.blocks).map_err(|e| source.explain(&e))?;
        if options.blocks.streams() {
            source.check_repeated_blocks("enc.blk.", config.num_layers, &FIRST_BLOCK_ONLY)?;
        }
        let unused: Vec<String> = source
            .unused("enc.")
            .into_iter()
            .filter(|name| !(options.blocks.streams() && name.starts_with("enc.blk.")))
            .collect();
        if let Some(first) = unused.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unused });
        }
        Ok(encoder)
    }
}
