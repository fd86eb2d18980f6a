//! Building blocks of the audio VAE: diffusers 0.42.1 `autoencoder_kl_ltx2_audio.py`
//! (`LTX2AudioCausalConv2d`, `LTX2AudioPixelNorm`, `LTX2AudioResnetBlock`, `LTX2AudioDownsample`,
//! `LTX2AudioUpsample`), ltx-core `model/audio_vae/*`, ComfyUI `causal_audio_autoencoder.py`.
//!
//! Tensors are `[B, C, time, mel]`; every conv is causal along time (the "height" axis): a 3×3 kernel
//! sees the current and two previous frames, and one mel bin on each side. Weights stay in their stored
//! dtype and are widened to f32 per call.

use crate::ops::conv1d::TapSum;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Epsilon of the audio VAE's pixel norm.
pub const PIXEL_NORM_EPS: f64 = 1e-6;

/// A `Conv2d` applied after explicit zero padding `(top, bottom, left, right)` (time, then mel).
///
/// On the CPU with stride 1 it runs as one GEMM per tap over the flattened padded image (see
/// `TapSum` in `ops::conv1d`), several times faster than candle's `conv2d`; strided convs (the two downsamplers) and
/// other devices use candle's.
#[derive(Debug, Clone)]
pub struct PaddedConv2d {
    /// `[kh·kw, out, in]`, stored dtype.
    taps: Tensor,
    bias: Tensor,
    kernel: usize,
    padding: [usize; 4],
    stride: usize,
}

impl PaddedConv2d {
    /// Reads `weight` `[out, in, k, k]` and `bias` under `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: [usize; 4],
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let taps = weight.permute((2, 3, 0, 1))?.contiguous()?.reshape((kernel * kernel, out_channels, in_channels))?;
        let bias = vb.get(out_channels, "bias")?.to_dtype(DType::F32)?;
        Ok(PaddedConv2d { taps, bias, kernel, padding, stride })
    }

    /// `LTX2AudioCausalConv2d` (causal along time): `k − 1` frames of zeros in front, `(k − 1)/2` bins on
    /// each side of the mel axis. The tensors sit under `vb.pp("conv")`.
    pub fn causal(in_channels: usize, out_channels: usize, kernel: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let pad = kernel - 1;
        Self::new(in_channels, out_channels, kernel, 1, [pad, 0, pad / 2, pad - pad / 2], &vb.pp("conv"))
    }

    /// `x` `[B, in, T, F]` → `[B, out, T', F']`, in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [top, bottom, left, right] = self.padding;
        let x = x.to_dtype(DType::F32)?.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
        let (batch, in_channels, height, width) = x.dims4()?;
        let (taps, out_channels, weight_in) = self.taps.dims3()?;
        let k = self.kernel;
        if in_channels != weight_in || height < k || width < k {
            candle_core::bail!(
                "conv2d: input {:?} (padded) does not fit a {k}×{k} kernel over {weight_in} channels",
                x.dims()
            );
        }
        if self.stride != 1 || !x.device().is_cpu() {
            let weight =
                self.taps.to_dtype(DType::F32)?.reshape((k, k, out_channels, in_channels))?.permute((2, 3, 0, 1))?;
            let y = x.conv2d(&weight.contiguous()?, 0, self.stride, 1, 1)?;
            return y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?);
        }
        // Output rows over the padded width; the k − 1 extra zeros let the last row's last taps read in range.
        let (out_height, out_width) = (height - k + 1, width - k + 1);
        let flat = x.reshape((batch, in_channels, height * width))?.pad_with_zeros(2, 0, k - 1)?;
        let padded = height * width + k - 1;
        let offsets = (0..taps).map(|tap| (tap / k) * width + tap % k).collect();
        let shape = TapSum { out_channels, in_channels, offsets, padded, out_length: out_height * width };
        let weights = self.taps.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = self.bias.to_vec1::<f32>()?;
        let input = flat.flatten_all()?.to_vec1::<f32>()?;
        let mut output = Vec::with_capacity(batch * out_channels * out_height * width);
        for item in input.chunks_exact(in_channels * padded) {
            output.extend(shape.apply(&weights, &bias, item));
        }
        Tensor::from_vec(output, (batch, out_channels, out_height, width), x.device())?.narrow(3, 0, out_width)
    }
}

/// `silu(x / sqrt(mean over channels of x² + 1e-6))`: the pixel norm and activation before every conv.
pub fn pixel_norm_silu(x: &Tensor) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(1)? + PIXEL_NORM_EPS)?.sqrt()?;
    candle_nn::ops::silu(&x.broadcast_div(&rms)?)
}

/// `LTX2AudioResnetBlock` with pixel norm and causal convs: `conv2(act(conv1(act(x)))) + shortcut(x)`,
/// the shortcut a causal 1×1 conv (`nin_shortcut`) when the channels change.
#[derive(Debug, Clone)]
pub struct ResnetBlock {
    conv1: PaddedConv2d,
    conv2: PaddedConv2d,
    shortcut: Option<PaddedConv2d>,
}

impl ResnetBlock {
    /// Reads `conv1`, `conv2` and (when the channels change) `nin_shortcut` under `vb`.
    pub fn new(in_channels: usize, out_channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let shortcut = if in_channels == out_channels {
            None
        } else {
            Some(PaddedConv2d::causal(in_channels, out_channels, 1, &vb.pp("nin_shortcut"))?)
        };
        Ok(ResnetBlock {
            conv1: PaddedConv2d::causal(in_channels, out_channels, 3, &vb.pp("conv1"))?,
            conv2: PaddedConv2d::causal(out_channels, out_channels, 3, &vb.pp("conv2"))?,
            shortcut,
        })
    }

    /// `x` `[B, in, T, F]` → `[B, out, T, F]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&pixel_norm_silu(x)?)?;
        let h = self.conv2.forward(&pixel_norm_silu(&h)?)?;
        match &self.shortcut {
            Some(shortcut) => shortcut.forward(x)? + h,
            None => x.to_dtype(DType::F32)? + h,
        }
    }
}

/// `LTX2AudioDownsample`: two frames of zeros in front, one mel bin of zeros after, a 3×3 conv of
/// stride 2 (time and mel halve, rounding up).
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: PaddedConv2d,
}

impl Downsample {
    /// Reads `conv` under `vb`.
    pub fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Downsample { conv: PaddedConv2d::new(channels, channels, 3, 2, [2, 0, 0, 1], &vb.pp("conv"))? })
    }

    /// `[B, C, T, F]` → `[B, C, ⌈T/2⌉, F/2]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}

/// `LTX2AudioUpsample`: nearest ×2 on both axes, a causal 3×3 conv, then the first frame dropped
/// (`T` latents → `2T − 1` frames).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: PaddedConv2d,
}

impl Upsample {
    /// Reads `conv.conv` under `vb`.
    pub fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(Upsample { conv: PaddedConv2d::causal(channels, channels, 3, &vb.pp("conv"))? })
    }

    /// `[B, C, T, F]` → `[B, C, 2T − 1, 2F]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, time, mel) = x.dims4()?;
        let y = self.conv.forward(&x.upsample_nearest2d(2 * time, 2 * mel)?)?;
        y.narrow(2, 1, 2 * time - 1)
    }
}
