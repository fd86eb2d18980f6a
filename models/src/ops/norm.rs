//! The pixel norm (`PixelNorm` of the original LTX-Video code, an RMS norm over channels), the timestep
//! modulation, and the three fused in one pass on the CPU with `SiLU`: what precedes every conv of the
//! VAE's `ResnetBlock3D` (and the decoder's head). With separate candle ops this is about seven full
//! passes over the activation; fused it reads the input twice and writes once. Other devices (and other
//! dtypes) use the separate ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// Epsilon of the parameter-free pixel norm (RMS over channels).
pub const PIXEL_NORM_EPS: f64 = 1e-8;

/// `PixelNorm`: x / sqrt(mean over channels of x² + eps), channels on dim 1.
pub fn pixel_norm(x: &Tensor) -> Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(1)?;
    x.broadcast_div(&(mean_square + PIXEL_NORM_EPS)?.sqrt()?)
}

/// `x · (1 + scale) + shift`, with `scale` and `shift` of shape (B, C) broadcast over (T, H, W).
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let (batch, channels) = shift.dims2()?;
    let shift = shift.reshape((batch, channels, 1, 1, 1))?;
    let scale = (scale.reshape((batch, channels, 1, 1, 1))? + 1.0)?;
    x.broadcast_mul(&scale)?.broadcast_add(&shift)
}

/// `silu(pixel_norm(x) · (1 + scale) + shift)` for x (B, C, T, H, W); `shift_scale` are (B, C) each.
pub fn norm_modulate_silu(x: &Tensor, shift_scale: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        let mut hidden = pixel_norm(x)?;
        if let Some((shift, scale)) = shift_scale {
            hidden = modulate(&hidden, shift, scale)?;
        }
        return candle_nn::ops::silu(&hidden);
    }
    let (batch, channels) = (x.dim(0)?, x.dim(1)?);
    let (shift, scale) = match shift_scale {
        Some((shift, scale)) => (
            shift.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            scale.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ),
        None => (vec![0.0; batch * channels], vec![0.0; batch * channels]),
    };
    x.contiguous()?.apply_op1_no_bwd(&NormModulateSilu { shift, scale })
}

struct NormModulateSilu {
    /// Per (batch, channel).
    shift: Vec<f32>,
    scale: Vec<f32>,
}

impl CustomOp1 for NormModulateSilu {
    fn name(&self) -> &'static str {
        "ltxv-norm-modulate-silu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("norm-modulate-silu expects f32") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("norm-modulate-silu expects a contiguous input")
        };
        let input = &data[start..end];
        let dims = layout.shape().dims();
        let (batch, channels) = (dims[0], dims[1]);
        let positions: usize = dims[2..].iter().product();
        let mut output = vec![0f32; input.len()];
        let threads = candle_core::utils::get_num_threads().max(1);
        for b in 0..batch {
            let sample = &input[b * channels * positions..(b + 1) * channels * positions];
            let out = &mut output[b * channels * positions..(b + 1) * channels * positions];
            // Inverse RMS over channels at each position, accumulated channel by channel so that every
            // read is contiguous; the positions are split across threads.
            let mut inverse = vec![0f32; positions];
            let span = positions.div_ceil(threads).max(1);
            std::thread::scope(|scope| {
                for (index, part) in inverse.chunks_mut(span).enumerate() {
                    let offset = index * span;
                    scope.spawn(move || {
                        for c in 0..channels {
                            let row = &sample[c * positions + offset..c * positions + offset + part.len()];
                            for (sum, &v) in part.iter_mut().zip(row) {
                                *sum += v * v;
                            }
                        }
                        for sum in part.iter_mut() {
                            *sum = 1.0 / (*sum / channels as f32 + PIXEL_NORM_EPS as f32).sqrt();
                        }
                    });
                }
            });
            let inverse = &inverse;
            let rows_per_thread = channels.div_ceil(threads).max(1);
            std::thread::scope(|scope| {
                for (index, rows) in out.chunks_mut(rows_per_thread * positions).enumerate() {
                    let first = index * rows_per_thread;
                    let (shift, scale) = (&self.shift, &self.scale);
                    scope.spawn(move || {
                        for (row, out_row) in rows.chunks_mut(positions).enumerate() {
                            let c = first + row;
                            let gain = 1.0 + scale[b * channels + c];
                            let bias = shift[b * channels + c];
                            let in_row = &sample[c * positions..(c + 1) * positions];
                            for ((o, &v), &r) in out_row.iter_mut().zip(in_row).zip(inverse) {
                                let y = v * r * gain + bias;
                                *o = y / (1.0 + (-y).exp());
                            }
                        }
                    });
                }
            });
        }
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}
