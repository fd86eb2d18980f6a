//! The 1-D convolutions of the vocoders: `torch.nn.Conv1d` (with "same" or explicit padding, dilation) and
//! `torch.nn.ConvTranspose1d` (the upsampling layers).
//!
//! candle's CPU `conv1d` builds a full im2col matrix on one thread (kernel × the input), which for the
//! dilated kernel-11 convolutions of the resblocks costs more than the matrix products themselves. On the
//! CPU with f32 activations, [`Conv1d`] instead sums one GEMM per tap, `y += W_k · x[:, k·d ..]`, reading
//! each tap's input as a strided column window of the padded input (no copy), with the output split into
//! column ranges across threads. Elsewhere it calls candle's `conv1d`.
//!
//! Weights stay in their stored dtype (bf16 in the released files) and are widened to f32 for each call;
//! the vocoders compute in f32 (the official code forces float32 autocast around them).

use crate::ops::gemm::{Matrix, MatrixMut, multiply_add};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Columns below which an output is not split across threads.
const MIN_COLUMNS_PER_THREAD: usize = 256;

/// `torch.nn.Conv1d` with stride 1: weight `[out, in, k]`, optional bias `[out]`.
#[derive(Debug, Clone)]
pub struct Conv1d {
    /// `[k, out, in]`: tap `k` is a contiguous `out × in` matrix. Stored dtype.
    taps: Tensor,
    bias: Option<Tensor>,
    dilation: usize,
    padding: (usize, usize),
}

impl Conv1d {
    /// Reads `weight` (and `bias` if `bias`) under `vb`, with `padding` = (left, right) zeros.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        dilation: usize,
        padding: (usize, usize),
        bias: bool,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel), "weight")?;
        let taps = weight.permute((2, 0, 1))?.contiguous()?;
        let bias = if bias { Some(vb.get(out_channels, "bias")?.to_dtype(DType::F32)?) } else { None };
        Ok(Conv1d { taps, bias, dilation, padding })
    }

    /// A conv with PyTorch's `padding="same"`: `d·(k−1)` zeros, the smaller half on the left.
    pub fn same(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        dilation: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let total = dilation * (kernel - 1);
        Self::new(in_channels, out_channels, kernel, dilation, (total / 2, total - total / 2), true, vb)
    }

    /// `(out, in, k)`.
    pub fn dims(&self) -> Result<(usize, usize, usize)> {
        let (kernel, out_channels, in_channels) = self.taps.dims3()?;
        Ok((out_channels, in_channels, kernel))
    }

    /// `x` `[B, in, L]` → `[B, out, L + padding − d·(k−1)]`, in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out_channels, in_channels, kernel) = self.dims()?;
        let (batch, channels, length) = x.dims3()?;
        if channels != in_channels {
            candle_core::bail!("conv1d: input has {channels} channels, the weight expects {in_channels}");
        }
        let padded = length + self.padding.0 + self.padding.1;
        let span = self.dilation * (kernel - 1);
        if padded <= span {
            candle_core::bail!("conv1d: {length} samples are too few for a kernel spanning {}", span + 1);
        }
        let x = x.to_dtype(DType::F32)?;
        if !x.device().is_cpu() {
            let weight = self.taps.to_dtype(DType::F32)?.permute((1, 2, 0))?.contiguous()?;
            let x = x.pad_with_zeros(2, self.padding.0, self.padding.1)?;
            let y = x.conv1d(&weight, 0, 1, self.dilation, 1)?;
            return match &self.bias {
                Some(bias) => y.broadcast_add(&bias.reshape((1, out_channels, 1))?),
                None => Ok(y),
            };
        }
        let out_length = padded - span;
        let taps = self.taps.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = match &self.bias {
            Some(bias) => bias.to_vec1::<f32>()?,
            None => vec![0.0; out_channels],
        };
        let input = x.pad_with_zeros(2, self.padding.0, self.padding.1)?.flatten_all()?.to_vec1::<f32>()?;
        let offsets = (0..kernel).map(|k| k * self.dilation).collect();
        let shape = TapSum { out_channels, in_channels, offsets, padded, out_length };
        let mut output = Vec::with_capacity(batch * out_channels * out_length);
        for item in input.chunks_exact(in_channels * padded) {
            output.extend(shape.apply(&taps, &bias, item));
        }
        Tensor::from_vec(output, (batch, out_channels, out_length), x.device())
    }
}

/// A stride-1 convolution as a sum of GEMMs, one per tap: `y[:, n] = bias + Σ_k W_k · x[:, n + offset_k]`
/// over rows of a zero-padded input. A 1-D conv has offsets `k·dilation`; a 2-D conv over an image padded
/// to width `Fp` and flattened has offsets `dy·Fp + dx`, its output computed over the padded width (the
/// last `kw − 1` columns of each output row are discarded by the caller).
pub(crate) struct TapSum {
    pub out_channels: usize,
    pub in_channels: usize,
    /// Column offset of each tap into the padded input.
    pub offsets: Vec<usize>,
    /// Length of one padded input row (per channel).
    pub padded: usize,
    /// Output columns.
    pub out_length: usize,
}

impl TapSum {
    /// One batch item: `input` `[in, padded]` and `taps` `[taps, out, in]` → `[out, out_length]`, the
    /// columns split across threads.
    pub fn apply(&self, taps: &[f32], bias: &[f32], input: &[f32]) -> Vec<f32> {
        assert!(
            self.offsets.iter().all(|&offset| offset + self.out_length <= self.padded),
            "tap-sum convolution: a tap reads past its padded row"
        );
        let threads = candle_core::utils::get_num_threads().clamp(1, self.out_length.div_ceil(MIN_COLUMNS_PER_THREAD));
        let per_thread = self.out_length.div_ceil(threads).max(1);
        let ranges: Vec<(usize, usize)> = (0..self.out_length)
            .step_by(per_thread)
            .map(|start| (start, (start + per_thread).min(self.out_length)))
            .collect();
        let tiles: Vec<Vec<f32>> = if ranges.len() <= 1 {
            ranges.iter().map(|&range| self.columns(taps, bias, input, range)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> =
                    ranges.iter().map(|&range| scope.spawn(move || self.columns(taps, bias, input, range))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
            })
        };
        let mut output = vec![0.0; self.out_channels * self.out_length];
        for (&(start, end), tile) in ranges.iter().zip(&tiles) {
            let width = end - start;
            for (row, values) in output.chunks_exact_mut(self.out_length).zip(tile.chunks_exact(width)) {
                row[start..end].copy_from_slice(values);
            }
        }
        output
    }

    /// Output columns `start..end` as a `[out, end − start]` block: the bias plus one GEMM per tap.
    fn columns(&self, taps: &[f32], bias: &[f32], input: &[f32], (start, end): (usize, usize)) -> Vec<f32> {
        let width = end - start;
        let mut tile: Vec<f32> = bias.iter().flat_map(|&b| std::iter::repeat_n(b, width)).collect();
        let tap_size = self.out_channels * self.in_channels;
        for (k, &offset) in self.offsets.iter().enumerate() {
            let weight = Matrix::new(
                &taps[k * tap_size..(k + 1) * tap_size],
                self.out_channels,
                self.in_channels,
                self.in_channels,
            );
            let window = Matrix::new(&input[start + offset..], self.in_channels, width, self.padded);
            multiply_add(&mut MatrixMut::new(&mut tile, self.out_channels, width, width), weight, window);
        }
        tile
    }
}

/// `torch.nn.ConvTranspose1d`: weight `[in, out, k]`, bias `[out]`, `padding` trimmed from each end.
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvTranspose1d {
    /// Reads `weight` and `bias` under `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: &VarBuilder<'_>,
    ) -> Result<Self> {
        let weight = vb.get((in_channels, out_channels, kernel), "weight")?;
        let bias = vb.get(out_channels, "bias")?.to_dtype(DType::F32)?;
        Ok(ConvTranspose1d { weight, bias, stride, padding })
    }

    /// `x` `[B, in, L]` → `[B, out, (L − 1)·stride − 2·padding + k]`, in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, out_channels, kernel) = self.weight.dims3()?;
        let length = x.dim(2)?;
        let full = (length - 1) * self.stride + kernel;
        if full <= 2 * self.padding {
            candle_core::bail!("conv_transpose1d: {length} samples are too few to trim {} from each end", self.padding);
        }
        // candle runs unpadded transposed convs as one matmul and a col2im (its padded path is a scalar
        // loop). candle 0.11.1's CPU col2im path gives wrong results past the first item of a batch, so the
        // items go one at a time.
        let weight = self.weight.to_dtype(DType::F32)?.contiguous()?;
        let x = x.to_dtype(DType::F32)?;
        let items = (0..x.dim(0)?)
            .map(|i| x.narrow(0, i, 1)?.contiguous()?.conv_transpose1d(&weight, 0, 0, self.stride, 1, 1))
            .collect::<Result<Vec<_>>>()?;
        let y = Tensor::cat(&items, 0)?.narrow(2, self.padding, full - 2 * self.padding)?;
        y.broadcast_add(&self.bias.reshape((1, out_channels, 1))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    fn builder(tensors: Vec<(&str, Tensor)>) -> VarBuilder<'static> {
        let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn tap_sums_match_candle_for_dilated_padded_convs() {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (5, 3, 7), &device).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 5, &device).unwrap();
        let vb = builder(vec![("weight", weight.clone()), ("bias", bias.clone())]);
        // Long enough to be split across threads.
        let x = Tensor::randn(0f32, 1.0, (2, 3, 1500), &device).unwrap();
        for (dilation, padding) in [(1, (3, 3)), (3, (9, 9)), (2, (0, 5))] {
            let conv = Conv1d::new(3, 5, 7, dilation, padding, true, &vb).unwrap();
            let expected = x
                .pad_with_zeros(2, padding.0, padding.1)
                .unwrap()
                .conv1d(&weight, 0, 1, dilation, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, 5, 1)).unwrap())
                .unwrap();
            let found = conv.forward(&x).unwrap();
            assert_eq!(found.dims(), expected.dims());
            assert!(max_diff(&found, &expected) < 1e-4, "dilation {dilation}");
        }
    }

    #[test]
    fn transposed_conv_trims_the_padding() {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (4, 3, 15), &device).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 3, &device).unwrap();
        let vb = builder(vec![("weight", weight.clone()), ("bias", bias.clone())]);
        let conv = ConvTranspose1d::new(4, 3, 15, 5, 5, &vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 9), &device).unwrap();
        let found = conv.forward(&x).unwrap();
        assert_eq!(found.dims(), &[2, 3, 45]);
        for item in 0..2 {
            // The padded scalar path of candle, one item at a time, as the reference.
            let x = x.narrow(0, item, 1).unwrap();
            let expected = x.conv_transpose1d(&weight, 5, 0, 5, 1, 1).unwrap();
            let expected = expected.broadcast_add(&bias.reshape((1, 3, 1)).unwrap()).unwrap();
            assert!(max_diff(&found.narrow(0, item, 1).unwrap(), &expected) < 1e-5, "item {item}");
        }
    }
}
