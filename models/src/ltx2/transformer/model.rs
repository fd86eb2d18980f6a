//! The whole audio-video transformer: diffusers' `LTX2VideoTransformer3DModel`, ComfyUI's `LTXAVModel`.

use super::super::rope::{SplitRope, interval_fractions};
use super::block::{BlockInputs, Ltx2Block};
use super::config::{AvTimestepRouting, Ltx2TransformerConfig};
use super::modulation::{Modulation, Timesteps};
use crate::block_stack::{BlockHolding, BlockStack, StackBlock};
use crate::lora::{LayerPatch, patch_layers};
use crate::ltxv::transformer::embeddings::{AdaLayerNormSingle, CaptionProjection};
use crate::ltxv::transformer::{GuideAttentionBias, text_bias};
use crate::ops::linear::Linear;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;

/// The blocks' name in the checkpoint.
const BLOCKS: &str = "transformer_blocks.";

impl StackBlock for Ltx2Block {
    fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()> {
        patch_layers(self.linears_mut(), patches, Linear::patched)
    }
}

/// Audio mel frames per second (16 kHz, hop 160) and mel frames per audio latent.
const MEL_SAMPLE_RATE: f32 = 16_000.0;
const MEL_HOP: f32 = 160.0;
const AUDIO_LATENT_MEL_FRAMES: usize = 4;
/// Pixel frames per latent frame and pixels per latent row/column of the video VAE.
const VIDEO_SCALE: [usize; 3] = [8, 32, 32];

/// One forward pass's inputs. Timesteps are in units of σ·1000 (σ times
/// [`Ltx2TransformerConfig::timestep_scale_multiplier`]).
#[derive(Debug, Clone, Copy)]
pub struct AvInputs<'a> {
    /// Video tokens `[B, Nv, in_channels]` ([`crate::ltxv::transformer::pack_latents`]).
    pub video: &'a Tensor,
    /// Audio tokens `[B, Na, audio_in_channels]` ([`pack_audio_latents`]).
    pub audio: &'a Tensor,
    /// Video text context `[B, L, caption_channels]` (2.0) or `[B, L, cross_attention_dim]` (2.3+).
    pub video_context: &'a Tensor,
    /// Audio text context `[B, L, caption_channels]` (2.0) or `[B, L, audio_cross_attention_dim]`.
    pub audio_context: &'a Tensor,
    /// `[B, L]`, 1 = keep, 0 = padding; `None` attends to every text token.
    pub context_mask: Option<&'a Tensor>,
    /// Video timesteps, `[B]` or per token `[B, Nv]`.
    pub video_timestep: &'a Tensor,
    /// Audio timesteps, `[B]` or per token `[B, Na]`.
    pub audio_timestep: &'a Tensor,
    /// The sampler's σ·1000 of each sample `[B]` for the video: drives the prompt modulation (2.3) and,
    /// with [`AvTimestepRouting::Cross`], the audio side's cross-attention modulation.
    pub video_sigma: &'a Tensor,
    /// The same for the audio.
    pub audio_sigma: &'a Tensor,
    /// `[B, 3, Nv, 2]` intervals `[start, end)` of each video token: seconds, pixel rows, pixel columns
    /// ([`Ltx2Transformer::video_positions`]).
    pub video_positions: &'a Tensor,
    /// `[B, 1, Na, 2]` intervals of each audio token in seconds ([`Ltx2Transformer::audio_positions`]).
    pub audio_positions: &'a Tensor,
    /// `[B, Nv]`, non-zero on video tokens whose latent frame stands for a single pixel frame; they get
    /// the keyframe position embedding (2.5 models; ignored by others).
    pub keyframe_mask: Option<&'a Tensor>,
    /// The weights of the guide tokens at the end of the video sequence in the video self-attention.
    pub video_guides: Option<&'a GuideAttentionBias>,
}

impl<'a> AvInputs<'a> {
    /// Inputs with one timestep `t` (σ·1000, `[B]`) for both streams and the prompt modulation, every text
    /// token valid and no keyframe marks: text-to-video with sound at one noise level.
    pub fn at_one_timestep(
        (video, audio): (&'a Tensor, &'a Tensor),
        (video_context, audio_context): (&'a Tensor, &'a Tensor),
        t: &'a Tensor,
        (video_positions, audio_positions): (&'a Tensor, &'a Tensor),
    ) -> Self {
        AvInputs {
            video,
            audio,
            video_context,
            audio_context,
            context_mask: None,
            video_timestep: t,
            audio_timestep: t,
            video_sigma: t,
            audio_sigma: t,
            video_positions,
            audio_positions,
            keyframe_mask: None,
            video_guides: None,
        }
    }
}

/// Guidance variants of a forward pass.
#[derive(Debug, Clone, Default)]
pub struct Perturbation {
    /// Blocks whose self-attentions (both streams) are replaced by their values (spatio-temporal guidance).
    pub stg_blocks: Vec<usize>,
    /// Skips every audio↔video cross-attention (modality guidance).
    pub isolate_modalities: bool,
}

/// The LTX-2 audio-video transformer, computing in f32.
#[derive(Clone)]
pub struct Ltx2Transformer {
    config: Ltx2TransformerConfig,
    patchify_proj: Linear,
    audio_patchify_proj: Linear,
    caption_projection: Option<CaptionProjection>,
    audio_caption_projection: Option<CaptionProjection>,
    adaln_single: AdaLayerNormSingle,
    audio_adaln_single: AdaLayerNormSingle,
    prompt_adaln_single: Option<AdaLayerNormSingle>,
    audio_prompt_adaln_single: Option<AdaLayerNormSingle>,
    av_ca_video_scale_shift: AdaLayerNormSingle,
    av_ca_audio_scale_shift: AdaLayerNormSingle,
    av_ca_a2v_gate: AdaLayerNormSingle,
    av_ca_v2a_gate: AdaLayerNormSingle,
    scale_shift_table: Tensor,
    audio_scale_shift_table: Tensor,
    proj_out: Linear,
    audio_proj_out: Linear,
    keyframes_abs_pos_embedding: Option<Tensor>,
    blocks: BlockStack<Ltx2Block>,
    device: Device,
}

impl std::fmt::Debug for Ltx2Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ltx2Transformer")
            .field("config", &self.config)
            .field("blocks", &self.blocks.holding())
            .field("streamed_lora_sets", &self.blocks.streamed_patch_sets())
            .finish_non_exhaustive()
    }
}

impl Ltx2Transformer {
    /// Builds the model from a `VarBuilder` rooted at the transformer, with the official names
    /// (`patchify_proj`, `adaln_single`, `transformer_blocks.{i}`, …), its blocks held as `holding` says:
    /// those not kept are read from `vb` whenever a forward pass reaches them ([`BlockStack`]).
    pub fn new(config: &Ltx2TransformerConfig, vb: &VarBuilder<'static>, holding: BlockHolding) -> Result<Self> {
        let (dv, da) = (config.inner_dim(), config.audio_inner_dim());
        let rows = config.modulation_rows();
        let adaln = |width, outputs, name: &str| AdaLayerNormSingle::with_outputs(width, outputs, &vb.pp(name));
        let blocks = BlockStack::load(BLOCKS, config.num_layers, holding, &vb.pp("transformer_blocks"), |vb| {
            Ltx2Block::new(config, vb)
        })?;
        Ok(Ltx2Transformer {
            config: config.clone(),
            patchify_proj: Linear::new(config.in_channels, dv, &vb.pp("patchify_proj"))?,
            audio_patchify_proj: Linear::new(config.audio_in_channels, da, &vb.pp("audio_patchify_proj"))?,
            caption_projection: optional(config.caption_projection, || {
                CaptionProjection::new(config.caption_channels, dv, &vb.pp("caption_projection"))
            })?,
            audio_caption_projection: optional(config.caption_projection, || {
                CaptionProjection::new(config.caption_channels, da, &vb.pp("audio_caption_projection"))
            })?,
            adaln_single: adaln(dv, rows, "adaln_single")?,
            audio_adaln_single: adaln(da, rows, "audio_adaln_single")?,
            prompt_adaln_single: optional(config.prompt_adaln, || adaln(dv, 2, "prompt_adaln_single"))?,
            audio_prompt_adaln_single: optional(config.prompt_adaln, || adaln(da, 2, "audio_prompt_adaln_single"))?,
            av_ca_video_scale_shift: adaln(dv, 4, "av_ca_video_scale_shift_adaln_single")?,
            av_ca_audio_scale_shift: adaln(da, 4, "av_ca_audio_scale_shift_adaln_single")?,
            av_ca_a2v_gate: adaln(dv, 1, "av_ca_a2v_gate_adaln_single")?,
            av_ca_v2a_gate: adaln(da, 1, "av_ca_v2a_gate_adaln_single")?,
            scale_shift_table: vb.get((2, dv), "scale_shift_table")?.to_dtype(DType::F32)?,
            audio_scale_shift_table: vb.get((2, da), "audio_scale_shift_table")?.to_dtype(DType::F32)?,
            proj_out: Linear::new(dv, config.out_channels, &vb.pp("proj_out"))?,
            audio_proj_out: Linear::new(da, config.audio_out_channels, &vb.pp("audio_proj_out"))?,
            keyframes_abs_pos_embedding: optional(config.keyframes_embedding, || {
                vb.get((1, dv), "keyframes_abs_pos_embedding")?.to_dtype(DType::F32)
            })?,
            blocks,
            device: vb.device().clone(),
        })
    }

    /// Every linear layer by its checkpoint name (`transformer_blocks.0.attn1.to_q`, …) with its weight's
    /// `(out, in)`: the layers a LoRA can change. Streamed blocks are described by the first of them, read
    /// once from the file (the loader checked that every block has its tensors and shapes).
    pub fn linear_layers(&self) -> Result<Vec<(String, (usize, usize))>> {
        let mut copy = self.clone();
        let mut layers: Vec<(String, (usize, usize))> =
            copy.top_linears_mut().into_iter().map(|(name, l)| Ok((name, l.shape()?))).collect::<Result<_>>()?;
        for (index, block) in copy.blocks.resident_blocks_mut().iter_mut().enumerate() {
            for (name, layer) in block.linears_mut() {
                layers.push((format!("{BLOCKS}{index}.{name}"), layer.shape()?));
            }
        }
        if let Some(mut block) = self.blocks.first_streamed(|vb| Ltx2Block::new(&self.config, vb))? {
            let shapes: Vec<(String, (usize, usize))> =
                block.linears_mut().into_iter().map(|(name, l)| Ok((name, l.shape()?))).collect::<Result<_>>()?;
            for index in self.blocks.kept()..self.config.num_layers {
                layers.extend(shapes.iter().map(|(name, shape)| (format!("{BLOCKS}{index}.{name}"), *shape)));
            }
        }
        Ok(layers)
    }

    /// The model with LoRA updates (`layer name → patch`, names as [`Self::linear_layers`] gives them). The
    /// base weights are shared with `self`; streamed blocks get their updates as they are read. Fails on a
    /// name that is not a linear layer.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let known: std::collections::BTreeSet<String> =
            self.linear_layers()?.into_iter().map(|(name, _)| name).collect();
        if let Some(name) = patches.keys().find(|name| !known.contains(*name)) {
            candle_core::bail!("the model has no linear layer '{name}'");
        }
        let mut patched = self.clone();
        patched.blocks = self.blocks.with_patches(patches)?;
        let top: BTreeMap<String, LayerPatch> =
            patches.iter().filter(|(name, _)| !name.starts_with(BLOCKS)).map(|(k, v)| (k.clone(), v.clone())).collect();
        patch_layers(patched.top_linears_mut(), &top, Linear::patched)?;
        Ok(patched)
    }

    /// The linear layers outside the blocks.
    fn top_linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> = vec![
            ("patchify_proj".into(), &mut self.patchify_proj),
            ("audio_patchify_proj".into(), &mut self.audio_patchify_proj),
            ("proj_out".into(), &mut self.proj_out),
            ("audio_proj_out".into(), &mut self.audio_proj_out),
        ];
        for (prefix, projection) in [
            ("caption_projection", &mut self.caption_projection),
            ("audio_caption_projection", &mut self.audio_caption_projection),
        ] {
            if let Some(projection) = projection {
                layers.extend(projection.linears_mut().into_iter().map(|(n, l)| (format!("{prefix}.{n}"), l)));
            }
        }
        let mut adalns: Vec<(&str, &mut AdaLayerNormSingle)> = vec![
            ("adaln_single", &mut self.adaln_single),
            ("audio_adaln_single", &mut self.audio_adaln_single),
            ("av_ca_video_scale_shift_adaln_single", &mut self.av_ca_video_scale_shift),
            ("av_ca_audio_scale_shift_adaln_single", &mut self.av_ca_audio_scale_shift),
            ("av_ca_a2v_gate_adaln_single", &mut self.av_ca_a2v_gate),
            ("av_ca_v2a_gate_adaln_single", &mut self.av_ca_v2a_gate),
        ];
        if let Some(adaln) = &mut self.prompt_adaln_single {
            adalns.push(("prompt_adaln_single", adaln));
        }
        if let Some(adaln) = &mut self.audio_prompt_adaln_single {
            adalns.push(("audio_prompt_adaln_single", adaln));
        }
        for (prefix, adaln) in adalns {
            layers.extend(adaln.linears_mut().into_iter().map(|(n, l)| (format!("{prefix}.{n}"), l)));
        }
        layers
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Ltx2TransformerConfig {
        &self.config
    }

    /// Mutable access to the configuration's run-time switches (timestep routing).
    pub fn set_av_routing(&mut self, routing: AvTimestepRouting) {
        self.config.av_routing = routing;
    }

    /// Whether video→audio attention reads the video stream after the block's audio→video update
    /// (ComfyUI, the default) or before it (diffusers and ltx-core).
    pub fn set_v2a_after_a2v(&mut self, after: bool) {
        self.config.v2a_after_a2v = after;
        for block in self.blocks.resident_blocks_mut() {
            block.set_v2a_after_a2v(after);
        }
    }

    /// How the linear layers' weights are kept (those of the input projection; the blocks' are kept
    /// the same way, except in fp8 files, whose block weights are fp8 beside a bf16 rest).
    pub fn storage(&self) -> crate::fp8::WeightStorage {
        self.patchify_proj.storage()
    }

    /// Whether the blocks are read from the weight file as they are used.
    pub fn streams_blocks(&self) -> bool {
        self.blocks.streams()
    }

    /// How the blocks are held.
    pub fn block_holding(&self) -> BlockHolding {
        self.blocks.holding()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `[B, 3, F·H·W, 2]` pixel-space intervals of a `frames × height × width` latent grid, as diffusers'
    /// `prepare_video_coords`: time `[8f + c − 8, 8f + 8 + c − 8)` clamped at 0 (c = 1 with the causal
    /// first frame) and divided by `fps`, rows and columns `[32h, 32h + 32)`.
    pub fn video_positions(
        &self,
        batch: usize,
        frames: usize,
        height: usize,
        width: usize,
        fps: f32,
    ) -> Result<Tensor> {
        let offset = if self.config.causal_temporal_positioning { 1.0 } else { 0.0 };
        let tokens = frames * height * width;
        let mut values = vec![0f32; 3 * tokens * 2];
        let scale = VIDEO_SCALE.map(|s| s as f32);
        for f in 0..frames {
            for h in 0..height {
                for w in 0..width {
                    let n = (f * height + h) * width + w;
                    let time = |index: usize| ((index as f32 * scale[0]) + offset - scale[0]).max(0.0) / fps;
                    let cells = [
                        (time(f), time(f + 1)),
                        (h as f32 * scale[1], (h + 1) as f32 * scale[1]),
                        (w as f32 * scale[2], (w + 1) as f32 * scale[2]),
                    ];
                    for (axis, (start, end)) in cells.into_iter().enumerate() {
                        values[(axis * tokens + n) * 2] = start;
                        values[(axis * tokens + n) * 2 + 1] = end;
                    }
                }
            }
        }
        Tensor::from_vec(values, (1, 3, tokens, 2), &self.device)?.repeat((batch, 1, 1, 1))
    }

    /// `[B, 1, Na, 2]` intervals in seconds of `tokens` audio latents, as diffusers' `prepare_audio_coords`:
    /// mel frames `[4i + c − 4, 4i + 4 + c − 4)` clamped at 0, times 160 / 16000 s.
    pub fn audio_positions(&self, batch: usize, tokens: usize) -> Result<Tensor> {
        let offset = if self.config.causal_temporal_positioning { 1.0 } else { 0.0 };
        let factor = AUDIO_LATENT_MEL_FRAMES as f32;
        let seconds = |index: usize| ((index as f32 * factor + offset - factor).max(0.0) * MEL_HOP) / MEL_SAMPLE_RATE;
        let values: Vec<f32> = (0..tokens).flat_map(|i| [seconds(i), seconds(i + 1)]).collect();
        Tensor::from_vec(values, (1, 1, tokens, 2), &self.device)?.repeat((batch, 1, 1, 1))
    }

    /// `[B, 1, N, 2]` intervals in seconds of `tokens` reference-audio latents put before the target audio
    /// (ComfyUI's ID-LoRA reference, `LTXVReferenceAudio`): the intervals of latents `0..N` as
    /// [`Self::audio_positions`] gives them, moved back so that the last one ends one latent's duration
    /// (4 mel frames, 0.04 s) before 0.
    pub fn reference_audio_positions(&self, batch: usize, tokens: usize) -> Result<Tensor> {
        let offset = if self.config.causal_temporal_positioning { 1.0 } else { 0.0 };
        let factor = AUDIO_LATENT_MEL_FRAMES as f32;
        let seconds = |index: usize| ((index as f32 * factor + offset - factor).max(0.0) * MEL_HOP) / MEL_SAMPLE_RATE;
        // ComfyUI adds the latent's duration (a Python float) to the last end (a float32) in double precision.
        let latent_seconds = f64::from(MEL_HOP) * AUDIO_LATENT_MEL_FRAMES as f64 / f64::from(MEL_SAMPLE_RATE);
        let shift = (f64::from(seconds(tokens)) + latent_seconds) as f32;
        let values: Vec<f32> = (0..tokens).flat_map(|i| [seconds(i) - shift, seconds(i + 1) - shift]).collect();
        Tensor::from_vec(values, (1, 1, tokens, 2), &self.device)?.repeat((batch, 1, 1, 1))
    }

    /// The four RoPE tables of a pass: video self, audio self, video side and audio side of the
    /// audio↔video attention.
    pub fn rope_tables(&self, video_positions: &Tensor, audio_positions: &Tensor) -> Result<[SplitRope; 4]> {
        let c = &self.config;
        let cross_max = c.positional_embedding_max_pos[0].max(c.audio_positional_embedding_max_pos);
        let table = |positions: &Tensor, max: &[f32], dim: usize, heads: usize| -> Result<SplitRope> {
            let (fractions, batch) = interval_fractions(positions, max)?;
            SplitRope::from_fractions(&fractions, batch, max.len(), dim, heads, c.rope_theta, &self.device)
        };
        let video_time = video_positions.narrow(1, 0, 1)?;
        Ok([
            table(video_positions, &c.positional_embedding_max_pos, c.inner_dim(), c.num_attention_heads)?,
            table(
                audio_positions,
                &[c.audio_positional_embedding_max_pos],
                c.audio_inner_dim(),
                c.audio_num_attention_heads,
            )?,
            table(&video_time, &[cross_max], c.audio_cross_attention_dim, c.audio_num_attention_heads)?,
            table(audio_positions, &[cross_max], c.audio_cross_attention_dim, c.audio_num_attention_heads)?,
        ])
    }

    /// Predicts the velocities of both streams: `([B, Nv, out_channels], [B, Na, audio_out_channels])`.
    pub fn forward(&self, inputs: &AvInputs<'_>, perturbation: &Perturbation) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let (batch, video_tokens, _) = inputs.video.dims3()?;
        let (audio_batch, audio_tokens, _) = inputs.audio.dims3()?;
        if audio_batch != batch {
            candle_core::bail!("video batch {batch} and audio batch {audio_batch} differ");
        }
        let mut video = self.patchify_proj.forward(&inputs.video.to_dtype(DType::F32)?)?;
        if let (Some(embedding), Some(mask)) = (&self.keyframes_abs_pos_embedding, inputs.keyframe_mask) {
            let marker = mask.to_dtype(DType::F32)?.ne(0.0)?.to_dtype(DType::F32)?.unsqueeze(2)?;
            video = (video + marker.broadcast_mul(&embedding.unsqueeze(0)?)?)?;
        }
        let audio = self.audio_patchify_proj.forward(&inputs.audio.to_dtype(DType::F32)?)?;

        let video_t = Timesteps::new(inputs.video_timestep, batch, video_tokens)?;
        let audio_t = Timesteps::new(inputs.audio_timestep, batch, audio_tokens)?;
        let video_sigma = Timesteps::new(inputs.video_sigma, batch, 1)?;
        let audio_sigma = Timesteps::new(inputs.audio_sigma, batch, 1)?;
        let embed = |adaln: &AdaLayerNormSingle, t: &Timesteps| -> Result<(Modulation, Modulation)> {
            let (temb, embedded) = adaln.forward(t.distinct())?;
            Ok((t.modulation(temb)?, t.modulation(embedded)?))
        };
        let modulation = |adaln: &AdaLayerNormSingle, t: &Timesteps| embed(adaln, t).map(|(m, _)| m);
        let (video_modulation, video_embedded) = embed(&self.adaln_single, &video_t)?;
        let (audio_modulation, audio_embedded) = embed(&self.audio_adaln_single, &audio_t)?;

        let factor = c.gate_timestep_factor();
        let device = &self.device;
        let (video_ss_t, video_gate_t, audio_ss_t, audio_gate_t) = match c.av_routing {
            AvTimestepRouting::Own => {
                (video_t.clone(), video_t.scaled(factor)?, audio_t.clone(), audio_t.scaled(factor)?)
            }
            AvTimestepRouting::Cross => {
                (audio_sigma.clone(), audio_sigma.scaled(factor)?, video_sigma.clone(), video_sigma.scaled(factor)?)
            }
            AvTimestepRouting::CrossGate => (
                video_t.clone(),
                Timesteps::constant(audio_t.max()? * factor as f32, batch, device)?,
                audio_t.clone(),
                Timesteps::constant(video_t.max()? * factor as f32, batch, device)?,
            ),
        };
        let prompt = |adaln: &Option<AdaLayerNormSingle>, sigma: &Timesteps| {
            adaln.as_ref().map(|adaln| modulation(adaln, sigma)).transpose()
        };
        let (video_context, audio_context) = match (&self.caption_projection, &self.audio_caption_projection) {
            (Some(video), Some(audio)) => (
                video.forward(&inputs.video_context.to_dtype(DType::F32)?)?,
                audio.forward(&inputs.audio_context.to_dtype(DType::F32)?)?,
            ),
            _ => (inputs.video_context.to_dtype(DType::F32)?, inputs.audio_context.to_dtype(DType::F32)?),
        };
        let [video_rope, audio_rope, video_cross_rope, audio_cross_rope] =
            self.rope_tables(inputs.video_positions, inputs.audio_positions)?;
        let block_inputs = BlockInputs {
            video_context,
            audio_context,
            text_bias: inputs.context_mask.map(text_bias).transpose()?,
            video_guides: inputs.video_guides.cloned(),
            video_modulation,
            audio_modulation,
            video_av_scale_shift: modulation(&self.av_ca_video_scale_shift, &video_ss_t)?,
            video_av_gate: modulation(&self.av_ca_a2v_gate, &video_gate_t)?,
            audio_av_scale_shift: modulation(&self.av_ca_audio_scale_shift, &audio_ss_t)?,
            audio_av_gate: modulation(&self.av_ca_v2a_gate, &audio_gate_t)?,
            video_prompt: prompt(&self.prompt_adaln_single, &video_sigma)?,
            audio_prompt: prompt(&self.audio_prompt_adaln_single, &audio_sigma)?,
            video_rope,
            audio_rope,
            video_cross_rope,
            audio_cross_rope,
            cross_modal: !perturbation.isolate_modalities,
        };

        let (mut video, mut audio) = (video, audio);
        self.blocks.each(
            "a transformer block",
            |vb| Ltx2Block::new(&self.config, vb),
            |index, block| {
                let perturbed = perturbation.stg_blocks.contains(&index);
                (video, audio) = block.forward(&video, &audio, &block_inputs, perturbed)?;
                Ok(())
            },
        )?;
        let video = finish(&video, &video_embedded, &self.scale_shift_table, &self.proj_out, c.norm_eps)?;
        let audio = finish(&audio, &audio_embedded, &self.audio_scale_shift_table, &self.audio_proj_out, c.norm_eps)?;
        Ok((video, audio))
    }
}

/// `build()` when `present`.
fn optional<T>(present: bool, build: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    if present { build().map(Some) } else { Ok(None) }
}

/// Final layer norm (no affine), modulated by `(shift, scale) = table + embedded timestep`, and the output
/// projection.
fn finish(hidden: &Tensor, embedded: &Modulation, table: &Tensor, projection: &Linear, eps: f64) -> Result<Tensor> {
    let width = table.dim(1)?;
    let embedded = embedded.plain_row(0, width)?;
    let shift = embedded.broadcast_add(&table.get(0)?)?;
    let scale = embedded.broadcast_add(&table.get(1)?)?;
    let ones = Tensor::ones(width, DType::F32, hidden.device())?;
    let zeros = Tensor::zeros(width, DType::F32, hidden.device())?;
    let normed = candle_nn::ops::layer_norm(hidden, &ones, &zeros, eps as f32)?;
    projection.forward(&super::modulation::modulate(&normed, &shift, &scale)?)
}

/// `[B, C, T, F]` audio latents (8 channels × 16 mel bins) → `[B, T, C·F]` tokens, channel-major.
pub fn pack_audio_latents(latents: &Tensor) -> Result<Tensor> {
    let (b, c, t, f) = latents.dims4()?;
    latents.permute((0, 2, 1, 3))?.reshape((b, t, c * f))
}

/// `[B, T, C·F]` tokens → `[B, C, T, F]` audio latents with `channels` channels, the inverse of
/// [`pack_audio_latents`].
pub fn unpack_audio_latents(tokens: &Tensor, channels: usize) -> Result<Tensor> {
    let (b, t, width) = tokens.dims3()?;
    if channels == 0 || width % channels != 0 {
        candle_core::bail!("{width}-wide audio tokens do not split into {channels} channels");
    }
    tokens.reshape((b, t, channels, width / channels))?.permute((0, 2, 1, 3))?.contiguous()
}
