//! The rotary position embedding of LTX-2 in its "split" layout: diffusers 0.42.1
//! `LTX2AudioVideoRotaryPosEmbed` and `apply_split_rotary_emb` (`transformer_ltx2.py`), the text
//! connectors' 1-D variant (`pipelines/ltx2/connectors.py`), ComfyUI's `precompute_freqs_cis` with
//! `split_rope`.
//!
//! For `P` position axes and a table of width `dim`, the `F = dim / (2P)` base frequencies are
//! `θ^(k/(F−1))·π/2`, computed in f64 and rounded to f32; a token's angle for frequency `k` and axis `a`
//! is `b_k·(2·frac_a − 1)` in f32, where `frac_a` is its coordinate divided by the axis' maximum. The
//! angles are laid out `k·P + a`, after `dim/2 − F·P` identity entries at the front, and the `dim/2`
//! entries are split evenly across the heads: head `h` rotates its first half against its second half
//! with entries `[h·D/2, (h+1)·D/2)`.

use candle_core::{Device, Result, Tensor};

/// The cos/sin tables of one sequence layout, ready to rotate `[B, N, heads·head_dim]` activations.
#[derive(Debug, Clone)]
pub struct SplitRope {
    /// `[B, N·heads, head_dim/2]`.
    cos: Tensor,
    /// `[B, N·heads, head_dim/2]`.
    sin: Tensor,
    heads: usize,
}

impl SplitRope {
    /// Tables for `batch × tokens` positions, each with `axes` fractional coordinates (`fractions` in
    /// `[batch][token][axis]` order, already divided by the axis' maximum), for a `dim`-wide vector split
    /// into `heads` heads.
    pub fn from_fractions(
        fractions: &[f32],
        batch: usize,
        axes: usize,
        dim: usize,
        heads: usize,
        theta: f64,
        device: &Device,
    ) -> Result<Self> {
        if axes == 0
            || heads == 0
            || !dim.is_multiple_of(2 * heads)
            || !fractions.len().is_multiple_of((batch * axes).max(1))
        {
            candle_core::bail!(
                "rotary embedding: {} coordinates for {batch} sequences of {axes} axes, width {dim}, {heads} heads",
                fractions.len()
            );
        }
        let tokens = fractions.len() / (batch * axes).max(1);
        let frequencies = base_frequencies(dim / (2 * axes), theta);
        let half = dim / 2;
        let pad = half - frequencies.len() * axes;
        let mut cos = Vec::with_capacity(batch * tokens * half);
        let mut sin = Vec::with_capacity(batch * tokens * half);
        for token in fractions.chunks_exact(axes) {
            cos.extend(std::iter::repeat_n(1.0_f32, pad));
            sin.extend(std::iter::repeat_n(0.0_f32, pad));
            for &frequency in &frequencies {
                for &fraction in token {
                    let angle = f64::from((fraction * 2.0 - 1.0) * frequency);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = (batch, tokens * heads, half / heads);
        Ok(SplitRope { cos: Tensor::from_vec(cos, shape, device)?, sin: Tensor::from_vec(sin, shape, device)?, heads })
    }

    /// The tables as diffusers returns them: cos and sin `[B, heads, N, head_dim/2]`.
    pub fn to_diffusers(&self) -> Result<(Tensor, Tensor)> {
        let (batch, rows, half) = self.cos.dims3()?;
        let layout =
            |t: &Tensor| t.reshape((batch, rows / self.heads, self.heads, half))?.transpose(1, 2)?.contiguous();
        Ok((layout(&self.cos)?, layout(&self.sin)?))
    }

    /// Rotates `x` `[B, N, heads·head_dim]`: per head, `(x₁·cos − x₂·sin, x₂·cos + x₁·sin)` with `x₁`, `x₂`
    /// the two halves of the head.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let x = x.contiguous()?.reshape((b, 1, n * self.heads, d / self.heads))?;
        candle_nn::rotary_emb::rope(&x, &self.cos, &self.sin)?.reshape((b, n, d))
    }
}

/// `F` frequencies `θ^linspace(0, 1, F)·π/2`, in f64 (torch's two-sided `linspace`) and rounded to f32.
pub fn base_frequencies(count: usize, theta: f64) -> Vec<f32> {
    let step = if count > 1 { 1.0 / (count - 1) as f64 } else { 0.0 };
    (0..count)
        .map(|i| {
            let exponent = if i < count / 2 { step * i as f64 } else { 1.0 - step * (count - 1 - i) as f64 };
            (theta.powf(exponent) * std::f64::consts::PI / 2.0) as f32
        })
        .collect()
}

/// Fractional positions from `[start, end)` intervals: `[B, axes, N, 2]` coordinates → the midpoints
/// divided by `max_positions[axis]`, in `[batch][token][axis]` order, rounded as torch rounds them.
pub fn interval_fractions(coords: &Tensor, max_positions: &[f32]) -> Result<(Vec<f32>, usize)> {
    let (batch, axes, tokens, two) = coords.dims4()?;
    if two != 2 || axes != max_positions.len() {
        candle_core::bail!("positions must be [B, {}, N, 2] intervals, got {:?}", max_positions.len(), coords.dims());
    }
    let values = coords.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut fractions = Vec::with_capacity(batch * tokens * axes);
    for b in 0..batch {
        for n in 0..tokens {
            for (axis, max) in max_positions.iter().enumerate() {
                let at = ((b * axes + axis) * tokens + n) * 2;
                fractions.push(f32::midpoint(values[at], values[at + 1]) / max);
            }
        }
    }
    Ok((fractions, batch))
}
