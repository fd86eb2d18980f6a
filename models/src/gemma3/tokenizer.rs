//! Gemma 3's tokenizer, from the SentencePiece model itself (the `tokenizer.model` of a transformers folder,
//! or the `spiece_model` uint8 tensor ComfyUI's Gemma files embed) or from a `tokenizer.json`.
//!
//! The SentencePiece path reads the model's protobuf (`ModelProto`: pieces with scores and types, the trainer
//! spec, the normaliser spec) and encodes as the sentencepiece library's BPE model does: the text is
//! normalised (spaces escaped to U+2581, with the dummy prefix and whitespace cleanup if the spec asks),
//! split into characters and user-defined symbols (kept whole), and adjacent symbols are merged, the pair
//! whose merged piece scores highest first (ties to the left), while the merged piece is in the vocabulary;
//! pieces left outside the vocabulary become their UTF-8 bytes (`<0xXX>`) with byte fallback, else `<unk>`.
//!
//! LTX-2 encodes a prompt stripped, with `<bos>` first and no `<eos>` ([`GemmaTokenizer::encode_prompt`]).

use crate::weights::WeightSource;
use candle_core::{DType, Device};
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

/// What went wrong reading a tokenizer or encoding with it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenizerError {
    #[error("{0}: cannot read the tokenizer: {1}")]
    Read(String, String),
    #[error("the SentencePiece model is malformed: {0}")]
    Malformed(String),
    #[error("the SentencePiece model is not supported: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Other(String),
}

const SPACE: char = '\u{2581}';

/// A piece's type in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

#[derive(Debug, Clone)]
struct SentencePieceModel {
    pieces: Vec<(String, f32, PieceType)>,
    /// Pieces merges may produce (normal, user-defined, unused), by text.
    mergeable: HashMap<String, u32>,
    /// Every piece by text (for [`GemmaTokenizer::token_id`]).
    by_text: HashMap<String, u32>,
    /// User-defined symbols, longest first.
    user_defined: Vec<String>,
    bytes: [Option<u32>; 256],
    unk_id: u32,
    byte_fallback: bool,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
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
    /// From the bytes of a SentencePiece `ModelProto`.
    pub fn from_sentencepiece(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let model = parse_model(bytes)?;
        let id = |name: &str, default: u32| model.by_text.get(name).copied().unwrap_or(default);
        let (bos_id, eos_id, pad_id) = (id("<bos>", 2), id("<eos>", 1), id("<pad>", 0));
        Ok(GemmaTokenizer { backend: Backend::SentencePiece(Box::new(model)), bos_id, eos_id, pad_id })
    }

    /// From a `tokenizer.json` (the `tokenizers` format of a transformers folder).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Read(path.display().to_string(), e.to_string()))?;
        let id = |name: &str, default: u32| tokenizer.token_to_id(name).unwrap_or(default);
        let (bos_id, eos_id, pad_id) = (id("<bos>", 2), id("<eos>", 1), id("<pad>", 0));
        Ok(GemmaTokenizer { backend: Backend::Json(Box::new(tokenizer)), bos_id, eos_id, pad_id })
    }

    /// From a transformers folder: `tokenizer.json`, else `tokenizer.model`.
    pub fn from_folder(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let model = dir.join("tokenizer.model");
        let bytes =
            std::fs::read(&model).map_err(|e| TokenizerError::Read(model.display().to_string(), e.to_string()))?;
        Self::from_sentencepiece(&bytes)
    }

    /// From the `spiece_model` tensor of a ComfyUI Gemma file.
    pub fn from_weight_source(source: &WeightSource) -> Result<Self, TokenizerError> {
        let files = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        if !source.contains("spiece_model") {
            return Err(TokenizerError::Read(
                files,
                "no 'spiece_model' tensor (the embedded SentencePiece model)".into(),
            ));
        }
        let tensor = source
            .load("spiece_model", DType::U8, &Device::Cpu)
            .map_err(|e| TokenizerError::Read(files.clone(), e.to_string()))?;
        let bytes = tensor
            .flatten_all()
            .and_then(|t| t.to_vec1::<u8>())
            .map_err(|e| TokenizerError::Read(files, e.to_string()))?;
        Self::from_sentencepiece(&bytes)
    }

    /// `<bos>`.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// `<eos>`.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::SentencePiece(model) => model.pieces.len(),
            Backend::Json(tokenizer) => tokenizer.get_vocab_size(true),
        }
    }

    /// The id of `piece`, if the vocabulary has it.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match &self.backend {
            Backend::SentencePiece(model) => model.by_text.get(piece).copied(),
            Backend::Json(tokenizer) => tokenizer.token_to_id(piece),
        }
    }

    /// The pieces of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match &self.backend {
            Backend::SentencePiece(model) => Ok(model.encode(text)),
            Backend::Json(tokenizer) => tokenizer
                .encode(text, false)
                .map(|encoding| encoding.get_ids().to_vec())
                .map_err(|e| TokenizerError::Other(e.to_string())),
        }
    }

    /// A prompt as LTX-2 encodes it: stripped, `<bos>` first, no `<eos>`.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = vec![self.bos_id];
        ids.extend(self.encode(prompt.trim())?);
        Ok(ids)
    }

    /// The text of `ids`; control tokens (`<bos>`, `<eos>`, `<pad>`) give nothing.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match &self.backend {
            Backend::SentencePiece(model) => model.decode(ids),
            Backend::Json(tokenizer) => tokenizer.decode(ids, true).map_err(|e| TokenizerError::Other(e.to_string())),
        }
    }
}

impl SentencePieceModel {
    fn normalize(&self, text: &str) -> String {
        let mut text = text.to_string();
        if self.remove_extra_whitespaces {
            text = text.split(' ').filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ");
        }
        if self.add_dummy_prefix && !text.is_empty() {
            text.insert(0, ' ');
        }
        if self.escape_whitespaces { text.replace(' ', &SPACE.to_string()) } else { text }
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalize(text);
        // Symbols: user-defined symbols whole (never merged), otherwise one character each.
        let mut symbols: Vec<(String, bool)> = Vec::new();
        let mut rest = normalized.as_str();
        while let Some(first) = rest.chars().next() {
            if let Some(symbol) = self.user_defined.iter().find(|s| rest.starts_with(s.as_str())) {
                symbols.push((symbol.clone(), true));
                rest = &rest[symbol.len()..];
            } else {
                symbols.push((first.to_string(), false));
                rest = &rest[first.len_utf8()..];
            }
        }
        let merged = self.merge(&symbols);
        let mut ids = Vec::with_capacity(merged.len());
        for piece in merged {
            match self.mergeable.get(&piece) {
                Some(&id) => ids.push(id),
                None if self.byte_fallback => {
                    ids.extend(piece.bytes().map(|b| self.bytes[b as usize].unwrap_or(self.unk_id)));
                }
                None => ids.push(self.unk_id),
            }
        }
        ids
    }

    /// The BPE merge loop over a linked list of symbols with a priority queue of candidate pairs.
    fn merge(&self, symbols: &[(String, bool)]) -> Vec<String> {
        let count = symbols.len();
        let mut pieces: Vec<String> = symbols.iter().map(|(p, _)| p.clone()).collect();
        let frozen: Vec<bool> = symbols.iter().map(|(_, f)| *f).collect();
        let mut next: Vec<Option<usize>> = (0..count).map(|i| (i + 1 < count).then_some(i + 1)).collect();
        let mut prev: Vec<Option<usize>> = (0..count).map(|i| i.checked_sub(1)).collect();
        // (score, −left, left, right, merged length): the highest score first, then the leftmost.
        let mut queue: BinaryHeap<Candidate> = BinaryHeap::new();
        // How each unused piece a merge produced was made, to split it back.
        let mut merged_from: HashMap<String, (String, String)> = HashMap::new();
        let candidate = |pieces: &[String], left: usize, right: usize| -> Option<Candidate> {
            if frozen[left] || frozen[right] {
                return None;
            }
            let merged = format!("{}{}", pieces[left], pieces[right]);
            let id = *self.mergeable.get(&merged)?;
            Some(Candidate { score: self.pieces[id as usize].1, left, right, length: merged.len() })
        };
        for i in 1..count {
            queue.extend(candidate(&pieces, i - 1, i));
        }
        while let Some(top) = queue.pop() {
            let (left, right) = (top.left, top.right);
            if pieces[left].is_empty()
                || pieces[right].is_empty()
                || pieces[left].len() + pieces[right].len() != top.length
            {
                continue;
            }
            let right_piece = std::mem::take(&mut pieces[right]);
            let left_piece = pieces[left].clone();
            pieces[left].push_str(&right_piece);
            if self.mergeable.get(&pieces[left]).is_some_and(|&id| self.pieces[id as usize].2 == PieceType::Unused) {
                merged_from.insert(pieces[left].clone(), (left_piece, right_piece));
            }
            next[left] = next[right];
            if let Some(after) = next[right] {
                prev[after] = Some(left);
            }
            if let Some(before) = prev[left] {
                queue.extend(candidate(&pieces, before, left));
            }
            if let Some(after) = next[left] {
                queue.extend(candidate(&pieces, left, after));
            }
        }
        let mut out = Vec::new();
        let mut index = (count > 0).then_some(0);
        while let Some(i) = index {
            resegment(&pieces[i], &merged_from, &mut out);
            index = next[i];
        }
        out
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some((piece, _, kind)) = self.pieces.get(id as usize) else {
                return Err(TokenizerError::Other(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.pieces.len()
                )));
            };
            match kind {
                PieceType::Control => {}
                PieceType::Byte => bytes.push(parse_byte_piece(piece).unwrap_or(b'?')),
                PieceType::Unknown => bytes.extend(" \u{2047} ".as_bytes()),
                _ => bytes.extend(piece.replace(SPACE, " ").as_bytes()),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Appends `piece` to `out`, split back into the pieces it was merged from while it is an unused piece.
fn resegment(piece: &str, merged_from: &HashMap<String, (String, String)>, out: &mut Vec<String>) {
    match merged_from.get(piece) {
        Some((left, right)) => {
            resegment(left, merged_from, out);
            resegment(right, merged_from, out);
        }
        None => out.push(piece.to_string()),
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    length: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Higher score first; on a tie the leftmost pair first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// A protobuf wire-format reader over one message.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, TokenizerError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .data
                .get(self.at)
                .ok_or_else(|| TokenizerError::Malformed("a number runs past the end".into()))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TokenizerError::Malformed("a number is longer than 64 bits".into()))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], TokenizerError> {
        let end = self.at.checked_add(length).filter(|&end| end <= self.data.len());
        let end =
            end.ok_or_else(|| TokenizerError::Malformed(format!("a field of {length} bytes runs past the end")))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// The next `(field number, value)`, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, TokenizerError> {
        if self.at >= self.data.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let length =
                    usize::try_from(self.varint()?).map_err(|_| TokenizerError::Malformed("length overflow".into()))?;
                Field::Bytes(self.take(length)?)
            }
            5 => {
                let bytes = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            other => return Err(TokenizerError::Malformed(format!("unknown wire type {other}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn text(bytes: &[u8]) -> Result<String, TokenizerError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| TokenizerError::Malformed("a piece is not UTF-8".into()))
}

fn parse_model(bytes: &[u8]) -> Result<SentencePieceModel, TokenizerError> {
    let mut pieces = Vec::new();
    let (mut model_type, mut byte_fallback, mut unk_id) = (1u64, false, 0u32);
    let (mut add_dummy_prefix, mut remove_extra_whitespaces, mut escape_whitespaces) = (true, true, true);
    let mut reader = Reader { data: bytes, at: 0 };
    while let Some((number, field)) = reader.next()? {
        match (number, field) {
            (1, Field::Bytes(message)) => {
                let (mut piece, mut score, mut kind) = (String::new(), 0f32, 1u64);
                let mut inner = Reader { data: message, at: 0 };
                while let Some((number, field)) = inner.next()? {
                    match (number, field) {
                        (1, Field::Bytes(b)) => piece = text(b)?,
                        (2, Field::Fixed32(bits)) => score = f32::from_bits(bits),
                        (3, Field::Varint(v)) => kind = v,
                        _ => {}
                    }
                }
                let kind = match kind {
                    1 => PieceType::Normal,
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    other => {
                        return Err(TokenizerError::Malformed(format!("piece '{piece}' has unknown type {other}")));
                    }
                };
                pieces.push((piece, score, kind));
            }
            (2, Field::Bytes(message)) => {
                let mut inner = Reader { data: message, at: 0 };
                while let Some((number, field)) = inner.next()? {
                    match (number, field) {
                        (3, Field::Varint(v)) => model_type = v,
                        (35, Field::Varint(v)) => byte_fallback = v != 0,
                        (40, Field::Varint(v)) => unk_id = v as u32,
                        _ => {}
                    }
                }
            }
            (3, Field::Bytes(message)) => {
                let mut inner = Reader { data: message, at: 0 };
                while let Some((number, field)) = inner.next()? {
                    match (number, field) {
                        (1, Field::Bytes(name)) => {
                            let name = text(name)?;
                            if name != "identity" {
                                return Err(TokenizerError::Unsupported(format!(
                                    "normalization rule '{name}' (Gemma's models use 'identity')"
                                )));
                            }
                        }
                        (2, Field::Bytes(map)) if !map.is_empty() => {
                            return Err(TokenizerError::Unsupported("a precompiled normalization map".into()));
                        }
                        (3, Field::Varint(v)) => add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => remove_extra_whitespaces = v != 0,
                        (5, Field::Varint(v)) => escape_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if pieces.is_empty() {
        return Err(TokenizerError::Malformed("no pieces".into()));
    }
    if model_type != 2 {
        return Err(TokenizerError::Unsupported(format!(
            "model type {model_type} (only BPE, the type of Gemma's tokenizer, is read)"
        )));
    }
    let mut model = SentencePieceModel {
        mergeable: HashMap::new(),
        by_text: HashMap::new(),
        user_defined: Vec::new(),
        bytes: [None; 256],
        unk_id,
        byte_fallback,
        add_dummy_prefix,
        remove_extra_whitespaces,
        escape_whitespaces,
        pieces: Vec::new(),
    };
    for (id, (piece, _, kind)) in pieces.iter().enumerate() {
        let id = id as u32;
        model.by_text.entry(piece.clone()).or_insert(id);
        match kind {
            PieceType::Normal | PieceType::Unused => {
                model.mergeable.insert(piece.clone(), id);
            }
            PieceType::UserDefined => {
                model.mergeable.insert(piece.clone(), id);
                model.user_defined.push(piece.clone());
            }
            PieceType::Byte => {
                if let Some(byte) = parse_byte_piece(piece) {
                    model.bytes[byte as usize] = Some(id);
                }
            }
            PieceType::Unknown | PieceType::Control => {}
        }
    }
    model.user_defined.sort_by_key(|s| std::cmp::Reverse(s.len()));
    model.pieces = pieces;
    Ok(model)
}
