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
//! The blocks are all in memory, or the first few in memory and the others streamed: read from the weight
//! file when a forward pass reaches them, block i + 1 on another thread while block i computes, so that
//! T5-XXL (9.5 GB in bf16) runs holding its embedding table and two blocks (about 1 GB). Every holding gives
//! the same outputs, bit for bit ([`BlockStack`]).

use super::block::{RelativePositionBias, T5Block, T5LayerNorm};
use super::config::T5Config;
use super::tokenizer::{END_TOKEN, PAD_TOKEN, Tokens};
use crate::block_stack::{BlockHolding, BlockStack, StackBlock};
use crate::lora::{LayerPatch, patch_layers};
use crate::ops::stored_linear::StoredLinear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;

/// The blocks' name in the checkpoint.
const BLOCKS: &str = "encoder.block.";

impl StackBlock for T5Block {
    fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()> {
        let layers = self.linears_mut().into_iter().map(|(name, layer)| (name.to_string(), layer)).collect();
        patch_layers(layers, patches, StoredLinear::patched)
    }
}

/// The T5 v1.1 encoder (transformers' `T5EncoderModel`), built from HF tensor names.
#[derive(Clone)]
pub struct T5Encoder {
    config: T5Config,
    /// `shared.weight`, `[vocab, d_model]`, in storage dtype.
    embedding: Tensor,
    /// Block 0's table, shared by every block; `None` for an encoder without blocks.
    position_bias: Option<RelativePositionBias>,
    blocks: BlockStack<T5Block>,
    final_layer_norm: T5LayerNorm,
    device: Device,
}

impl std::fmt::Debug for T5Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Encoder")
            .field("config", &self.config)
            .field("storage", &self.embedding.dtype())
            .field("blocks", &self.blocks.holding())
            .field("streamed_lora_sets", &self.blocks.streamed_patch_sets())
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
        Self::build(vb, config, BlockStack::resident(BLOCKS, blocks))
    }

    /// [`Self::new`] with the blocks held as `holding` says: those not kept are read from `vb` whenever a
    /// forward pass reaches them ([`BlockStack`]).
    pub fn new_held(vb: &VarBuilder<'static>, config: &T5Config, holding: BlockHolding) -> Result<Self> {
        let blocks = BlockStack::load(BLOCKS, config.num_layers, holding, &vb.pp("encoder").pp("block"), |vb| {
            T5Block::new(vb, config)
        })?;
        Self::build(vb, config, blocks)
    }

    /// The parts outside the blocks, around `blocks`.
    fn build(vb: &VarBuilder<'_>, config: &T5Config, blocks: BlockStack<T5Block>) -> Result<Self> {
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
            final_layer_norm,
            device: vb.device().clone(),
        })
    }

    /// Every projection by its checkpoint name (`encoder.block.0.layer.0.SelfAttention.q`, ...), with its
    /// weight's `(out, in)`: the layers a LoRA can change.
    pub fn linear_layers(&self) -> Result<Vec<(String, (usize, usize))>> {
        let mut copy = self.clone();
        let mut layers: Vec<(String, (usize, usize))> =
            copy.linears_mut().into_iter().map(|(name, layer)| Ok((name, layer.shape()?))).collect::<Result<_>>()?;
        for index in self.blocks.kept()..self.config.num_layers {
            layers.extend(
                T5Block::projection_shapes(&self.config)
                    .map(|(name, shape)| (format!("{BLOCKS}{index}.{name}"), shape)),
            );
        }
        Ok(layers)
    }

    /// The encoder with LoRA updates (`layer name → patch`), sharing every weight with `self`; the updates
    /// are applied on the fly, to streamed blocks as each is read. Fails on a name that is not a projection.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let known: std::collections::BTreeSet<String> =
            self.linear_layers()?.into_iter().map(|(name, _)| name).collect();
        if let Some(name) = patches.keys().find(|name| !known.contains(*name)) {
            candle_core::bail!("the model has no linear layer '{name}'");
        }
        let mut patched = self.clone();
        patched.blocks = self.blocks.with_patches(patches)?;
        Ok(patched)
    }

    /// The resident blocks' projections by their full names.
    fn linears_mut(&mut self) -> Vec<(String, &mut StoredLinear)> {
        let mut layers = Vec::new();
        for (index, block) in self.blocks.resident_blocks_mut().iter_mut().enumerate() {
            layers.extend(
                block.linears_mut().into_iter().map(|(name, layer)| (format!("{BLOCKS}{index}.{name}"), layer)),
            );
        }
        layers
    }

    /// Calls `visit` with each block in order: resident blocks as they are, streamed ones read from the file
    /// (the next while the current computes).
    fn each_block(&self, mut visit: impl FnMut(&T5Block) -> Result<()>) -> Result<()> {
        self.blocks.each("a T5 block", |vb| T5Block::new(vb, &self.config), |_, block| visit(block))
    }

    /// Whether the blocks are read from the weight file as they are used.
    pub fn streams_blocks(&self) -> bool {
        self.blocks.streams()
    }

    /// How the blocks are held.
    pub fn block_holding(&self) -> BlockHolding {
        self.blocks.holding()
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
