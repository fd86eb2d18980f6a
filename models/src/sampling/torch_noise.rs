//! Noise that reproduces PyTorch's CPU generator, so that a seed gives the same starting noise as
//! ComfyUI (`torch.manual_seed(seed)` then `torch.randn(shape, dtype=float32)`, `comfy.sample.prepare_noise`).
//!
//! torch seeds an mt19937 engine with the low 32 bits of the seed. A float32 `randn` of 16 or more values
//! fills every slot with 24-bit uniforms and turns each block of 16 into normals with Box-Muller in
//! float32 (`normal_fill`); when the count is not a multiple of 16, the last 16 slots are redrawn from 16
//! fresh uniforms. Fewer than 16 values go through the serial double-precision Box-Muller, which keeps
//! its second value for the next serial draw.

/// The mt19937 engine as torch seeds it (`at::mt19937`, `init_with_uint32`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// Seeds with the low 32 bits of `seed`, as torch does.
    pub fn new(seed: u64) -> Self {
        let mut state = [0_u32; 624];
        state[0] = seed as u32;
        for j in 1..624 {
            let previous = state[j - 1];
            state[j] = 1_812_433_253_u32.wrapping_mul(previous ^ (previous >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for k in 0..624 {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(k + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[k] = next;
        }
        self.index = 0;
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// torch's default CPU generator, as seen by `torch.randn(..., dtype=float32)`.
#[derive(Clone)]
pub struct TorchGenerator {
    engine: Mt19937,
    /// The second value of the last serial Box-Muller pair.
    cached_normal: Option<f64>,
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)`. Seeds are taken modulo 2^64 (negative seeds wrap, as in torch).
    pub fn new(seed: u64) -> Self {
        TorchGenerator { engine: Mt19937::new(seed), cached_normal: None }
    }

    /// A seed as a workflow gives it (an INT up to 2^64 − 1, possibly negative), as torch reads it.
    pub fn from_seed(seed: i128) -> Self {
        Self::new(seed.rem_euclid(1_i128 << 64) as u64)
    }

    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    fn uniform_f64(&mut self) -> f64 {
        let high = u64::from(self.engine.next_u32());
        let low = u64::from(self.engine.next_u32());
        (((high << 32) | low) & ((1_u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `torch.randn(count)` in float32, continuing this generator's stream.
    pub fn randn(&mut self, count: usize) -> Vec<f32> {
        if count >= 16 { self.normal_fill(count) } else { (0..count).map(|_| self.serial_normal() as f32).collect() }
    }

    fn normal_fill(&mut self, count: usize) -> Vec<f32> {
        let mut values: Vec<f32> = (0..count).map(|_| self.uniform_f32()).collect();
        for block in values.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !count.is_multiple_of(16) {
            let tail = &mut values[count - 16..];
            for slot in tail.iter_mut() {
                *slot = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        values
    }

    fn serial_normal(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let angle = self.uniform_f64();
        let radius = (-2.0 * (-self.uniform_f64()).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * angle;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }
}

/// torch's `normal_fill_16`: uniforms in `block[0..8]` give radii, `block[8..16]` angles, in float32.
fn box_muller_16(block: &mut [f32]) {
    const TWO_PI: f32 = 2.0 * std::f32::consts::PI;
    for j in 0..8 {
        let radius = (-2.0_f32 * (1.0_f32 - block[j]).ln()).sqrt();
        let theta = TWO_PI * block[j + 8];
        block[j] = radius * theta.cos();
        block[j + 8] = radius * theta.sin();
    }
}

/// ComfyUI's `prepare_noise`: noise for a latent of `shape` from `seed`. With `batch_index`, one draw of
/// a single batch item per index up to the largest, keeping the requested ones in the requested order.
pub fn prepare_noise(seed: i128, shape: &[usize], batch_index: Option<&[usize]>) -> Vec<f32> {
    noise_from(&mut TorchGenerator::from_seed(seed), shape, batch_index)
}

/// ComfyUI's `prepare_noise` for a nested latent (LTX-2's video and audio): one generator seeded with
/// `seed`, drawing each part's noise in turn, in the order of `shapes`.
pub fn prepare_noise_parts(seed: i128, shapes: &[&[usize]], batch_index: Option<&[usize]>) -> Vec<Vec<f32>> {
    let mut generator = TorchGenerator::from_seed(seed);
    shapes.iter().map(|shape| noise_from(&mut generator, shape, batch_index)).collect()
}

fn noise_from(generator: &mut TorchGenerator, shape: &[usize], batch_index: Option<&[usize]>) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let Some(indices) = batch_index.filter(|indices| !indices.is_empty()) else {
        return generator.randn(count);
    };
    let per_item = count / shape.first().copied().unwrap_or(1).max(1);
    let last = indices.iter().copied().max().unwrap_or(0);
    let draws: Vec<Vec<f32>> = (0..=last).map(|_| generator.randn(per_item)).collect();
    indices.iter().flat_map(|&index| draws[index].iter().copied()).collect()
}
