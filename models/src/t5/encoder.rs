//! The T5 v1.1 encoder stack, mirroring transformers' `T5EncoderModel` (`modeling_t5.py`): the shared
//! token embedding, the blocks `encoder.block.{i}` ([`super::block`]) and `encoder.final_layer_norm`. It
//! covers every T5 v1.1 checkpoint (the LTX-Video text encoder is `google/t5-v1_1-xxl`); T5 v1.0's ungated
//! `ReLU` feed-forward is not handled.
//!
//! Big matrices (the embedding and every projection) stay in the dtype of the builder they were read
//! from, so a bf16, f16 or fp8 checkpoint keeps its size in memory; each is widened to f32 a band of
//! rows at a time, just before that band's matmul, and the f32 band is dropped right after. All arithmetic
//! is f32.
//!
//! The blocks are either all in memory or streamed: read from the weight file when a forward pass reaches
//! them, block i + 1 on another thread while block i computes, so that T5-XXL (9.5 GB in bf16) runs holding
//! its embedding table and two blocks (about 1 GB). Both give the same outputs, bit for bit.

use super::block::{RelativePositionBias, T5Block, T5LayerNorm};
use super::config::T5Config;
use super::tokenizer::{END_TOKEN, PAD_TOKEN, Tokens};
use crate::lora::{LayerPatch, patch_layers, patches_under};
use crate::ops::stored_linear::StoredLinear;
use crate::weights::each_streamed_block;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the blocks' weights are.
#[derive(Clone)]
enum Blocks {
    /// Built once, kept in memory.
    Resident(Vec<T5Block>),
    /// Read from the weight file (under `encoder.block`) each time a forward pass reaches them.
    Streamed(VarBuilder<'static>),
}

/// The T5 v1.1 encoder (transformers' `T5EncoderModel`), built from HF tensor names.
#[derive(Clone)]
pub struct T5Encoder {
    config: T5Config,
    /// `shared.weight`, `[vocab, d_model]`, in storage dtype.
    embedding: Tensor,
    /// Block 0's table, shared by every block; `None` for an encoder without blocks.
    position_bias: Option<RelativePositionBias>,
    blocks: Blocks,
    /// LoRA updates of streamed blocks (one map per LoRA, by full layer name such as
    /// `encoder.block.3.layer.0.SelfAttention.q`), applied in order as each block is read.
    block_patches: Arc<Vec<BTreeMap<String, LayerPatch>>>,
    final_layer_norm: T5LayerNorm,
    device: Device,
}

impl std::fmt::Debug for T5Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Encoder")
            .field("config", &self.config)
            .field("storage", &self.embedding.dtype())
            .field("streamed", &self.streams_blocks())
            .field("lora_sets", &self.block_patches.len())
            .finish_non_exhaustive()
    }
}

impl T5Encoder {
    /// Builds the encoder from `vb`, whose root holds `shared.weight` (or `encoder.embed_tokens.weight`)
    /// and `encoder.*`, every block in memory. Projections and the embedding are kept in `vb`'s dtype; norms
    /// and the relative attention bias are read as f32. Any `VarBuilder` works, including one that makes
    /// random weights in memory (see the T5 benchmark test).
    pub fn new(vb: &VarBuilder<'_>, config: &T5Config) -> Result<Self> {
        let encoder = vb.pp("encoder");
        let blocks = (0..config.num_layers)
            .map(|index| T5Block::new(&encoder.pp(format!("block.{index}")), config))
            .collect::<Result<Vec<_>>>()?;
        Self::build(vb, config, Blocks::Resident(blocks))
    }

    /// [`Self::new`] with the blocks streamed: read from `vb` whenever a forward pass reaches them instead of
    /// now. Block 0 is read once here, so that a file missing block tensors fails now; the other blocks'
    /// tensors are the loader's to check ([`crate::weights::WeightSource::check_repeated_blocks`]).
    pub fn new_streamed(vb: &VarBuilder<'static>, config: &T5Config) -> Result<Self> {
        let blocks = vb.pp("encoder").pp("block");
        if config.num_layers > 0 {
            T5Block::new(&blocks.pp(0), config)?;
        }
        Self::build(vb, config, Blocks::Streamed(blocks))
    }

    /// The parts outside the blocks, around `blocks`.
    fn build(vb: &VarBuilder<'_>, config: &T5Config, blocks: Blocks) -> Result<Self> {
        let dimensions = [config.vocab_size, config.d_model, config.d_kv, config.d_ff, config.num_heads];
        if dimensions.contains(&0) || config.relative_attention_num_buckets < 2 {
            candle_core::bail!(
                "invalid T5 configuration (a size is zero or there are fewer than 2 buckets): {config:?}"
            );
        }
        let embedding_name =
            if !vb.contains_tensor("shared.weight") && vb.contains_tensor("encoder.embed_tokens.weight") {
                "encoder.embed_tokens.weight"
            } else {
                "shared.weight"
            };
        let embedding = vb.get_with_hints(
            (config.vocab_size, config.d_model),
            embedding_name,
            candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 },
        )?;
        let encoder = vb.pp("encoder");
        let position_bias =
            (config.num_layers > 0).then(|| RelativePositionBias::new(&encoder.pp("block.0"), config)).transpose()?;
        let final_layer_norm =
            T5LayerNorm::new(&encoder.pp("final_layer_norm"), config.d_model, config.layer_norm_epsilon)?;
        Ok(T5Encoder {
            config: config.clone(),
            embedding,
            position_bias,
            blocks,
            block_patches: Arc::default(),
            final_layer_norm,
            device: vb.device().clone(),
        })
    }

    /// Every projection by its checkpoint name (`encoder.block.0.layer.0.SelfAttention.q`, ...), with its
    /// weight's `(out, in)`: the layers a LoRA can change.
    pub fn linear_layers(&self) -> Result<Vec<(String, (usize, usize))>> {
        match &self.blocks {
            Blocks::Resident(_) => {
                let mut copy = self.clone();
                copy.linears_mut().into_iter().map(|(name, layer)| Ok((name, layer.shape()?))).collect()
            }
            Blocks::Streamed(_) => Ok((0..self.config.num_layers)
                .flat_map(|index| {
                    T5Block::projection_shapes(&self.config)
                        .map(|(name, shape)| (format!("encoder.block.{index}.{name}"), shape))
                })
                .collect()),
        }
    }

    /// The encoder with LoRA updates (`layer name → patch`), sharing every weight with `self`; the updates
    /// are applied on the fly, to streamed blocks as each is read. Fails on a name that is not a projection.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let mut patched = self.clone();
        if let Blocks::Resident(_) = &patched.blocks {
            patch_layers(patched.linears_mut(), patches, StoredLinear::patched)?;
            return Ok(patched);
        }
        let known: std::collections::BTreeSet<String> =
            self.linear_layers()?.into_iter().map(|(name, _)| name).collect();
        if let Some(name) = patches.keys().find(|name| !known.contains(*name)) {
            candle_core::bail!("the model has no linear layer '{name}'");
        }
        let mut sets = (*self.block_patches).clone();
        sets.push(patches.clone());
        patched.block_patches = Arc::new(sets);
        Ok(patched)
    }

    /// The resident blocks' projections by their full names (none when the blocks stream).
    fn linears_mut(&mut self) -> Vec<(String, &mut StoredLinear)> {
        let Blocks::Resident(blocks) = &mut self.blocks else { return Vec::new() };
        let mut layers = Vec::with_capacity(blocks.len() * 7);
        for (index, block) in blocks.iter_mut().enumerate() {
            layers.extend(
                block.linears_mut().into_iter().map(|(name, layer)| (format!("encoder.block.{index}.{name}"), layer)),
            );
        }
        layers
    }

    /// Reads block `index` from the weight file and applies its LoRA updates.
    fn read_block(&self, vb: &VarBuilder<'static>, index: usize) -> Result<T5Block> {
        let mut block = T5Block::new(&vb.pp(index), &self.config)?;
        for set in self.block_patches.iter() {
            let patches = patches_under(set, &format!("encoder.block.{index}."));
            if !patches.is_empty() {
                let layers = block.linears_mut().into_iter().map(|(name, layer)| (name.to_string(), layer)).collect();
                patch_layers(layers, &patches, StoredLinear::patched)?;
            }
        }
        Ok(block)
    }

    /// Calls `visit` with each block in order: resident blocks as they are, streamed ones read from the file
    /// ([`each_streamed_block`]: the next while the current computes).
    fn each_block(&self, mut visit: impl FnMut(&T5Block) -> Result<()>) -> Result<()> {
        match &self.blocks {
            Blocks::Resident(blocks) => blocks.iter().try_for_each(visit),
            Blocks::Streamed(vb) => each_streamed_block(
                self.config.num_layers,
                "a T5 block",
                |index| self.read_block(vb, index),
                |_, block| visit(&block),
            ),
        }
    }

    /// Whether the blocks are read from the weight file as they are used.
    pub fn streams_blocks(&self) -> bool {
        matches!(self.blocks, Blocks::Streamed(_))
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The dtype the big matrices are stored in.
    pub fn storage_dtype(&self) -> DType {
        self.embedding.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes `input_ids` (`[batch, length]`, any integer dtype) into `last_hidden_state`
    /// (`[batch, length, d_model]`, f32), after the final layer norm.
    ///
    /// `attention_mask` (`[batch, length]`, 1 for tokens to attend to, 0 for padding, any dtype) hides
    /// padding keys in every self-attention, as transformers does when given `attention_mask`: that is
    /// what ComfyUI, the original LTX-Video code and diffusers' `LTXConditionPipeline` do. Without a mask
    /// every token attends to the padding too, as in diffusers' `LTXPipeline` and
    /// `LTXImageToVideoPipeline`. Outputs at padded positions are computed either way; callers mask
    /// them downstream.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, length) = input_ids.dims2().map_err(|_| {
            candle_core::Error::Msg(format!("T5 input ids must be [batch, tokens], got shape {:?}", input_ids.dims()))
        })?;
        if length == 0 {
            candle_core::bail!("T5 input ids are empty: the tokenizer always gives at least the end token");
        }
        let ids = input_ids.to_device(&self.device)?.to_dtype(DType::I64)?;
        let smallest = ids.min_all()?.to_scalar::<i64>()?;
        let largest = ids.max_all()?.to_scalar::<i64>()?;
        if smallest < 0 || largest >= self.config.vocab_size as i64 {
            candle_core::bail!(
                "T5 token ids must lie in 0..{} (the vocabulary), got ids from {smallest} to {largest}",
                self.config.vocab_size
            );
        }
        let mut x = self
            .embedding
            .index_select(&ids.flatten_all()?.to_dtype(DType::U32)?, 0)?
            .to_dtype(DType::F32)?
            .reshape((batch, length, self.config.d_model))?;

        let mut bias = match &self.position_bias {
            Some(table) => table.compute(length, &self.device)?,
            None => Tensor::zeros((1, 1, length, length), DType::F32, &self.device)?,
        };
        if let Some(mask) = attention_mask {
            if mask.dims() != [batch, length] {
                candle_core::bail!(
                    "the T5 attention mask has shape {:?} but the input ids have [{batch}, {length}]",
                    mask.dims()
                );
            }
            // Padding keys get the most negative f32, as transformers' extended mask does, so that their
            // softmax weight is exactly zero.
            let keep = mask.to_device(&self.device)?.to_dtype(DType::F32)?.ne(0.0)?;
            let minimum = Tensor::full(f32::MIN, (batch, length), &self.device)?;
            let zeros = Tensor::zeros((batch, length), DType::F32, &self.device)?;
            let additive = keep.where_cond(&zeros, &minimum)?.reshape((batch, 1, 1, length))?;
            bias = bias.broadcast_add(&additive)?;
        }

        self.each_block(|block| {
            x = block.forward(&x, &bias)?;
            Ok(())
        })?;
        self.final_layer_norm.forward(&x)
    }
}

impl T5Encoder {
    /// Encodes one tokenized prompt as ComfyUI's `CLIPTextEncode` does for LTX-Video: with its attention
    /// mask when `use_mask` (ComfyUI: yes), and, if any token carries a prompt weight other than 1, beside
    /// the empty prompt (`</s>` then padding, at the same length and with its own mask), moving each
    /// weighted token's output away from the empty prompt's at the same position:
    /// `z = (z − empty)·weight + empty`. Tokens of weight 1 keep their output unchanged.
    /// Returns `[1, length, d_model]`.
    pub fn encode_tokens(&self, tokens: &Tokens, use_mask: bool) -> Result<Tensor> {
        let length = tokens.len();
        if tokens.attention_mask.len() != length || tokens.weights.len() != length {
            candle_core::bail!(
                "T5 tokens disagree in length: {} ids, {} mask values, {} weights",
                length,
                tokens.attention_mask.len(),
                tokens.weights.len()
            );
        }
        let (ids, mask) = tokens.to_tensors(&self.device)?;
        if !tokens.has_weights() {
            return self.forward(&ids, use_mask.then_some(&mask));
        }
        let mut empty_ids = vec![PAD_TOKEN; length];
        let mut empty_mask = vec![0u32; length];
        if let (Some(id), Some(keep)) = (empty_ids.first_mut(), empty_mask.first_mut()) {
            *id = END_TOKEN;
            *keep = 1;
        }
        let empty_ids = Tensor::from_vec(empty_ids, (1, length), &self.device)?;
        let empty_mask = Tensor::from_vec(empty_mask, (1, length), &self.device)?.to_dtype(DType::F32)?;
        let both_ids = Tensor::cat(&[&ids, &empty_ids], 0)?;
        let both_masks = Tensor::cat(&[&mask, &empty_mask], 0)?;
        let hidden = self.forward(&both_ids, use_mask.then_some(&both_masks))?;
        let prompt = hidden.narrow(0, 0, 1)?;
        let empty = hidden.narrow(0, 1, 1)?;
        let weights = Tensor::from_slice(&tokens.weights, (1, length, 1), &self.device)?;
        let moved = (prompt.broadcast_sub(&empty)?.broadcast_mul(&weights)? + &empty)?;
        let weighted = weights.ne(1.0)?.broadcast_as(prompt.shape())?;
        weighted.where_cond(&moved, &prompt)
    }
}
