//! The CPU conv3d behind the LTX-Video VAE's stride-1 `Conv3d` (`ltxv::vae::conv3d`), one custom op
//! with two strategies:
//!
//! - The tiled kernel of `tiled.rs`: the im2col rows of a run of output positions gathered in
//!   cache, frame by frame, and multiplied there, runs shared among the threads. It takes every conv
//!   whose weights fit in cache ([`TILED_WEIGHT_BYTES`]), and with the AVX-512 micro-kernel also larger
//!   ones, as long as the image planes fill the kernel's strips of positions (then the weights stream
//!   from memory once per tile at a rate the memory sustains).
//! - The same im2col + per-tap GEMM scheme as the VAE's generic path for the rest (`whole.rs`): large
//!   weights on small images (the 4 × 6 latent planes of the widest layers), where the weights are read
//!   once per conv instead of once per tile. The threads split the output channels, each running its
//!   own single-threaded products over every tap: with the few positions of these planes, a GEMM
//!   parallelised inside spent a sixth of its time waiting.
//!
//! Either way the zero padding is folded into the gather (no padded copy), the output starts as the
//! bias, and the GEMMs accumulate straight into it (no temporaries and no extra passes for sums and bias).

mod avx512;
mod tiled;
mod whole;

use avx512::{STRIP, applies};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use tiled::{ConvShape, conv_tiled};

/// Weights up to this size always take the tiled kernel: they stay in cache while every tile reads
/// them. Past it, the general GEMM's per-call packing makes re-reading them for every tile cost more
/// than the whole-sequence im2col saves, and only the micro-kernel (which reads them in place) can.
pub const TILED_WEIGHT_BYTES: usize = 8 << 20;

/// Whether an image plane of `plane` positions fills the micro-kernel's strips to at least 7/8.
fn fills_strips(plane: usize) -> bool {
    plane.next_multiple_of(STRIP) * 7 <= plane * 8
}

/// Stride-1 conv3d with zero spatial padding of kernel/2, on a temporally padded f32 input.
pub struct Im2colConv3d {
    /// (kt, kh, kw).
    pub kernel: [usize; 3],
    /// Frames replicated before the first and after the last input frame (the causal conv's temporal
    /// padding, folded into the gather instead of copied).
    pub time_padding: [usize; 2],
    /// Bytes allowed for the im2col buffer before output frames are processed in groups.
    pub budget_bytes: usize,
    /// A contiguous f32 tensor shaped like the output, added to it as the output is started (the
    /// resnet's shortcut, without a separate pass over the activations).
    pub residual: Option<Tensor>,
    /// Output channels `0 .. unused_first` of the first output frame are discarded by the caller (an
    /// upsampler's duplicate of the causal frame): they are not computed.
    pub unused_first: usize,
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("conv3d: {what} must be f32") };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("conv3d: {what} must be contiguous")
    };
    Ok(&data[start..end])
}

/// The checked sizes of one call: input `(batch, channels, frames, height, width)`, output channels, and
/// the weight's row length `kt·kh·kw·channels`.
struct CallShape {
    batch: usize,
    channels: usize,
    frames: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    weight_width: usize,
}

impl Im2colConv3d {
    fn check_shapes(&self, input_layout: &Layout, weight_layout: &Layout, bias_len: usize) -> Result<CallShape> {
        let &[batch, channels, frames, height, width] = input_layout.shape().dims() else {
            candle_core::bail!("conv3d: input must be (B, C, T, H, W)")
        };
        let [kt, kh, kw] = self.kernel;
        let &[out_channels, weight_width] = weight_layout.shape().dims() else {
            candle_core::bail!("conv3d: weight must be (C_out, kt·kh·kw·C)")
        };
        let padded_frames = frames + self.time_padding[0] + self.time_padding[1];
        if weight_width != kt * kh * kw * channels || bias_len != out_channels || padded_frames < kt || frames == 0 {
            candle_core::bail!(
                "conv3d: weight {:?} does not fit input {:?}",
                weight_layout.dims(),
                input_layout.dims()
            );
        }
        Ok(CallShape { batch, channels, frames, height, width, out_channels, weight_width })
    }

    /// The residual's values, checked to be shaped like the output.
    fn residual_values<'a>(storage: Option<(&'a Storage, &Layout)>, out_len: usize) -> Result<Option<&'a [f32]>> {
        let Some((storage, layout)) = storage else { return Ok(None) };
        let Storage::Cpu(storage) = storage else { candle_core::bail!("conv3d: residual must be on the CPU") };
        let residual = contiguous(storage, layout, "residual")?;
        if residual.len() != out_len {
            candle_core::bail!("conv3d: residual {:?} does not match the output", layout.dims());
        }
        Ok(Some(residual))
    }
}

impl CustomOp3 for Im2colConv3d {
    fn name(&self) -> &'static str {
        "ltxv-im2col-conv3d"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = contiguous(input, input_layout, "input")?;
        let weight = contiguous(weight, weight_layout, "weight")?;
        let bias = contiguous(bias, bias_layout, "bias")?;
        let call = self.check_shapes(input_layout, weight_layout, bias.len())?;
        let CallShape { batch, channels, frames, height, width, out_channels, weight_width } = call;
        let [before, after] = self.time_padding;
        let out_frames = frames + before + after + 1 - self.kernel[0];
        let plane = height * width;
        let threads = candle_core::utils::get_num_threads().max(1);
        let out_len = batch * out_channels * out_frames * plane;
        let residual_storage = self.residual.as_ref().map(Tensor::storage_and_layout);
        let residual =
            Self::residual_values(residual_storage.as_ref().map(|(storage, layout)| (&**storage, *layout)), out_len)?;
        let mut output = vec![0f32; out_len];
        if out_channels * weight_width * 4 <= TILED_WEIGHT_BYTES || (applies(out_channels) && fills_strips(plane)) {
            let shape = ConvShape {
                channels,
                frames,
                height,
                width,
                out_channels,
                kernel: self.kernel,
                before,
                unused_first: self.unused_first.min(out_channels),
            };
            let per_sample = out_channels * out_frames * plane;
            for (index, (sample, out)) in
                input.chunks(channels * frames * plane).zip(output.chunks_mut(per_sample)).enumerate()
            {
                let residual = residual.map(|r| &r[index * per_sample..(index + 1) * per_sample]);
                conv_tiled(out, sample, weight, bias, residual, &shape, threads);
            }
        } else {
            let shape = whole::WholeShape { input: [batch, channels, frames, height, width], out_channels, out_frames };
            whole::conv_whole(self, &mut output, input, weight, bias, residual, &shape, threads);
        }
        Ok((CpuStorage::F32(output), Shape::from((batch, out_channels, out_frames, height, width))))
    }
}
