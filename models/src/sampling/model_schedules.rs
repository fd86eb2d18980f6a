//! ComfyUI's named schedulers (`BasicScheduler`, `KSampler`) over a flow model's sigma table, in float32
//! the way torch computes them. LTX-Video samples like Flux (`ModelSamplingFlux`): its table is
//! `σ(t) = e^shift / (e^shift + (1/t − 1))` at `t = 1/10000 … 1`, with shift 2.37.

use super::schedules::linspace_f32;

/// Timesteps in the model's sigma table (ComfyUI's `ModelSamplingFlux`).
const TABLE_SIZE: usize = 10_000;

/// Scheduler names, in ComfyUI's order. (`beta`, which needs the inverse of the regularised incomplete
/// beta function, is not implemented.)
pub const SCHEDULER_NAMES: [&str; 8] =
    ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "normal", "linear_quadratic", "kl_optimal"];

/// A flow model's sigma table.
#[derive(Debug, Clone)]
pub struct FlowSampling {
    exp_shift: f32,
    table: Vec<f32>,
}

impl FlowSampling {
    /// The table for `shift` (2.37 for LTX-Video).
    pub fn new(shift: f64) -> Self {
        let exp_shift = shift.exp() as f32;
        let mut sampling = FlowSampling { exp_shift, table: Vec::new() };
        sampling.table = (1..=TABLE_SIZE).map(|i| sampling.sigma(i as f32 / TABLE_SIZE as f32)).collect();
        sampling
    }

    /// `σ(t)`, as torch evaluates `e^shift / (e^shift + (1/t − 1) ** 1)` on float32 tensors
    /// (`scalar / tensor` is `tensor.reciprocal() * scalar`).
    pub fn sigma(&self, t: f32) -> f32 {
        (1.0 / (self.exp_shift + (1.0 / t - 1.0))) * self.exp_shift
    }

    /// The smallest sigma in the table.
    pub fn sigma_min(&self) -> f32 {
        self.table[0]
    }

    /// The largest sigma in the table.
    pub fn sigma_max(&self) -> f32 {
        self.table[TABLE_SIZE - 1]
    }

    /// `steps + 1` sigmas (or fewer, for `ddim_uniform`) of scheduler `name`; `None` for an unknown name.
    pub fn sigmas(&self, name: &str, steps: usize) -> Option<Vec<f32>> {
        let steps = steps.max(1);
        Some(match name {
            "simple" => self.simple(steps),
            "sgm_uniform" => self.normal(steps, true),
            "normal" => self.normal(steps, false),
            "karras" => karras(steps, f64::from(self.sigma_min()), f64::from(self.sigma_max())),
            "exponential" => exponential(steps, f64::from(self.sigma_min()), f64::from(self.sigma_max())),
            "ddim_uniform" => self.ddim_uniform(steps),
            "linear_quadratic" => self.linear_quadratic(steps),
            "kl_optimal" => kl_optimal(steps, f64::from(self.sigma_min()), f64::from(self.sigma_max())),
            _ => return None,
        })
    }

    fn simple(&self, steps: usize) -> Vec<f32> {
        let stride = TABLE_SIZE as f64 / steps as f64;
        let mut sigmas: Vec<f32> =
            (0..steps).map(|x| self.table[TABLE_SIZE - 1 - (x as f64 * stride) as usize]).collect();
        sigmas.push(0.0);
        sigmas
    }

    fn normal(&self, steps: usize, sgm: bool) -> Vec<f32> {
        let (start, end) = (self.sigma_max(), self.sigma_min());
        let mut append_zero = true;
        let timesteps = if sgm {
            let mut all = linspace_f32(start, end, steps + 1);
            all.pop();
            all
        } else {
            let mut count = steps;
            if self.sigma(end).abs() <= 1e-5 {
                count += 1;
                append_zero = false;
            }
            linspace_f32(start, end, count)
        };
        let mut sigmas: Vec<f32> = timesteps.into_iter().map(|t| self.sigma(t)).collect();
        if append_zero {
            sigmas.push(0.0);
        }
        sigmas
    }

    fn ddim_uniform(&self, steps: usize) -> Vec<f32> {
        let mut x = 1;
        let mut steps = steps;
        let mut sigmas = Vec::new();
        if self.table[x].abs() <= 1e-5 {
            steps += 1;
        } else {
            sigmas.push(0.0);
        }
        let stride = (TABLE_SIZE / steps).max(1);
        while x < TABLE_SIZE {
            sigmas.push(self.table[x]);
            x += stride;
        }
        sigmas.reverse();
        sigmas
    }

    fn linear_quadratic(&self, steps: usize) -> Vec<f32> {
        let schedule: Vec<f64> = if steps == 1 {
            vec![1.0, 0.0]
        } else {
            let threshold = 0.025;
            let linear_steps = steps / 2;
            let linear = (0..linear_steps).map(|i| i as f64 * threshold / linear_steps as f64);
            let step_diff = linear_steps as f64 - threshold * steps as f64;
            let quadratic_steps = (steps - linear_steps) as f64;
            let quadratic_coef = step_diff / (linear_steps as f64 * quadratic_steps.powi(2));
            let linear_coef = threshold / linear_steps as f64 - 2.0 * step_diff / quadratic_steps.powi(2);
            let constant = quadratic_coef * (linear_steps as f64).powi(2);
            let quadratic =
                (linear_steps..steps).map(|i| quadratic_coef * (i as f64).powi(2) + linear_coef * i as f64 + constant);
            linear.chain(quadratic).chain([1.0]).map(|x| 1.0 - x).collect()
        };
        schedule.into_iter().map(|x| x as f32 * self.sigma_max()).collect()
    }
}

/// k-diffusion's Karras schedule (ρ = 7) with a final zero.
fn karras(steps: usize, sigma_min: f64, sigma_max: f64) -> Vec<f32> {
    let rho = 7.0_f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    let difference = (min_inv_rho - max_inv_rho) as f32;
    let base = max_inv_rho as f32;
    let mut sigmas: Vec<f32> =
        linspace_f32(0.0, 1.0, steps).into_iter().map(|ramp| (base + ramp * difference).powf(rho as f32)).collect();
    sigmas.push(0.0);
    sigmas
}

/// k-diffusion's exponential schedule with a final zero.
fn exponential(steps: usize, sigma_min: f64, sigma_max: f64) -> Vec<f32> {
    let mut sigmas: Vec<f32> =
        linspace_f32(sigma_max.ln() as f32, sigma_min.ln() as f32, steps).into_iter().map(f32::exp).collect();
    sigmas.push(0.0);
    sigmas
}

/// The KL-optimal schedule (ComfyUI's `kl_optimal_scheduler`): `steps` sigmas then a zero. One step
/// gives `[σ_max, 0]` where ComfyUI divides 0 by 0.
fn kl_optimal(steps: usize, sigma_min: f64, sigma_max: f64) -> Vec<f32> {
    let (atan_min, atan_max) = (sigma_min.atan() as f32, sigma_max.atan() as f32);
    let denominator = steps.saturating_sub(1) as f32;
    let mut sigmas: Vec<f32> = (0..steps)
        .map(|i| {
            let fraction = if steps == 1 { 0.0 } else { i as f32 / denominator };
            (fraction * atan_min + (1.0 - fraction) * atan_max).tan()
        })
        .collect();
    sigmas.push(0.0);
    sigmas
}

/// `BasicScheduler`/`KSampler`'s use of a schedule with `denoise` < 1: a longer schedule's last
/// `steps + 1` sigmas. `denoise` ≤ 0 gives no sigmas.
pub fn schedule_with_denoise(sampling: &FlowSampling, name: &str, steps: usize, denoise: f64) -> Option<Vec<f32>> {
    if denoise <= 0.0 {
        return Some(Vec::new());
    }
    let total = if denoise < 1.0 { (steps as f64 / denoise) as usize } else { steps };
    let sigmas = sampling.sigmas(name, total)?;
    let keep = (steps + 1).min(sigmas.len());
    Some(sigmas[sigmas.len() - keep..].to_vec())
}
