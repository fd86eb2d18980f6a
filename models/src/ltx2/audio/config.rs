//! Hyper-parameters of the audio VAE and the vocoders, with the released values and the readers of the
//! single file's `config` metadata (official key names: `audio_vae.model.params.ddconfig`,
//! `audio_vae.preprocessing.stft`, `vocoder` for 2.0, `vocoder.vocoder` and `vocoder.bwe` for 2.3).
//! Values no tensor shape shows (upsampling rates, dilations, final activation) come from there, or from
//! the released configuration when the file has none.

use super::mel::MelConfig;
use serde_json::Value;

/// Hyper-parameters of `AutoencoderKLLTX2Audio` (ltx-core `AudioEncoder`/`AudioDecoder`); the same for
/// LTX-2.0 and 2.3. Pixel norm, causal convolutions along time, no attention.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioVaeConfig {
    /// Channels of the first level (`ch`, diffusers `base_channels`): 128.
    pub base_channels: usize,
    /// Channel multiplier of each level (`ch_mult`): 1, 2, 4.
    pub channel_multipliers: Vec<usize>,
    /// Resnet blocks per encoder level (the decoder has one more): 2.
    pub num_res_blocks: usize,
    /// Latent channels (`z_channels`): 8.
    pub latent_channels: usize,
    /// Whether the encoder also predicts the log-variance (its output has twice the latent channels).
    pub double_z: bool,
    /// Channels of the mel input (stereo): 2.
    pub in_channels: usize,
    /// Channels of the decoded mel (`out_ch`): 2.
    pub out_channels: usize,
    /// Mel bins of the spectrogram: 64.
    pub mel_bins: usize,
    /// Sample rate the mel spectrogram is computed at: 16000.
    pub sample_rate: u32,
    /// STFT hop of the mel spectrogram: 160 (100 frames per second).
    pub mel_hop_length: usize,
    /// STFT size of the mel spectrogram: 1024.
    pub n_fft: usize,
}

impl AudioVaeConfig {
    /// The released audio VAE (LTX-2.0 and 2.3).
    pub fn ltx2() -> Self {
        AudioVaeConfig {
            base_channels: 128,
            channel_multipliers: vec![1, 2, 4],
            num_res_blocks: 2,
            latent_channels: 8,
            double_z: true,
            in_channels: 2,
            out_channels: 2,
            mel_bins: 64,
            sample_rate: 16_000,
            mel_hop_length: 160,
            n_fft: 1024,
        }
    }

    /// How many mel frames (and mel bins) one latent covers: 2 per level after the first (4).
    pub fn downsample_factor(&self) -> usize {
        1 << self.channel_multipliers.len().saturating_sub(1)
    }

    /// Mel bins of the latent: 16.
    pub fn latent_mel_bins(&self) -> usize {
        self.mel_bins / self.downsample_factor()
    }

    /// Width of a packed latent token, and length of the latent statistics: channels × latent mel bins (128).
    pub fn patch_width(&self) -> usize {
        self.latent_channels * self.latent_mel_bins()
    }

    /// Latent frames of `mel_frames` mel frames: ⌈frames / 4⌉ (the causal downsampling pads in front).
    pub fn latent_frames(&self, mel_frames: usize) -> usize {
        mel_frames.div_ceil(self.downsample_factor())
    }

    /// Mel frames the decoder returns for `latent_frames` latents: 4·T − 3, at least 1.
    pub fn decoded_mel_frames(&self, latent_frames: usize) -> usize {
        let factor = self.downsample_factor();
        (latent_frames * factor).saturating_sub(factor - 1).max(1)
    }

    /// The mel front end that produces the encoder's input.
    pub fn mel(&self) -> MelConfig {
        MelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            win_length: self.n_fft,
            hop_length: self.mel_hop_length,
            mel_bins: self.mel_bins,
            f_min: 0.0,
            f_max: f64::from(self.sample_rate) / 2.0,
        }
    }

    /// Applies the `audio_vae` section of the `config` metadata. Refuses what this port does not implement
    /// (attention blocks, group norm, other causality axes), which no released file uses.
    pub fn apply_json(&mut self, json: &Value) -> Result<(), String> {
        let params = &json["model"]["params"];
        let dd = &params["ddconfig"];
        read_usize(dd, "ch", &mut self.base_channels)?;
        if let Some(list) = usize_list(dd, "ch_mult")? {
            self.channel_multipliers = list;
        }
        read_usize(dd, "num_res_blocks", &mut self.num_res_blocks)?;
        read_usize(dd, "z_channels", &mut self.latent_channels)?;
        read_usize(dd, "in_channels", &mut self.in_channels)?;
        read_usize(dd, "out_ch", &mut self.out_channels)?;
        read_usize(dd, "mel_bins", &mut self.mel_bins)?;
        read_bool(dd, "double_z", &mut self.double_z)?;
        if let Some(rate) = params.get("sampling_rate").and_then(Value::as_u64) {
            self.sample_rate = rate as u32;
        }
        let stft = &json["preprocessing"]["stft"];
        read_usize(stft, "hop_length", &mut self.mel_hop_length)?;
        read_usize(stft, "filter_length", &mut self.n_fft)?;
        match dd.get("norm_type").and_then(Value::as_str) {
            None | Some("pixel") => {}
            Some(other) => return Err(format!("audio VAE norm_type '{other}' is not supported (only 'pixel')")),
        }
        match dd.get("causality_axis").and_then(Value::as_str) {
            None | Some("height") => {}
            Some(other) => return Err(format!("audio VAE causality_axis '{other}' is not supported (only 'height')")),
        }
        let attention = dd.get("attn_resolutions").and_then(Value::as_array).is_some_and(|list| !list.is_empty())
            || dd.get("mid_block_add_attention").and_then(Value::as_bool) == Some(true);
        if attention {
            return Err("audio VAE attention blocks are not supported (no released file has them)".into());
        }
        self.validate()
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.channel_multipliers.is_empty() || self.base_channels == 0 || self.latent_channels == 0 {
            return Err(format!("audio VAE config has empty sizes: {self:?}"));
        }
        if !self.mel_bins.is_multiple_of(self.downsample_factor()) {
            return Err(format!(
                "audio VAE mel_bins {} is not a multiple of the downsampling factor {}",
                self.mel_bins,
                self.downsample_factor()
            ));
        }
        Ok(())
    }
}

/// The residual blocks of a vocoder generator (official `resblock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResBlockKind {
    /// HiFi-GAN "resblock 1": LeakyReLU(0.1) around each conv (LTX-2.0).
    HifiGan,
    /// BigVGAN "AMP1": anti-aliased snake activations around each conv (LTX-2.3).
    AntiAliased,
}

/// What follows the generator's last conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalActivation {
    /// `tanh` (LTX-2.0).
    Tanh,
    /// `clamp(−1, 1)`.
    Clamp,
    /// Nothing.
    Identity,
}

/// Hyper-parameters of one generator (diffusers `LTX2Vocoder`, official `Vocoder`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Input channels: stereo × mel bins (128).
    pub in_channels: usize,
    /// Channels after `conv_pre` (`upsample_initial_channel`); each stage halves them.
    pub hidden_channels: usize,
    /// Output channels (2, stereo).
    pub out_channels: usize,
    /// Stride of each transposed conv.
    pub upsample_rates: Vec<usize>,
    /// Kernel of each transposed conv.
    pub upsample_kernel_sizes: Vec<usize>,
    /// Kernel of each residual block of a stage.
    pub resblock_kernel_sizes: Vec<usize>,
    /// Dilations of each residual block of a stage.
    pub resblock_dilations: Vec<Vec<usize>>,
    /// HiFi-GAN or BigVGAN blocks.
    pub resblock: ResBlockKind,
    /// Whether `conv_post` has a bias.
    pub final_bias: bool,
    /// What follows `conv_post`.
    pub final_activation: FinalActivation,
    /// Sample rate of the waveform it produces.
    pub sample_rate: u32,
}

impl GeneratorConfig {
    /// The LTX-2.0 vocoder: 1024 channels, ×240 to 24 kHz, tanh.
    pub fn ltx2() -> Self {
        GeneratorConfig {
            in_channels: 128,
            hidden_channels: 1024,
            out_channels: 2,
            upsample_rates: vec![6, 5, 2, 2, 2],
            upsample_kernel_sizes: vec![16, 15, 8, 4, 4],
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilations: vec![vec![1, 3, 5]; 3],
            resblock: ResBlockKind::HifiGan,
            final_bias: true,
            final_activation: FinalActivation::Tanh,
            sample_rate: 24_000,
        }
    }

    /// The LTX-2.3 main vocoder: 1536 channels, ×160 to 16 kHz, BigVGAN blocks, clamped (the official code
    /// and ComfyUI; diffusers leaves the waveform unclamped).
    pub fn ltx23_vocoder() -> Self {
        GeneratorConfig {
            hidden_channels: 1536,
            upsample_rates: vec![5, 2, 2, 2, 2, 2],
            upsample_kernel_sizes: vec![11, 4, 4, 4, 4, 4],
            resblock: ResBlockKind::AntiAliased,
            final_bias: false,
            final_activation: FinalActivation::Clamp,
            sample_rate: 16_000,
            ..Self::ltx2()
        }
    }

    /// The LTX-2.3 bandwidth-extension generator: 512 channels, ×240 to 48 kHz, no final activation.
    pub fn ltx23_bwe() -> Self {
        GeneratorConfig {
            hidden_channels: 512,
            upsample_rates: vec![6, 5, 2, 2, 2],
            upsample_kernel_sizes: vec![12, 11, 4, 4, 4],
            resblock: ResBlockKind::AntiAliased,
            final_bias: false,
            final_activation: FinalActivation::Identity,
            sample_rate: 48_000,
            ..Self::ltx2()
        }
    }

    /// Samples per mel frame (the product of the strides).
    pub fn upsample_factor(&self) -> usize {
        self.upsample_rates.iter().product()
    }

    /// Channels after stage `i` (0-based).
    pub fn stage_channels(&self, stage: usize) -> usize {
        self.hidden_channels >> (stage + 1)
    }

    /// Applies one generator section of the `config` metadata (official keys, ComfyUI's defaults for the
    /// final activation: `apply_final_activation` true, `use_tanh_at_final` true).
    pub fn apply_json(&mut self, json: &Value) -> Result<(), String> {
        read_usize(json, "upsample_initial_channel", &mut self.hidden_channels)?;
        for (key, target) in [
            ("upsample_rates", &mut self.upsample_rates),
            ("upsample_kernel_sizes", &mut self.upsample_kernel_sizes),
            ("resblock_kernel_sizes", &mut self.resblock_kernel_sizes),
        ] {
            if let Some(list) = usize_list(json, key)? {
                *target = list;
            }
        }
        if let Some(list) = json.get("resblock_dilation_sizes").and_then(Value::as_array) {
            self.resblock_dilations = list
                .iter()
                .map(|inner| {
                    inner
                        .as_array()
                        .and_then(|values| values.iter().map(|v| v.as_u64().map(|v| v as usize)).collect())
                        .ok_or_else(|| "vocoder config: 'resblock_dilation_sizes' is not a list of lists".to_string())
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(stereo) = json.get("stereo").and_then(Value::as_bool) {
            (self.in_channels, self.out_channels) = if stereo { (128, 2) } else { (64, 1) };
        }
        self.resblock = match json.get("resblock").and_then(Value::as_str) {
            None => self.resblock,
            Some("1") => ResBlockKind::HifiGan,
            Some("AMP1") => ResBlockKind::AntiAliased,
            Some(other) => return Err(format!("vocoder resblock '{other}' is not supported (only '1' and 'AMP1')")),
        };
        read_bool(json, "use_bias_at_final", &mut self.final_bias)?;
        let apply = json.get("apply_final_activation").and_then(Value::as_bool).unwrap_or(true);
        let tanh = json.get("use_tanh_at_final").and_then(Value::as_bool).unwrap_or(true);
        self.final_activation = match (apply, tanh) {
            (false, _) => FinalActivation::Identity,
            (true, true) => FinalActivation::Tanh,
            (true, false) => FinalActivation::Clamp,
        };
        for key in ["output_sampling_rate", "output_sample_rate"] {
            if let Some(rate) = json.get(key).and_then(Value::as_u64) {
                self.sample_rate = rate as u32;
            }
        }
        self.validate()
    }

    /// Checks the lists agree and the channels halve cleanly.
    pub fn validate(&self) -> Result<(), String> {
        let stages = self.upsample_rates.len();
        if stages == 0 || self.upsample_kernel_sizes.len() != stages {
            return Err(format!(
                "vocoder config: {} upsample rates but {} kernel sizes",
                stages,
                self.upsample_kernel_sizes.len()
            ));
        }
        if self.resblock_kernel_sizes.len() != self.resblock_dilations.len() || self.resblock_kernel_sizes.is_empty() {
            return Err("vocoder config: resblock kernel sizes and dilations differ in length".into());
        }
        let sizes = [&self.upsample_rates, &self.upsample_kernel_sizes, &self.resblock_kernel_sizes];
        if sizes.iter().any(|list| list.contains(&0))
            || self.resblock_dilations.iter().any(|d| d.is_empty() || d.contains(&0))
        {
            return Err("vocoder config: strides, kernels and dilations must be positive".into());
        }
        if self.stage_channels(stages - 1) == 0 || !self.hidden_channels.is_multiple_of(1 << stages) {
            return Err(format!("vocoder config: {} channels cannot halve {stages} times", self.hidden_channels));
        }
        Ok(())
    }
}

/// Hyper-parameters of `LTX2VocoderWithBWE` (official `VocoderWithBWE`, LTX-2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct BweConfig {
    /// The mel → 16 kHz generator.
    pub vocoder: GeneratorConfig,
    /// The mel → 48 kHz residual generator.
    pub generator: GeneratorConfig,
    /// STFT size of the causal log-mel (512).
    pub n_fft: usize,
    /// STFT window (512).
    pub win_length: usize,
    /// STFT hop (80).
    pub hop_length: usize,
    /// Mel bins of the causal log-mel (64).
    pub mel_bins: usize,
    /// Sample rate of the main generator's waveform (16000).
    pub input_sample_rate: u32,
    /// Sample rate of the output (48000).
    pub output_sample_rate: u32,
}

impl BweConfig {
    /// The released LTX-2.3 vocoder.
    pub fn ltx23() -> Self {
        BweConfig {
            vocoder: GeneratorConfig::ltx23_vocoder(),
            generator: GeneratorConfig::ltx23_bwe(),
            n_fft: 512,
            win_length: 512,
            hop_length: 80,
            mel_bins: 64,
            input_sample_rate: 16_000,
            output_sample_rate: 48_000,
        }
    }

    /// The resampling ratio of the skip connection (3).
    pub fn ratio(&self) -> usize {
        (self.output_sample_rate / self.input_sample_rate) as usize
    }

    /// Applies the `vocoder` section of a 2.3 `config` metadata (`{"vocoder": …, "bwe": …}`).
    pub fn apply_json(&mut self, json: &Value) -> Result<(), String> {
        if let Some(main) = json.get("vocoder") {
            self.vocoder.apply_json(main)?;
        }
        if let Some(bwe) = json.get("bwe") {
            self.generator.apply_json(bwe)?;
            // The official code builds the residual generator without a final activation, whatever its keys say.
            self.generator.final_activation = FinalActivation::Identity;
            read_usize(bwe, "n_fft", &mut self.n_fft)?;
            // The official code and ComfyUI window the STFT over all of `n_fft` (`win_size` is not read).
            self.win_length = self.n_fft;
            read_usize(bwe, "hop_length", &mut self.hop_length)?;
            read_usize(bwe, "num_mels", &mut self.mel_bins)?;
            for (key, target) in [
                ("input_sampling_rate", &mut self.input_sample_rate),
                ("output_sampling_rate", &mut self.output_sample_rate),
            ] {
                if let Some(rate) = bwe.get(key).and_then(Value::as_u64) {
                    *target = rate as u32;
                }
            }
        }
        self.vocoder.sample_rate = self.input_sample_rate;
        self.generator.sample_rate = self.output_sample_rate;
        self.validate()
    }

    /// Checks the rates and the STFT fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.input_sample_rate == 0
            || self.output_sample_rate < self.input_sample_rate
            || !self.output_sample_rate.is_multiple_of(self.input_sample_rate)
        {
            return Err(format!(
                "vocoder config: output rate {} is not a multiple of the input rate {}",
                self.output_sample_rate, self.input_sample_rate
            ));
        }
        if self.hop_length == 0 || self.win_length > self.n_fft || self.generator.in_channels != 2 * self.mel_bins {
            return Err(format!(
                "vocoder config: STFT {} / window {} / hop {} with {} mel bins does not fit a {}-channel generator",
                self.n_fft, self.win_length, self.hop_length, self.mel_bins, self.generator.in_channels
            ));
        }
        if self.generator.upsample_factor() != self.ratio() * self.hop_length {
            return Err(format!(
                "vocoder config: the residual generator upsamples ×{}, but the STFT hop {} at ×{} needs ×{}",
                self.generator.upsample_factor(),
                self.hop_length,
                self.ratio(),
                self.ratio() * self.hop_length
            ));
        }
        self.vocoder.validate()?;
        self.generator.validate()
    }
}

fn read_usize(json: &Value, key: &str, target: &mut usize) -> Result<(), String> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => {
            *target = value.as_u64().ok_or_else(|| format!("config key '{key}' is not a count: {value}"))? as usize;
            Ok(())
        }
    }
}

fn read_bool(json: &Value, key: &str, target: &mut bool) -> Result<(), String> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => {
            *target = value.as_bool().ok_or_else(|| format!("config key '{key}' is not a boolean: {value}"))?;
            Ok(())
        }
    }
}

fn usize_list(json: &Value, key: &str) -> Result<Option<Vec<usize>>, String> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_array()
            .and_then(|list| list.iter().map(|v| v.as_u64().map(|v| v as usize)).collect::<Option<Vec<_>>>())
            .map(Some)
            .ok_or_else(|| format!("config key '{key}' is not a list of counts: {value}")),
    }
}
