//! The configuration of the LTX-2 audio-video transformer: sizes from the tensors, flags from the
//! single file's `config.transformer` metadata (official key names) or a diffusers `config.json`.

use serde_json::Value;

/// Which release's block layout the checkpoint has, detected from its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ltx2Version {
    /// LTX-2 (January 2026): caption projections in the model, six-row modulation tables.
    V2_0,
    /// LTX-2.3: gated attention, text cross-attention modulated by the timestep (nine-row tables and
    /// `prompt_adaln_single`), caption projections moved to the text connectors.
    V2_3,
    /// LTX-2.5: as 2.3 with a static prompt table (no `prompt_adaln_single`), no video feed-forward bias
    /// and a keyframe position embedding.
    V2_5,
}

/// Which timestep drives the audio↔video cross-attention modulation (the references disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvTimestepRouting {
    /// Scale/shift and gate from the stream's own timestep (LTX-2.0 release code; diffusers with
    /// `use_cross_timestep=False`).
    Own,
    /// Scale/shift and gate from the other stream's σ (diffusers with `use_cross_timestep=True`; ltx-core
    /// of March 2026).
    Cross,
    /// Scale/shift from the stream's own timestep, gate from the largest timestep of the other stream
    /// (ComfyUI, ltx-core since May 2026): the default.
    CrossGate,
}

/// Hyper-parameters of `LTX2VideoTransformer3DModel` (`LTXAVModel` in ComfyUI).
#[derive(Debug, Clone, PartialEq)]
pub struct Ltx2TransformerConfig {
    /// Channels of a video token (128).
    pub in_channels: usize,
    /// Channels of the predicted video velocity (128).
    pub out_channels: usize,
    /// Channels of an audio token (8 latent channels × 16 mel bins = 128).
    pub audio_in_channels: usize,
    /// Channels of the predicted audio velocity (128).
    pub audio_out_channels: usize,
    /// Video heads (32).
    pub num_attention_heads: usize,
    /// Video head width (128).
    pub attention_head_dim: usize,
    /// Audio heads (32); also the heads of both audio↔video cross-attentions.
    pub audio_num_attention_heads: usize,
    /// Audio head width (64).
    pub audio_attention_head_dim: usize,
    /// Width of the video text context entering `attn2` (4096).
    pub cross_attention_dim: usize,
    /// Width of the audio text context entering `audio_attn2` (2048), and of the cross-attention RoPE.
    pub audio_cross_attention_dim: usize,
    /// Width of the text features before the caption projections (3840, Gemma 3); only used by 2.0.
    pub caption_channels: usize,
    /// Blocks (48).
    pub num_layers: usize,
    /// Epsilon of every norm (1e-6).
    pub norm_eps: f64,
    /// RoPE θ (10000).
    pub rope_theta: f64,
    /// Maximum video positions: seconds, pixels, pixels (20, 2048, 2048).
    pub positional_embedding_max_pos: [f32; 3],
    /// Maximum audio position in seconds (20).
    pub audio_positional_embedding_max_pos: f32,
    /// σ → timestep factor (1000).
    pub timestep_scale_multiplier: f64,
    /// Timestep factor of the audio↔video gates (1000 in every released file: the gates see σ·1000).
    pub av_ca_timestep_scale_multiplier: f64,
    /// Whether the first latent frame stands for one pixel frame (time coordinates shifted by 1 − 8).
    pub causal_temporal_positioning: bool,
    /// Per-head gates on every attention output (2.3+).
    pub gated_attention: bool,
    /// Text cross-attention modulated by the timestep, with the prompt tables (2.3+).
    pub cross_attention_adaln: bool,
    /// Prompt modulation driven by σ through `prompt_adaln_single` (2.3); 2.5 uses the static table.
    pub prompt_adaln: bool,
    /// The caption projections live in the transformer (2.0).
    pub caption_projection: bool,
    /// Video feed-forward biases (absent in 2.5).
    pub ff_bias: bool,
    /// Audio feed-forward biases.
    pub audio_ff_bias: bool,
    /// `keyframes_abs_pos_embedding` (2.5).
    pub keyframes_embedding: bool,
    /// Timestep routing of the audio↔video cross-attention modulation.
    pub av_routing: AvTimestepRouting,
    /// Whether video→audio attention reads the video stream after the audio→video update of the same
    /// block (ComfyUI's current code, the default: what users of ComfyUI's templates get) instead of before
    /// it (diffusers, ltx-core).
    pub v2a_after_a2v: bool,
}

impl Ltx2TransformerConfig {
    /// The released LTX-2 19B transformer.
    pub fn ltx2_19b() -> Self {
        Ltx2TransformerConfig {
            in_channels: 128,
            out_channels: 128,
            audio_in_channels: 128,
            audio_out_channels: 128,
            num_attention_heads: 32,
            attention_head_dim: 128,
            audio_num_attention_heads: 32,
            audio_attention_head_dim: 64,
            cross_attention_dim: 4096,
            audio_cross_attention_dim: 2048,
            caption_channels: 3840,
            num_layers: 48,
            norm_eps: 1e-6,
            rope_theta: 10_000.0,
            positional_embedding_max_pos: [20.0, 2048.0, 2048.0],
            audio_positional_embedding_max_pos: 20.0,
            timestep_scale_multiplier: 1000.0,
            av_ca_timestep_scale_multiplier: 1000.0,
            causal_temporal_positioning: true,
            gated_attention: false,
            cross_attention_adaln: false,
            prompt_adaln: false,
            caption_projection: true,
            ff_bias: true,
            audio_ff_bias: true,
            keyframes_embedding: false,
            av_routing: AvTimestepRouting::CrossGate,
            v2a_after_a2v: true,
        }
    }

    /// The LTX-2.3 22B transformer.
    pub fn ltx23_22b() -> Self {
        Self::ltx2_19b().for_version(Ltx2Version::V2_3)
    }

    /// This configuration with the block layout of `version`.
    pub fn for_version(mut self, version: Ltx2Version) -> Self {
        let later = version != Ltx2Version::V2_0;
        self.gated_attention = later;
        self.cross_attention_adaln = later;
        self.caption_projection = !later;
        self.prompt_adaln = version == Ltx2Version::V2_3;
        self.ff_bias = version != Ltx2Version::V2_5;
        self.keyframes_embedding = version == Ltx2Version::V2_5;
        self
    }

    /// The release whose layout this configuration has.
    pub fn version(&self) -> Ltx2Version {
        match (self.cross_attention_adaln, self.prompt_adaln) {
            (false, _) => Ltx2Version::V2_0,
            (true, true) => Ltx2Version::V2_3,
            (true, false) => Ltx2Version::V2_5,
        }
    }

    /// Width of the video stream (4096).
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Width of the audio stream (2048).
    pub fn audio_inner_dim(&self) -> usize {
        self.audio_num_attention_heads * self.audio_attention_head_dim
    }

    /// Rows of the blocks' modulation tables: 6, or 9 with the text cross-attention modulation.
    pub fn modulation_rows(&self) -> usize {
        if self.cross_attention_adaln { 9 } else { 6 }
    }

    /// The gates' factor on the timestep: `av_ca_timestep_scale_multiplier / timestep_scale_multiplier`.
    pub fn gate_timestep_factor(&self) -> f64 {
        self.av_ca_timestep_scale_multiplier / self.timestep_scale_multiplier
    }

    /// Takes the fields of a single file's `config.transformer` (official names) or a diffusers
    /// `config.json` (diffusers names). Sizes the tensors fix are checked by the loader.
    pub fn apply_json(&mut self, json: &Value) {
        let usize_of =
            |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(Value::as_u64)).map(|v| v as usize);
        let f64_of = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(Value::as_f64));
        let bool_of = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).and_then(Value::as_bool));
        let set_usize = |field: &mut usize, keys: &[&str]| {
            if let Some(v) = usize_of(keys) {
                *field = v;
            }
        };
        set_usize(&mut self.num_attention_heads, &["num_attention_heads"]);
        set_usize(&mut self.attention_head_dim, &["attention_head_dim"]);
        set_usize(&mut self.audio_num_attention_heads, &["audio_num_attention_heads"]);
        set_usize(&mut self.audio_attention_head_dim, &["audio_attention_head_dim"]);
        set_usize(&mut self.cross_attention_dim, &["cross_attention_dim"]);
        set_usize(&mut self.audio_cross_attention_dim, &["audio_cross_attention_dim"]);
        set_usize(&mut self.caption_channels, &["caption_channels"]);
        if let Some(eps) = f64_of(&["norm_eps"]) {
            self.norm_eps = eps;
        }
        if let Some(theta) = f64_of(&["positional_embedding_theta", "rope_theta"]) {
            self.rope_theta = theta;
        }
        if let Some(Value::Array(max)) = json.get("positional_embedding_max_pos")
            && let [t, h, w] = max.as_slice()
            && let (Some(t), Some(h), Some(w)) = (t.as_f64(), h.as_f64(), w.as_f64())
        {
            self.positional_embedding_max_pos = [t as f32, h as f32, w as f32];
        }
        if let Some(t) = f64_of(&["pos_embed_max_pos"]) {
            self.positional_embedding_max_pos[0] = t as f32;
        }
        if let Some(Value::Array(max)) = json.get("audio_positional_embedding_max_pos")
            && let Some(t) = max.first().and_then(Value::as_f64)
        {
            self.audio_positional_embedding_max_pos = t as f32;
        }
        if let Some(t) = f64_of(&["audio_pos_embed_max_pos"]) {
            self.audio_positional_embedding_max_pos = t as f32;
        }
        if let Some(m) = f64_of(&["timestep_scale_multiplier"]) {
            self.timestep_scale_multiplier = m;
        }
        if let Some(m) = f64_of(&["av_ca_timestep_scale_multiplier", "cross_attn_timestep_scale_multiplier"]) {
            self.av_ca_timestep_scale_multiplier = m;
        }
        if let Some(causal) = bool_of(&["causal_temporal_positioning"]) {
            self.causal_temporal_positioning = causal;
        }
        if let Some(offset) = usize_of(&["causal_offset"]) {
            self.causal_temporal_positioning = offset == 1;
        }
    }
}
