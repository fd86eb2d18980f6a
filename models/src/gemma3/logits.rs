//! How ComfyUI chooses the next token when it generates text (`TextGenerate`, `TextGenerateLTX2Prompt`):
//! `BaseGenerate.sample_token` and `processed_probs` in `comfy/text_encoders/llama.py`.
//!
//! Greedy decoding takes the arg-max of the raw logits: no penalty, no temperature. Sampling runs, in this
//! order:
//!
//! 1. the penalties, on the tokens generated so far (not the prompt's): a repetition penalty multiplies a
//!    negative logit by the penalty and divides a positive one, then a presence penalty is subtracted;
//! 2. the temperature divides every logit (skipped at 1);
//! 3. top-k keeps the `k` largest, in descending order (skipped at 0);
//! 4. min-p drops the tokens whose probability is below `min_p` times the largest (skipped at 0);
//! 5. top-p sorts the rest by logit and drops each token whose cumulative probability, its own included,
//!    exceeds `top_p`, always keeping the first (skipped at 1);
//! 6. one token is drawn from the softmax of what is left.
//!
//! Dropped logits are set to `f32::MIN`, as ComfyUI sets them to the dtype's minimum, so they get a
//! probability of exactly 0. ComfyUI's top-p also drops the token that crosses `top_p`; transformers'
//! `TopPLogitsWarper` keeps it, so the two differ by that one token.
//!
//! The draw is torch's `multinomial(probs, 1)` method, the exponential race (`argmax pᵢ / qᵢ` with
//! `qᵢ ~ Exp(1)`), fed by torch's mt19937 engine seeded with the seed as `torch.manual_seed` seeds it. It is
//! not bit-identical to ComfyUI: torch fills `qᵢ` with its own (CPU: MKL, CUDA: Philox) streams. The same
//! seed always gives the same tokens here.

use crate::sampling::torch_noise::Mt19937;

/// The settings of ComfyUI's sampling mode "on".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// Logits are divided by this (ComfyUI: 0.7, from 0.01 to 2).
    pub temperature: f64,
    /// Keep this many of the most likely tokens; 0 keeps all (64).
    pub top_k: usize,
    /// Keep the most likely tokens up to this cumulative probability (0.95).
    pub top_p: f64,
    /// Drop tokens less likely than this fraction of the most likely one (0.05).
    pub min_p: f64,
    /// Divides positive and multiplies negative logits of tokens already generated (1.05; 1 is off).
    pub repetition_penalty: f64,
    /// Subtracted from the logits of tokens already generated (0 is off).
    pub presence_penalty: f64,
    /// Seeds the random draws.
    pub seed: u64,
}

impl Default for SamplingOptions {
    /// ComfyUI's defaults for `TextGenerate`'s sampling mode "on".
    fn default() -> Self {
        SamplingOptions {
            temperature: 0.7,
            top_k: 64,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.05,
            presence_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    fn penalizes(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0
    }
}

/// The index of the largest logit (the first of equals, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (index, &value) in logits.iter().enumerate() {
        if value > logits[best] {
            best = index;
        }
    }
    best as u32
}

/// Step 1: the repetition and presence penalties on the logits of the `penalized` tokens.
pub fn apply_penalties(logits: &mut [f32], penalized: &[bool], repetition_penalty: f64, presence_penalty: f64) {
    let repetition = repetition_penalty as f32;
    let presence = presence_penalty as f32;
    for (logit, _) in logits.iter_mut().zip(penalized).filter(|(_, penalized)| **penalized) {
        if repetition_penalty != 1.0 {
            *logit = if *logit < 0.0 { *logit * repetition } else { *logit / repetition };
        }
        if presence_penalty != 0.0 {
            *logit -= presence;
        }
    }
}

/// Step 3: the `k` largest logits and their token ids, largest first (equal logits by id).
pub fn top_k(logits: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.truncate(k.min(logits.len()));
    let values = order.iter().map(|&id| logits[id as usize]).collect();
    (order, values)
}

/// Step 4: sets to `f32::MIN` each logit whose probability is below `min_p` times the largest probability.
pub fn min_p_filter(logits: &mut [f32], min_p: f64) {
    let probabilities = softmax(logits);
    let largest = probabilities.iter().copied().fold(0.0_f32, f32::max);
    let threshold = min_p as f32 * largest;
    for (logit, probability) in logits.iter_mut().zip(probabilities) {
        if probability < threshold {
            *logit = f32::MIN;
        }
    }
}

/// Step 5: sets to `f32::MIN` each logit past the most likely ones whose cumulative probability (sorted by
/// logit, each token's own included) exceeds `top_p`; the most likely token always stays.
pub fn top_p_filter(logits: &mut [f32], top_p: f64) {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let sorted: Vec<f32> = order.iter().map(|&index| logits[index]).collect();
    let mut cumulative = 0.0_f32;
    for (rank, (index, probability)) in order.into_iter().zip(softmax(&sorted)).enumerate() {
        cumulative += probability;
        if rank > 0 && cumulative > top_p as f32 {
            logits[index] = f32::MIN;
        }
    }
}

/// Steps 1 to 5 and the softmax: the candidate token ids and their probabilities (ComfyUI's
/// `processed_probs`). Without top-k the candidates are the whole vocabulary in id order.
pub fn processed_probabilities(logits: &[f32], options: &SamplingOptions, penalized: &[bool]) -> (Vec<u32>, Vec<f32>) {
    let mut logits = logits.to_vec();
    if options.penalizes() {
        apply_penalties(&mut logits, penalized, options.repetition_penalty, options.presence_penalty);
    }
    if options.temperature != 1.0 {
        let temperature = options.temperature as f32;
        for logit in &mut logits {
            *logit /= temperature;
        }
    }
    let (ids, mut logits) =
        if options.top_k > 0 { top_k(&logits, options.top_k) } else { ((0..logits.len() as u32).collect(), logits) };
    if options.min_p > 0.0 {
        min_p_filter(&mut logits, options.min_p);
    }
    if options.top_p < 1.0 {
        top_p_filter(&mut logits, options.top_p);
    }
    let probabilities = softmax(&logits);
    (ids, probabilities)
}

/// `softmax` in f32 with the maximum subtracted, as torch computes it.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let largest = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exponentials: Vec<f32> = logits.iter().map(|&logit| (logit - largest).exp()).collect();
    let total: f32 = exponentials.iter().sum();
    exponentials.into_iter().map(|value| value / total).collect()
}

/// Draws tokens as ComfyUI's sampling mode "on" does, remembering which tokens it has drawn for the
/// penalties.
#[derive(Clone)]
pub struct TokenSampler {
    options: SamplingOptions,
    engine: Mt19937,
    /// The tokens drawn so far, by id.
    drawn: Vec<bool>,
}

impl TokenSampler {
    /// A sampler over a vocabulary of `vocab` tokens, seeded with `options.seed`.
    pub fn new(options: SamplingOptions, vocab: usize) -> Self {
        TokenSampler { options, engine: Mt19937::new(options.seed), drawn: vec![false; vocab] }
    }

    /// The next token for `logits` (one per vocabulary entry); it counts as drawn from then on.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        let (ids, probabilities) = processed_probabilities(logits, &self.options, &self.drawn);
        let mut best = (0, f64::NEG_INFINITY);
        for (position, &probability) in probabilities.iter().enumerate() {
            let race = f64::from(probability) / self.exponential();
            if race > best.1 {
                best = (position, race);
            }
        }
        let token = ids[best.0];
        if let Some(drawn) = self.drawn.get_mut(token as usize) {
            *drawn = true;
        }
        token
    }

    /// An Exp(1) draw from a 53-bit uniform in [0, 1).
    fn exponential(&mut self) -> f64 {
        let high = u64::from(self.engine.next_u32());
        let low = u64::from(self.engine.next_u32());
        let uniform = (((high << 32) | low) & ((1_u64 << 53) - 1)) as f64 / (1_u64 << 53) as f64;
        -(-uniform).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_drops_the_token_that_crosses_the_threshold() {
        // Probabilities 0.5, 0.3, 0.2: the running sums are 0.5, 0.8, 1.0; at 0.7 only the first stays.
        let mut logits = [0.5_f32.ln(), 0.3_f32.ln(), 0.2_f32.ln()];
        top_p_filter(&mut logits, 0.7);
        assert_eq!(logits[1..], [f32::MIN, f32::MIN]);
        let mut logits = [0.2_f32.ln(), 0.5_f32.ln(), 0.3_f32.ln()];
        top_p_filter(&mut logits, 0.85);
        assert_eq!(logits[0], f32::MIN);
        assert!(logits[1] > f32::MIN && logits[2] > f32::MIN);
    }

    #[test]
    fn penalties_push_logits_towards_less_likely() {
        let mut logits = [2.0, -2.0, 2.0];
        apply_penalties(&mut logits, &[true, true, false], 2.0, 0.5);
        assert_eq!(logits, [0.5, -4.5, 2.0]);
    }

    #[test]
    fn a_single_candidate_is_always_drawn_and_argmax_takes_the_first_of_equals() {
        let options = SamplingOptions { top_k: 1, ..SamplingOptions::default() };
        let mut sampler = TokenSampler::new(options, 4);
        for _ in 0..5 {
            assert_eq!(sampler.next(&[0.0, 3.0, 1.0, 2.0]), 1);
        }
        assert_eq!(argmax(&[1.0, 5.0, 5.0]), 1);
    }
}
