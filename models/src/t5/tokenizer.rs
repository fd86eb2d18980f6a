//! The T5 v1.1 tokenizer (`SentencePiece` Unigram, 32,100 pieces), run by the `tokenizers` crate from the
//! `tokenizer.json` embedded in this folder (see `TOKENIZER.md` there for its origin and licence).
//!
//! Token ids are those of transformers' `T5TokenizerFast`: no start token, `</s>` (1) appended, `<pad>`
//! (0) for padding. Two ways of fixing the length are offered, because the LTX-Video implementations
//! differ (diffusers 0.42.1 `pipelines/ltx/pipeline_ltx.py` `_get_t5_prompt_embeds`; ComfyUI a125cd84
//! `comfy/text_encoders/lt.py`):
//! - [`TokenLength::AtLeast`] is ComfyUI's LTXV text encoder path (`CLIPLoader` type `ltxv`,
//!   `T5XXLTokenizer` with `min_length=128` and no practical maximum): nothing is truncated, a long
//!   prompt keeps all its tokens and the sequence is simply longer than 128;
//! - [`TokenLength::Exactly`] is diffusers' (`max_sequence_length`, 128 for `LTXPipeline`, 256 for
//!   `LTXConditionPipeline` and the original code): longer prompts are cut to `length − 1` tokens and
//!   the end token.
//!
//! [`T5Tokenizer::encode`] treats the prompt as plain text. [`T5Tokenizer::encode_weighted`] is ComfyUI's
//! full path: it reads ComfyUI's prompt-weighting syntax (`(word:1.2)`, escaped `\(`) first, and the
//! weights are applied by [`T5Encoder::encode_tokens`](super::T5Encoder::encode_tokens).

use super::prompt_weights::parse_prompt_weights;
use candle_core::{DType, Device, Tensor};

static TOKENIZER_JSON: &[u8] = include_bytes!("tokenizer.json");

/// `</s>`.
pub const END_TOKEN: u32 = 1;
/// `<pad>`.
pub const PAD_TOKEN: u32 = 0;
/// ComfyUI's minimum length for LTX-Video prompts.
pub const COMFY_MIN_LENGTH: usize = 128;

/// A problem with tokenization.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read the T5 tokenizer {source_name}: {reason}")]
    Load { source_name: String, reason: String },
    #[error("cannot tokenize the prompt starting {excerpt:?}: {reason}")]
    Encode { excerpt: String, reason: String },
    #[error("a T5 token length of 0 leaves no room for the end token; use at least 1")]
    ZeroLength,
}

/// How long the tokenized prompt should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLength {
    /// Pad to at least this many tokens and never truncate (ComfyUI).
    AtLeast(usize),
    /// Pad or truncate to exactly this many tokens, keeping the end token (diffusers, original code).
    Exactly(usize),
}

/// Token ids, their attention mask and their ComfyUI prompt weights, all of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// 1 for the prompt's tokens and its end token, 0 for padding (see [`T5Tokenizer::encode`]).
    pub attention_mask: Vec<u32>,
    /// Each token's weight from ComfyUI's `(text:1.2)` syntax: 1 everywhere unless the tokens come from
    /// [`T5Tokenizer::encode_weighted`]. Applied by [`T5Encoder::encode_tokens`](super::T5Encoder::encode_tokens).
    pub weights: Vec<f32>,
}

impl Tokens {
    /// The number of tokens including padding.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens at all (never the case for [`T5Tokenizer::encode`]'s output).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether any token has a weight other than 1.
    pub fn has_weights(&self) -> bool {
        self.weights.iter().any(|&weight| weight != 1.0)
    }

    /// The ids as a `[1, length]` u32 tensor and the mask as a `[1, length]` f32 tensor.
    pub fn to_tensors(&self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let length = self.ids.len();
        let ids = Tensor::from_slice(&self.ids, (1, length), device)?;
        let mask = Tensor::from_slice(&self.attention_mask, (1, length), device)?.to_dtype(DType::F32)?;
        Ok((ids, mask))
    }
}

/// The T5 v1.1 tokenizer.
#[derive(Clone)]
pub struct T5Tokenizer {
    tokenizer: tokenizers::Tokenizer,
}

impl std::fmt::Debug for T5Tokenizer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("T5Tokenizer").field("vocabulary", &self.tokenizer.get_vocab_size(true)).finish()
    }
}

impl T5Tokenizer {
    /// The embedded T5 v1.1 tokenizer.
    pub fn new() -> Result<Self, TokenizerError> {
        Self::from_bytes(TOKENIZER_JSON, "embedded in kinograph")
    }

    /// A tokenizer from another `tokenizer.json` in the same format (tests use tiny ones).
    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenizerError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|error| TokenizerError::Load { source_name: name.clone(), reason: error.to_string() })?;
        Self::from_bytes(&bytes, &name)
    }

    fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, TokenizerError> {
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|error| TokenizerError::Load { source_name: name.to_string(), reason: error.to_string() })?;
        // Length is handled here, in `encode`, not by settings inside the JSON.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| TokenizerError::Load { source_name: name.to_string(), reason: error.to_string() })?;
        Ok(T5Tokenizer { tokenizer })
    }

    /// The prompt's ids followed by the end token, unpadded: what `T5TokenizerFast(text).input_ids` gives.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.content_ids(text)?;
        ids.push(END_TOKEN);
        Ok(ids)
    }

    /// Tokenizes `text` as plain text (parentheses are text), appends the end token and pads (or, for
    /// [`TokenLength::Exactly`], truncates) to the requested length. With [`TokenLength::AtLeast`] the
    /// mask, as ComfyUI's, ends at the first end token, which is earlier than the appended one only if
    /// the prompt contains the text `</s>`.
    pub fn encode(&self, text: &str, length: TokenLength) -> Result<Tokens, TokenizerError> {
        let ids = self.content_ids(text)?;
        let weights = vec![1.0; ids.len()];
        finish(ids, weights, length)
    }

    /// ComfyUI's `CLIPTextEncode` tokenization for LTX-Video: the prompt-weight syntax is read (see
    /// [`parse_prompt_weights`]), each weighted run is tokenized on its own and carries its weight, then
    /// the end token and padding to at least `min_length` (128 in ComfyUI) follow, with no truncation.
    pub fn encode_weighted(&self, text: &str, min_length: usize) -> Result<Tokens, TokenizerError> {
        let mut ids = Vec::new();
        let mut weights = Vec::new();
        for run in parse_prompt_weights(text) {
            let run_ids = self.content_ids(&run.text)?;
            weights.extend(std::iter::repeat_n(run.weight as f32, run_ids.len()));
            ids.extend(run_ids);
        }
        finish(ids, weights, TokenLength::AtLeast(min_length))
    }

    /// The ids of `text` without the end token.
    fn content_ids(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.tokenizer.encode(text, false).map_err(|error| TokenizerError::Encode {
            excerpt: text.chars().take(40).collect(),
            reason: error.to_string(),
        })?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Appends the end token to `ids` and brings them to `length`; see [`T5Tokenizer::encode`].
fn finish(mut ids: Vec<u32>, mut weights: Vec<f32>, length: TokenLength) -> Result<Tokens, TokenizerError> {
    ids.push(END_TOKEN);
    weights.push(1.0);
    let target = match length {
        TokenLength::AtLeast(minimum) => minimum.max(ids.len()),
        TokenLength::Exactly(0) => return Err(TokenizerError::ZeroLength),
        TokenLength::Exactly(exact) => {
            if ids.len() > exact {
                ids.truncate(exact - 1);
                weights.truncate(exact - 1);
                ids.push(END_TOKEN);
                weights.push(1.0);
            }
            exact
        }
    };
    // ComfyUI's mask (`SDClipModel`) runs up to and including the first end token, so a prompt that
    // spells out `</s>` is cut there; diffusers' covers every token it keeps.
    let real = match length {
        TokenLength::AtLeast(_) => ids.iter().position(|&id| id == END_TOKEN).map_or(ids.len(), |end| end + 1),
        TokenLength::Exactly(_) => ids.len(),
    };
    ids.resize(target, PAD_TOKEN);
    weights.resize(target, 1.0);
    let mut attention_mask = vec![1; real];
    attention_mask.resize(target, 0);
    Ok(Tokens { ids, attention_mask, weights })
}
