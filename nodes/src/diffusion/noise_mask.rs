//! A latent's noise mask fitted to the latent before sampling, as ComfyUI's `prepare_mask`
//! (`comfy.utils.reshape_mask`) does: a mask of any size (a pixel-space MASK from `SetLatentNoiseMask`,
//! a per-frame `[B, 1, T, 1, 1]` from `LTXVImgToVideo`) becomes one value per latent element, which the
//! sampler blends with (`KSamplerX0Inpaint`) and the model turns into per-token timesteps.
//!
//! For a latent `[B, C, T, H, W]`, a mask of rank below 5 is read as `[1, 1, N, h, w]` (its leading axes
//! flattened into the time axis, so a batch of mask frames runs along time), a rank-5 mask as it is; it
//! is resized to `T × H × W` by PyTorch's trilinear interpolation (`align_corners=False`). For a latent
//! `[B, C, T, F]` (LTX-2 audio) the mask is read as `[N, 1, h, w]` and resized bilinearly to `T × F`.
//! Then a mask with fewer channels than the latent is repeated over them (`C` copies, the first `C` kept),
//! and the batch is cut or cycled to `B` (`repeat_to_batch_size`).

use candle_core::{DType, Device, Tensor};

use crate::nodes::latent::resize::source_taps;

/// The mask resized to `shape` (the latent's), or why that cannot be done.
pub fn reshape_mask(mask: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let failed = |error: candle_core::Error| format!("reading the noise mask: {error}");
    let mask_dims = mask.dims().to_vec();
    if mask_dims.len() < 2 || mask_dims.contains(&0) {
        return Err(format!("a noise mask needs at least two non-empty axes, got {mask_dims:?}"));
    }
    let spatial = shape.len().checked_sub(2).filter(|axes| matches!(axes, 2 | 3)).ok_or_else(|| {
        format!("noise masks fit latents of rank 4 or 5 ([B, C, T, F] or [B, C, T, H, W]), not {shape:?}")
    })?;
    let (height, width) = (mask_dims[mask_dims.len() - 2], mask_dims[mask_dims.len() - 1]);
    let leading: usize = mask_dims[..mask_dims.len() - 2].iter().product();
    // The mask as [N, C', spatial...].
    let mut dims: Vec<usize> = match (spatial, mask_dims.len()) {
        (2, _) => vec![leading, 1, height, width],
        (3, 5) => mask_dims.clone(),
        (3, rank) if rank < 5 => vec![1, 1, leading, height, width],
        _ => return Err(format!("a noise mask of rank {} cannot fit the video latent {shape:?}", mask_dims.len())),
    };
    let mut values: Vec<f32> = mask.to_dtype(DType::F32).and_then(|m| m.flatten_all()?.to_vec1()).map_err(failed)?;
    // Innermost axis first: the same arithmetic as PyTorch's separable linear kernels.
    for axis in (2..dims.len()).rev() {
        let target = shape[axis];
        if dims[axis] != target {
            values = resize_axis(&values, &dims, axis, target);
            dims[axis] = target;
        }
    }
    let channels = shape[1];
    if dims[1] < channels {
        values = repeat_channels(&values, &dims, channels);
        dims[1] = channels;
    } else if dims[1] > channels {
        return Err(format!(
            "the noise mask has {} channels but the latent {shape:?} has {channels}; expected at most {channels}",
            dims[1]
        ));
    }
    let per_item: usize = dims[1..].iter().product();
    let batch = shape[0];
    let items = dims[0];
    let fitted: Vec<f32> =
        (0..batch).flat_map(|index| &values[(index % items) * per_item..][..per_item]).copied().collect();
    Tensor::from_vec(fitted, shape, &Device::Cpu).map_err(failed)
}

/// Linear interpolation of `axis` to `target` elements (PyTorch, `align_corners=False`).
fn resize_axis(values: &[f32], dims: &[usize], axis: usize, target: usize) -> Vec<f32> {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let length = dims[axis];
    let taps = source_taps(length, target);
    let mut out = Vec::with_capacity(outer * target * inner);
    for block in 0..outer {
        let base = block * length * inner;
        for &(low, high, weight_low, weight_high) in &taps {
            for offset in 0..inner {
                let at = |index: usize| values[base + index * inner + offset];
                out.push(at(low) * weight_low + at(high) * weight_high);
            }
        }
    }
    out
}

/// `mask.repeat(1, C, 1, ...)[:, :C]`: the channels repeated `C` times, the first `C` kept.
fn repeat_channels(values: &[f32], dims: &[usize], channels: usize) -> Vec<f32> {
    let per_channel: usize = dims[2..].iter().product();
    let per_item = dims[1] * per_channel;
    let mut out = Vec::with_capacity(dims[0] * channels * per_channel);
    for item in values.chunks_exact(per_item) {
        out.extend(item.iter().cycle().take(channels * per_channel));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::reshape_mask;
    use candle_core::{Device, Tensor};

    fn values(tensor: &Tensor) -> Vec<f32> {
        tensor.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// A per-frame mask only broadcasts (trilinear of a constant over H and W is that constant).
    #[test]
    fn a_per_frame_mask_is_broadcast() {
        let mask = Tensor::new(&[0.0f32, 0.5, 1.0], &Device::Cpu).unwrap().reshape((1, 1, 3, 1, 1)).unwrap();
        let out = reshape_mask(&mask, &[2, 2, 3, 2, 2]).unwrap();
        assert_eq!(out.dims(), [2, 2, 3, 2, 2]);
        let frame = |value: f32| vec![value; 4];
        let item: Vec<f32> = [frame(0.0), frame(0.5), frame(1.0)].concat().repeat(2);
        assert_eq!(values(&out), item.repeat(2));
    }

    /// Halving a 1×4 row: sources at 0.5 and 2.5 (the averages), channels repeated.
    #[test]
    fn a_pixel_mask_is_interpolated_and_repeated_over_channels() {
        let mask = Tensor::new(&[[0.0f32, 1.0, 2.0, 3.0]], &Device::Cpu).unwrap().reshape((1, 1, 1, 4)).unwrap();
        let out = reshape_mask(&mask, &[1, 2, 1, 1, 2]).unwrap();
        assert_eq!(values(&out), vec![0.5, 2.5, 0.5, 2.5]);
    }

    #[test]
    fn masks_that_cannot_fit_say_why() {
        let mask = Tensor::zeros((1, 3, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let error = reshape_mask(&mask, &[1, 2, 1, 1, 1]).unwrap_err();
        assert!(error.contains("3 channels") && error.contains("at most 2"), "{error}");
        let error = reshape_mask(&mask, &[1, 2, 3]).unwrap_err();
        assert!(error.contains("rank 4 or 5"), "{error}");
        let empty = Tensor::zeros((1, 0, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(reshape_mask(&empty, &[1, 2, 1, 1, 1]).unwrap_err().contains("non-empty"));
    }
}
