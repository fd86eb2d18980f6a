//! Where the 0.9.1 decoder's injected noise comes from.
//!
//! The reference draws `torch.randn((H, W))` twice per noise-injecting resnet (after conv1, after conv2),
//! in forward order. A [`NoiseSource`] supplies those draws, so a decode can be seeded, replayed from
//! recorded draws (the parity tests), or switched off.

use candle_core::{Device, Result, Tensor};
use std::collections::VecDeque;

/// A supplier of standard-normal draws for decoder noise injection.
pub trait NoiseSource {
    /// One standard-normal f32 tensor of `shape`, on `device`.
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor>;
}

/// Zero "noise": noise injection adds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroNoise;

impl NoiseSource for ZeroNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::zeros(shape, candle_core::DType::F32, device)
    }
}

/// candle's own generator on the device (`Device::set_seed` seeds it).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceNoise;

impl NoiseSource for DeviceNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::randn(0f32, 1f32, shape, device)
    }
}

/// Returns given tensors in order, checking each shape; fails when they run out.
#[derive(Debug, Clone, Default)]
pub struct ReplayNoise {
    draws: VecDeque<Tensor>,
}

impl ReplayNoise {
    /// Replays `draws` in order.
    pub fn new(draws: impl IntoIterator<Item = Tensor>) -> Self {
        Self { draws: draws.into_iter().collect() }
    }

    /// Draws not consumed yet.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let Some(draw) = self.draws.pop_front() else {
            candle_core::bail!("replayed noise ran out (a draw of shape {shape:?} was asked for)")
        };
        if draw.dims() != shape {
            candle_core::bail!("replayed noise has shape {:?} where {shape:?} was asked for", draw.dims());
        }
        draw.to_device(device)
    }
}

/// Any closure `FnMut(&[usize], &Device) -> Result<Tensor>` is a noise source, e.g. a torch-compatible
/// seeded generator from the sampling code.
impl<F> NoiseSource for F
where
    F: FnMut(&[usize], &Device) -> Result<Tensor>,
{
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        self(shape, device)
    }
}
