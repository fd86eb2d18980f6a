//! The CPU kernels of `kinograph_models::ops` against the same maths in plain candle ops, on seeded
//! inputs. All comparisons are f32 maximum absolute errors; each test states its tolerance.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

use crate::ltxv_vae::check;

/// The fused CPU pixel norm + modulation + `SiLU` against the separate candle ops, on seeded inputs (1e-5: the
/// same maths summed in another order, on outputs up to about 10).
#[test]
fn fused_norm_modulate_silu_matches_separate_ops() {
    use kinograph_models::ltxv::vae::resnet;
    use kinograph_models::ops::norm as fused;
    // Seeded inputs, so the test sees the same values on every run.
    let mut generator = kinograph_models::sampling::torch_noise::TorchGenerator::new(11);
    let mut normal = |shape: &[usize], scale: f32| {
        let count = shape.iter().product();
        let values: Vec<f32> = generator.randn(count).into_iter().map(|v| v * scale).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    };
    let x = normal(&[2, 5, 3, 4, 7], 2.0);
    let shift = normal(&[2, 5], 1.0);
    let scale = normal(&[2, 5], 1.0);
    let normed = resnet::pixel_norm(&x).unwrap();
    let expected = candle_nn::ops::silu(&resnet::modulate(&normed, &shift, &scale).unwrap()).unwrap();
    let fused = fused::norm_modulate_silu(&x, Some((&shift, &scale))).unwrap();
    check("fused norm/modulate/SiLU", &fused, &expected, 1e-5);
    let plain = fused::norm_modulate_silu(&x, None).unwrap();
    check("fused norm/SiLU", &plain, &candle_nn::ops::silu(&normed).unwrap(), 1e-5);
}

/// The CPU conv kernels (f32) against the generic candle-op path (taken for f64), with causal and
/// symmetric temporal padding, for a batch of two (1e-5): small weights take the tiled kernel (128 input
/// channels on 9 × 23 give two tiles per frame, the first ending inside an image row; at the ends of the
/// sequence it sums the weights of the taps that read the same replicated frame, all three of them for a
/// single frame), 256 → 512 channels (14 MiB of weights) the whole-sequence one. Each also with a
/// residual added as the output starts, against a separate addition, and with the first half of the
/// first frame's channels left out (what an upsampler drops), the rest exactly as before.
#[test]
fn cpu_conv_kernels_match_generic_path() {
    use kinograph_models::ltxv::vae::conv3d::{CausalConv3d, SpatialPadding};
    for (in_channels, out_channels, [frames, height, width]) in
        [(3, 4, [5, 6, 7]), (128, 16, [3, 9, 23]), (128, 16, [1, 9, 23]), (256, 512, [3, 4, 5])]
    {
        let weight = Tensor::randn(0f32, 0.2f32, (out_channels, in_channels, 3, 3, 3), &Device::Cpu).unwrap();
        let weight = (weight / (in_channels as f64).sqrt()).unwrap();
        let bias = Tensor::randn(0f32, 0.1f32, out_channels, &Device::Cpu).unwrap();
        let tensors = HashMap::from([("conv.weight".to_string(), weight), ("conv.bias".to_string(), bias)]);
        let build = |dtype| {
            let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &Device::Cpu);
            CausalConv3d::new(in_channels, out_channels, 3, [1, 1, 1], SpatialPadding::Zeros, &vb).unwrap()
        };
        let (fast, generic) = (build(DType::F32), build(DType::F64));
        let x = Tensor::randn(0f32, 1f32, (2, in_channels, frames, height, width), &Device::Cpu).unwrap();
        for causal in [true, false] {
            let ours = fast.forward(&x, causal).unwrap();
            let reference =
                generic.forward(&x.to_dtype(DType::F64).unwrap(), causal).unwrap().to_dtype(DType::F32).unwrap();
            check(
                &format!("conv kernel {in_channels} → {out_channels} vs generic (causal {causal})"),
                &ours,
                &reference,
                1e-5,
            );
            // The resnet's shortcut added as the kernel starts its output.
            let residual = Tensor::randn(0f32, 1f32, ours.dims(), &Device::Cpu).unwrap();
            let plus = fast.forward_plus(&x, causal, &residual).unwrap();
            check("conv kernel plus residual", &plus, &(&ours + &residual).unwrap(), 1e-5);
            // An upsampler drops the first half of the channels of frame 0: they are left out, the rest
            // is unchanged.
            let half = out_channels / 2;
            let partial = fast.forward_unused_first(&x, causal, half).unwrap();
            let frames_out = ours.dim(2).unwrap();
            let kept = |t: &Tensor| t.narrow(1, half, half).unwrap().narrow(2, 0, 1).unwrap();
            check("conv kernel, unused first channels", &kept(&partial), &kept(&ours), 0.0);
            if frames_out > 1 {
                let later = |t: &Tensor| t.narrow(2, 1, frames_out - 1).unwrap();
                check("conv kernel, frames after the first", &later(&partial), &later(&ours), 0.0);
            }
        }
    }
}
