//! What the model benchmarks share: random weights of any shape built in memory, process CPU time,
//! and the peak resident memory of a stretch of work.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use std::time::Duration;

/// Values in the shared pool of random numbers that every weight is cut from.
const POOL_SIZE: usize = 1 << 22;

/// A weight backend that serves any requested shape with N(0, 0.02²) values: norms and tables need no
/// special values for timing, and cutting from one pool is much faster than drawing billions of numbers.
struct RandomBackend {
    pool: Tensor,
}

impl candle_nn::var_builder::SimpleBackend for RandomBackend {
    fn get(&self, shape: Shape, _: &str, _: candle_nn::Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let count = shape.elem_count();
        let repeats = count.div_ceil(POOL_SIZE);
        let values = if repeats > 1 { self.pool.repeat(repeats)? } else { self.pool.clone() };
        // Copy out exactly `count` values, so that each weight has its own memory of its own size, as a
        // loaded one would (a view of the shared pool would keep every matrix in cache and flatter the
        // timing).
        let values = values.narrow(0, 0, count)?.to_vec1::<f32>()?;
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape for '{name}'")
    }

    /// Every weight exists, except the scales of quantised weights: random weights are never quantised.
    fn contains_tensor(&self, name: &str) -> bool {
        !["weight_scale", "scale_weight", "input_scale"].iter().any(|scale| name.ends_with(scale))
    }
}

/// A `VarBuilder` over random weights (any name, any shape), stored as `dtype`.
pub fn random_var_builder(dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let pool = Tensor::randn(0f32, 0.02, POOL_SIZE, &Device::Cpu)?;
    Ok(VarBuilder::from_backend(Box::new(RandomBackend { pool }), dtype, device.clone()))
}

/// User + system CPU time of this process from `/proc/self/stat` (Linux; clock ticks of 10 ms), so that
/// timings taken while other work shares the cores can still be compared.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resets the process's peak resident memory to its current size (Linux `clear_refs` 5), so that
/// [`peak_resident_bytes`] measures from here. Returns whether the kernel allowed it.
pub fn reset_peak_resident() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident memory of this process in bytes (`VmHWM`), where the platform reports it.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Current resident memory in bytes (`VmRSS`).
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
