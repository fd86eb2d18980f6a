//! Sigma schedules, computed in float32 the way ComfyUI computes them with torch, so that the same
//! settings give the same sigmas.

/// `torch.linspace(start, end, count)` in float32: the first half counts up from `start`, the second
/// half down from `end`, each with the float32 step (torch's CPU kernel).
pub fn linspace_f32(start: f32, end: f32, count: usize) -> Vec<f32> {
    match count {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (count - 1) as f32;
            let halfway = count / 2;
            (0..count)
                .map(|index| {
                    if index < halfway { start + step * index as f32 } else { end - step * (count - index - 1) as f32 }
                })
                .collect()
        }
    }
}

/// The settings of ComfyUI's `LTXVScheduler` node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LtxvSchedule {
    pub steps: usize,
    pub max_shift: f64,
    pub base_shift: f64,
    /// Stretch the schedule so that its last non-zero sigma is `terminal`.
    pub stretch: bool,
    pub terminal: f64,
}

/// Tokens assumed when no latent is connected (ComfyUI's default).
pub const LTXV_DEFAULT_TOKENS: usize = 4096;

/// The flow shift for a latent of `tokens` voxels: linear in the token count, `base_shift` at 1024 and
/// `max_shift` at 4096. ComfyUI's `LTXVScheduler` and `ModelSamplingLTXV` both use this line.
pub fn ltxv_shift(tokens: usize, max_shift: f64, base_shift: f64) -> f64 {
    let slope = (max_shift - base_shift) / (4096.0 - 1024.0);
    let intercept = base_shift - slope * 1024.0;
    tokens as f64 * slope + intercept
}

impl LtxvSchedule {
    /// The shift for a latent of `tokens` voxels ([`ltxv_shift`] with this schedule's shifts).
    pub fn shift(&self, tokens: usize) -> f64 {
        ltxv_shift(tokens, self.max_shift, self.base_shift)
    }

    /// `steps + 1` sigmas from 1 down to 0 for a latent of `tokens` voxels (`None`: no latent given).
    pub fn sigmas(&self, tokens: Option<usize>) -> Vec<f32> {
        let shift = self.shift(tokens.unwrap_or(LTXV_DEFAULT_TOKENS));
        // torch rounds the Python scalar e^shift to float32 before combining it with float32 tensors,
        // and computes `scalar / tensor` as `tensor.reciprocal() * scalar`.
        let exp_shift = shift.exp() as f32;
        let mut sigmas: Vec<f32> = linspace_f32(1.0, 0.0, self.steps + 1)
            .into_iter()
            .map(|sigma| if sigma == 0.0 { 0.0 } else { (1.0 / (exp_shift + (1.0 / sigma - 1.0))) * exp_shift })
            .collect();
        if self.stretch {
            let last = sigmas.iter().rev().find(|&&s| s != 0.0).copied();
            if let Some(last) = last {
                let scale = (1.0 - last) / (1.0 - self.terminal) as f32;
                for sigma in sigmas.iter_mut().filter(|s| **s != 0.0) {
                    // The stretch maps the last non-zero sigma to `terminal`. When that sigma is exactly 1
                    // (a single step), ComfyUI divides 0 by 0 and gets NaN; kinograph gives `terminal`,
                    // which is what ComfyUI returns when the sigma falls a hair below 1.
                    *sigma = if scale == 0.0 { self.terminal as f32 } else { 1.0 - ((1.0 - *sigma) / scale) };
                }
            }
        }
        sigmas
    }
}
