//! The SentencePiece model of a llama.cpp GGUF, rebuilt from its `tokenizer.ggml.*` metadata.
//!
//! llama.cpp's converter writes a SentencePiece tokenizer as parallel arrays: `tokenizer.ggml.tokens` (each
//! piece's text), `scores` and `token_type` (sentencepiece's own piece types: 1 normal, 2 unknown, 3 control,
//! 4 user-defined, 5 unused, 6 byte), with `tokenizer.ggml.model` saying which algorithm: `llama` for BPE
//! models such as Gemma's, `t5` for Unigram models, which also carry the normaliser's
//! `precompiled_charsmap`. The special ids (`bos_token_id`, `eos_token_id`, `unknown_token_id`,
//! `padding_token_id`) and `add_space_prefix` / `remove_extra_whitespaces` complete the model. ComfyUI-GGUF
//! rebuilds a SentencePiece `ModelProto` from the same fields for the text encoders whose tokenizer ComfyUI
//! reads from the file; [`sentencepiece_from_gguf`] does the same, and the result encodes with
//! [`SentencePieceModel`] as the library would.
//!
//! What the arrays lose: the converter rewrites the types of the tokens a transformers `tokenizer_config.json`
//! lists (special ones become control, others user-defined with `▁` written as a space, score −1000). The
//! rebuilt model writes those spaces back as `▁`; a piece that was user-defined in the original model and is
//! control in the GGUF (Gemma's `<start_of_turn>`) is no longer matched when the text spells it, exactly as in
//! ComfyUI-GGUF. Ordinary text encodes to the original model's ids.

use super::file::GgufFile;
use super::header::MetadataValue;
use crate::gemma3::sentencepiece::{
    ModelProto, ModelType, NormalizerSpec, Piece, PieceType, SPACE_SYMBOL, SentencePieceModel, TrainerSpec,
};

/// A tokenizer that cannot be rebuilt from a GGUF's metadata.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GgufTokenizerError {
    /// The file has no tokenizer in its metadata.
    #[error(
        "{file}: no tokenizer in this GGUF file (the metadata has no 'tokenizer.ggml.tokens'); text encoders \
         converted by llama.cpp carry one"
    )]
    Missing {
        /// The file.
        file: String,
    },
    /// A field is missing or of the wrong kind.
    #[error("{file}: tokenizer metadata '{key}': {reason}")]
    Field {
        /// The file.
        file: String,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tokenizer kind kinograph does not implement.
    #[error(
        "{file}: the tokenizer is '{model}' (tokenizer.ggml.model); kinograph rebuilds SentencePiece tokenizers \
         ('llama' for BPE models such as Gemma, 't5' for Unigram models)"
    )]
    Unsupported {
        /// The file.
        file: String,
        /// The `tokenizer.ggml.model` value.
        model: String,
    },
    /// The rebuilt model is not a valid SentencePiece model.
    #[error("{file}: the tokenizer in the metadata is not a valid SentencePiece model: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// The SentencePiece error.
        reason: String,
    },
}

const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TYPES: &str = "tokenizer.ggml.token_type";

/// Reads the typed fields of the tokenizer metadata, naming the file and key in errors.
struct Fields<'a> {
    gguf: &'a GgufFile,
    file: String,
}

impl<'a> Fields<'a> {
    fn error(&self, key: &str, reason: impl Into<String>) -> GgufTokenizerError {
        GgufTokenizerError::Field { file: self.file.clone(), key: key.to_string(), reason: reason.into() }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [MetadataValue]>, GgufTokenizerError> {
        match self.gguf.metadata(key) {
            None => Ok(None),
            Some(value) => value
                .as_array()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected an array, found a {}", value.kind()))),
        }
    }

    fn id(&self, key: &str) -> Result<Option<u32>, GgufTokenizerError> {
        match self.gguf.metadata(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected a token id, found a {}", value.kind()))),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, GgufTokenizerError> {
        match self.gguf.metadata(key) {
            None => Ok(None),
            Some(value) => value
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected a bool, found a {}", value.kind()))),
        }
    }
}

/// The SentencePiece `ModelProto` the metadata of `gguf` describes. See the module documentation.
pub fn sentencepiece_proto(gguf: &GgufFile) -> Result<ModelProto, GgufTokenizerError> {
    let fields = Fields { gguf, file: gguf.path().display().to_string() };
    let file = || fields.file.clone();
    let tokens = fields.array(TOKENS)?.ok_or_else(|| GgufTokenizerError::Missing { file: file() })?;
    let model = gguf.metadata("tokenizer.ggml.model").and_then(MetadataValue::as_str).unwrap_or("llama");
    let model_type = match model {
        "llama" => ModelType::Bpe,
        "t5" => ModelType::Unigram,
        other => return Err(GgufTokenizerError::Unsupported { file: file(), model: other.to_string() }),
    };
    let scores = fields.array(SCORES)?.ok_or_else(|| fields.error(SCORES, "missing (SentencePiece needs scores)"))?;
    let types = fields.array(TYPES)?.ok_or_else(|| fields.error(TYPES, "missing"))?;
    for (key, array) in [(SCORES, scores), (TYPES, types)] {
        if array.len() != tokens.len() {
            return Err(fields.error(key, format!("{} entries for {} tokens", array.len(), tokens.len())));
        }
    }
    let mut pieces = Vec::with_capacity(tokens.len());
    for (id, ((token, score), kind)) in tokens.iter().zip(scores).zip(types).enumerate() {
        let text = token.as_str().ok_or_else(|| fields.error(TOKENS, format!("token {id} is not a string")))?;
        let score = score.as_f64().ok_or_else(|| fields.error(SCORES, format!("score {id} is not a number")))?;
        let kind = kind
            .as_i64()
            .and_then(piece_type)
            .ok_or_else(|| fields.error(TYPES, format!("token {id} has no SentencePiece type (1 to 6)")))?;
        // The converter writes the spaces of user-defined added tokens as spaces; pieces hold them as U+2581.
        let text = if kind == PieceType::UserDefined { text.replace(' ', SPACE_SYMBOL) } else { text.to_string() };
        pieces.push(Piece { text, score: score as f32, kind });
    }

    let special = |key: &str| fields.id(&format!("tokenizer.ggml.{key}"));
    let (bos, eos, pad) = (special("bos_token_id")?, special("eos_token_id")?, special("padding_token_id")?);
    let unk = special("unknown_token_id")?
        .or_else(|| pieces.iter().position(|piece| piece.kind == PieceType::Unknown).map(|id| id as u32));
    // The converter retypes the tokens a `tokenizer_config.json` lists, `<unk>` included (Gemma's becomes
    // control); llama.cpp goes by `unknown_token_id`, SentencePiece by the piece's type.
    if let Some(piece) = unk.and_then(|id| pieces.get_mut(id as usize)) {
        piece.kind = PieceType::Unknown;
    }
    let piece_of = |id: Option<u32>, fallback: &str| {
        id.and_then(|id| pieces.get(id as usize)).map_or_else(|| fallback.to_string(), |piece| piece.text.clone())
    };
    let signed = |id: Option<u32>| id.map_or(-1, |id| id as i32);
    let defaults = TrainerSpec::default();
    let trainer_spec = TrainerSpec {
        model_type,
        vocab_size: i32::try_from(pieces.len()).unwrap_or(i32::MAX),
        byte_fallback: pieces.iter().any(|piece| piece.kind == PieceType::Byte),
        unk_id: signed(unk),
        bos_id: signed(bos),
        eos_id: signed(eos),
        pad_id: signed(pad),
        unk_piece: piece_of(unk, &defaults.unk_piece),
        bos_piece: piece_of(bos, &defaults.bos_piece),
        eos_piece: piece_of(eos, &defaults.eos_piece),
        pad_piece: piece_of(pad, &defaults.pad_piece),
        ..defaults
    };

    let charsmap = match fields.array("tokenizer.ggml.precompiled_charsmap")? {
        None => Vec::new(),
        Some(bytes) => bytes
            .iter()
            .map(|byte| match *byte {
                MetadataValue::U8(value) => Some(value),
                MetadataValue::I8(value) => Some(value as u8),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| fields.error("tokenizer.ggml.precompiled_charsmap", "expected bytes"))?,
    };
    let normalizer_spec = NormalizerSpec {
        name: if charsmap.is_empty() { "identity".into() } else { "precompiled".into() },
        precompiled_charsmap: charsmap,
        // llama.cpp's defaults when a file leaves these out: a dummy prefix for SentencePiece models, no cleanup.
        add_dummy_prefix: fields.flag("tokenizer.ggml.add_space_prefix")?.unwrap_or(true),
        remove_extra_whitespaces: fields.flag("tokenizer.ggml.remove_extra_whitespaces")?.unwrap_or(false),
        escape_whitespaces: true,
    };
    Ok(ModelProto { pieces, trainer_spec, normalizer_spec, denormalizer_spec: None })
}

/// The SentencePiece model the metadata of `gguf` describes, checked and ready to encode.
pub fn sentencepiece_from_gguf(gguf: &GgufFile) -> Result<SentencePieceModel, GgufTokenizerError> {
    let proto = sentencepiece_proto(gguf)?;
    SentencePieceModel::from_proto(proto).map_err(|error| GgufTokenizerError::Invalid {
        file: gguf.path().display().to_string(),
        reason: error.to_string(),
    })
}

/// Whether the metadata says to put the start token first (`tokenizer.ggml.add_bos_token`), if it says.
pub fn adds_bos(gguf: &GgufFile) -> Option<bool> {
    gguf.metadata("tokenizer.ggml.add_bos_token").and_then(MetadataValue::as_bool)
}

fn piece_type(value: i64) -> Option<PieceType> {
    u64::try_from(value).ok().and_then(PieceType::from_proto)
}
