//! Text generation with Gemma 3, as ComfyUI's `BaseGenerate.generate` (`comfy/text_encoders/llama.py`) runs
//! it for `TextGenerate` and `TextGenerateLTX2Prompt`: the prompt in one pass that fills a key/value cache,
//! then one token per pass, each chosen by [`super::logits`], until a stop token (kept as the last token,
//! as ComfyUI keeps it) or `max_new_tokens`.
//!
//! The cache holds every layer's rotated keys and values; a sliding layer keeps only its last
//! `sliding_window` (1024 in the 12B model), so 40 of the 12B model's 48 layers stay bounded. With
//! streamed layers ([`super::GemmaLoadOptions::layers`]) each pass reads every layer from the mapped
//! file again: a token costs a read of all the layer weights (about 22 GB for the 12B model in bf16), which
//! is why a model that fits should be resident for generation.

use super::logits::{SamplingOptions, TokenSampler, argmax};
use super::model::{Gemma3Cache, Gemma3TextModel};
use super::prompt::PromptEmbeddings;
use candle_core::{IndexOp, Result, Tensor};
use std::ops::ControlFlow;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// At most this many tokens, a final stop token included (ComfyUI's `max_length`).
    pub max_new_tokens: usize,
    /// Generation ends after any of these (Gemma 3: `<eos>` and `<end_of_turn>`).
    pub stop_tokens: Vec<u32>,
    /// `None`: greedy (ComfyUI's sampling mode "off"); otherwise sampled with these settings.
    pub sampling: Option<SamplingOptions>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A stop token was generated (it is the last token).
    StopToken,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// The generated tokens and why they end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: Stop,
}

/// Runs a Gemma 3 model a few tokens at a time over its key/value cache.
pub struct Gemma3Decoder<'a> {
    model: &'a Gemma3TextModel,
    cache: Gemma3Cache,
}

impl<'a> Gemma3Decoder<'a> {
    /// A decoder that has seen nothing yet.
    pub fn new(model: &'a Gemma3TextModel) -> Self {
        Gemma3Decoder { model, cache: Gemma3Cache::default() }
    }

    /// How many tokens it has seen.
    pub fn tokens(&self) -> usize {
        self.cache.tokens()
    }

    /// Feeds `ids` (the prompt first, then one generated token at a time) and returns the next-token logits
    /// after the last of them, one per vocabulary entry. After an error the decoder must not be used again.
    pub fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let vocab = self.model.config().vocab_size;
        if ids.is_empty() {
            candle_core::bail!("there are no tokens to run");
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("token id {id} is outside Gemma's vocabulary of {vocab}");
        }
        let input = Tensor::from_slice(ids, (1, ids.len()), self.model.device())?;
        let hidden = self.model.forward_cached(&input, &mut self.cache)?;
        let last = hidden.i((.., ids.len() - 1.., ..))?;
        self.model.logits(&last)?.flatten_all()?.to_vec1::<f32>()
    }

    /// [`Self::feed`] for a prompt given as embeddings (with images spliced in): the logits after its last
    /// position.
    pub fn feed_prompt(&mut self, prompt: &PromptEmbeddings) -> Result<Vec<f32>> {
        let tokens = prompt.embeddings.dim(1)?;
        if tokens == 0 {
            candle_core::bail!("there are no tokens to run");
        }
        let offset = self.cache.tokens();
        let blocks: Vec<_> = prompt.bidirectional_blocks().map(|b| b.start + offset..b.end + offset).collect();
        let hidden = self.model.forward_embeddings_cached(&prompt.embeddings, &mut self.cache, &blocks)?;
        let last = hidden.i((.., tokens - 1.., ..))?;
        self.model.logits(&last)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// Generates after `prompt` (its ids, `<bos>` first). `on_token` sees each new token with its index and may
/// stop generation (for cancellation); the tokens so far are returned either way.
pub fn generate(
    model: &Gemma3TextModel,
    prompt: &[u32],
    options: &GenerateOptions,
    on_token: impl FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Generation> {
    generate_after(model, |decoder| decoder.feed(prompt), options, on_token)
}

/// [`generate`] after a prompt given as embeddings, with images ([`PromptEmbeddings`]).
pub fn generate_from_embeddings(
    model: &Gemma3TextModel,
    prompt: &PromptEmbeddings,
    options: &GenerateOptions,
    on_token: impl FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Generation> {
    generate_after(model, |decoder| decoder.feed_prompt(prompt), options, on_token)
}

fn generate_after(
    model: &Gemma3TextModel,
    prefill: impl FnOnce(&mut Gemma3Decoder<'_>) -> Result<Vec<f32>>,
    options: &GenerateOptions,
    mut on_token: impl FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut decoder = Gemma3Decoder::new(model);
    let mut sampler = options.sampling.map(|sampling| TokenSampler::new(sampling, model.config().vocab_size));
    let mut tokens = Vec::new();
    let mut logits = if options.max_new_tokens > 0 { prefill(&mut decoder)? } else { Vec::new() };
    for step in 0..options.max_new_tokens {
        let token = match &mut sampler {
            Some(sampler) => sampler.next(&logits),
            None => argmax(&logits),
        };
        tokens.push(token);
        if on_token(step, token).is_break() {
            return Ok(Generation { tokens, stop: Stop::Cancelled });
        }
        if options.stop_tokens.contains(&token) {
            return Ok(Generation { tokens, stop: Stop::StopToken });
        }
        if step + 1 < options.max_new_tokens {
            logits = decoder.feed(&[token])?;
        }
    }
    Ok(Generation { tokens, stop: Stop::MaxTokens })
}
