//! The whole transformer: diffusers' `LTXVideoTransformer3DModel` (`Transformer3DModel` in the original
//! code, `LTXVModel` in ComfyUI), for the 2B and 13B models of releases 0.9.0 to 0.9.8.
//!
//! The blocks are all in memory, or the first few in memory and the others streamed: read from the weight
//! file when a forward pass reaches them, block i + 1 on another thread while block i computes, so that the
//! 2B model (7.7 GB in f32) runs holding what lies outside its blocks and two blocks (about 0.7 GB). Every
//! holding gives the same outputs, bit for bit: a streamed block is read through the same builder, in the
//! same dtype, as a resident one ([`BlockStack`]).

use super::attention::GuideAttentionBias;
use super::block::TransformerBlock;
use super::config::LtxvTransformerConfig;
use super::embeddings::{AdaLayerNormSingle, CaptionProjection, ones};
use super::rope::{RopePositions, RopeTables, RotaryPosEmbed};
use crate::block_stack::{BlockHolding, BlockStack, StackBlock};
use crate::lora::{LayerPatch, patch_layers};
use crate::ops::linear::Linear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;

/// The blocks' name in the checkpoint.
const BLOCKS: &str = "transformer_blocks.";

impl StackBlock for TransformerBlock {
    fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()> {
        patch_layers(self.linears_mut(), patches, Linear::patched)
    }
}

/// The LTX-Video transformer, computing in f32.
#[derive(Clone)]
pub struct LtxvTransformer {
    config: LtxvTransformerConfig,
    patchify_proj: Linear,
    adaln_single: AdaLayerNormSingle,
    caption_projection: CaptionProjection,
    transformer_blocks: BlockStack<TransformerBlock>,
    scale_shift_table: Tensor,
    proj_out: Linear,
    rope: RotaryPosEmbed,
    norm_weight: Tensor,
    norm_bias: Tensor,
}

impl std::fmt::Debug for LtxvTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LtxvTransformer")
            .field("config", &self.config)
            .field("blocks", &self.transformer_blocks.holding())
            .field("streamed_lora_sets", &self.transformer_blocks.streamed_patch_sets())
            .finish_non_exhaustive()
    }
}

impl LtxvTransformer {
    /// Builds the model from any `VarBuilder` rooted at the transformer with the original names
    /// (`patchify_proj`, `adaln_single`, …), e.g. one over random weights for a benchmark, every block in
    /// memory. Use [`LtxvTransformer::load`] for files in either layout.
    pub fn new(config: &LtxvTransformerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        check_patch_size(config)?;
        let blocks = (0..config.num_layers)
            .map(|i| TransformerBlock::new(config, &vb.pp("transformer_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Self::build(config, vb, BlockStack::resident(BLOCKS, blocks))
    }

    /// [`Self::new`] with the blocks held as `holding` says: those not kept are read from `vb` whenever a
    /// forward pass reaches them ([`BlockStack`]).
    pub fn new_held(config: &LtxvTransformerConfig, vb: &VarBuilder<'static>, holding: BlockHolding) -> Result<Self> {
        check_patch_size(config)?;
        let blocks = BlockStack::load(BLOCKS, config.num_layers, holding, &vb.pp("transformer_blocks"), |vb| {
            TransformerBlock::new(config, vb)
        })?;
        Self::build(config, vb, blocks)
    }

    /// The parts outside the blocks, around `blocks`.
    fn build(
        config: &LtxvTransformerConfig,
        vb: &VarBuilder<'_>,
        blocks: BlockStack<TransformerBlock>,
    ) -> Result<Self> {
        let dim = config.inner_dim();
        let device = vb.device();
        Ok(LtxvTransformer {
            config: config.clone(),
            patchify_proj: Linear::new(config.in_channels, dim, &vb.pp("patchify_proj"))?,
            adaln_single: AdaLayerNormSingle::new(dim, &vb.pp("adaln_single"))?,
            caption_projection: CaptionProjection::new(config.caption_channels, dim, &vb.pp("caption_projection"))?,
            transformer_blocks: blocks,
            scale_shift_table: vb.get((2, dim), "scale_shift_table")?,
            proj_out: Linear::new(dim, config.out_channels, &vb.pp("proj_out"))?,
            rope: RotaryPosEmbed::new(config),
            norm_weight: ones(dim, device)?,
            norm_bias: Tensor::zeros(dim, DType::F32, device)?,
        })
    }

    /// Every linear layer by its checkpoint name (`transformer_blocks.0.attn1.to_q`, ...), with its weight's
    /// `(out, in)`: the layers a LoRA can change.
    pub fn linear_layers(&self) -> Result<Vec<(String, (usize, usize))>> {
        self.describe_linears(Linear::shape)
    }

    /// Each linear layer's name and how its weight is kept (f32, or fp8 codes: the file's scaled fp8 weights,
    /// or all of them with an fp8 `weight_dtype`).
    pub fn linear_storage(&self) -> Result<Vec<(String, crate::fp8::WeightStorage)>> {
        self.describe_linears(|layer| Ok(layer.storage()))
    }

    /// Every linear layer by its checkpoint name with what `describe` says of it. Streamed blocks are
    /// described by the first of them, read once from the file: every block has its tensors, with the same
    /// shapes and dtypes (checked at load).
    fn describe_linears<T: Clone>(&self, describe: impl Fn(&Linear) -> Result<T>) -> Result<Vec<(String, T)>> {
        let mut copy = self.clone();
        let mut described: Vec<(String, T)> = copy
            .top_linears_mut()
            .into_iter()
            .map(|(name, layer)| Ok((name, describe(layer)?)))
            .collect::<Result<_>>()?;
        for (index, block) in copy.transformer_blocks.resident_blocks_mut().iter_mut().enumerate() {
            for (name, layer) in block.linears_mut() {
                described.push((format!("{BLOCKS}{index}.{name}"), describe(layer)?));
            }
        }
        if let Some(mut block) = self.transformer_blocks.first_streamed(|vb| TransformerBlock::new(&self.config, vb))? {
            let first: Vec<(String, T)> = block
                .linears_mut()
                .into_iter()
                .map(|(name, layer)| Ok((name, describe(layer)?)))
                .collect::<Result<_>>()?;
            for index in self.transformer_blocks.kept()..self.config.num_layers {
                described.extend(first.iter().map(|(name, value)| (format!("{BLOCKS}{index}.{name}"), value.clone())));
            }
        }
        Ok(described)
    }

    /// The tensors that are not a linear layer's, by their checkpoint names: the modulation tables and the
    /// query/key norms.
    pub fn other_parameter_names(&self) -> Vec<String> {
        let mut names = vec!["scale_shift_table".to_string()];
        for index in 0..self.config.num_layers {
            names.push(format!("transformer_blocks.{index}.scale_shift_table"));
            for attention in ["attn1", "attn2"] {
                for norm in ["q_norm", "k_norm"] {
                    names.push(format!("transformer_blocks.{index}.{attention}.{norm}.weight"));
                }
            }
        }
        names
    }

    /// The model with LoRA updates (`layer name → patch`, names as [`Self::linear_layers`] gives them):
    /// every tensor is shared with `self` except the patched biases; the weight updates are applied on the
    /// fly, to streamed blocks as each is read. Fails on a name that is not a linear layer.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let known: std::collections::BTreeSet<String> =
            self.linear_layers()?.into_iter().map(|(name, _)| name).collect();
        if let Some(name) = patches.keys().find(|name| !known.contains(*name)) {
            candle_core::bail!("the model has no linear layer '{name}'");
        }
        let mut patched = self.clone();
        patched.transformer_blocks = self.transformer_blocks.with_patches(patches)?;
        let top: BTreeMap<String, LayerPatch> =
            patches.iter().filter(|(name, _)| !name.starts_with(BLOCKS)).map(|(k, v)| (k.clone(), v.clone())).collect();
        patch_layers(patched.top_linears_mut(), &top, Linear::patched)?;
        Ok(patched)
    }

    /// The linear layers outside the blocks.
    fn top_linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> =
            vec![("patchify_proj".into(), &mut self.patchify_proj), ("proj_out".into(), &mut self.proj_out)];
        layers.extend(self.adaln_single.linears_mut().into_iter().map(|(n, l)| (format!("adaln_single.{n}"), l)));
        layers.extend(
            self.caption_projection.linears_mut().into_iter().map(|(n, l)| (format!("caption_projection.{n}"), l)),
        );
        layers
    }

    /// Calls `visit` with each block in order: resident blocks as they are, streamed ones read from the file
    /// (the next while the current computes).
    fn each_block(&self, mut visit: impl FnMut(&TransformerBlock) -> Result<()>) -> Result<()> {
        self.transformer_blocks.each(
            "a transformer block",
            |vb| TransformerBlock::new(&self.config, vb),
            |_, block| visit(block),
        )
    }

    /// Whether the blocks are read from the weight file as they are used.
    pub fn streams_blocks(&self) -> bool {
        self.transformer_blocks.streams()
    }

    /// How the blocks are held.
    pub fn block_holding(&self) -> BlockHolding {
        self.transformer_blocks.holding()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.norm_weight.device()
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &LtxvTransformerConfig {
        &self.config
    }

    /// The blocks held in memory, in order: all of them unless some stream.
    pub fn resident_blocks(&self) -> &[TransformerBlock] {
        self.transformer_blocks.resident_blocks()
    }

    /// How many blocks the model has, resident or streamed.
    pub fn block_count(&self) -> usize {
        self.config.num_layers
    }

    /// The timestep embedding (`adaln_single`; `time_embed` in diffusers).
    pub fn time_embed(&self) -> &AdaLayerNormSingle {
        &self.adaln_single
    }

    /// The rotary embedding.
    pub fn rope(&self) -> &RotaryPosEmbed {
        &self.rope
    }

    /// Predicts the flow velocity.
    ///
    /// - `hidden_states` `[B, N, in_channels]`: packed latents ([`pack_latents`]);
    /// - `encoder_hidden_states` `[B, L, caption_channels]`: text-encoder output;
    /// - `encoder_attention_mask` `[B, L]`, 1 = keep, 0 = padding (any dtype); `None` attends to all;
    /// - `timestep` `[B]` or per token `[B, N]`, in units of σ·1000 (multiply σ by
    ///   [`LtxvTransformerConfig::timestep_scale_multiplier`]);
    /// - `positions`: the token grid or explicit `video_coords`.
    ///
    /// Returns `[B, N, out_channels]` in f32.
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        encoder_hidden_states: &Tensor,
        encoder_attention_mask: Option<&Tensor>,
        timestep: &Tensor,
        positions: &RopePositions,
    ) -> Result<Tensor> {
        self.forward_guided(hidden_states, encoder_hidden_states, encoder_attention_mask, timestep, positions, None)
    }

    /// [`Self::forward`] with the self-attentions weighting the guide tokens at the end of the sequence by
    /// `guides`.
    pub fn forward_guided(
        &self,
        hidden_states: &Tensor,
        encoder_hidden_states: &Tensor,
        encoder_attention_mask: Option<&Tensor>,
        timestep: &Tensor,
        positions: &RopePositions,
        guides: Option<&GuideAttentionBias>,
    ) -> Result<Tensor> {
        let (batch, tokens, _) = hidden_states.dims3()?;
        let device = hidden_states.device();
        let bias = encoder_attention_mask.map(text_bias).transpose()?;
        let hidden = self.patchify_proj.forward(&hidden_states.to_dtype(DType::F32)?)?;

        let per_token = match timestep.rank() {
            1 => false,
            2 if timestep.dim(1)? == tokens => true,
            _ => candle_core::bail!("timestep must be [B] or [B, N={tokens}], got {:?}", timestep.dims()),
        };
        let steps = if per_token { tokens } else { 1 };
        let (temb, embedded) = self.adaln_single.forward(timestep)?;
        let temb = temb.reshape((batch, steps, ()))?;
        let embedded = embedded.reshape((batch, steps, ()))?;

        let context = self.caption_projection.forward(&encoder_hidden_states.to_dtype(DType::F32)?)?;
        let rope = self.rope.tables(batch, positions, device)?;

        let mut hidden = hidden;
        self.each_block(|block| {
            hidden = block.forward(&hidden, &context, &temb, &rope, bias.as_ref(), guides)?;
            Ok(())
        })?;
        self.finish(&hidden, &embedded)
    }

    /// The cos/sin tables the model uses for `batch` sequences at `positions`.
    pub fn rope_tables(&self, batch: usize, positions: &RopePositions) -> Result<RopeTables> {
        self.rope.tables(batch, positions, self.norm_weight.device())
    }

    /// Final layer norm, modulated by `(shift, scale) = scale_shift_table + embedded timestep`, and `proj_out`.
    fn finish(&self, hidden: &Tensor, embedded: &Tensor) -> Result<Tensor> {
        let (b, t, dim) = embedded.dims3()?;
        let table = self.scale_shift_table.reshape((1, 1, 2, dim))?;
        let modulation = embedded.reshape((b, t, 1, dim))?.broadcast_add(&table)?;
        let shift = modulation.narrow(2, 0, 1)?.squeeze(2)?;
        let scale = modulation.narrow(2, 1, 1)?.squeeze(2)?;
        let normed =
            candle_nn::ops::layer_norm(hidden, &self.norm_weight, &self.norm_bias, self.config.norm_eps as f32)?;
        let normed = normed.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)?;
        self.proj_out.forward(&normed)
    }
}

/// Only patch size 1 × 1 is supported.
fn check_patch_size(config: &LtxvTransformerConfig) -> Result<()> {
    if config.patch_size != 1 || config.patch_size_t != 1 {
        candle_core::bail!(
            "patch sizes {}×{} are not supported (every released model uses 1×1)",
            config.patch_size_t,
            config.patch_size
        );
    }
    Ok(())
}

/// The cross-attention bias of a text mask `[B, L]` (1 = keep): `(1 − mask)·(−10000)`, `[B, 1, L]`.
pub fn text_bias(mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    ((mask.ones_like()? - mask)? * -10_000.0)?.unsqueeze(1)
}

/// `[B, C, F, H, W]` latents → `[B, F·H·W, C]` tokens, token `n = (f·H + h)·W + w` (patch size 1).
pub fn pack_latents(latents: &Tensor) -> Result<Tensor> {
    let (b, c, f, h, w) = latents.dims5()?;
    latents.permute((0, 2, 3, 4, 1))?.reshape((b, f * h * w, c))
}

/// `[B, F·H·W, C]` tokens → `[B, C, F, H, W]` latents, the inverse of [`pack_latents`].
pub fn unpack_latents(tokens: &Tensor, frames: usize, height: usize, width: usize) -> Result<Tensor> {
    let (b, n, c) = tokens.dims3()?;
    if n != frames * height * width {
        candle_core::bail!("{n} tokens do not form a {frames}×{height}×{width} latent grid");
    }
    tokens.reshape((b, frames, height, width, c))?.permute((0, 4, 1, 2, 3))?.contiguous()
}
