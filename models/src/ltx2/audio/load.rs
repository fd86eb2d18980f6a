//! Loading the vocoders from the official single files (`vocoder.*` for 2.0; `vocoder.vocoder.*`,
//! `vocoder.bwe_generator.*`, `vocoder.mel_stft.*` for 2.3), from files holding them without the prefix,
//! or under diffusers names (`ups→upsamplers`, `resblocks→resnets`, `conv_pre→conv_in`,
//! `conv_post→conv_out`, `act_post→act_out`, `downsample.lowpass→downsample`; diffusers 0.42.1
//! `scripts/convert_ltx2_to_diffusers.py`).
//!
//! The release is read from the tensors (a `bwe_generator` means 2.3). The configuration comes from the
//! `config` metadata's `vocoder` section when present; otherwise from the shapes, with the strides of the
//! released layouts (no shape shows them) and the final activation of the reference whose names the file
//! uses (the official code clamps the 2.3 main generator's output, diffusers does not).

use super::bwe::VocoderWithBwe;
use super::config::{BweConfig, FinalActivation, GeneratorConfig, ResBlockKind};
use super::vae::{describe, metadata_section};
use super::vocoder::Generator;
use crate::weights::{WeightError, WeightSource, rename_parts};
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;
use std::sync::Arc;

/// Prefix of the vocoder in the official single files.
pub const SINGLE_FILE_PREFIX: &str = "vocoder";

/// Official module names and their diffusers names (dotted components).
const DIFFUSERS_NAMES: [(&str, &str); 5] = [
    ("ups", "upsamplers"),
    ("resblocks", "resnets"),
    ("conv_pre", "conv_in"),
    ("conv_post", "conv_out"),
    ("act_post", "act_out"),
];

/// Released kernel sizes and the strides that go with them.
const RELEASED_STRIDES: [(&[usize], &[usize]); 3] = [
    (&[16, 15, 8, 4, 4], &[6, 5, 2, 2, 2]),
    (&[11, 4, 4, 4, 4, 4], &[5, 2, 2, 2, 2, 2]),
    (&[12, 11, 4, 4, 4], &[6, 5, 2, 2, 2]),
];

/// Where the vocoder sits in a weight source, and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocoderLayout {
    /// The prefix before every vocoder tensor (no trailing dot; empty for none).
    pub prefix: String,
    /// diffusers names instead of the official ones.
    pub diffusers: bool,
    /// The 2.3 vocoder with bandwidth extension.
    pub bwe: bool,
}

impl VocoderLayout {
    /// The stored name of the tensor the model calls `name` (official, relative to the vocoder).
    pub fn stored_name(&self, name: &str) -> String {
        let name = if self.diffusers {
            rename_parts(name, &DIFFUSERS_NAMES).replace(".downsample.lowpass.", ".downsample.")
        } else {
            name.to_string()
        };
        if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) }
    }

    fn var_builder(
        &self,
        source: &Arc<WeightSource>,
        device: &Device,
    ) -> std::result::Result<VarBuilder<'static>, WeightError> {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}.", self.prefix) };
        let dtype = source.dense_dtype_under(&prefix, "vocoder weights")?;
        let layout = VocoderLayout { prefix: String::new(), ..self.clone() };
        Ok(source.renamed_var_builder(&self.prefix, dtype, device, move |name| layout.stored_name(name)))
    }

    /// The names of the vocoder's top-level modules, relative to the prefix, as stored.
    fn modules(&self) -> Vec<String> {
        let modules: &[&str] = if self.bwe {
            &["vocoder.", "bwe_generator.", "mel_stft."]
        } else {
            &["conv_pre.", "ups.", "resblocks.", "act_post.", "conv_post."]
        };
        modules.iter().map(|m| VocoderLayout { prefix: String::new(), ..self.clone() }.stored_name(m)).collect()
    }
}

/// Finds the vocoder in `source`.
pub fn detect_vocoder_layout(source: &WeightSource) -> std::result::Result<VocoderLayout, WeightError> {
    let is_conv =
        |layout: &VocoderLayout, name: &str| source.shape(&layout.stored_name(name)).is_some_and(|s| s.len() == 3);
    for bwe in [true, false] {
        for prefix in [SINGLE_FILE_PREFIX, ""] {
            for diffusers in [false, true] {
                let layout = VocoderLayout { prefix: prefix.to_string(), diffusers, bwe };
                let marker = if bwe { "bwe_generator.conv_pre.weight" } else { "conv_pre.weight" };
                if is_conv(&layout, marker) {
                    return Ok(layout);
                }
            }
        }
    }
    Err(WeightError::Invalid {
        file: describe(source),
        message: format!(
            "no LTX-2 vocoder found: expected '{SINGLE_FILE_PREFIX}.conv_pre.weight' (2.0), \
             '{SINGLE_FILE_PREFIX}.bwe_generator.conv_pre.weight' (2.3) or their diffusers names"
        ),
    })
}

/// The configuration of one of the two releases.
#[derive(Debug, Clone, PartialEq)]
pub enum VocoderConfig {
    /// LTX-2.0: one HiFi-GAN generator.
    Hifigan(GeneratorConfig),
    /// LTX-2.3: BigVGAN generators with bandwidth extension.
    WithBwe(BweConfig),
}

/// The configuration of the vocoder in `source`.
pub fn read_vocoder_config(
    source: &WeightSource,
    layout: &VocoderLayout,
) -> std::result::Result<VocoderConfig, WeightError> {
    let invalid = |message: String| WeightError::Invalid { file: describe(source), message };
    let json = metadata_section(source, "vocoder")?;
    if layout.bwe {
        let mut config = BweConfig::ltx23();
        if let Some(json) = json {
            config.apply_json(&json).map_err(invalid)?;
        } else {
            config.vocoder = generator_from_shapes(source, layout, "vocoder.", GeneratorConfig::ltx23_vocoder())?;
            config.generator = generator_from_shapes(source, layout, "bwe_generator.", GeneratorConfig::ltx23_bwe())?;
            if layout.diffusers {
                config.vocoder.final_activation = FinalActivation::Identity;
            }
            let stored = |name: &str, rank: usize| source.shape(&layout.stored_name(name)).filter(|s| s.len() == rank);
            if let Some(basis) = stored("mel_stft.stft_fn.forward_basis", 3) {
                config.n_fft = basis[2];
                config.win_length = basis[2];
            }
            if let Some(basis) = stored("mel_stft.mel_basis", 2) {
                config.mel_bins = basis[0];
            }
            config.hop_length = config.generator.upsample_factor() / config.ratio().max(1);
            config.validate().map_err(invalid)?;
        }
        Ok(VocoderConfig::WithBwe(config))
    } else {
        let mut config = GeneratorConfig::ltx2();
        if let Some(json) = json {
            config.apply_json(&json).map_err(invalid)?;
        } else {
            config = generator_from_shapes(source, layout, "", config)?;
            // 100 mel frames per second (16 kHz, hop 160).
            config.sample_rate = (config.upsample_factor() * 100) as u32;
        }
        Ok(VocoderConfig::Hifigan(config))
    }
}

/// A generator's sizes from its tensors under `part` (relative to the vocoder), starting from `base`.
fn generator_from_shapes(
    source: &WeightSource,
    layout: &VocoderLayout,
    part: &str,
    base: GeneratorConfig,
) -> std::result::Result<GeneratorConfig, WeightError> {
    // Conv weights only: a tensor of another rank under a conv's name counts as absent.
    let shape = |name: &str| source.shape(&layout.stored_name(&format!("{part}{name}"))).filter(|s| s.len() == 3);
    let missing = |name: &str| WeightError::Missing {
        files: describe(source),
        tensor: layout.stored_name(&format!("{part}{name}")),
        expected: Vec::new(),
    };
    let mut config = base;
    let conv_pre = shape("conv_pre.weight").ok_or_else(|| missing("conv_pre.weight"))?;
    (config.hidden_channels, config.in_channels) = (conv_pre[0], conv_pre[1]);
    let stages = (0..usize::MAX).take_while(|i| shape(&format!("ups.{i}.weight")).is_some()).count();
    config.upsample_kernel_sizes = (0..stages).map(|i| shape(&format!("ups.{i}.weight")).map_or(0, |s| s[2])).collect();
    let blocks = (0..usize::MAX).take_while(|j| shape(&format!("resblocks.{j}.convs1.0.weight")).is_some()).count();
    let per_stage = blocks.checked_div(stages).unwrap_or(0);
    config.resblock_kernel_sizes =
        (0..per_stage).map(|j| shape(&format!("resblocks.{j}.convs1.0.weight")).map_or(0, |s| s[2])).collect();
    let dilations = (0..usize::MAX).take_while(|i| shape(&format!("resblocks.0.convs1.{i}.weight")).is_some()).count();
    if dilations != 3 {
        return Err(WeightError::Invalid {
            file: describe(source),
            message: format!(
                "the vocoder's blocks have {dilations} convs; without config metadata only the released 3 (dilations 1, 3, 5) are known"
            ),
        });
    }
    config.resblock_dilations = vec![vec![1, 3, 5]; per_stage];
    config.resblock = if source.contains(&layout.stored_name(&format!("{part}resblocks.0.acts1.0.act.alpha"))) {
        ResBlockKind::AntiAliased
    } else {
        ResBlockKind::HifiGan
    };
    let conv_post = shape("conv_post.weight").ok_or_else(|| missing("conv_post.weight"))?;
    config.out_channels = conv_post[0];
    config.final_bias = source.contains(&layout.stored_name(&format!("{part}conv_post.bias")));
    config.upsample_rates = RELEASED_STRIDES
        .iter()
        .find(|(kernels, _)| *kernels == config.upsample_kernel_sizes.as_slice())
        .map(|(_, strides)| strides.to_vec())
        .ok_or_else(|| WeightError::Invalid {
            file: describe(source),
            message: format!(
                "the vocoder's upsampling kernels {:?} are not a released layout; its strides need the config metadata",
                config.upsample_kernel_sizes
            ),
        })?;
    config.validate().map_err(|message| WeightError::Invalid { file: describe(source), message })?;
    Ok(config)
}

/// An LTX-2 vocoder of either release.
#[derive(Debug, Clone)]
pub enum Vocoder {
    /// LTX-2.0: HiFi-GAN, 24 kHz.
    Hifigan(Box<Generator>),
    /// LTX-2.3: BigVGAN with bandwidth extension, 48 kHz.
    WithBwe(Box<VocoderWithBwe>),
}

impl Vocoder {
    /// Builds the vocoder `config` describes from `vb` (official names, relative to the vocoder).
    pub fn new(config: &VocoderConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(match config {
            VocoderConfig::Hifigan(config) => Vocoder::Hifigan(Box::new(Generator::new(config, vb)?)),
            VocoderConfig::WithBwe(config) => Vocoder::WithBwe(Box::new(VocoderWithBwe::new(config, vb)?)),
        })
    }

    /// Loads the vocoder in `source`, detecting layout, release and configuration. Every tensor of the
    /// vocoder must be used (the stored inverse STFT basis excepted).
    pub fn load(source: &Arc<WeightSource>, device: &Device) -> std::result::Result<Self, WeightError> {
        let layout = detect_vocoder_layout(source)?;
        let config = read_vocoder_config(source, &layout)?;
        let vocoder = Vocoder::new(&config, &layout.var_builder(source, device)?).map_err(|e| source.explain(&e))?;
        let prefix = if layout.prefix.is_empty() { String::new() } else { format!("{}.", layout.prefix) };
        let modules: Vec<String> = layout.modules().into_iter().map(|m| format!("{prefix}{m}")).collect();
        let inverse = layout.stored_name("mel_stft.stft_fn.inverse_basis");
        let unexpected: Vec<String> = source
            .unused(&prefix)
            .into_iter()
            .filter(|name| modules.iter().any(|m| name.starts_with(m.as_str())) && *name != inverse)
            .collect();
        if let Some(first) = unexpected.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unexpected });
        }
        Ok(vocoder)
    }

    /// Opens `path` and loads its vocoder.
    pub fn load_file(path: &Path, device: &Device) -> std::result::Result<Self, WeightError> {
        Self::load(&Arc::new(WeightSource::open(&[path])?), device)
    }

    /// Sample rate of the waveform: 24000 (2.0) or 48000 (2.3).
    pub fn sample_rate(&self) -> u32 {
        match self {
            Vocoder::Hifigan(generator) => generator.config().sample_rate,
            Vocoder::WithBwe(vocoder) => vocoder.config().output_sample_rate,
        }
    }

    /// Samples produced for `mel_frames` mel frames (240 or 480 per frame for the released files).
    pub fn output_samples(&self, mel_frames: usize) -> usize {
        match self {
            Vocoder::Hifigan(generator) => mel_frames * generator.config().upsample_factor(),
            Vocoder::WithBwe(vocoder) => {
                mel_frames * vocoder.config().vocoder.upsample_factor() * vocoder.config().ratio()
            }
        }
    }

    /// Decoded mel `[B, 2, T, 64]` → stereo waveform `[B, 2, samples]` at [`Self::sample_rate`], f32.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        match self {
            Vocoder::Hifigan(generator) => generator.forward(mel),
            Vocoder::WithBwe(vocoder) => vocoder.forward(mel),
        }
    }
}
