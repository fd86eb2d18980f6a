//! The whole transformer: diffusers' `LTXVideoTransformer3DModel` (`Transformer3DModel` in the original
//! code, `LTXVModel` in ComfyUI), for the 2B and 13B models of releases 0.9.0 to 0.9.8.

use super::attention::GuideAttentionBias;
use super::block::TransformerBlock;
use super::config::LtxvTransformerConfig;
use super::embeddings::{AdaLayerNormSingle, CaptionProjection, ones};
use super::rope::{RopePositions, RopeTables, RotaryPosEmbed};
use crate::lora::{LayerPatch, patch_layers};
use crate::ops::linear::Linear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;

/// The LTX-Video transformer, computing in f32.
#[derive(Debug, Clone)]
pub struct LtxvTransformer {
    config: LtxvTransformerConfig,
    patchify_proj: Linear,
    adaln_single: AdaLayerNormSingle,
    caption_projection: CaptionProjection,
    transformer_blocks: Vec<TransformerBlock>,
    scale_shift_table: Tensor,
    proj_out: Linear,
    rope: RotaryPosEmbed,
    norm_weight: Tensor,
    norm_bias: Tensor,
}

impl LtxvTransformer {
    /// Builds the model from any `VarBuilder` rooted at the transformer with the original names
    /// (`patchify_proj`, `adaln_single`, …), e.g. one over random weights for a benchmark. Use
    /// [`LtxvTransformer::load`] for files in either layout.
    pub fn new(config: &LtxvTransformerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        if config.patch_size != 1 || config.patch_size_t != 1 {
            candle_core::bail!(
                "patch sizes {}×{} are not supported (every released model uses 1×1)",
                config.patch_size_t,
                config.patch_size
            );
        }
        let dim = config.inner_dim();
        let device = vb.device();
        let transformer_blocks = (0..config.num_layers)
            .map(|i| TransformerBlock::new(config, &vb.pp("transformer_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(LtxvTransformer {
            config: config.clone(),
            patchify_proj: Linear::new(config.in_channels, dim, &vb.pp("patchify_proj"))?,
            adaln_single: AdaLayerNormSingle::new(dim, &vb.pp("adaln_single"))?,
            caption_projection: CaptionProjection::new(config.caption_channels, dim, &vb.pp("caption_projection"))?,
            transformer_blocks,
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
        let mut copy = self.clone();
        copy.linears_mut().into_iter().map(|(name, layer)| Ok((name, layer.shape()?))).collect()
    }

    /// Each linear layer's name and how its weight is kept (f32, or fp8 codes: the file's scaled fp8 weights,
    /// or all of them with an fp8 `weight_dtype`).
    pub fn linear_storage(&self) -> Vec<(String, crate::fp8::WeightStorage)> {
        let mut copy = self.clone();
        copy.linears_mut().into_iter().map(|(name, layer)| (name, layer.storage())).collect()
    }

    /// The tensors that are not a linear layer's, by their checkpoint names: the modulation tables and the
    /// query/key norms.
    pub fn other_parameter_names(&self) -> Vec<String> {
        let mut names = vec!["scale_shift_table".to_string()];
        for index in 0..self.transformer_blocks.len() {
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
    /// fly. Fails on a name that is not a linear layer.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let mut patched = self.clone();
        patch_layers(patched.linears_mut(), patches, Linear::patched)?;
        Ok(patched)
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> =
            vec![("patchify_proj".into(), &mut self.patchify_proj), ("proj_out".into(), &mut self.proj_out)];
        layers.extend(self.adaln_single.linears_mut().into_iter().map(|(n, l)| (format!("adaln_single.{n}"), l)));
        layers.extend(
            self.caption_projection.linears_mut().into_iter().map(|(n, l)| (format!("caption_projection.{n}"), l)),
        );
        for (index, block) in self.transformer_blocks.iter_mut().enumerate() {
            layers.extend(block.linears_mut().into_iter().map(|(n, l)| (format!("transformer_blocks.{index}.{n}"), l)));
        }
        layers
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.norm_weight.device()
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &LtxvTransformerConfig {
        &self.config
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[TransformerBlock] {
        &self.transformer_blocks
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
        for block in &self.transformer_blocks {
            hidden = block.forward(&hidden, &context, &temb, &rope, bias.as_ref(), guides)?;
        }
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
