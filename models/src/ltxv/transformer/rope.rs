//! 3D rotary position embedding: diffusers' `LTXVideoRotaryPosEmbed` and `apply_rotary_emb`
//! (`precompute_freqs_cis` / `apply_rotary_emb` in the original code): diffusers 0.42.1
//! `models/transformers/transformer_ltx.py`, Lightricks/LTX-Video 0.9.8
//! `ltx_video/models/transformers/transformer3d.py`.
//!
//! Each token has fractional (time, height, width) coordinates in about [0, 1). For frequency `k` of
//! `F = dim / 6` and axis `a` the angle is `base_k · (2·frac_a − 1)` with `base_k = θ^(k/(F−1))·π/2`; the
//! angles are laid out `k·3 + a`, each used for one interleaved pair, after `dim mod 6` identity channels.
//! Everything is computed in f32 with torch's rounding points (see the fixture README on why the
//! 2048-wide tables can only match torch to about 1e-3).

use super::config::LtxvTransformerConfig;
use candle_core::{DType, Device, Result, Tensor};

/// Where the tokens sit, for the rotary embedding.
#[derive(Debug, Clone)]
pub enum RopePositions {
    /// A full latent grid of `frames × height × width` tokens (token `n = (f·H + h)·W + w`) scaled by
    /// `interpolation_scale` = (vae temporal ratio / frame rate, 32, 32): diffusers' text- and
    /// image-to-video pipelines, which apply no causal fix.
    Grid { frames: usize, height: usize, width: usize, interpolation_scale: [f32; 3] },
    /// Explicit `video_coords` `[B, 3, N]`: (pixel time / frame rate, pixel row, pixel column) per token,
    /// as the original pipeline, ComfyUI and `LTXConditionPipeline` pass them. See
    /// [`pixel_video_coords`].
    Coords(Tensor),
}

impl RopePositions {
    /// The diffusers text-to-video positions at `frame_rate` (scale `(8 / frame_rate, 32, 32)`).
    pub fn grid(frames: usize, height: usize, width: usize, frame_rate: f32) -> Self {
        RopePositions::Grid { frames, height, width, interpolation_scale: [8.0 / frame_rate, 32.0, 32.0] }
    }
}

/// `video_coords` `[batch, 3, F·H·W]` of a latent grid in pixel units, as `LTXConditionPipeline` builds
/// them: time `8f` (with the causal fix `max(0, 8f + 1 − 8)`) times `1 / frame_rate`, rows `32h`, columns
/// `32w`.
pub fn pixel_video_coords(
    batch: usize,
    frames: usize,
    height: usize,
    width: usize,
    frame_rate: f32,
    causal_fix: bool,
    device: &Device,
) -> Result<Tensor> {
    let tokens = frames * height * width;
    let inverse_rate = (1.0 / f64::from(frame_rate)) as f32;
    let mut coords = vec![0f32; 3 * tokens];
    for f in 0..frames {
        let pixel_frame = if causal_fix { (8 * f + 1).saturating_sub(8) } else { 8 * f };
        for h in 0..height {
            for w in 0..width {
                let n = (f * height + h) * width + w;
                coords[n] = pixel_frame as f32 * inverse_rate;
                coords[tokens + n] = (32 * h) as f32;
                coords[2 * tokens + n] = (32 * w) as f32;
            }
        }
    }
    Tensor::from_vec(coords, (1, 3, tokens), device)?.repeat((batch, 1, 1))
}

/// The cos/sin tables of one forward pass, half width: `[B, N, dim / 2]`, one entry per interleaved pair.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// Cosines, `[B, N, dim / 2]`.
    pub cos: Tensor,
    /// Sines, `[B, N, dim / 2]`.
    pub sin: Tensor,
}

impl RopeTables {
    /// From full-width tables `[B, N, dim]` as diffusers returns them (each value repeated for its pair).
    pub fn from_full(cos: &Tensor, sin: &Tensor) -> Result<Self> {
        let half = |t: &Tensor| -> Result<Tensor> {
            let (b, n, d) = t.dims3()?;
            t.reshape((b, n, d / 2, 2))?.narrow(3, 0, 1)?.reshape((b, n, d / 2))?.contiguous()
        };
        Ok(RopeTables { cos: half(cos)?, sin: half(sin)? })
    }

    /// The full-width tables `[B, N, dim]` (each value repeated for its pair), as diffusers returns them.
    pub fn to_full(&self) -> Result<(Tensor, Tensor)> {
        let full = |t: &Tensor| -> Result<Tensor> {
            let (b, n, h) = t.dims3()?;
            t.unsqueeze(3)?.repeat((1, 1, 1, 2))?.reshape((b, n, 2 * h))
        };
        Ok((full(&self.cos)?, full(&self.sin)?))
    }

    /// Rotates `x` `[B, N, dim]` pair by pair: `(x0·cos − x1·sin, x1·cos + x0·sin)`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let x = x.contiguous()?.reshape((b, 1, n, d))?;
        candle_nn::rotary_emb::rope_i(&x, &self.cos, &self.sin)?.reshape((b, n, d))
    }
}

/// `LTXVideoRotaryPosEmbed`.
#[derive(Debug, Clone)]
pub struct RotaryPosEmbed {
    dim: usize,
    theta: f32,
    base: [f32; 3],
    patch_size: usize,
    patch_size_t: usize,
}

impl RotaryPosEmbed {
    /// For the config's inner width.
    pub fn new(config: &LtxvTransformerConfig) -> Self {
        RotaryPosEmbed {
            dim: config.inner_dim(),
            theta: config.rope_theta,
            base: config.rope_base,
            patch_size: config.patch_size,
            patch_size_t: config.patch_size_t,
        }
    }

    /// For an explicit width with the released constants (θ = 10000, bases 20/2048/2048, patch 1).
    pub fn with_dim(dim: usize) -> Self {
        RotaryPosEmbed { dim, theta: 10_000.0, base: [20.0, 2048.0, 2048.0], patch_size: 1, patch_size_t: 1 }
    }

    /// The cos/sin tables for `batch` sequences at `positions`.
    pub fn tables(&self, batch: usize, positions: &RopePositions, device: &Device) -> Result<RopeTables> {
        let fractions = self.fractions(batch, positions)?;
        self.tables_from_fractions(batch, &fractions, device)
    }

    /// Fractional coordinates, `[batch][token][axis]` flattened.
    fn fractions(&self, batch: usize, positions: &RopePositions) -> Result<Vec<f32>> {
        match positions {
            RopePositions::Grid { frames, height, width, interpolation_scale } => {
                let scale = [
                    (interpolation_scale[0], self.patch_size_t),
                    (interpolation_scale[1], self.patch_size),
                    (interpolation_scale[2], self.patch_size),
                ];
                // grid · scale · patch / base, rounded after each operation as in f32 torch.
                let axis = |index: usize, a: usize| -> f32 {
                    let (s, patch) = scale[a];
                    ((index as f32 * s) * patch as f32) / self.base[a]
                };
                let mut one = Vec::with_capacity(frames * height * width * 3);
                for f in 0..*frames {
                    for h in 0..*height {
                        for w in 0..*width {
                            one.extend([axis(f, 0), axis(h, 1), axis(w, 2)]);
                        }
                    }
                }
                Ok(one.repeat(batch))
            }
            RopePositions::Coords(coords) => {
                let (b, axes, tokens) = coords.dims3()?;
                if b != batch || axes != 3 {
                    candle_core::bail!("video_coords must be [batch={batch}, 3, N], got {:?}", coords.dims());
                }
                let values = coords.to_dtype(DType::F32)?.transpose(1, 2)?.flatten_all()?.to_vec1::<f32>()?;
                debug_assert_eq!(values.len(), b * tokens * 3);
                Ok(values.chunks_exact(3).flat_map(|c| (0..3).map(move |a| c[a] / self.base[a])).collect())
            }
        }
    }

    /// The frequencies `θ^linspace(0, 1, F)·π/2` rounded as torch rounds them: torch's two-sided `linspace`
    /// (each value rounded once), then a correctly rounded power, then `·π` and `/2` in f32.
    pub fn frequencies(&self) -> Vec<f32> {
        let count = self.dim / 6;
        let step = if count > 1 { 1.0_f32 / (count - 1) as f32 } else { 0.0 };
        (0..count)
            .map(|i| {
                let exponent =
                    if i < count / 2 { step * i as f32 } else { (-step).mul_add((count - 1 - i) as f32, 1.0) };
                let power = f64::from(self.theta).powf(f64::from(exponent)) as f32;
                (power * std::f32::consts::PI) / 2.0
            })
            .collect()
    }

    fn tables_from_fractions(&self, batch: usize, fractions: &[f32], device: &Device) -> Result<RopeTables> {
        let frequencies = self.frequencies();
        let half = self.dim / 2;
        let pad_pairs = (self.dim % 6) / 2;
        let tokens = fractions.len() / 3 / batch.max(1);
        let mut cos = Vec::with_capacity(batch * tokens * half);
        let mut sin = Vec::with_capacity(batch * tokens * half);
        for token in fractions.chunks_exact(3) {
            cos.extend(std::iter::repeat_n(1.0_f32, pad_pairs));
            sin.extend(std::iter::repeat_n(0.0_f32, pad_pairs));
            for &frequency in &frequencies {
                for &fraction in token {
                    let angle = f64::from(frequency * (fraction * 2.0 - 1.0));
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = (batch, tokens, half);
        Ok(RopeTables { cos: Tensor::from_vec(cos, shape, device)?, sin: Tensor::from_vec(sin, shape, device)? })
    }
}
