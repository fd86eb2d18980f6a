//! Gemma 3's tokenizer, from the SentencePiece model itself (the `tokenizer.model` of a transformers folder, or
//! the `spiece_model` uint8 tensor ComfyUI's Gemma files embed) or from a transformers `tokenizer.json`.
//!
//! The SentencePiece model is read and run by [`super::sentencepiece`], which encodes as the sentencepiece
//! library does (ComfyUI's `SPieceTokenizer` runs that library). Gemma 3's model is BPE with byte fallback,
//! the `identity` normaliser (no character map), spaces escaped to U+2581, no dummy prefix and no whitespace
//! cleanup; these are read from the model, not assumed. A `tokenizer.json` is run by the `tokenizers` crate,
//! as transformers' `GemmaTokenizerFast` runs it (diffusers). The two agree on ordinary text; they differ where
//! the text spells a control token such as `<bos>`: the SentencePiece model reads it as characters, the
//! `tokenizer.json` as the token.
//!
//! LTX-2 encodes a prompt stripped, with `<bos>` first, no `<eos>` and no chat template
//! ([`GemmaTokenizer::encode_prompt`]).

use super::sentencepiece::{SentencePieceError, SentencePieceModel};
use crate::weights::WeightSource;
use candle_core::{DType, Device};
use std::path::Path;

/// Gemma 3's `<pad>`.
pub const PAD_ID: u32 = 0;
/// Gemma 3's `<eos>`.
pub const EOS_ID: u32 = 1;
/// Gemma 3's `<bos>`, first in every LTX-2 prompt.
pub const BOS_ID: u32 = 2;
/// Gemma 3's `<start_of_turn>`.
pub const START_OF_TURN_ID: u32 = 105;
/// Gemma 3's `<end_of_turn>`.
pub const END_OF_TURN_ID: u32 = 106;

/// The name of the tensor holding the SentencePiece model in ComfyUI's Gemma files.
pub const SPIECE_TENSOR: &str = "spiece_model";

/// A problem reading a tokenizer or using it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenizerError {
    /// The SentencePiece model could not be read or used.
    #[error("{source_name}: {error}")]
    SentencePiece {
        source_name: String,
        #[source]
        error: SentencePieceError,
    },
    /// A file or tensor could not be read, or the `tokenizers` crate refused a `tokenizer.json`.
    #[error("{source_name}: cannot read the tokenizer: {reason}")]
    Read { source_name: String, reason: String },
    /// The tokenizer lacks one of the special tokens Gemma needs.
    #[error("{source_name}: the tokenizer has no {piece} token")]
    MissingSpecial { source_name: String, piece: String },
    /// The `tokenizers` crate failed to encode.
    #[error("cannot tokenize the text starting {excerpt:?}: {reason}")]
    Encode { excerpt: String, reason: String },
    /// Decoding failed (an id outside the vocabulary, or the `tokenizers` crate's error).
    #[error("cannot decode: {reason}")]
    Decode { reason: String },
}

#[derive(Debug, Clone)]
enum Backend {
    SentencePiece(Box<SentencePieceModel>),
    Json(Box<tokenizers::Tokenizer>),
}

/// Gemma 3's tokenizer.
#[derive(Debug, Clone)]
pub struct GemmaTokenizer {
    backend: Backend,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
}

impl GemmaTokenizer {
    /// From the bytes of a SentencePiece `ModelProto` (a `tokenizer.model`).
    pub fn from_sentencepiece(bytes: &[u8]) -> Result<Self, TokenizerError> {
        Self::from_sentencepiece_named(bytes, "the SentencePiece model")
    }

    /// From a `tokenizer.model` file.
    pub fn from_sentencepiece_file(path: &Path) -> Result<Self, TokenizerError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|error| TokenizerError::Read { source_name: name.clone(), reason: error.to_string() })?;
        Self::from_sentencepiece_named(&bytes, &name)
    }

    fn from_sentencepiece_named(bytes: &[u8], name: &str) -> Result<Self, TokenizerError> {
        let model = SentencePieceModel::from_bytes(bytes)
            .map_err(|error| TokenizerError::SentencePiece { source_name: name.to_string(), error })?;
        Self::from_sentencepiece_model(model, name)
    }

    /// From a SentencePiece model already built (such as one rebuilt from a GGUF's metadata); `name` says where
    /// it came from in errors.
    pub fn from_sentencepiece_model(model: SentencePieceModel, name: &str) -> Result<Self, TokenizerError> {
        let spec = &model.proto().trainer_spec;
        let special = |id: Option<u32>, piece: &str| {
            id.ok_or_else(|| TokenizerError::MissingSpecial { source_name: name.to_string(), piece: piece.to_string() })
        };
        let bos_id = special(model.bos_id(), &spec.bos_piece)?;
        let eos_id = special(model.eos_id(), &spec.eos_piece)?;
        let pad_id = special(model.pad_id(), &spec.pad_piece)?;
        Ok(GemmaTokenizer { backend: Backend::SentencePiece(Box::new(model)), bos_id, eos_id, pad_id })
    }

    /// From a `tokenizer.json` (the `tokenizers` format of a transformers folder), with its `<bos>`, `<eos>`
    /// and `<pad>` tokens. Padding and truncation settings inside the file are ignored.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let name = path.display().to_string();
        let read_error = |reason: String| TokenizerError::Read { source_name: name.clone(), reason };
        let mut tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|error| read_error(error.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|error| read_error(error.to_string()))?;
        let special = |piece: &str| {
            tokenizer
                .token_to_id(piece)
                .ok_or_else(|| TokenizerError::MissingSpecial { source_name: name.clone(), piece: piece.to_string() })
        };
        let (bos_id, eos_id, pad_id) = (special("<bos>")?, special("<eos>")?, special("<pad>")?);
        Ok(GemmaTokenizer { backend: Backend::Json(Box::new(tokenizer)), bos_id, eos_id, pad_id })
    }

    /// From a transformers folder: its `tokenizer.json`, else its `tokenizer.model`.
    pub fn from_folder(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let model = dir.join("tokenizer.model");
        if model.is_file() {
            return Self::from_sentencepiece_file(&model);
        }
        Err(TokenizerError::Read {
            source_name: dir.display().to_string(),
            reason: "the folder has neither tokenizer.json nor tokenizer.model".into(),
        })
    }

    /// From the `spiece_model` tensor of a ComfyUI Gemma file (the SentencePiece model's bytes as uint8).
    pub fn from_weight_source(source: &WeightSource) -> Result<Self, TokenizerError> {
        let files = source.files().iter().map(|file| file.display().to_string()).collect::<Vec<_>>().join(", ");
        let read_error = |reason: String| TokenizerError::Read { source_name: files.clone(), reason };
        if !source.contains(SPIECE_TENSOR) {
            return Err(read_error(format!(
                "no '{SPIECE_TENSOR}' tensor (the SentencePiece model ComfyUI's Gemma files embed); \
                 give the tokenizer of a transformers folder instead"
            )));
        }
        let bytes = source
            .load(SPIECE_TENSOR, DType::U8, &Device::Cpu)
            .map_err(|error| read_error(error.to_string()))?
            .flatten_all()
            .and_then(|tensor| tensor.to_vec1::<u8>())
            .map_err(|error| read_error(error.to_string()))?;
        Self::from_sentencepiece_named(&bytes, &format!("{files}: tensor '{SPIECE_TENSOR}'"))
    }

    /// The SentencePiece model, when the tokenizer was read from one.
    pub fn sentencepiece(&self) -> Option<&SentencePieceModel> {
        match &self.backend {
            Backend::SentencePiece(model) => Some(model),
            Backend::Json(_) => None,
        }
    }

    /// The start-of-text id (`<bos>`, 2 in Gemma 3).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The end-of-text id (`<eos>`, 1 in Gemma 3).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The padding id (`<pad>`, 0 in Gemma 3).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The number of tokens (262,144 for Gemma 3's SentencePiece model; a `tokenizer.json` counts its added
    /// tokens too).
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::SentencePiece(model) => model.len(),
            Backend::Json(tokenizer) => tokenizer.get_vocab_size(true),
        }
    }

    /// The id of the token whose text is `piece` (spaces written as U+2581), if there is one.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match &self.backend {
            Backend::SentencePiece(model) => model.piece_to_id(piece),
            Backend::Json(tokenizer) => tokenizer.token_to_id(piece),
        }
    }

    /// The ids of `text` as it is, without `<bos>` or `<eos>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match &self.backend {
            Backend::SentencePiece(model) => Ok(model.encode(text)),
            Backend::Json(tokenizer) => {
                tokenizer.encode(text, false).map(|encoding| encoding.get_ids().to_vec()).map_err(|error| {
                    TokenizerError::Encode { excerpt: text.chars().take(40).collect(), reason: error.to_string() }
                })
            }
        }
    }

    /// A prompt as LTX-2 encodes it: stripped of leading and trailing whitespace (as Python's `str.strip`),
    /// `<bos>` first, no `<eos>`, no chat template.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = vec![self.bos_id];
        ids.extend(self.encode(python_strip(prompt))?);
        Ok(ids)
    }

    /// The text of `ids`. From a SentencePiece model, as the library decodes: control tokens (`<bos>`, `<eos>`,
    /// `<pad>`) give nothing, user-defined ones (`<start_of_turn>`) their text, byte tokens are joined into UTF-8.
    /// From a `tokenizer.json`, as transformers' `decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match &self.backend {
            Backend::SentencePiece(model) => {
                model.decode(ids).map_err(|error| TokenizerError::Decode { reason: error.to_string() })
            }
            Backend::Json(tokenizer) => {
                let size = tokenizer.get_vocab_size(true);
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= size) {
                    return Err(TokenizerError::Decode {
                        reason: format!("token id {id} is outside the vocabulary of {size} tokens"),
                    });
                }
                tokenizer.decode(ids, true).map_err(|error| TokenizerError::Decode { reason: error.to_string() })
            }
        }
    }
}

/// `text` without the leading and trailing characters Python's `str.isspace` accepts: Unicode's white space
/// and the separators U+001C to U+001F.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_strip_as_python() {
        assert_eq!(python_strip(" \t\u{1f}a b\u{3000}\n\u{1c}"), "a b");
        assert_eq!(python_strip("\u{200b}a"), "\u{200b}a");
        assert_eq!(python_strip("   "), "");
    }
}
