//! The vocoder generator shared by every LTX-2 release: diffusers 0.42.1 `LTX2Vocoder` (`ResBlock`),
//! official ltx-core `Vocoder` (`ResBlock1`, `AMPBlock1`), ComfyUI `comfy/ldm/lightricks/vocoders/vocoder.py`.
//!
//! Mel `[B, 2, T, 64]` → `[B, 128, T]` (channel = stereo side · 64 + mel bin) → `conv_pre` (k 7) → per stage:
//! (`LeakyReLU` 0.1 for HiFi-GAN) → transposed conv (×rate) → mean of the stage's residual blocks → final
//! activation (`LeakyReLU` 0.01, or an anti-aliased snake) → `conv_post` (k 7) → tanh / clamp / nothing.
//! LTX-2.0 uses HiFi-GAN blocks (`x += conv2(lrelu(conv1(lrelu(x))))` for dilations 1, 3, 5) and tanh, at
//! 24 kHz; LTX-2.3 uses BigVGAN blocks (the same with anti-aliased snakes) twice, see [`super::bwe`].

use super::antialias::AntiAliasedSnake;
use super::config::{FinalActivation, GeneratorConfig, ResBlockKind};
use crate::ops::conv1d::{Conv1d, ConvTranspose1d};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Negative slope of the `LeakyReLU` inside HiFi-GAN stages and blocks.
const LEAKY_SLOPE: f64 = 0.1;
/// Negative slope of the `LeakyReLU` before `conv_post` (PyTorch's default; the original code's choice).
const FINAL_LEAKY_SLOPE: f64 = 0.01;

fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.maximum(&(x * slope)?)
}

/// The activation before a conv of a residual block.
#[derive(Debug, Clone)]
enum Activation {
    Leaky,
    AntiAliased(AntiAliasedSnake),
}

impl Activation {
    fn forward(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        match self {
            Activation::Leaky => leaky_relu(x, slope),
            Activation::AntiAliased(act) => act.forward(x),
        }
    }
}

/// One residual block (`ResBlock1` / `AMPBlock1`): for each dilation,
/// `x += convs2(act2(convs1(act1(x))))`.
#[derive(Debug, Clone)]
struct ResBlock {
    layers: Vec<(Activation, Conv1d, Activation, Conv1d)>,
}

impl ResBlock {
    fn new(
        channels: usize,
        kernel: usize,
        dilations: &[usize],
        kind: ResBlockKind,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let activation = |group: &str, index: usize| -> Result<Activation> {
            Ok(match kind {
                ResBlockKind::HifiGan => Activation::Leaky,
                ResBlockKind::AntiAliased => {
                    Activation::AntiAliased(AntiAliasedSnake::new(channels, &vb.pp(group).pp(index))?)
                }
            })
        };
        let layers = dilations
            .iter()
            .enumerate()
            .map(|(i, &dilation)| {
                Ok((
                    activation("acts1", i)?,
                    Conv1d::same(channels, channels, kernel, dilation, &vb.pp("convs1").pp(i))?,
                    activation("acts2", i)?,
                    Conv1d::same(channels, channels, kernel, 1, &vb.pp("convs2").pp(i))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(ResBlock { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (act1, conv1, act2, conv2) in &self.layers {
            let h = conv1.forward(&act1.forward(&x, LEAKY_SLOPE)?)?;
            let h = conv2.forward(&act2.forward(&h, LEAKY_SLOPE)?)?;
            x = (x + h)?;
        }
        Ok(x)
    }
}

/// One mel → waveform generator (`LTX2Vocoder`).
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    /// `resblock_kernel_sizes.len()` blocks per stage, stage-major.
    resblocks: Vec<ResBlock>,
    act_post: Activation,
    conv_post: Conv1d,
}

impl Generator {
    /// Reads the generator under `vb` (official names: `conv_pre`, `ups`, `resblocks`, `act_post`,
    /// `conv_post`).
    pub fn new(config: &GeneratorConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let conv_pre = Conv1d::new(config.in_channels, config.hidden_channels, 7, 1, (3, 3), true, &vb.pp("conv_pre"))?;
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        for (stage, (&rate, &kernel)) in config.upsample_rates.iter().zip(&config.upsample_kernel_sizes).enumerate() {
            let (input, output) = (config.hidden_channels >> stage, config.stage_channels(stage));
            if kernel < rate {
                candle_core::bail!("vocoder stage {stage}: kernel {kernel} is smaller than its stride {rate}");
            }
            ups.push(ConvTranspose1d::new(input, output, kernel, rate, (kernel - rate) / 2, &vb.pp("ups").pp(stage))?);
            for (j, (&size, dilations)) in
                config.resblock_kernel_sizes.iter().zip(&config.resblock_dilations).enumerate()
            {
                let index = stage * config.resblock_kernel_sizes.len() + j;
                resblocks.push(ResBlock::new(output, size, dilations, config.resblock, &vb.pp("resblocks").pp(index))?);
            }
        }
        let last = config.stage_channels(config.upsample_rates.len() - 1);
        let act_post = match config.resblock {
            ResBlockKind::HifiGan => Activation::Leaky,
            ResBlockKind::AntiAliased => Activation::AntiAliased(AntiAliasedSnake::new(last, &vb.pp("act_post"))?),
        };
        let conv_post = Conv1d::new(last, config.out_channels, 7, 1, (3, 3), config.final_bias, &vb.pp("conv_post"))?;
        Ok(Generator { config: config.clone(), conv_pre, ups, resblocks, act_post, conv_post })
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Mel `[B, S, T, M]` (S·M = `in_channels`, time before mel as the VAE decodes it) → waveform
    /// `[B, out_channels, T · upsample_factor]`, f32.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let (batch, sides, frames, bins) = mel.dims4()?;
        if sides * bins != self.config.in_channels {
            candle_core::bail!(
                "vocoder: a mel of {sides} × {bins} bins does not give the {} input channels the vocoder expects",
                self.config.in_channels
            );
        }
        let mut x = mel.transpose(2, 3)?.contiguous()?.reshape((batch, sides * bins, frames))?;
        x = self.conv_pre.forward(&x)?;
        let per_stage = self.config.resblock_kernel_sizes.len();
        for (stage, up) in self.ups.iter().enumerate() {
            if self.config.resblock == ResBlockKind::HifiGan {
                x = leaky_relu(&x, LEAKY_SLOPE)?;
            }
            x = up.forward(&x)?;
            let blocks = &self.resblocks[stage * per_stage..(stage + 1) * per_stage];
            let mut sum = blocks[0].forward(&x)?;
            for block in &blocks[1..] {
                sum = (sum + block.forward(&x)?)?;
            }
            x = (sum / per_stage as f64)?;
        }
        x = self.act_post.forward(&x, FINAL_LEAKY_SLOPE)?;
        x = self.conv_post.forward(&x)?;
        match self.config.final_activation {
            FinalActivation::Tanh => x.tanh(),
            FinalActivation::Clamp => x.clamp(-1f32, 1f32),
            FinalActivation::Identity => Ok(x),
        }
    }
}
