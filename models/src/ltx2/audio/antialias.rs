//! BigVGAN's anti-aliased periodic activations and the LTX-2.3 ×3 resampler: diffusers 0.42.1
//! `pipelines/ltx2/vocoder.py` (`kaiser_sinc_filter1d`, `UpSample1d`, `DownSample1d`, `SnakeBeta`,
//! `AntiAliasAct1d`), ComfyUI `comfy/ldm/lightricks/vocoders/vocoder.py` (`Activation1d`, `LowPassFilter1d`).
//!
//! An anti-aliased activation upsamples ×2 with a 12-tap Kaiser-windowed sinc (a transposed conv over the
//! replicate-padded signal, times 2), applies `SnakeBeta` (`x + sin²(x·e^a) / (e^b + 1e-9)`), and filters
//! back down ×2 with the same kind of low-pass (a strided conv over the replicate-padded signal). On the CPU
//! the three run fused, one channel row at a time, without materialising the doubled-rate tensor; other
//! devices copy the rows to the CPU and back.
//!
//! The filters are persistent buffers in the released files (`…upsample.filter`,
//! `…downsample.lowpass.filter`); when a file has them they are used as stored (bf16 there), otherwise
//! they are computed here. The Hann-windowed sinc of the ×3 resampler is never stored.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

/// Rows of at most this many samples are not split across threads.
const MIN_SAMPLES_PER_THREAD: usize = 1 << 14;

/// Modified Bessel function of the first kind, order 0 (power series; converges for the β used here).
fn bessel_i0(x: f64) -> f64 {
    let quarter_square = x * x / 4.0;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..200 {
        term *= quarter_square / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// `sin(πx) / (πx)`, 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) }
}

/// BigVGAN's Kaiser-windowed sinc low-pass (`kaiser_sinc_filter1d`): `cutoff` and `half_width` are
/// fractions of the sampling rate; the taps sum to 1.
pub fn kaiser_sinc_filter(cutoff: f64, half_width: f64, kernel_size: usize) -> Vec<f32> {
    let half = kernel_size / 2;
    let attenuation = 2.285 * (half as f64 - 1.0) * std::f64::consts::PI * 4.0 * half_width + 7.95;
    let beta = if attenuation > 50.0 {
        0.1102 * (attenuation - 8.7)
    } else if attenuation >= 21.0 {
        0.5842 * (attenuation - 21.0).powf(0.4) + 0.07886 * (attenuation - 21.0)
    } else {
        0.0
    };
    if cutoff == 0.0 {
        return vec![0.0; kernel_size];
    }
    // torch.kaiser_window(periodic=False): I0(β·√(1 − (2n/(N−1) − 1)²)) / I0(β).
    let span = (kernel_size.max(2) - 1) as f64;
    let taps: Vec<f64> = (0..kernel_size)
        .map(|n| {
            let ratio = 2.0 * n as f64 / span - 1.0;
            let window = bessel_i0(beta * (1.0 - ratio * ratio).max(0.0).sqrt()) / bessel_i0(beta);
            let time =
                if kernel_size.is_multiple_of(2) { n as f64 - half as f64 + 0.5 } else { n as f64 - half as f64 };
            2.0 * cutoff * window * sinc(2.0 * cutoff * time)
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.iter().map(|t| (t / sum) as f32).collect()
}

/// The Hann-windowed sinc of the ×`ratio` resampler (`UpSample1d(window_type="hann")`, torchaudio's
/// defaults: 6 zero crossings, roll-off 0.99): `2·⌈6/0.99⌉·ratio + 1` taps.
pub fn hann_sinc_filter(ratio: usize) -> Vec<f32> {
    let (rolloff, zero_crossings): (f64, f64) = (0.99, 6.0);
    let width = (zero_crossings / rolloff).ceil() as usize;
    let kernel_size = 2 * width * ratio + 1;
    (0..kernel_size)
        .map(|n| {
            let time = (n as f64 / ratio as f64 - width as f64) * rolloff;
            let clamped = time.clamp(-zero_crossings, zero_crossings);
            let window = (clamped * std::f64::consts::PI / zero_crossings / 2.0).cos().powi(2);
            (sinc(time) * window * rolloff / ratio as f64) as f32
        })
        .collect()
}

/// `y += a · x`, element by element (vectorised by the compiler).
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `row` with `left` copies of its first sample before it and `right` copies of its last after it.
fn replicate_pad(row: &[f32], left: usize, right: usize) -> Vec<f32> {
    let (first, last) = (row[0], row[row.len() - 1]);
    let mut padded = Vec::with_capacity(left + row.len() + right);
    padded.extend(std::iter::repeat_n(first, left));
    padded.extend_from_slice(row);
    padded.extend(std::iter::repeat_n(last, right));
    padded
}

/// ×`ratio` upsampling by a transposed conv over the replicate-padded row (`UpSample1d`), computed as
/// `ratio` polyphase correlations: output sample `ratio·t + phase` is `ratio · Σ_i f[p + ratio·i] ·
/// padded[t + offset − i]` for that phase's `p` and `offset`.
#[derive(Debug, Clone)]
pub struct Upsampler {
    ratio: usize,
    /// Replicated samples on each side of the input.
    pad: usize,
    /// Per output phase: (offset into the padded row, coefficient) of each tap.
    phases: Vec<Vec<(usize, f32)>>,
}

impl Upsampler {
    /// The upsampler of `filter`, dropping the first `trim` samples of the transposed conv's output.
    fn with_filter(filter: &[f32], ratio: usize, pad: usize, trim: usize) -> Self {
        let phases = (0..ratio)
            .map(|phase| {
                let (base, first) = ((phase + trim) / ratio, (phase + trim) % ratio);
                (first..filter.len())
                    .step_by(ratio)
                    .enumerate()
                    .filter(|&(i, _)| i <= base)
                    .map(|(i, k)| (base - i, ratio as f32 * filter[k]))
                    .collect()
            })
            .collect();
        Upsampler { ratio, pad, phases }
    }

    /// BigVGAN's Kaiser variant (`window_type="kaiser"`), with `filter` (computed when `None`).
    pub fn kaiser(ratio: usize, kernel_size: usize, filter: Option<Vec<f32>>) -> Self {
        let filter = filter.unwrap_or_else(|| kaiser_sinc_filter(0.5 / ratio as f64, 0.6 / ratio as f64, kernel_size));
        let pad = kernel_size / ratio - 1;
        Self::with_filter(&filter, ratio, pad, pad * ratio + (kernel_size - ratio) / 2)
    }

    /// The Hann-windowed resampler of the bandwidth extension (`window_type="hann"`).
    pub fn hann(ratio: usize) -> Self {
        let filter = hann_sinc_filter(ratio);
        let width = (filter.len() - 1) / (2 * ratio);
        Self::with_filter(&filter, ratio, width, 2 * width * ratio)
    }

    /// `input` (one row) → `output` (`ratio` × as long).
    fn row(&self, input: &[f32], output: &mut [f32]) {
        let length = input.len();
        let padded = replicate_pad(input, self.pad, self.pad);
        let mut phase_values = vec![0.0; length];
        for (phase, taps) in self.phases.iter().enumerate() {
            phase_values.fill(0.0);
            for &(offset, coefficient) in taps {
                axpy(&mut phase_values, coefficient, &padded[offset..offset + length]);
            }
            for (out, &value) in output[phase..].iter_mut().step_by(self.ratio).zip(&phase_values) {
                *out = value;
            }
        }
    }

    /// `x` `[B, C, L]` → `[B, C, ratio·L]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        map_rows(x, self.ratio, |_, input, output| self.row(input, output))
    }
}

/// ×`ratio` low-pass decimation over the replicate-padded row (`DownSample1d` / `LowPassFilter1d`), as
/// polyphase correlations over the even and odd samples.
#[derive(Debug, Clone)]
pub struct Downsampler {
    filter: Vec<f32>,
    ratio: usize,
    pad_left: usize,
    pad_right: usize,
}

impl Downsampler {
    /// BigVGAN's Kaiser low-pass, with `filter` (computed when `None`).
    pub fn kaiser(ratio: usize, kernel_size: usize, filter: Option<Vec<f32>>) -> Self {
        let filter = filter.unwrap_or_else(|| kaiser_sinc_filter(0.5 / ratio as f64, 0.6 / ratio as f64, kernel_size));
        let pad_left = kernel_size / 2 - usize::from(kernel_size.is_multiple_of(2));
        Downsampler { filter, ratio, pad_left, pad_right: kernel_size / 2 }
    }

    /// `input` (`ratio·n` samples) → `output` (`n`).
    fn row(&self, input: &[f32], output: &mut [f32]) {
        let padded = replicate_pad(input, self.pad_left, self.pad_right);
        output.fill(0.0);
        for phase in 0..self.ratio.min(self.filter.len()) {
            let samples: Vec<f32> = padded[phase..].iter().step_by(self.ratio).copied().collect();
            for (i, &tap) in self.filter[phase..].iter().step_by(self.ratio).enumerate() {
                axpy(output, tap, &samples[i..i + output.len()]);
            }
        }
    }
}

/// `sin²(x)`, vectorisable: Cody–Waite reduction by π (`x = kπ + r`, |r| ≤ π/2, and sin² has period π),
/// then the Taylor series of `sin r` to r¹³: within 3e-7 of the exact value (a few f32 roundings) while
/// |x| < 2¹³·π.
#[inline(always)]
fn sin_squared(x: f32) -> f32 {
    // π split so that k·PI_HIGH and k·PI_MIDDLE are exact for |k| < 2¹³ (few mantissa bits each).
    const PI_HIGH: f32 = 3.140_625;
    const PI_MIDDLE: f32 = 9.675_026e-4;
    const PI_LOW: f32 = 1.509_958e-7;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a branch or a libm call.
    const ROUND: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::FRAC_1_PI + ROUND) - ROUND;
    let r = ((x - k * PI_HIGH) - k * PI_MIDDLE) - k * PI_LOW;
    let r2 = r * r;
    let p = (((((1.605_904_4e-10 * r2 - 2.505_210_8e-8) * r2 + 2.755_731_9e-6) * r2 - 1.984_127e-4) * r2
        + 8.333_333e-3)
        * r2
        - 0.166_666_67)
        * r2;
    let sine = r + r * p;
    sine * sine
}

/// Largest |α·x| for which [`sin_squared`] is used (beyond it, the library sine).
const FAST_SINE_LIMIT: f32 = 25_000.0;

/// Per-channel snake parameters, already exponentiated: `x + inv_beta · sin²(alpha · x)`.
#[derive(Debug, Clone)]
pub struct Snake {
    alpha: Vec<f32>,
    inv_beta: Vec<f32>,
}

impl Snake {
    /// `SnakeBeta` (log-scale `alpha` and `beta`), or `Snake` when the file has no `beta` (1/α scaling).
    pub fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let exp = |name: &str| -> Result<Vec<f32>> { vb.get(channels, name)?.to_dtype(DType::F32)?.exp()?.to_vec1() };
        let alpha = exp("alpha")?;
        let amplitude = if vb.contains_tensor("beta") { exp("beta")? } else { alpha.clone() };
        Ok(Snake { alpha, inv_beta: amplitude.iter().map(|b| 1.0 / (b + 1e-9)).collect() })
    }

    fn apply(&self, channel: usize, values: &mut [f32]) {
        let (alpha, inv_beta) = (self.alpha[channel], self.inv_beta[channel]);
        let largest = values.iter().fold(0.0_f32, |m, v| m.max(v.abs())) * alpha.abs();
        if largest < FAST_SINE_LIMIT {
            for v in values {
                *v += inv_beta * sin_squared(*v * alpha);
            }
        } else {
            for v in values {
                let s = (*v * alpha).sin();
                *v += inv_beta * s * s;
            }
        }
    }
}

/// `AntiAliasAct1d` / `Activation1d` with a snake: upsample, snake, downsample.
#[derive(Debug, Clone)]
pub struct AntiAliasedSnake {
    up: Upsampler,
    snake: Snake,
    down: Downsampler,
}

/// Ratio and taps of the anti-aliasing filters in every released vocoder.
pub const ANTIALIAS_RATIO: usize = 2;
/// Taps of the anti-aliasing filters.
pub const ANTIALIAS_KERNEL: usize = 12;

impl AntiAliasedSnake {
    /// Reads `act.alpha` (`act.beta`) and, when stored, `upsample.filter` and `downsample.lowpass.filter`.
    pub fn new(channels: usize, vb: &VarBuilder<'_>) -> Result<Self> {
        let filter = |name: &str| -> Result<Option<Vec<f32>>> {
            let vb = vb.pp(name);
            if vb.contains_tensor("filter") {
                Ok(Some(vb.get((1, 1, ANTIALIAS_KERNEL), "filter")?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
            } else {
                Ok(None)
            }
        };
        Ok(AntiAliasedSnake {
            up: Upsampler::kaiser(ANTIALIAS_RATIO, ANTIALIAS_KERNEL, filter("upsample")?),
            snake: Snake::new(channels, &vb.pp("act"))?,
            down: Downsampler::kaiser(ANTIALIAS_RATIO, ANTIALIAS_KERNEL, filter("downsample.lowpass")?),
        })
    }

    /// `x` `[B, C, L]` → `[B, C, L]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let channels = x.dim(1)?;
        if channels != self.snake.alpha.len() {
            candle_core::bail!(
                "anti-aliased snake: input has {channels} channels, expected {}",
                self.snake.alpha.len()
            );
        }
        let ratio = self.up.ratio;
        map_rows(x, 1, |row, input, output| {
            let mut high = vec![0.0; input.len() * ratio];
            self.up.row(input, &mut high);
            self.snake.apply(row % channels, &mut high);
            self.down.row(&high, output);
        })
    }
}

/// Applies `work(row index, input row, output row)` to every row of `x` `[B, C, L]`, producing rows
/// `factor` times as long, in f32 on the CPU (threads over rows), and returns the result on `x`'s device.
fn map_rows(x: &Tensor, factor: usize, work: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Result<Tensor> {
    let (batch, channels, length) = x.dims3()?;
    if length == 0 || batch * channels == 0 {
        candle_core::bail!("cannot filter an empty signal of shape {:?}", x.dims());
    }
    let input = x.to_dtype(DType::F32)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
    let out_length = length * factor;
    let mut output = vec![0.0; batch * channels * out_length];
    let rows = batch * channels;
    let threads =
        candle_core::utils::get_num_threads().clamp(1, rows).min((rows * out_length).div_ceil(MIN_SAMPLES_PER_THREAD));
    let rows_per_thread = rows.div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        for (piece, outputs) in output.chunks_mut(rows_per_thread * out_length).enumerate() {
            let (input, work) = (&input, &work);
            scope.spawn(move || {
                for (offset, out_row) in outputs.chunks_exact_mut(out_length).enumerate() {
                    let row = piece * rows_per_thread + offset;
                    work(row, &input[row * length..(row + 1) * length], out_row);
                }
            });
        }
    });
    Tensor::from_vec(output, (batch, channels, out_length), &Device::Cpu)?.to_device(x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiser_filter_is_symmetric_and_normalised() {
        let filter = kaiser_sinc_filter(0.25, 0.3, 12);
        assert_eq!(filter.len(), 12);
        assert!((filter.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for k in 0..6 {
            assert!((filter[k] - filter[11 - k]).abs() < 1e-7);
        }
    }

    #[test]
    fn sin_squared_matches_the_library_sine() {
        for n in -30_000..30_000 {
            let x = n as f32 * 0.0137;
            let expected = f64::from(x).sin().powi(2);
            assert!((f64::from(sin_squared(x)) - expected).abs() < 3e-7, "x = {x}");
        }
        for x in [8000.0_f32, -12_345.678, 24_999.0] {
            assert!((f64::from(sin_squared(x)) - f64::from(x).sin().powi(2)).abs() < 1e-6, "x = {x}");
        }
    }

    /// The transposed conv written out: every padded sample scattered through the filter.
    fn scattered(input: &[f32], filter: &[f32], ratio: usize, pad: usize, trim: usize) -> Vec<f32> {
        let mut output = vec![0.0; input.len() * ratio];
        let padded = replicate_pad(input, pad, pad);
        for (j, &value) in padded.iter().enumerate() {
            for (k, &tap) in filter.iter().enumerate() {
                let index = (j * ratio + k) as isize - trim as isize;
                if index >= 0 && (index as usize) < output.len() {
                    output[index as usize] += ratio as f32 * value * tap;
                }
            }
        }
        output
    }

    #[test]
    fn polyphase_upsampling_matches_the_transposed_conv() {
        let input: Vec<f32> = (0..37).map(|n| ((n * n) as f32 * 0.31).sin()).collect();
        let kaiser = kaiser_sinc_filter(0.25, 0.3, 12);
        let hann = hann_sinc_filter(3);
        for (upsampler, filter, ratio, pad, trim) in
            [(Upsampler::kaiser(2, 12, None), &kaiser, 2, 5, 15), (Upsampler::hann(3), &hann, 3, 7, 42)]
        {
            let mut output = vec![0.0; input.len() * ratio];
            upsampler.row(&input, &mut output);
            for (a, b) in output.iter().zip(scattered(&input, filter, ratio, pad, trim)) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn upsampling_then_downsampling_keeps_a_smooth_signal() {
        let signal: Vec<f32> = (0..64).map(|n| (n as f32 * 0.05).sin()).collect();
        let x = Tensor::from_vec(signal.clone(), (1, 1, 64), &Device::Cpu).unwrap();
        let up = Upsampler::kaiser(2, 12, None).forward(&x).unwrap();
        assert_eq!(up.dims(), &[1, 1, 128]);
        let down = Downsampler::kaiser(2, 12, None);
        let high: Vec<f32> = up.flatten_all().unwrap().to_vec1().unwrap();
        let mut low = vec![0.0; 64];
        down.row(&high, &mut low);
        for n in 8..56 {
            assert!((low[n] - signal[n]).abs() < 2e-2, "sample {n}: {} vs {}", low[n], signal[n]);
        }
        let tripled = Upsampler::hann(3).forward(&x).unwrap();
        assert_eq!(tripled.dims(), &[1, 1, 192]);
    }
}
