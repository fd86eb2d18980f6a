//! One audio-video block: diffusers' `LTX2VideoTransformerBlock`, ComfyUI's `BasicAVTransformerBlock`.
//!
//! Both streams in turn: self-attention, text cross-attention, then audio→video and video→audio
//! cross-attention (each stream's queries against the other's keys, rotated by time only), then the
//! feed-forwards. Every sub-layer reads an RMS-normalised (affine-free) copy of its stream, modulated by
//! the block's table plus the timestep's vectors, and adds its output back through a gate.

use super::super::rope::SplitRope;
use super::attention::{AttentionShape, Ltx2Attention};
use super::config::Ltx2TransformerConfig;
use super::modulation::{Modulation, modulate};
use crate::ltxv::transformer::attention::{GuideAttentionBias, LogitBias};
use crate::ltxv::transformer::block::FeedForward;
use crate::ops::linear::Linear;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// What every block of one forward pass shares.
#[derive(Debug, Clone)]
pub struct BlockInputs {
    /// Video text context `[B, L, cross_attention_dim]` (after the caption projection, if any).
    pub video_context: Tensor,
    /// Audio text context `[B, L, audio_cross_attention_dim]`.
    pub audio_context: Tensor,
    /// Additive text-padding bias `[B, 1, L]`.
    pub text_bias: Option<Tensor>,
    /// The guide weights of the video self-attention.
    pub video_guides: Option<GuideAttentionBias>,
    /// `adaln_single` output: k rows of the video width.
    pub video_modulation: Modulation,
    /// `audio_adaln_single` output.
    pub audio_modulation: Modulation,
    /// Scale/shift of the audio↔video attention for the video side (4 rows).
    pub video_av_scale_shift: Modulation,
    /// The audio→video gate (1 row).
    pub video_av_gate: Modulation,
    /// Scale/shift of the audio↔video attention for the audio side (4 rows).
    pub audio_av_scale_shift: Modulation,
    /// The video→audio gate (1 row).
    pub audio_av_gate: Modulation,
    /// `prompt_adaln_single` output (2 rows), when the prompt modulation depends on σ.
    pub video_prompt: Option<Modulation>,
    /// `audio_prompt_adaln_single` output.
    pub audio_prompt: Option<Modulation>,
    /// Video self-attention RoPE (t, y, x).
    pub video_rope: SplitRope,
    /// Audio self-attention RoPE (t).
    pub audio_rope: SplitRope,
    /// The video side of the audio↔video attention (t only).
    pub video_cross_rope: SplitRope,
    /// The audio side of the audio↔video attention (t only).
    pub audio_cross_rope: SplitRope,
    /// Whether the audio↔video attentions run (false isolates the modalities).
    pub cross_modal: bool,
}

/// `LTX2VideoTransformerBlock`.
#[derive(Debug, Clone)]
pub struct Ltx2Block {
    attn1: Ltx2Attention,
    audio_attn1: Ltx2Attention,
    attn2: Ltx2Attention,
    audio_attn2: Ltx2Attention,
    audio_to_video_attn: Ltx2Attention,
    video_to_audio_attn: Ltx2Attention,
    ff: FeedForward,
    audio_ff: FeedForward,
    scale_shift_table: Tensor,
    audio_scale_shift_table: Tensor,
    prompt_scale_shift_table: Option<Tensor>,
    audio_prompt_scale_shift_table: Option<Tensor>,
    scale_shift_table_a2v_ca_video: Tensor,
    scale_shift_table_a2v_ca_audio: Tensor,
    video_ones: Tensor,
    audio_ones: Tensor,
    eps: f32,
    v2a_after_a2v: bool,
}

impl Ltx2Block {
    /// Weights under one `transformer_blocks.{i}.` prefix, official names.
    pub fn new(config: &Ltx2TransformerConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let (dv, da) = (config.inner_dim(), config.audio_inner_dim());
        let (hv, dhv) = (config.num_attention_heads, config.attention_head_dim);
        let (ha, dha) = (config.audio_num_attention_heads, config.audio_attention_head_dim);
        let gated = config.gated_attention;
        let attention = |query_dim, context_dim, heads, head_dim, name: &str| {
            let shape = AttentionShape { query_dim, context_dim, heads, head_dim, gated };
            Ltx2Attention::new(shape, config.norm_eps, &vb.pp(name))
        };
        let rows = config.modulation_rows();
        let table = |rows: usize, width: usize, name: &str| vb.get((rows, width), name)?.to_dtype(DType::F32);
        let prompt_table =
            |name: &str, width| if config.cross_attention_adaln { table(2, width, name).map(Some) } else { Ok(None) };
        let device = vb.device();
        Ok(Ltx2Block {
            attn1: attention(dv, dv, hv, dhv, "attn1")?,
            audio_attn1: attention(da, da, ha, dha, "audio_attn1")?,
            attn2: attention(dv, config.cross_attention_dim, hv, dhv, "attn2")?,
            audio_attn2: attention(da, config.audio_cross_attention_dim, ha, dha, "audio_attn2")?,
            audio_to_video_attn: attention(dv, da, ha, dha, "audio_to_video_attn")?,
            video_to_audio_attn: attention(da, dv, ha, dha, "video_to_audio_attn")?,
            ff: FeedForward::with_bias(dv, config.ff_bias, &vb.pp("ff"))?,
            audio_ff: FeedForward::with_bias(da, config.audio_ff_bias, &vb.pp("audio_ff"))?,
            scale_shift_table: table(rows, dv, "scale_shift_table")?,
            audio_scale_shift_table: table(rows, da, "audio_scale_shift_table")?,
            prompt_scale_shift_table: prompt_table("prompt_scale_shift_table", dv)?,
            audio_prompt_scale_shift_table: prompt_table("audio_prompt_scale_shift_table", da)?,
            scale_shift_table_a2v_ca_video: table(5, dv, "scale_shift_table_a2v_ca_video")?,
            scale_shift_table_a2v_ca_audio: table(5, da, "scale_shift_table_a2v_ca_audio")?,
            video_ones: Tensor::ones(dv, DType::F32, device)?,
            audio_ones: Tensor::ones(da, DType::F32, device)?,
            eps: config.norm_eps as f32,
            v2a_after_a2v: config.v2a_after_a2v,
        })
    }

    /// See [`super::Ltx2Transformer::set_v2a_after_a2v`].
    pub fn set_v2a_after_a2v(&mut self, after: bool) {
        self.v2a_after_a2v = after;
    }

    /// The linear layers by their checkpoint names under this block.
    pub(crate) fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers = Vec::new();
        for (prefix, attention) in [
            ("attn1", &mut self.attn1),
            ("audio_attn1", &mut self.audio_attn1),
            ("attn2", &mut self.attn2),
            ("audio_attn2", &mut self.audio_attn2),
            ("audio_to_video_attn", &mut self.audio_to_video_attn),
            ("video_to_audio_attn", &mut self.video_to_audio_attn),
        ] {
            layers.extend(attention.linears_mut().into_iter().map(|(name, l)| (format!("{prefix}.{name}"), l)));
        }
        for (prefix, ff) in [("ff", &mut self.ff), ("audio_ff", &mut self.audio_ff)] {
            layers.extend(ff.linears_mut().into_iter().map(|(name, l)| (format!("{prefix}.{name}"), l)));
        }
        layers
    }

    /// Runs the block on the video `[B, Nv, dv]` and audio `[B, Na, da]` streams. `perturbed` replaces both
    /// self-attentions by their values (spatio-temporal guidance).
    pub fn forward(
        &self,
        video: &Tensor,
        audio: &Tensor,
        inputs: &BlockInputs,
        perturbed: bool,
    ) -> Result<(Tensor, Tensor)> {
        let rms_v = |x: &Tensor| candle_nn::ops::rms_norm(x, &self.video_ones, self.eps);
        let rms_a = |x: &Tensor| candle_nn::ops::rms_norm(x, &self.audio_ones, self.eps);
        let ev = |row| inputs.video_modulation.row(&self.scale_shift_table, row);
        let ea = |row| inputs.audio_modulation.row(&self.audio_scale_shift_table, row);

        // 1. Self-attention.
        let self_attention =
            |attention: &Ltx2Attention, x: &Tensor, rope: &SplitRope, guides: Option<&GuideAttentionBias>| {
                if perturbed {
                    attention.forward_values_only(x)
                } else {
                    attention.forward(x, None, Some(rope), None, guides.map(LogitBias::Guides))
                }
            };
        let normed = modulate(&rms_v(video)?, &ev(0)?, &ev(1)?)?;
        let attended = self_attention(&self.attn1, &normed, &inputs.video_rope, inputs.video_guides.as_ref())?;
        let video = (video + attended.broadcast_mul(&ev(2)?)?)?;
        let normed = modulate(&rms_a(audio)?, &ea(0)?, &ea(1)?)?;
        let audio =
            (audio + self_attention(&self.audio_attn1, &normed, &inputs.audio_rope, None)?.broadcast_mul(&ea(2)?)?)?;

        // 2. Text cross-attention.
        let text = |attention: &Ltx2Attention,
                    x: &Tensor,
                    normed: Tensor,
                    context: &Tensor,
                    e: &dyn Fn(usize) -> Result<Tensor>,
                    prompt_table: Option<&Tensor>,
                    prompt: Option<&Modulation>|
         -> Result<Tensor> {
            let Some(prompt_table) = prompt_table else {
                return x + attention.forward(
                    &normed,
                    Some(context),
                    None,
                    None,
                    inputs.text_bias.as_ref().map(LogitBias::Keys),
                )?;
            };
            let query = modulate(&normed, &e(6)?, &e(7)?)?;
            let (shift_kv, scale_kv) = match prompt {
                Some(prompt) => (prompt.row(prompt_table, 0)?, prompt.row(prompt_table, 1)?),
                None => (prompt_table.get(0)?, prompt_table.get(1)?),
            };
            let context = modulate(context, &shift_kv, &scale_kv)?;
            let attended = attention.forward(
                &query,
                Some(&context),
                None,
                None,
                inputs.text_bias.as_ref().map(LogitBias::Keys),
            )?;
            x + attended.broadcast_mul(&e(8)?)?
        };
        let video = text(
            &self.attn2,
            &video,
            rms_v(&video)?,
            &inputs.video_context,
            &ev,
            self.prompt_scale_shift_table.as_ref(),
            inputs.video_prompt.as_ref(),
        )?;
        let audio = text(
            &self.audio_attn2,
            &audio,
            rms_a(&audio)?,
            &inputs.audio_context,
            &ea,
            self.audio_prompt_scale_shift_table.as_ref(),
            inputs.audio_prompt.as_ref(),
        )?;

        // 3. Audio↔video cross-attention; tables are (scale, shift) for a2v, then for v2a, then the gate.
        let (mut video, mut audio) = (video, audio);
        if inputs.cross_modal {
            let video_table = &self.scale_shift_table_a2v_ca_video;
            let audio_table = &self.scale_shift_table_a2v_ca_audio;
            let sv = |row| inputs.video_av_scale_shift.row(video_table, row);
            let sa = |row| inputs.audio_av_scale_shift.row(audio_table, row);
            let video_normed = rms_v(&video)?;
            let audio_normed = rms_a(&audio)?;

            let query = modulate(&video_normed, &sv(1)?, &sv(0)?)?;
            let keys = modulate(&audio_normed, &sa(1)?, &sa(0)?)?;
            let attended = self.audio_to_video_attn.forward(
                &query,
                Some(&keys),
                Some(&inputs.video_cross_rope),
                Some(&inputs.audio_cross_rope),
                None,
            )?;
            let gate = inputs.video_av_gate.row(&video_table.narrow(0, 4, 1)?, 0)?;
            let updated = (&video + attended.broadcast_mul(&gate)?)?;

            let video_normed = if self.v2a_after_a2v { rms_v(&updated)? } else { video_normed };
            let query = modulate(&audio_normed, &sa(3)?, &sa(2)?)?;
            let keys = modulate(&video_normed, &sv(3)?, &sv(2)?)?;
            let attended = self.video_to_audio_attn.forward(
                &query,
                Some(&keys),
                Some(&inputs.audio_cross_rope),
                Some(&inputs.video_cross_rope),
                None,
            )?;
            let gate = inputs.audio_av_gate.row(&audio_table.narrow(0, 4, 1)?, 0)?;
            audio = (&audio + attended.broadcast_mul(&gate)?)?;
            video = updated;
        }

        // 4. Feed-forward.
        let normed = modulate(&rms_v(&video)?, &ev(3)?, &ev(4)?)?;
        let video = (&video + self.ff.forward(&normed)?.broadcast_mul(&ev(5)?)?)?;
        let normed = modulate(&rms_a(&audio)?, &ea(3)?, &ea(4)?)?;
        let audio = (&audio + self.audio_ff.forward(&normed)?.broadcast_mul(&ea(5)?)?)?;
        Ok((video, audio))
    }
}
