//! The extra noise of ComfyUI's SDE samplers (`BrownianTreeNoiseSampler`, CPU tree), reproduced: a
//! torchsde `BrownianTree` over `[sigma_min, sigma_max]` whose randomness comes from numpy's
//! `SeedSequence` with the sampler seed as entropy.
//!
//! How torchsde builds it (`torchsde/_brownian/brownian_interval.py`, `BrownianTree` = `BrownianInterval`
//! with `halfway_tree=True`, `tol=1e-6`, `pool_size=24`, no Lévy area):
//! - Times are rounded to 6 decimals (`round(t, 6)`, tol 1e-6), the root interval's ends included.
//! - The root's increment is `randn(seed_W)·sqrt(t1 − t0)` (unrounded ends), where `seed_W` is the first word
//!   of `SeedSequence(entropy, pool_size=24).generate_state(3)`.
//! - Every interval splits at its rounded midpoint. The split of the node with spawn key `k` at depth `d`
//!   (root: 0, 0; children `2k` and `2k + 1` at `d + 1`) draws `noise = randn(seed)` with `seed` the first word
//!   of `SeedSequence(entropy, spawn_key=(k, d), pool_size=24).generate_state(4)`; its left child's increment is
//!   `W·l/h + sqrt(l·r/h)·noise` (l, r: the halves' lengths, h = l + r), the right child's is `W − left`.
//! - A query `[ta, tb]` is the sum of the increments of the largest tree nodes that tile it.
//! - Each `randn` is a fresh torch CPU generator seeded with the word, `torch.randn(x.shape)` in float32.
//!
//! Those values do not depend on the order or the caching of queries, so this port recomputes each
//! query from the root without a cache. A query costs one latent-sized `randn` per tree level on each of
//! its two paths: about 0.3 s per step for the 768×512×97 template latent in a release build. torchsde's
//! cache of recent intervals would save about half of that, for a few hundred MB at that size.

use candle_core::Tensor;

use super::SamplingError;
use crate::sampling::torch_noise::TorchGenerator;

/// numpy's `np.random.SeedSequence` (pool mixing of O'Neill's `seed_seq_fe`), enough of it for torchsde.
pub struct SeedSequence {
    pool: Vec<u32>,
}

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;

/// The 32-bit words of a non-negative integer, least significant first; 0 is one word.
fn int_words(mut value: u128) -> Vec<u32> {
    let mut words = vec![value as u32];
    value >>= 32;
    while value > 0 {
        words.push(value as u32);
        value >>= 32;
    }
    words
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> 16)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> 16)
}

impl SeedSequence {
    /// `SeedSequence(entropy=entropy, spawn_key=spawn_key, pool_size=pool_size)`; an empty `spawn_key`
    /// is numpy's default `()`.
    pub fn new(entropy: u128, spawn_key: &[u128], pool_size: usize) -> Self {
        let mut assembled = int_words(entropy);
        let spawn_words: Vec<u32> = spawn_key.iter().flat_map(|&part| int_words(part)).collect();
        if !spawn_words.is_empty() && assembled.len() < pool_size {
            // numpy pads the run entropy to the pool size when a spawn key follows, so that keys cannot
            // collide with longer entropy.
            assembled.resize(pool_size, 0);
        }
        assembled.extend(spawn_words);

        let mut hash_const = INIT_A;
        let mut pool: Vec<u32> =
            (0..pool_size).map(|i| hashmix(assembled.get(i).copied().unwrap_or(0), &mut hash_const)).collect();
        for source in 0..pool_size {
            for destination in 0..pool_size {
                if source != destination {
                    let hashed = hashmix(pool[source], &mut hash_const);
                    pool[destination] = mix(pool[destination], hashed);
                }
            }
        }
        for &word in assembled.iter().skip(pool_size) {
            for slot in &mut pool {
                let hashed = hashmix(word, &mut hash_const);
                *slot = mix(*slot, hashed);
            }
        }
        SeedSequence { pool }
    }

    /// `generate_state(count)` as 32-bit words.
    pub fn generate_state(&self, count: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        (0..count)
            .map(|index| {
                let mut value = self.pool[index % self.pool.len()] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                value = value.wrapping_mul(hash_const);
                value ^ (value >> 16)
            })
            .collect()
    }
}

/// torchsde's `BrownianTree` pool size and tolerance (decimal places of the time grid).
const POOL_SIZE: usize = 24;
const DECIMALS: usize = 6;

/// Python's `round(value, 6)`: the double nearest to the correctly rounded decimal (ties to even).
fn round_time(value: f64) -> f64 {
    format!("{value:.DECIMALS$}").parse().unwrap_or(value)
}

/// One node of the dyadic tree: its interval and its place (for the seeds of its split).
#[derive(Clone, Copy)]
struct Node {
    start: f64,
    end: f64,
    depth: u32,
    spawn_key: u128,
}

/// A Brownian motion on `[t0, t1]` with fixed entropy, as torchsde's `BrownianTree` computes it (float32).
pub struct BrownianTree {
    root: Node,
    entropy: u128,
    count: usize,
    root_increment: Vec<f32>,
}

impl BrownianTree {
    /// The tree torchsde builds for `BrownianTree(t0, zeros(count), t1, entropy=seed)`, `t0 <= t1`.
    pub fn new(t0: f64, t1: f64, seed: u64, count: usize) -> Self {
        let entropy = u128::from(seed);
        let words = SeedSequence::new(entropy, &[], POOL_SIZE).generate_state(3);
        let scale = (t1 - t0).sqrt() as f32;
        let root_increment = randn(words[0], count).into_iter().map(|value| value * scale).collect();
        let root = Node { start: round_time(t0), end: round_time(t1), depth: 0, spawn_key: 0 };
        BrownianTree { root, entropy, count, root_increment }
    }

    /// The increment `W(tb) − W(ta)` for `ta <= tb`, clamped to the tree's interval as torchsde does.
    pub fn increment(&self, ta: f64, tb: f64) -> Result<Vec<f32>, SamplingError> {
        let clamp = |t: f64| t.clamp(self.root.start, self.root.end);
        let (ta, tb) = (clamp(ta), clamp(tb));
        let (ta, tb) = (round_time(ta), round_time(tb));
        let mut total = vec![0.0_f32; self.count];
        if ta >= tb {
            return Ok(total);
        }
        let mut pieces = Vec::new();
        self.collect(self.root, self.root_increment.clone(), ta, tb, &mut pieces)?;
        for piece in pieces {
            for (sum, value) in total.iter_mut().zip(piece) {
                *sum += value;
            }
        }
        Ok(total)
    }

    /// Descends from `node` (whose increment is `increment`) to the nodes that tile `[ta, tb]`.
    fn collect(
        &self,
        node: Node,
        increment: Vec<f32>,
        ta: f64,
        tb: f64,
        pieces: &mut Vec<Vec<f32>>,
    ) -> Result<(), SamplingError> {
        if ta == node.start && tb == node.end {
            pieces.push(increment);
            return Ok(());
        }
        // Times on the 1e-6 grid strictly inside an interval keep it at least two grid steps wide, so the
        // descent ends; the depth bound only guards against times that are not on the grid.
        if node.depth > 64 {
            return Err(SamplingError::InvalidSigmas {
                sigmas: vec![ta, tb],
                reason: "the Brownian tree could not resolve this interval".into(),
            });
        }
        let middle = round_time(0.5 * (node.end + node.start));
        let (left, right) = self.split(node, middle, &increment);
        let depth = node.depth + 1;
        let left_node = Node { start: node.start, end: middle, depth, spawn_key: 2 * node.spawn_key };
        let right_node = Node { start: middle, end: node.end, depth, spawn_key: 2 * node.spawn_key + 1 };
        if tb <= middle {
            self.collect(left_node, left, ta, tb, pieces)
        } else if ta >= middle {
            self.collect(right_node, right, ta, tb, pieces)
        } else {
            self.collect(left_node, left, ta, middle, pieces)?;
            self.collect(right_node, right, middle, tb, pieces)
        }
    }

    /// The increments of the two halves of `node`, given its own (a Brownian bridge draw).
    fn split(&self, node: Node, middle: f64, increment: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let words =
            SeedSequence::new(self.entropy, &[node.spawn_key, u128::from(node.depth)], POOL_SIZE).generate_state(4);
        let noise = randn(words[0], self.count);
        let h_reciprocal = 1.0 / (node.end - node.start);
        let left_length = middle - node.start;
        let right_length = node.end - middle;
        let (left_scale, reciprocal) = (left_length as f32, h_reciprocal as f32);
        let spread = (left_length * right_length * h_reciprocal).sqrt() as f32;
        let left: Vec<f32> = increment
            .iter()
            .zip(&noise)
            .map(|(&whole, &noise)| whole * left_scale * reciprocal + spread * noise)
            .collect();
        let right = increment.iter().zip(&left).map(|(&whole, &left)| whole - left).collect();
        (left, right)
    }
}

/// `torch.randn(count)` from a fresh CPU generator seeded with `seed`.
fn randn(seed: u32, count: usize) -> Vec<f32> {
    TorchGenerator::new(u64::from(seed)).randn(count)
}

/// ComfyUI's `BrownianTreeNoiseSampler`: unit-variance noise for the step from `sigma` to `sigma_next`,
/// the tree's increment over the step divided by the square root of its length.
pub struct BrownianNoise {
    tree: BrownianTree,
    /// −1 when the tree was given its ends in decreasing order (ComfyUI's `BatchedBrownianTree.sign`).
    sign: f32,
    like: Tensor,
}

impl BrownianNoise {
    /// The sampler ComfyUI creates with `sigma_min` (smallest non-zero sigma), `sigma_max` and `seed`,
    /// for latents shaped like `like`.
    pub fn new(sigma_min: f64, sigma_max: f64, seed: u64, like: &Tensor) -> Self {
        let (t0, t1, sign) =
            if sigma_min < sigma_max { (sigma_min, sigma_max, 1.0) } else { (sigma_max, sigma_min, -1.0) };
        BrownianNoise { tree: BrownianTree::new(t0, t1, seed, like.elem_count()), sign, like: like.clone() }
    }

    /// The noise for the step from `sigma` to `sigma_next`, on the latent's device and in its dtype.
    pub fn draw(&self, sigma: f64, sigma_next: f64) -> Result<Tensor, SamplingError> {
        // ComfyUI works with float32 sigmas here.
        let (sigma, sigma_next) = (sigma as f32, sigma_next as f32);
        let (ta, tb, sign) = if sigma < sigma_next { (sigma, sigma_next, 1.0) } else { (sigma_next, sigma, -1.0) };
        let increment = self.tree.increment(f64::from(ta), f64::from(tb))?;
        let scale = (sigma_next - sigma).abs().sqrt();
        let factor = self.sign * sign;
        let values: Vec<f32> = increment.into_iter().map(|value| value * factor / scale).collect();
        let noise = Tensor::from_vec(values, self.like.shape().clone(), self.like.device())?;
        Ok(noise.to_dtype(self.like.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    use super::round_time;

    #[test]
    fn times_round_like_python() {
        // Exact binary ties go to the even digit, as Python's `round(x, 6)` does.
        assert_eq!(round_time(0.007_812_5), 0.007_812);
        assert_eq!(round_time(0.148_437_5), 0.148_438);
        assert_eq!(round_time(0.600_000_023_841_857_9), 0.6);
        assert_eq!(round_time(0.999_990_642_070_770_3), 0.999_991);
        assert_eq!(round_time(1.0), 1.0);
    }
}
