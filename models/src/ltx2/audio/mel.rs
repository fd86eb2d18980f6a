//! The audio VAE's front end: waveform → log-mel spectrogram `[B, C, frames, 64]`, as the official
//! `ltx_core` `AudioProcessor` computes it (and ComfyUI's `AudioPreprocessor`, through `comfy.audio`):
//!
//! 1. resample to 16 kHz with torchaudio's `resample` (Hann-windowed sinc, 6 zero crossings, roll-off 0.99);
//! 2. STFT, `n_fft` 1024, Hann window (periodic) of 1024, hop 160, centred with reflection padding;
//! 3. magnitude (power 1) through 64 Slaney-scale, Slaney-normalised mel filters from 0 to 8 kHz;
//! 4. `log(max(mel, 1e-5))`.
//!
//! diffusers 0.42.1 has no waveform encoder for LTX-2. Everything here runs in f64 on the CPU (a few
//! milliseconds per second of audio); the result is f32 on the input's device.

use candle_core::{DType, Device, Result, Tensor};
use std::f64::consts::PI;

/// Parameters of the log-mel front end.
#[derive(Debug, Clone, PartialEq)]
pub struct MelConfig {
    /// Sample rate the spectrogram is computed at (16000).
    pub sample_rate: u32,
    /// FFT size (1024).
    pub n_fft: usize,
    /// Hann window length, centred in the FFT frame (1024).
    pub win_length: usize,
    /// Hop between frames (160).
    pub hop_length: usize,
    /// Mel bins (64).
    pub mel_bins: usize,
    /// Lowest filter frequency in Hz (0).
    pub f_min: f64,
    /// Highest filter frequency in Hz (8000).
    pub f_max: f64,
}

impl MelConfig {
    /// The released LTX-2 front end.
    pub fn ltx2() -> Self {
        super::config::AudioVaeConfig::ltx2().mel()
    }
}

/// Slaney's mel scale (linear below 1 kHz, logarithmic above).
fn hz_to_mel(hz: f64) -> f64 {
    if hz < 1000.0 { hz * 3.0 / 200.0 } else { 15.0 + (hz / 1000.0).ln() * 27.0 / 6.4_f64.ln() }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel < 15.0 { mel * 200.0 / 3.0 } else { 1000.0 * ((mel - 15.0) * 6.4_f64.ln() / 27.0).exp() }
}

/// Triangular Slaney filters with Slaney (area) normalisation, `[mel_bins][n_fft/2 + 1]`
/// (torchaudio `melscale_fbanks(mel_scale="slaney", norm="slaney")`, transposed).
pub fn slaney_filterbank(config: &MelConfig) -> Vec<Vec<f64>> {
    let bins = config.n_fft / 2 + 1;
    let nyquist = f64::from(config.sample_rate) / 2.0;
    let frequency = |k: usize| if bins == 1 { 0.0 } else { nyquist * k as f64 / (bins - 1) as f64 };
    let (low, high) = (hz_to_mel(config.f_min), hz_to_mel(config.f_max));
    let points: Vec<f64> = (0..config.mel_bins + 2)
        .map(|i| mel_to_hz(low + (high - low) * i as f64 / (config.mel_bins + 1) as f64))
        .collect();
    (0..config.mel_bins)
        .map(|m| {
            let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
            let area = 2.0 / (right - left);
            (0..bins)
                .map(|k| {
                    let f = frequency(k);
                    let rising = (f - left) / (centre - left);
                    let falling = (right - f) / (right - centre);
                    rising.min(falling).max(0.0) * area
                })
                .collect()
        })
        .collect()
}

/// torchaudio's `resample(waveform, from, to)` with its defaults, on one channel, in f64.
pub fn resample_channel(samples: &[f64], from: u32, to: u32) -> Vec<f64> {
    if from == to {
        return samples.to_vec();
    }
    let divisor = gcd(from as usize, to as usize);
    let (orig, new) = (from as usize / divisor, to as usize / divisor);
    let (zero_crossings, rolloff) = (6.0, 0.99);
    let base = orig.min(new) as f64 * rolloff;
    let width = (zero_crossings * orig as f64 / base).ceil() as usize;
    let taps = 2 * width + orig;
    // kernel[phase][k] for output phase `phase` and input offset k − width.
    let kernel: Vec<Vec<f64>> = (0..new)
        .map(|phase| {
            (0..taps)
                .map(|k| {
                    let t = ((k as f64 - width as f64) / orig as f64 - phase as f64 / new as f64) * base;
                    let t = t.clamp(-zero_crossings, zero_crossings);
                    let window = (t * PI / zero_crossings / 2.0).cos().powi(2);
                    let sinc = if t == 0.0 { 1.0 } else { (t * PI).sin() / (t * PI) };
                    sinc * window * base / orig as f64
                })
                .collect()
        })
        .collect();
    let length = samples.len();
    let target = (new * length).div_ceil(orig);
    (0..target)
        .map(|n| {
            let (frame, phase) = (n / new, n % new);
            // Input index of tap k: frame·orig + k − width (zeros outside).
            let start = (frame * orig) as isize - width as isize;
            kernel[phase]
                .iter()
                .enumerate()
                .filter_map(|(k, &tap)| {
                    let index = start + k as isize;
                    (index >= 0 && (index as usize) < length).then(|| tap * samples[index as usize])
                })
                .sum()
        })
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resamples `waveform` `[B, C, N]` from `from` Hz to `to` Hz (torchaudio's `resample`): `[B, C, ⌈N·to/from⌉]`.
pub fn resample(waveform: &Tensor, from: u32, to: u32) -> Result<Tensor> {
    if from == 0 || to == 0 {
        candle_core::bail!("resample: sample rates must be positive (got {from} Hz → {to} Hz)");
    }
    let (batch, channels, _) = waveform.dims3()?;
    let rows = channels_f64(waveform)?;
    let out: Vec<Vec<f64>> = rows.iter().map(|row| resample_channel(row, from, to)).collect();
    let length = out.first().map_or(0, Vec::len);
    let flat: Vec<f32> = out.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_vec(flat, (batch, channels, length), &Device::Cpu)?.to_device(waveform.device())
}

/// The rows of a `[B, C, N]` tensor as f64.
fn channels_f64(waveform: &Tensor) -> Result<Vec<Vec<f64>>> {
    let (_, _, length) = waveform.dims3()?;
    let flat: Vec<f32> = waveform.to_dtype(DType::F32)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
    Ok(flat.chunks(length.max(1)).map(|row| row.iter().map(|&v| f64::from(v)).collect()).collect())
}

/// A radix-2 FFT of fixed size, or a plain DFT for other sizes.
#[derive(Debug, Clone)]
struct Fourier {
    size: usize,
    /// `e^(−2πik/size)` for `k < size`.
    twiddles: Vec<(f64, f64)>,
}

impl Fourier {
    fn new(size: usize) -> Self {
        let twiddles = (0..size).map(|k| (-2.0 * PI * k as f64 / size as f64).sin_cos()).map(|(s, c)| (c, s)).collect();
        Fourier { size, twiddles }
    }

    /// Magnitudes of bins `0..=size/2` of the real frame `input`.
    fn magnitudes(&self, input: &[f64]) -> Vec<f64> {
        let n = self.size;
        let bins = n / 2 + 1;
        if !n.is_power_of_two() {
            return (0..bins)
                .map(|k| {
                    let (re, im) = input.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, &x)| {
                        let (c, s) = self.twiddles[(k * t) % n];
                        (re + x * c, im + x * s)
                    });
                    re.hypot(im)
                })
                .collect();
        }
        let bits = n.trailing_zeros();
        let mut data: Vec<(f64, f64)> = vec![(0.0, 0.0); n];
        for (i, &x) in input.iter().enumerate() {
            let j = if bits == 0 { 0 } else { i.reverse_bits() >> (usize::BITS - bits) };
            data[j] = (x, 0.0);
        }
        let mut span = 1;
        while span < n {
            let step = n / (2 * span);
            for block in (0..n).step_by(2 * span) {
                for j in 0..span {
                    let (c, s) = self.twiddles[j * step];
                    let (re, im) = data[block + j + span];
                    let product = (re * c - im * s, re * s + im * c);
                    let even = data[block + j];
                    data[block + j] = (even.0 + product.0, even.1 + product.1);
                    data[block + j + span] = (even.0 - product.0, even.1 - product.1);
                }
            }
            span *= 2;
        }
        data[..bins].iter().map(|(re, im)| re.hypot(*im)).collect()
    }
}

/// The log-mel front end for one configuration.
#[derive(Debug, Clone)]
pub struct MelSpectrogram {
    config: MelConfig,
    /// The Hann window centred in an `n_fft` frame.
    window: Vec<f64>,
    filterbank: Vec<Vec<f64>>,
    fourier: Fourier,
}

impl MelSpectrogram {
    /// Builds the window, the filters and the FFT for `config`.
    pub fn new(config: MelConfig) -> Result<Self> {
        if config.n_fft == 0 || config.hop_length == 0 || config.win_length > config.n_fft || config.mel_bins == 0 {
            candle_core::bail!("mel front end: invalid configuration {config:?}");
        }
        let offset = (config.n_fft - config.win_length) / 2;
        let mut window = vec![0.0; config.n_fft];
        for n in 0..config.win_length {
            window[offset + n] = 0.5 - 0.5 * (2.0 * PI * n as f64 / config.win_length as f64).cos();
        }
        let filterbank = slaney_filterbank(&config);
        let fourier = Fourier::new(config.n_fft);
        Ok(MelSpectrogram { config, window, filterbank, fourier })
    }

    /// The configuration.
    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// Frames of a signal of `samples` samples at the front end's rate: `1 + samples / hop`.
    pub fn frames(&self, samples: usize) -> usize {
        1 + samples / self.config.hop_length
    }

    /// `waveform` `[B, C, N]` at `sample_rate` Hz → log-mel `[B, C, frames, mel_bins]` (f32, on the
    /// waveform's device). The signal must be longer than half an FFT frame at the front end's rate (the
    /// centred STFT reflects that many samples at each end).
    pub fn log_mel(&self, waveform: &Tensor, sample_rate: u32) -> Result<Tensor> {
        if sample_rate == 0 {
            candle_core::bail!("mel front end: the sample rate must be positive");
        }
        let (batch, channels, samples) = waveform.dims3()?;
        if batch * channels * samples == 0 {
            candle_core::bail!("mel front end: the waveform {:?} is empty", waveform.dims());
        }
        let rows = channels_f64(waveform)?;
        let half = self.config.n_fft / 2;
        let mut out = Vec::new();
        let mut frames = 0;
        for row in &rows {
            let signal = resample_channel(row, sample_rate, self.config.sample_rate);
            if signal.len() <= half {
                candle_core::bail!(
                    "mel front end: {} samples at {} Hz is too short; the centred STFT needs more than {half}",
                    signal.len(),
                    self.config.sample_rate
                );
            }
            frames = self.frames(signal.len());
            out.extend(self.log_mel_channel(&signal).into_iter().map(|v| v as f32));
        }
        Tensor::from_vec(out, (batch, channels, frames, self.config.mel_bins), &Device::Cpu)?
            .to_device(waveform.device())
    }

    /// One channel at the front end's rate → `frames × mel_bins` values, frame-major.
    fn log_mel_channel(&self, signal: &[f64]) -> Vec<f64> {
        let (n_fft, hop, half) = (self.config.n_fft, self.config.hop_length, self.config.n_fft / 2);
        let last = signal.len() as isize - 1;
        // Reflection about the first and last samples, as torch's "reflect" padding.
        let reflect = |i: isize| -> f64 {
            let i = if i < 0 { -i } else { i };
            let i = if i > last { 2 * last - i } else { i };
            signal[i as usize]
        };
        let mut frame = vec![0.0; n_fft];
        let mut out = Vec::with_capacity(self.frames(signal.len()) * self.config.mel_bins);
        for t in 0..self.frames(signal.len()) {
            let start = (t * hop) as isize - half as isize;
            for (n, value) in frame.iter_mut().enumerate() {
                *value = reflect(start + n as isize) * self.window[n];
            }
            let magnitudes = self.fourier.magnitudes(&frame);
            out.extend(self.filterbank.iter().map(|filter| {
                let mel: f64 = filter.iter().zip(&magnitudes).map(|(w, m)| w * m).sum();
                mel.max(1e-5).ln()
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_matches_the_plain_dft() {
        let signal: Vec<f64> = (0..64).map(|n| ((n * n) as f64 * 0.37).sin()).collect();
        let fast = Fourier::new(64).magnitudes(&signal);
        let slow = Fourier::new(64);
        // Force the plain DFT by evaluating it directly.
        let direct: Vec<f64> = (0..33)
            .map(|k| {
                let (re, im) = signal.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, &x)| {
                    let (c, s) = slow.twiddles[(k * t) % 64];
                    (re + x * c, im + x * s)
                });
                re.hypot(im)
            })
            .collect();
        for (a, b) in fast.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-9);
        }
        let odd = Fourier::new(5).magnitudes(&[1.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(odd.iter().all(|m| (m - 1.0).abs() < 1e-12));
    }

    #[test]
    fn resampling_keeps_a_low_tone() {
        let tone: Vec<f64> = (0..4410).map(|n| (2.0 * PI * 440.0 * n as f64 / 44_100.0).sin()).collect();
        let out = resample_channel(&tone, 44_100, 16_000);
        assert_eq!(out.len(), 1600);
        for (n, value) in out.iter().enumerate().take(1500).skip(100) {
            let expected = (2.0 * PI * 440.0 * n as f64 / 16_000.0).sin();
            assert!((value - expected).abs() < 1e-2, "sample {n}");
        }
    }
}
