//! 3D convolution built from matrix products, and the causal wrapper `CausalConv3d` of the original
//! LTX-Video code (`ltx_video/models/autoencoders/causal_conv3d.py`; diffusers `LTXVideoCausalConv3d`).
//! Covers every LTX-Video VAE layout (0.9.0 – 0.9.8) and the LTX-2.0 / 2.3 video VAEs (`LTX2VideoCausalConv3d`).
//!
//! candle 0.11 has no conv3d. The stride-1 path (every conv of the decoder and nearly every conv of the
//! encoder) works on the native (B, C, T, H, W) layout:
//!
//! 1. Spatially pad the temporally padded input once, then gather the kh·kw shifted copies into one
//!    "spatial im2col" matrix of shape `(B, kh·kw·C, T_in·H·W)` (one strided copy). Each row is a
//!    shifted image plane, so the gather copies whole image rows.
//! 2. Frame t of the output is `Σ_k W_k · columns(t + k)`, with `W_k` the `(C_out, kh·kw·C)` slice of
//!    temporal tap k. Because the frames of the im2col matrix are adjacent column blocks, tap k is a
//!    plain column window `[k·H·W, (k + T_out)·H·W)` of the same matrix: a strided view, no copy. Each
//!    tap is therefore **one** large GEMM over all output frames at once, `C_out × (kh·kw·C) ×
//!    (T_out·H·W)`, and the kt products are summed.
//!
//! The im2col matrix is built once (kh·kw times the input, not kt·kh·kw times as a per-tap conv2d or a
//! full 3D im2col would need), and when it would exceed [`IM2COL_BUDGET_BYTES`] the output frames are
//! processed in groups, each with its kt − 1 frames of temporal halo. The output already has the
//! `(B, C_out, T, H, W)` layout, so no permutes are needed between layers.
//!
//! On the CPU with f32 and zero padding, [`crate::ops::conv3d`] runs the convolution as one custom op: this
//! scheme for large weights, and for small ones a tiled variant that builds the full 3D im2col of a few
//! output rows at a time in cache. Either way the spatial and temporal padding are
//! folded into the gather, the output starts as the bias and the GEMMs accumulate into it. Elsewhere
//! (other devices, reflect padding) the scheme above is built from candle ops.
//!
//! Strided convs (the 0.9.0/0.9.1 encoder downsamplers only) take the simple route: one candle
//! `conv2d` per temporal tap over a `(B·T_out, C, H, W)` batch of the selected frames.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Upper bound on the bytes of one im2col matrix; larger convs are split into groups of output frames.
pub const IM2COL_BUDGET_BYTES: usize = 512 << 20;

/// How the spatial border is padded (the temporal border always replicates frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpatialPadding {
    /// Zero padding: diffusers, and the original code's default.
    #[default]
    Zeros,
    /// Reflection padding: recent ComfyUI decoders and files whose config asks for it.
    Reflect,
}

/// A Conv3d with bias (the `torch.nn.Conv3d` inside `CausalConv3d`, or the 1×1×1 `conv_shortcut`).
/// Its input must already be temporally padded; spatial padding is kernel/2 on each side.
#[derive(Debug, Clone)]
pub struct Conv3d {
    /// `(C_out, kt·kh·kw·C_in)`: the weight with its columns in the im2col row order (dt, dy, dx, c), so
    /// that temporal tap k is the column block `[k·kh·kw·C_in, (k + 1)·kh·kw·C_in)`. Only this copy is
    /// kept, so the weights occupy memory once.
    weight: Tensor,
    bias: Tensor,
    in_channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: SpatialPadding,
}

impl Conv3d {
    /// Loads `weight` `(C_out, C_in, k, k, k)` and `bias` `(C_out)` from `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: [usize; 3],
        padding: SpatialPadding,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel, kernel), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        let weight = weight
            .permute((0, 2, 3, 4, 1))?
            .contiguous()?
            .reshape((out_channels, in_channels * kernel * kernel * kernel))?;
        Ok(Self { weight, bias, kernel: [kernel; 3], stride, padding, in_channels })
    }

    /// The output channel count.
    pub fn out_channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    /// The same conv with its output channels reordered: output channel `i` of the result is output
    /// channel `order[i]` of this one.
    pub fn reorder_outputs(&self, order: &[u32]) -> Result<Self> {
        let order = Tensor::new(order, self.weight.device())?;
        Ok(Self {
            weight: self.weight.index_select(&order, 0)?,
            bias: self.bias.index_select(&order, 0)?,
            ..self.clone()
        })
    }

    /// The (t, h, w) stride.
    pub fn stride(&self) -> [usize; 3] {
        self.stride
    }

    /// Applies the convolution to a temporally padded `(B, C_in, T, H, W)` input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [kt, kh, kw] = self.kernel;
        let out = if kt == 1 && kh == 1 && kw == 1 && self.stride == [1, 1, 1] {
            self.forward_pointwise(x)?
        } else if self.has_cpu_kernel(x) {
            return self.forward_time_padded(x, 0, 0);
        } else if self.stride == [1, 1, 1] {
            self.forward_im2col(x)?
        } else {
            self.forward_per_tap(x)?
        };
        out.broadcast_add(&self.bias.reshape((1, (), 1, 1, 1))?)
    }

    fn has_cpu_kernel(&self, x: &Tensor) -> bool {
        self.stride == [1, 1, 1]
            && x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && self.padding == SpatialPadding::Zeros
    }

    /// Applies the convolution to `x` with `before` / `after` replicated frames around it: folded into
    /// the CPU kernel when it applies, otherwise padded first.
    pub fn forward_time_padded(&self, x: &Tensor, before: usize, after: usize) -> Result<Tensor> {
        self.forward_time_padded_plus(x, before, after, None)
    }

    /// [`Self::forward_time_padded`] plus `residual` (shaped like the output): added as the CPU kernel
    /// starts its output where it applies, in a separate pass elsewhere.
    pub fn forward_time_padded_plus(
        &self,
        x: &Tensor,
        before: usize,
        after: usize,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.forward_with(x, [before, after], residual, 0)
    }

    /// [`Self::forward_time_padded`] for a caller that discards output channels `0 .. unused` of the
    /// first output frame: the CPU kernel may leave them unset (zero or the bias); elsewhere they are
    /// computed as usual.
    pub fn forward_time_padded_unused_first(
        &self,
        x: &Tensor,
        before: usize,
        after: usize,
        unused: usize,
    ) -> Result<Tensor> {
        self.forward_with(x, [before, after], None, unused)
    }

    fn forward_with(
        &self,
        x: &Tensor,
        [before, after]: [usize; 2],
        residual: Option<&Tensor>,
        unused_first: usize,
    ) -> Result<Tensor> {
        if self.has_cpu_kernel(x) && self.kernel != [1, 1, 1] {
            let kernel = crate::ops::conv3d::Im2colConv3d {
                kernel: self.kernel,
                time_padding: [before, after],
                budget_bytes: IM2COL_BUDGET_BYTES,
                residual: residual
                    .map(|r| r.to_dtype(candle_core::DType::F32).and_then(|r| r.contiguous()))
                    .transpose()?,
                unused_first,
            };
            return x.contiguous()?.apply_op3_no_bwd(&self.weight, &self.bias, &kernel);
        }
        let out = if before == 0 && after == 0 {
            self.forward(x)?
        } else {
            self.forward(&x.pad_with_same(2, before, after)?)?
        };
        match residual {
            Some(residual) => out + residual,
            None => Ok(out),
        }
    }

    fn forward_pointwise(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, frames, height, width) = x.dims5()?;
        let out_channels = self.out_channels();
        let weight = self.weight.reshape((1, out_channels, channels))?.broadcast_as((batch, out_channels, channels))?;
        let x = x.reshape((batch, channels, frames * height * width))?;
        weight.matmul(&x)?.reshape((batch, out_channels, frames, height, width))
    }

    /// The `(C_out, kh·kw·C_in)` weight of temporal tap `tap`, columns (dy, dx, c).
    fn tap(&self, tap: usize) -> Result<Tensor> {
        let columns = self.weight.dim(1)? / self.kernel[0];
        self.weight.narrow(1, tap * columns, columns)?.contiguous()
    }

    fn pad_spatial(&self, x: &Tensor) -> Result<Tensor> {
        let (ph, pw) = (self.kernel[1] / 2, self.kernel[2] / 2);
        match self.padding {
            SpatialPadding::Zeros => x.pad_with_zeros(D::Minus2, ph, ph)?.pad_with_zeros(D::Minus1, pw, pw),
            SpatialPadding::Reflect => reflect_pad(&reflect_pad(x, 3, ph)?, 4, pw),
        }
    }

    fn forward_im2col(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, frames, height, width) = x.dims5()?;
        let [kt, kh, kw] = self.kernel;
        let out_frames = frames + 1 - kt;
        let plane = height * width;
        let rows = channels * kh * kw;
        let bytes_per_frame = batch * rows * plane * x.dtype().size_in_bytes();
        let group = (IM2COL_BUDGET_BYTES / bytes_per_frame.max(1)).saturating_sub(kt - 1).max(1).min(out_frames);
        let padded = self.pad_spatial(x)?;
        let out_channels = self.out_channels();
        let mut outputs = Vec::with_capacity(out_frames.div_ceil(group));
        let mut start = 0;
        while start < out_frames {
            let count = group.min(out_frames - start);
            let input_frames = count + kt - 1;
            let slab = padded.narrow(2, start, input_frames)?;
            let mut shifted = Vec::with_capacity(kh * kw);
            for dy in 0..kh {
                for dx in 0..kw {
                    shifted.push(slab.narrow(3, dy, height)?.narrow(4, dx, width)?);
                }
            }
            // (B, kh·kw·C, T_in, H, W), rows ordered (dy, dx, c) as the regrouped weight. Concatenating
            // along the channel axis gathers each shifted window with one strided copy, and for B = 1
            // the result is already contiguous, so the reshape is free.
            let columns = Tensor::cat(&shifted, 1)?.reshape((batch, rows, input_frames * plane))?;
            drop(shifted);
            let mut sum: Option<Tensor> = None;
            for tap in 0..kt {
                let weight = self.tap(tap)?.unsqueeze(0)?.broadcast_as((batch, out_channels, rows))?;
                let window = columns.narrow(2, tap * plane, count * plane)?;
                let product = weight.matmul(&window)?;
                sum = Some(match sum {
                    None => product,
                    Some(previous) => (previous + product)?,
                });
            }
            let sum = sum.expect("kernel has at least one temporal tap");
            outputs.push(sum.reshape((batch, out_channels, count, height, width))?);
            start += count;
        }
        if outputs.len() == 1 { Ok(outputs.pop().expect("one group")) } else { Tensor::cat(&outputs, 2) }
    }

    fn forward_per_tap(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, frames, _, _) = x.dims5()?;
        let [kt, kh, _] = self.kernel;
        let [st, sh, sw] = self.stride;
        if sh != sw {
            candle_core::bail!("Conv3d: unequal spatial strides {sh} and {sw} are not supported");
        }
        let out_frames = (frames - kt) / st + 1;
        let (input, padding) = match self.padding {
            SpatialPadding::Zeros => (x.clone(), kh / 2),
            SpatialPadding::Reflect => (self.pad_spatial(x)?, 0),
        };
        let config = candle_nn::Conv2dConfig { padding, stride: sh, dilation: 1, groups: 1, cudnn_fwd_algo: None };
        let mut sum: Option<Tensor> = None;
        for tap in 0..kt {
            let indices: Vec<u32> = (0..out_frames).map(|t| (t * st + tap) as u32).collect();
            let indices = Tensor::new(indices.as_slice(), x.device())?;
            let (_, _, _, height, width) = input.dims5()?;
            let selected = input.index_select(&indices, 2)?.permute((0, 2, 1, 3, 4))?.reshape((
                batch * out_frames,
                channels,
                height,
                width,
            ))?;
            let kernel = self
                .tap(tap)?
                .reshape((self.out_channels(), kh, self.kernel[2], self.in_channels))?
                .permute((0, 3, 1, 2))?
                .contiguous()?;
            let product = candle_nn::Conv2d::new(kernel, None, config).forward(&selected)?;
            sum = Some(match sum {
                None => product,
                Some(previous) => (previous + product)?,
            });
        }
        let sum = sum.expect("kernel has at least one temporal tap");
        let (_, out_channels, out_height, out_width) = sum.dims4()?;
        sum.reshape((batch, out_frames, out_channels, out_height, out_width))?.permute((0, 2, 1, 3, 4))?.contiguous()
    }
}

/// Reflection padding by `pad` elements on both sides of `dim` (PyTorch's `reflect` mode).
pub fn reflect_pad(x: &Tensor, dim: usize, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let size = x.dim(dim)?;
    if size <= pad {
        candle_core::bail!("reflect padding of {pad} needs more than {pad} elements, dimension has {size}");
    }
    let mut parts = Vec::with_capacity(2 * pad + 1);
    for i in (1..=pad).rev() {
        parts.push(x.narrow(dim, i, 1)?);
    }
    parts.push(x.clone());
    for i in 1..=pad {
        parts.push(x.narrow(dim, size - 1 - i, 1)?);
    }
    Tensor::cat(&parts, dim)
}

/// `CausalConv3d`: a [`Conv3d`] (weights under `conv.`) whose temporal border replicates the first frame
/// (causal: kt − 1 copies in front) or both end frames (non-causal: (kt − 1)/2 on each side).
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    conv: Conv3d,
    time_kernel: usize,
}

impl CausalConv3d {
    /// Builds the conv from `vb.pp("conv")`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: [usize; 3],
        padding: SpatialPadding,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let conv = Conv3d::new(in_channels, out_channels, kernel, stride, padding, &vb.pp("conv"))?;
        Ok(Self { conv, time_kernel: kernel })
    }

    /// Pads time as the reference does and convolves. `x` is (B, C, T, H, W).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let k = self.time_kernel;
        let (before, after) = if causal { (k - 1, 0) } else { ((k - 1) / 2, (k - 1) / 2) };
        self.conv.forward_time_padded(x, before, after)
    }

    /// [`Self::forward`] plus `residual`, shaped like the output (see
    /// [`Conv3d::forward_time_padded_plus`]).
    pub fn forward_plus(&self, x: &Tensor, causal: bool, residual: &Tensor) -> Result<Tensor> {
        let k = self.time_kernel;
        let (before, after) = if causal { (k - 1, 0) } else { ((k - 1) / 2, (k - 1) / 2) };
        self.conv.forward_time_padded_plus(x, before, after, Some(residual))
    }

    /// [`Self::forward`] for a caller that discards output channels `0 .. unused` of the first output
    /// frame (see [`Conv3d::forward_time_padded_unused_first`]).
    pub fn forward_unused_first(&self, x: &Tensor, causal: bool, unused: usize) -> Result<Tensor> {
        let k = self.time_kernel;
        let (before, after) = if causal { (k - 1, 0) } else { ((k - 1) / 2, (k - 1) / 2) };
        self.conv.forward_time_padded_unused_first(x, before, after, unused)
    }

    /// The same conv with its output channels reordered (see [`Conv3d::reorder_outputs`]).
    pub fn reorder_outputs(&self, order: &[u32]) -> Result<Self> {
        Ok(Self { conv: self.conv.reorder_outputs(order)?, time_kernel: self.time_kernel })
    }

    /// The temporally padded input.
    pub fn pad_time(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let k = self.time_kernel;
        if k == 1 {
            Ok(x.clone())
        } else if causal {
            x.pad_with_same(2, k - 1, 0)
        } else {
            x.pad_with_same(2, (k - 1) / 2, (k - 1) / 2)
        }
    }

    /// The inner convolution, for callers that pad time themselves (streaming decode).
    pub fn conv(&self) -> &Conv3d {
        &self.conv
    }

    /// The temporal kernel size.
    pub fn time_kernel(&self) -> usize {
        self.time_kernel
    }

    /// The output channel count.
    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }
}
