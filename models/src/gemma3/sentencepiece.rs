//! SentencePiece models read from their `ModelProto` protobuf (a `tokenizer.model` file, or the bytes ComfyUI
//! embeds as a `spiece_model` tensor), encoding and decoding as the sentencepiece library (0.2) does for BPE and
//! Unigram models.
//!
//! **Reading.** [`ModelProto::parse`] is a small protobuf wire-format reader for the fields of
//! `sentencepiece_model.proto` that segmentation uses: the pieces (text, score, type), the trainer spec (model type,
//! byte fallback, the special pieces, the unknown surface) and the normaliser and denormaliser specs (precompiled
//! character map, dummy prefix, whitespace cleanup and escaping). Unknown fields are skipped; bytes that are not
//! protobuf, or a known field with the wrong wire type, are errors naming what was expected and where.
//! [`SentencePieceModel::from_proto`] then makes the checks the library makes when loading (one unknown piece,
//! no empty or repeated piece, all 256 byte pieces when byte fallback is on).
//!
//! **Encoding** ([`SentencePieceModel::encode`]):
//! 1. Normalisation, left to right: a user-defined symbol is copied as it is; otherwise the longest rule of the
//!    precompiled character map applies (a Darts-clone double-array trie; Gemma's `identity` normaliser has none),
//!    else the character is copied. With `remove_extra_whitespaces`, leading, trailing and repeated spaces are
//!    dropped; with `add_dummy_prefix`, a space goes before the text (after it with `treat_whitespace_as_suffix`);
//!    with `escape_whitespaces`, every space becomes U+2581.
//! 2. Segmentation of the normalised text into characters and user-defined symbols, then
//!    - BPE: the adjacent pair whose concatenation is a piece with the highest score is merged (the leftmost on a
//!      tie) until no pair is a piece; user-defined symbols never merge; a merge that made an unused piece is
//!      undone at the end;
//!    - Unigram: the Viterbi path through every piece that matches (user-defined symbols get a bonus, unused
//!      pieces are skipped, a character no piece covers costs the lowest score minus 10).
//! 3. A piece outside the vocabulary becomes its UTF-8 bytes as `<0xXX>` pieces with byte fallback; without
//!    it, each run of such pieces becomes one unknown id.
//!
//! Trainer settings such as `split_by_whitespace`, `split_digits` or `allow_whitespace_only_pieces` decide which
//! pieces training makes; they do not take part in encoding, which only sees the resulting pieces and scores.
//!
//! **Decoding** ([`SentencePieceModel::decode`]): control pieces give nothing, the unknown piece gives the
//! unknown surface (` ⁇ ` by default), runs of byte pieces are read as UTF-8 (each byte that does not start a
//! valid character gives U+FFFD), U+2581 gives a space, and with `add_dummy_prefix` or
//! `remove_extra_whitespaces` the leading U+2581 of the text is dropped.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// The escaped space, U+2581 (LOWER ONE EIGHTH BLOCK).
pub const SPACE_SYMBOL: &str = "\u{2581}";
const REPLACEMENT_CHARACTER: &str = "\u{fffd}";
/// What a Unigram model charges below its lowest piece score for a character no piece covers.
const UNIGRAM_UNKNOWN_PENALTY: f32 = 10.0;

/// A problem reading a SentencePiece model or decoding with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentencePieceError {
    /// The bytes are not a well-formed `ModelProto`: `offset` is where the reader stopped.
    #[error("the SentencePiece model is malformed at byte {offset}: expected {expected}")]
    Malformed { offset: usize, expected: String },
    /// A well-formed message that the sentencepiece library would refuse to load.
    #[error("the SentencePiece model is invalid: {0}")]
    Invalid(String),
    /// A valid model of a kind this reader does not implement.
    #[error("the SentencePiece model is not supported: {0}")]
    Unsupported(String),
    /// An id past the last piece.
    #[error("token id {id} is outside the vocabulary of {size} pieces")]
    UnknownId { id: u32, size: usize },
}

type Result<T> = std::result::Result<T, SentencePieceError>;

/// A piece's type (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// An ordinary piece (1).
    Normal,
    /// The unknown piece, `<unk>` (2).
    Unknown,
    /// A control piece such as `<bos>`: never produced by encoding, invisible when decoding (3).
    Control,
    /// A user-defined symbol: always one piece when it appears in the text (4).
    UserDefined,
    /// A piece that encoding splits back into the pieces it was made of (5).
    Unused,
    /// One byte, `<0xXX>`, for byte fallback (6).
    Byte,
}

impl PieceType {
    /// The type with SentencePiece's number (`ModelProto.SentencePiece.Type`, which llama.cpp's
    /// `tokenizer.ggml.token_type` also uses), if it is one.
    pub(crate) fn from_proto(value: u64) -> Option<Self> {
        Some(match value {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }

    /// Pieces that segmentation may produce (the library's "normal" pieces); the others are looked up only by
    /// their text.
    fn is_segment(self) -> bool {
        matches!(self, PieceType::Normal | PieceType::UserDefined | PieceType::Unused)
    }
}

/// One entry of the vocabulary; its id is its index.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece's text, spaces written as U+2581.
    pub text: String,
    /// Its score: the merge priority of a BPE model, the log-probability of a Unigram model.
    pub score: f32,
    /// Its type.
    pub kind: PieceType,
}

/// The segmentation algorithm (`TrainerSpec.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (1), the protobuf default.
    Unigram,
    /// Byte-pair encoding (2): Gemma, Llama.
    Bpe,
    /// Whitespace-delimited words (3).
    Word,
    /// Characters (4).
    Char,
}

/// The trainer settings a model records (`TrainerSpec`), with the protobuf defaults for fields it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    /// The segmentation algorithm.
    pub model_type: ModelType,
    /// The vocabulary size asked for when training.
    pub vocab_size: i32,
    /// Whether training kept pieces from crossing spaces.
    pub split_by_whitespace: bool,
    /// Whether training split numbers into single digits.
    pub split_digits: bool,
    /// Whether the space ends a word (U+2581 at the end of pieces) rather than starting it.
    pub treat_whitespace_as_suffix: bool,
    /// Whether training allowed pieces made only of spaces.
    pub allow_whitespace_only_pieces: bool,
    /// Whether characters outside the vocabulary become `<0xXX>` byte pieces instead of `<unk>`.
    pub byte_fallback: bool,
    /// The unknown piece's id as trained (the piece of type unknown is what encoding uses).
    pub unk_id: i32,
    /// The start-of-text id as trained, −1 for none.
    pub bos_id: i32,
    /// The end-of-text id as trained, −1 for none.
    pub eos_id: i32,
    /// The padding id as trained, −1 for none.
    pub pad_id: i32,
    /// The unknown piece's text.
    pub unk_piece: String,
    /// The start-of-text piece's text.
    pub bos_piece: String,
    /// The end-of-text piece's text.
    pub eos_piece: String,
    /// The padding piece's text.
    pub pad_piece: String,
    /// What decoding writes for the unknown piece.
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: ModelType::Unigram,
            vocab_size: 8000,
            split_by_whitespace: true,
            split_digits: false,
            treat_whitespace_as_suffix: false,
            allow_whitespace_only_pieces: false,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            pad_piece: "<pad>".into(),
            unk_surface: " \u{2047} ".into(),
        }
    }
}

/// The normalisation settings (`NormalizerSpec`), with the protobuf defaults for fields left out.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    /// The rule's name (`identity`, `nmt_nfkc`, …): informative, the character map is what applies.
    pub name: String,
    /// The compiled rules: a double-array trie of source strings and their replacements; empty for none.
    pub precompiled_charsmap: Vec<u8>,
    /// Whether a space is added before the text.
    pub add_dummy_prefix: bool,
    /// Whether leading, trailing and repeated spaces are removed.
    pub remove_extra_whitespaces: bool,
    /// Whether spaces are written as U+2581.
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The parts of a `ModelProto` that encoding and decoding use.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelProto {
    /// The vocabulary, in id order.
    pub pieces: Vec<Piece>,
    /// The trainer settings.
    pub trainer_spec: TrainerSpec,
    /// How text is normalised before segmentation.
    pub normalizer_spec: NormalizerSpec,
    /// How decoded text is mapped back, when the model has such a spec.
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// A protobuf field's value as the wire format carries it.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    /// The bytes and the absolute offset of the first.
    Bytes(&'a [u8], usize),
    Fixed32(u32),
}

/// One field of a message: its number, value and the absolute offset of its key.
struct Field<'a> {
    number: u64,
    wire: Wire<'a>,
    offset: usize,
}

impl<'a> Field<'a> {
    fn mismatch(&self, name: &str, expected: &str) -> SentencePieceError {
        let found = match self.wire {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64 => "a 64-bit value",
            Wire::Bytes(..) => "a length-delimited value",
            Wire::Fixed32(_) => "a 32-bit value",
        };
        SentencePieceError::Malformed {
            offset: self.offset,
            expected: format!("{name} (field {}) as {expected}, found {found}", self.number),
        }
    }

    fn varint(&self, name: &str) -> Result<u64> {
        match self.wire {
            Wire::Varint(value) => Ok(value),
            _ => Err(self.mismatch(name, "a varint")),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool> {
        Ok(self.varint(name)? != 0)
    }

    /// An `int32`: negative values are sign-extended to 64 bits on the wire.
    fn int32(&self, name: &str) -> Result<i32> {
        Ok(self.varint(name)? as i32)
    }

    fn float(&self, name: &str) -> Result<f32> {
        match self.wire {
            Wire::Fixed32(bits) => Ok(f32::from_bits(bits)),
            _ => Err(self.mismatch(name, "a 32-bit float")),
        }
    }

    fn bytes(&self, name: &str) -> Result<(&'a [u8], usize)> {
        match self.wire {
            Wire::Bytes(bytes, start) => Ok((bytes, start)),
            _ => Err(self.mismatch(name, "a length-delimited value")),
        }
    }

    fn string(&self, name: &str) -> Result<String> {
        let (bytes, start) = self.bytes(name)?;
        String::from_utf8(bytes.to_vec()).map_err(|error| SentencePieceError::Malformed {
            offset: start + error.utf8_error().valid_up_to(),
            expected: format!("{name} (field {}) as UTF-8 text", self.number),
        })
    }
}

/// Reads the fields of one message; `base` is the message's absolute offset, for errors.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], base: usize) -> Self {
        Reader { data, at: 0, base }
    }

    fn malformed(&self, at: usize, expected: String) -> SentencePieceError {
        SentencePieceError::Malformed { offset: self.base + at, expected }
    }

    fn varint(&mut self, what: &str) -> Result<u64> {
        let start = self.at;
        let mut value = 0u64;
        for index in 0..10 {
            let Some(&byte) = self.data.get(self.at) else {
                return Err(
                    self.malformed(self.at, format!("the rest of {what} (a varint), found the end of the data"))
                );
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed(start, format!("{what} as a varint of at most 10 bytes")))
    }

    fn take(&mut self, length: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = self.data.len() - self.at;
        if length > remaining as u64 {
            return Err(self.malformed(
                self.at,
                format!("{length} bytes of {what}, found {remaining} before the end of the data"),
            ));
        }
        let bytes = &self.data[self.at..self.at + length as usize];
        self.at += length as usize;
        Ok(bytes)
    }

    /// The next field, or `None` at the end of the message.
    fn next(&mut self) -> Result<Option<Field<'a>>> {
        if self.at == self.data.len() {
            return Ok(None);
        }
        let offset = self.base + self.at;
        let key = self.varint("a field key")?;
        let number = key >> 3;
        if number == 0 {
            return Err(self.malformed(offset - self.base, "a field number of at least 1, found 0".into()));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint("a varint field")?),
            1 => {
                self.take(8, "a 64-bit field")?;
                Wire::Fixed64
            }
            2 => {
                let length = self.varint("a length")?;
                let start = self.base + self.at;
                Wire::Bytes(self.take(length, "a length-delimited field")?, start)
            }
            5 => {
                let bytes = self.take(4, "a 32-bit field")?;
                Wire::Fixed32(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            other => {
                return Err(self.malformed(
                    offset - self.base,
                    format!("a wire type of 0, 1, 2 or 5 for field {number}, found {other}"),
                ));
            }
        };
        Ok(Some(Field { number, wire, offset }))
    }
}

impl ModelProto {
    /// Reads a serialised `ModelProto`. Fields not listed in this module's types are skipped; repeated
    /// occurrences of a spec are merged field by field, as protobuf does.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut proto = ModelProto {
            pieces: Vec::new(),
            trainer_spec: TrainerSpec::default(),
            normalizer_spec: NormalizerSpec::default(),
            denormalizer_spec: None,
        };
        let mut reader = Reader::new(bytes, 0);
        while let Some(field) = reader.next()? {
            match field.number {
                1 => {
                    let (body, start) = field.bytes("ModelProto.pieces")?;
                    proto.pieces.push(parse_piece(body, start)?);
                }
                2 => {
                    let (body, start) = field.bytes("ModelProto.trainer_spec")?;
                    parse_trainer_spec(body, start, &mut proto.trainer_spec)?;
                }
                3 => {
                    let (body, start) = field.bytes("ModelProto.normalizer_spec")?;
                    parse_normalizer_spec(body, start, &mut proto.normalizer_spec)?;
                }
                5 => {
                    let (body, start) = field.bytes("ModelProto.denormalizer_spec")?;
                    parse_normalizer_spec(body, start, proto.denormalizer_spec.get_or_insert_with(Default::default))?;
                }
                _ => {}
            }
        }
        Ok(proto)
    }
}

fn parse_piece(body: &[u8], start: usize) -> Result<Piece> {
    let mut piece = Piece { text: String::new(), score: 0.0, kind: PieceType::Normal };
    let mut reader = Reader::new(body, start);
    while let Some(field) = reader.next()? {
        match field.number {
            1 => piece.text = field.string("SentencePiece.piece")?,
            2 => piece.score = field.float("SentencePiece.score")?,
            3 => {
                let value = field.varint("SentencePiece.type")?;
                piece.kind = PieceType::from_proto(value).ok_or_else(|| SentencePieceError::Malformed {
                    offset: field.offset,
                    expected: format!("a piece type from 1 to 6 for '{}', found {value}", piece.text),
                })?;
            }
            _ => {}
        }
    }
    Ok(piece)
}

fn parse_trainer_spec(body: &[u8], start: usize, spec: &mut TrainerSpec) -> Result<()> {
    let mut reader = Reader::new(body, start);
    while let Some(field) = reader.next()? {
        match field.number {
            3 => {
                let value = field.varint("TrainerSpec.model_type")?;
                spec.model_type = match value {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    _ => {
                        return Err(SentencePieceError::Malformed {
                            offset: field.offset,
                            expected: format!(
                                "a model type of 1 (Unigram), 2 (BPE), 3 (word) or 4 (char), found {value}"
                            ),
                        });
                    }
                };
            }
            4 => spec.vocab_size = field.int32("TrainerSpec.vocab_size")?,
            22 => spec.split_by_whitespace = field.boolean("TrainerSpec.split_by_whitespace")?,
            24 => spec.treat_whitespace_as_suffix = field.boolean("TrainerSpec.treat_whitespace_as_suffix")?,
            25 => spec.split_digits = field.boolean("TrainerSpec.split_digits")?,
            26 => spec.allow_whitespace_only_pieces = field.boolean("TrainerSpec.allow_whitespace_only_pieces")?,
            35 => spec.byte_fallback = field.boolean("TrainerSpec.byte_fallback")?,
            40 => spec.unk_id = field.int32("TrainerSpec.unk_id")?,
            41 => spec.bos_id = field.int32("TrainerSpec.bos_id")?,
            42 => spec.eos_id = field.int32("TrainerSpec.eos_id")?,
            43 => spec.pad_id = field.int32("TrainerSpec.pad_id")?,
            44 => spec.unk_surface = field.string("TrainerSpec.unk_surface")?,
            45 => spec.unk_piece = field.string("TrainerSpec.unk_piece")?,
            46 => spec.bos_piece = field.string("TrainerSpec.bos_piece")?,
            47 => spec.eos_piece = field.string("TrainerSpec.eos_piece")?,
            48 => spec.pad_piece = field.string("TrainerSpec.pad_piece")?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer_spec(body: &[u8], start: usize, spec: &mut NormalizerSpec) -> Result<()> {
    let mut reader = Reader::new(body, start);
    while let Some(field) = reader.next()? {
        match field.number {
            1 => spec.name = field.string("NormalizerSpec.name")?,
            2 => spec.precompiled_charsmap = field.bytes("NormalizerSpec.precompiled_charsmap")?.0.to_vec(),
            3 => spec.add_dummy_prefix = field.boolean("NormalizerSpec.add_dummy_prefix")?,
            4 => spec.remove_extra_whitespaces = field.boolean("NormalizerSpec.remove_extra_whitespaces")?,
            5 => spec.escape_whitespaces = field.boolean("NormalizerSpec.escape_whitespaces")?,
            _ => {}
        }
    }
    Ok(())
}

/// The length of the UTF-8 character `bytes` starts with as the sentencepiece library reads it, and whether it
/// is valid (an invalid one counts one byte).
fn decode_utf8(bytes: &[u8]) -> (usize, bool) {
    let length = match bytes.first() {
        None => return (0, false),
        Some(&lead) if lead < 0x80 => return (1, true),
        Some(&lead) if lead & 0xe0 == 0xc0 => 2,
        Some(&lead) if lead & 0xf0 == 0xe0 => 3,
        Some(&lead) if lead & 0xf8 == 0xf0 => 4,
        Some(_) => return (1, false),
    };
    // The library's checks (trail bytes, shortest form, no surrogates, at most U+10FFFF) are Rust's.
    match bytes.get(..length) {
        Some(character) if std::str::from_utf8(character).is_ok() => (length, true),
        // An encoded U+FFFD is valid; anything else invalid consumes one byte.
        _ => (1, false),
    }
}

/// The length of the character that starts with `lead`, from the lead byte alone (the library's `OneCharLen`).
fn one_char_len(lead: u8) -> usize {
    match lead >> 4 {
        0xc | 0xd => 2,
        0xe => 3,
        0xf => 4,
        _ => 1,
    }
}

/// `<0xXX>` (two upper-case hex digits, as the library writes them) as the byte.
fn byte_of_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Finds the longest user-defined symbol at the start of a text.
#[derive(Debug, Clone, Default)]
struct PrefixMatcher {
    symbols: HashSet<Vec<u8>>,
    /// The symbols' distinct byte lengths, longest first.
    lengths: Vec<usize>,
}

impl PrefixMatcher {
    fn new<'a>(symbols: impl Iterator<Item = &'a str>) -> Self {
        let symbols: HashSet<Vec<u8>> = symbols.map(|symbol| symbol.as_bytes().to_vec()).collect();
        let mut lengths: Vec<usize> = symbols.iter().map(Vec::len).collect::<HashSet<_>>().into_iter().collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        PrefixMatcher { symbols, lengths }
    }

    /// The byte length of the longest symbol `text` starts with.
    fn longest(&self, text: &[u8]) -> Option<usize> {
        self.lengths.iter().copied().find(|&length| length <= text.len() && self.symbols.contains(&text[..length]))
    }

    /// The longest symbol at the start of `text` (and `true`), else its first character (and `false`).
    fn prefix(&self, text: &[u8]) -> (usize, bool) {
        match self.longest(text) {
            Some(length) => (length, true),
            None => (one_char_len(text[0]).min(text.len()), false),
        }
    }
}

/// A precompiled character map: a Darts-clone double-array trie whose values point into a block of
/// NUL-terminated replacement strings.
#[derive(Debug, Clone)]
struct CharsMap {
    units: Vec<u32>,
    replacements: Vec<u8>,
}

impl CharsMap {
    /// Reads the blob: the trie's size in bytes (`u32`, little-endian), the trie, the replacement strings.
    fn parse(blob: &[u8]) -> Result<Self> {
        let broken = |why: &str| SentencePieceError::Invalid(format!("the precompiled character map is broken: {why}"));
        if blob.len() <= 4 {
            return Err(broken("it is shorter than its 4-byte header"));
        }
        let trie_size = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if trie_size + 4 > blob.len() {
            return Err(broken(&format!("its trie of {trie_size} bytes runs past its {} bytes", blob.len())));
        }
        let units = blob[4..4 + trie_size]
            .chunks_exact(4)
            .map(|unit| u32::from_le_bytes([unit[0], unit[1], unit[2], unit[3]]))
            .collect::<Vec<_>>();
        if units.is_empty() {
            return Err(broken("its trie is empty"));
        }
        Ok(CharsMap { units, replacements: blob[4 + trie_size..].to_vec() })
    }

    /// The replacement of the longest rule matching the start of `text`, and the length it matches.
    fn longest_match(&self, text: &[u8]) -> Option<(&[u8], usize)> {
        let offset = |unit: u32| ((unit >> 10) << ((unit & (1 << 9)) >> 6)) as usize;
        let label = |unit: u32| unit & ((1 << 31) | 0xff);
        let has_leaf = |unit: u32| (unit >> 8) & 1 == 1;
        let value = |unit: u32| (unit & ((1 << 31) - 1)) as usize;
        let mut node = offset(self.units[0]);
        let mut found = None;
        for (index, &byte) in text.iter().enumerate() {
            node ^= byte as usize;
            let Some(&unit) = self.units.get(node) else { break };
            if label(unit) != u32::from(byte) {
                break;
            }
            node ^= offset(unit);
            if has_leaf(unit) {
                let Some(&leaf) = self.units.get(node) else { break };
                found = Some((value(leaf), index + 1));
            }
        }
        let (start, length) = found?;
        let rest = self.replacements.get(start..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Some((&rest[..end], length))
    }
}

/// A normaliser built from a [`NormalizerSpec`].
#[derive(Debug, Clone)]
struct Normalizer {
    charsmap: Option<CharsMap>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    treat_whitespace_as_suffix: bool,
}

impl Normalizer {
    fn new(spec: &NormalizerSpec, treat_whitespace_as_suffix: bool) -> Result<Self> {
        let charsmap = if spec.precompiled_charsmap.is_empty() {
            None
        } else {
            Some(CharsMap::parse(&spec.precompiled_charsmap)?)
        };
        Ok(Normalizer {
            charsmap,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
            treat_whitespace_as_suffix,
        })
    }

    /// The normalised form of the start of `text` and how many bytes of `text` it replaces.
    fn prefix<'a>(&'a self, text: &'a [u8], matcher: Option<&PrefixMatcher>) -> (&'a [u8], usize) {
        if let Some(length) = matcher.and_then(|matcher| matcher.longest(text)) {
            return (&text[..length], length);
        }
        if let Some(found) = self.charsmap.as_ref().and_then(|charsmap| charsmap.longest_match(text)) {
            return found;
        }
        match decode_utf8(text) {
            (length, true) => (&text[..length], length),
            _ => (REPLACEMENT_CHARACTER.as_bytes(), 1),
        }
    }

    fn normalize(&self, mut text: &[u8], matcher: Option<&PrefixMatcher>) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 3);
        if self.remove_extra_whitespaces {
            while !text.is_empty() {
                let (normalized, consumed) = self.prefix(text, matcher);
                if normalized != b" " {
                    break;
                }
                text = &text[consumed..];
            }
        }
        if text.is_empty() {
            return out;
        }
        let space: &[u8] = if self.escape_whitespaces { SPACE_SYMBOL.as_bytes() } else { b" " };
        if self.add_dummy_prefix && !self.treat_whitespace_as_suffix {
            out.extend_from_slice(space);
        }
        let mut previous_is_space = self.remove_extra_whitespaces;
        while !text.is_empty() {
            let (mut normalized, consumed) = self.prefix(text, matcher);
            while previous_is_space && normalized.first() == Some(&b' ') {
                normalized = &normalized[1..];
            }
            if !normalized.is_empty() {
                for &byte in normalized {
                    if byte == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(byte);
                    }
                }
                previous_is_space = normalized.last() == Some(&b' ');
            }
            text = &text[consumed..];
            if !self.remove_extra_whitespaces {
                previous_is_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.add_dummy_prefix && self.treat_whitespace_as_suffix {
            out.extend_from_slice(space);
        }
        out
    }
}

/// The Unigram model's score range (over normal pieces).
#[derive(Debug, Clone, Copy)]
struct UnigramScores {
    min: f32,
    max: f32,
    /// The longest piece that segmentation may produce, in bytes.
    longest_piece: usize,
}

/// A candidate BPE merge of the symbols `left` and `right`, whose concatenation has `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Merge {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Merge {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Merge {}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Merge {
    /// The greatest is the one to merge first: the higher score, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.score < other.score {
            Ordering::Less
        } else if self.score > other.score {
            Ordering::Greater
        } else {
            other.left.cmp(&self.left)
        }
    }
}

/// A symbol of the BPE loop: a span of the normalised text, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    size: usize,
    previous: Option<usize>,
    next: Option<usize>,
    /// A user-defined symbol, which never merges.
    frozen: bool,
}

/// A SentencePiece model ready to encode and decode.
#[derive(Debug, Clone)]
pub struct SentencePieceModel {
    proto: ModelProto,
    /// Normal, user-defined and unused pieces: what segmentation looks up.
    segments: HashMap<Vec<u8>, u32>,
    /// Control, unknown and byte pieces: looked up first by text.
    reserved: HashMap<Vec<u8>, u32>,
    matcher: PrefixMatcher,
    normalizer: Normalizer,
    denormalizer: Option<Normalizer>,
    unk_id: u32,
    /// The id of each byte's `<0xXX>` piece (the unknown id where there is none).
    byte_ids: [u32; 256],
    /// The byte of each byte piece, by id.
    piece_bytes: HashMap<u32, u8>,
    unigram: Option<UnigramScores>,
}

impl SentencePieceModel {
    /// Reads a serialised `ModelProto` (the bytes of a `tokenizer.model`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_proto(ModelProto::parse(bytes)?)
    }

    /// Checks `proto` as the sentencepiece library does when loading and prepares it for encoding.
    pub fn from_proto(proto: ModelProto) -> Result<Self> {
        let invalid = |message: String| SentencePieceError::Invalid(message);
        if !matches!(proto.trainer_spec.model_type, ModelType::Bpe | ModelType::Unigram) {
            return Err(SentencePieceError::Unsupported(format!(
                "{:?} models (only BPE, which Gemma uses, and Unigram are implemented)",
                proto.trainer_spec.model_type
            )));
        }
        let byte_fallback = proto.trainer_spec.byte_fallback;
        let mut segments = HashMap::new();
        let mut reserved = HashMap::new();
        let mut unk_id = None;
        let mut piece_bytes = HashMap::new();
        for (id, piece) in proto.pieces.iter().enumerate() {
            let id = id as u32;
            if piece.text.is_empty() {
                return Err(invalid(format!("piece {id} is empty")));
            }
            let map = if piece.kind.is_segment() { &mut segments } else { &mut reserved };
            if map.insert(piece.text.as_bytes().to_vec(), id).is_some() {
                return Err(invalid(format!("the piece '{}' is defined twice (again as id {id})", piece.text)));
            }
            match piece.kind {
                PieceType::Unknown if unk_id.is_some() => {
                    return Err(invalid(format!("a second unknown piece '{}' (id {id})", piece.text)));
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Byte if !byte_fallback => {
                    return Err(invalid(format!("byte piece '{}' in a model without byte fallback", piece.text)));
                }
                PieceType::Byte => {
                    let byte = byte_of_piece(&piece.text)
                        .ok_or_else(|| invalid(format!("byte piece '{}' is not of the form <0xXX>", piece.text)))?;
                    piece_bytes.insert(id, byte);
                }
                _ => {}
            }
        }
        let unk_id = unk_id.ok_or_else(|| invalid("there is no unknown piece".into()))?;
        if byte_fallback && piece_bytes.len() < 256 {
            return Err(invalid(format!(
                "byte fallback is on but only {} of the 256 byte pieces exist",
                piece_bytes.len()
            )));
        }
        let mut byte_ids = [unk_id; 256];
        for (byte, id) in byte_ids.iter_mut().enumerate() {
            let text = format!("<0x{byte:02X}>");
            *id = reserved.get(text.as_bytes()).or_else(|| segments.get(text.as_bytes())).copied().unwrap_or(unk_id);
        }
        let unigram = if proto.trainer_spec.model_type == ModelType::Unigram {
            if segments.is_empty() {
                return Err(invalid("a Unigram model without pieces to segment with".into()));
            }
            let (mut min, mut max) = (f32::MAX, f32::MIN_POSITIVE);
            for piece in proto.pieces.iter().filter(|piece| piece.kind == PieceType::Normal) {
                min = min.min(piece.score);
                max = max.max(piece.score);
            }
            let longest_piece = segments.keys().map(Vec::len).max().unwrap_or(0);
            Some(UnigramScores { min, max, longest_piece })
        } else {
            None
        };
        let matcher = PrefixMatcher::new(
            proto.pieces.iter().filter(|piece| piece.kind == PieceType::UserDefined).map(|piece| piece.text.as_str()),
        );
        let normalizer = Normalizer::new(&proto.normalizer_spec, proto.trainer_spec.treat_whitespace_as_suffix)?;
        let denormalizer = match &proto.denormalizer_spec {
            Some(spec) if !spec.precompiled_charsmap.is_empty() => Some(Normalizer::new(spec, false)?),
            _ => None,
        };
        Ok(SentencePieceModel {
            proto,
            segments,
            reserved,
            matcher,
            normalizer,
            denormalizer,
            unk_id,
            byte_ids,
            piece_bytes,
            unigram,
        })
    }

    /// The model as read.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// The number of pieces.
    pub fn len(&self) -> usize {
        self.proto.pieces.len()
    }

    /// Whether there are no pieces (never true of a loaded model: it has at least the unknown piece).
    pub fn is_empty(&self) -> bool {
        self.proto.pieces.is_empty()
    }

    /// The piece of `id`.
    pub fn piece(&self, id: u32) -> Option<&Piece> {
        self.proto.pieces.get(id as usize)
    }

    /// The id of the piece whose text is `text`, if there is one.
    pub fn piece_to_id(&self, text: &str) -> Option<u32> {
        self.reserved.get(text.as_bytes()).or_else(|| self.segments.get(text.as_bytes())).copied()
    }

    /// The library's lookup: the piece's id, else the unknown id.
    fn lookup(&self, text: &[u8]) -> u32 {
        self.reserved.get(text).or_else(|| self.segments.get(text)).copied().unwrap_or(self.unk_id)
    }

    fn kind(&self, id: u32) -> PieceType {
        self.proto.pieces[id as usize].kind
    }

    /// The unknown piece's id.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// The id of the control piece named by the trainer spec's `bos_piece`, as the library's `bos_id()`.
    pub fn bos_id(&self) -> Option<u32> {
        self.control_id(&self.proto.trainer_spec.bos_piece)
    }

    /// The id of the control piece named by the trainer spec's `eos_piece`.
    pub fn eos_id(&self) -> Option<u32> {
        self.control_id(&self.proto.trainer_spec.eos_piece)
    }

    /// The id of the control piece named by the trainer spec's `pad_piece`.
    pub fn pad_id(&self) -> Option<u32> {
        self.control_id(&self.proto.trainer_spec.pad_piece)
    }

    fn control_id(&self, text: &str) -> Option<u32> {
        let id = self.lookup(text.as_bytes());
        (self.kind(id) == PieceType::Control).then_some(id)
    }

    /// `text` normalised as encoding sees it (spaces as U+2581 where the model escapes them).
    pub fn normalize(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.normalizer.normalize(text.as_bytes(), Some(&self.matcher))).into_owned()
    }

    /// The ids of `text`, without start or end tokens (the library's `encode(text)`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalizer.normalize(text.as_bytes(), Some(&self.matcher));
        let segments = match self.unigram {
            Some(scores) => self.unigram_segments(&normalized, scores),
            None => self.bpe_segments(&normalized),
        };
        let byte_fallback = self.proto.trainer_spec.byte_fallback;
        let mut ids = Vec::with_capacity(segments.len());
        let mut previous_unknown = false;
        for (piece, id) in segments {
            let unknown = self.kind(id) == PieceType::Unknown;
            if unknown && byte_fallback {
                ids.extend(piece.iter().map(|&byte| self.byte_ids[byte as usize]));
            } else if !(unknown && previous_unknown) {
                ids.push(id);
            }
            previous_unknown = unknown;
        }
        ids
    }

    /// BPE segmentation of normalised text into pieces and their ids.
    fn bpe_segments<'a>(&self, normalized: &'a [u8]) -> Vec<(&'a [u8], u32)> {
        let mut symbols: Vec<Symbol> = Vec::new();
        let mut start = 0;
        while start < normalized.len() {
            let (size, frozen) = self.matcher.prefix(&normalized[start..]);
            let index = symbols.len();
            let next = (start + size < normalized.len()).then_some(index + 1);
            symbols.push(Symbol { start, size, previous: index.checked_sub(1), next, frozen });
            start += size;
        }
        // Which two pieces made each unused piece that a candidate merge would produce (the latest candidate).
        let mut unmerge: HashMap<&'a [u8], (&'a [u8], &'a [u8])> = HashMap::new();
        let mut agenda = BinaryHeap::new();
        for right in 1..symbols.len() {
            agenda.extend(self.bpe_candidate(normalized, &symbols, right - 1, right, &mut unmerge));
        }
        while let Some(merge) = agenda.pop() {
            let (left, right) = (merge.left, merge.right);
            // Skips candidates that earlier merges made stale.
            if symbols[left].size == 0
                || symbols[right].size == 0
                || symbols[left].size + symbols[right].size != merge.size
            {
                continue;
            }
            symbols[left].size += symbols[right].size;
            symbols[left].next = symbols[right].next;
            if let Some(after) = symbols[right].next {
                symbols[after].previous = Some(left);
            }
            symbols[right].size = 0;
            if let Some(before) = symbols[left].previous {
                agenda.extend(self.bpe_candidate(normalized, &symbols, before, left, &mut unmerge));
            }
            if let Some(after) = symbols[left].next {
                agenda.extend(self.bpe_candidate(normalized, &symbols, left, after, &mut unmerge));
            }
        }
        let mut out = Vec::with_capacity(symbols.len());
        let mut index = (!symbols.is_empty()).then_some(0);
        while let Some(i) = index {
            let symbol = symbols[i];
            self.resegment(&normalized[symbol.start..symbol.start + symbol.size], &unmerge, &mut out);
            index = symbol.next;
        }
        out
    }

    fn bpe_candidate<'a>(
        &self,
        normalized: &'a [u8],
        symbols: &[Symbol],
        left: usize,
        right: usize,
        unmerge: &mut HashMap<&'a [u8], (&'a [u8], &'a [u8])>,
    ) -> Option<Merge> {
        let (a, b) = (symbols[left], symbols[right]);
        if a.frozen || b.frozen {
            return None;
        }
        let merged = &normalized[a.start..a.start + a.size + b.size];
        let id = *self.segments.get(merged)?;
        let piece = &self.proto.pieces[id as usize];
        if piece.kind == PieceType::Unused {
            unmerge.insert(merged, (&normalized[a.start..a.start + a.size], &normalized[b.start..b.start + b.size]));
        }
        Some(Merge { score: piece.score, left, right, size: merged.len() })
    }

    /// Appends `piece` with its id, split back into the pieces it was merged from while it is an unused piece.
    fn resegment<'a>(
        &self,
        piece: &'a [u8],
        unmerge: &HashMap<&'a [u8], (&'a [u8], &'a [u8])>,
        out: &mut Vec<(&'a [u8], u32)>,
    ) {
        let id = self.lookup(piece);
        match unmerge.get(piece) {
            Some(&(left, right)) if self.kind(id) == PieceType::Unused => {
                self.resegment(left, unmerge, out);
                self.resegment(right, unmerge, out);
            }
            _ => out.push((piece, id)),
        }
    }

    /// Unigram segmentation: the best-scoring path, computed as the library's optimised Viterbi does (scores of
    /// paths kept as `f32`, each step's sum in `f64`).
    fn unigram_segments<'a>(&self, normalized: &'a [u8], scores: UnigramScores) -> Vec<(&'a [u8], u32)> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f32,
            start: Option<usize>,
        }
        let size = normalized.len();
        if size == 0 {
            return Vec::new();
        }
        let unknown_score = scores.min - UNIGRAM_UNKNOWN_PENALTY;
        let mut best = vec![Best { id: self.unk_id, score: 0.0, start: None }; size + 1];
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let char_len = one_char_len(normalized[start]).min(size - start);
            let mut covers_character = false;
            for end in start + 1..=size.min(start + scores.longest_piece) {
                let Some(&id) = self.segments.get(&normalized[start..end]) else { continue };
                let piece = &self.proto.pieces[id as usize];
                if piece.kind == PieceType::Unused {
                    continue;
                }
                let length = end - start;
                let score = if piece.kind == PieceType::UserDefined {
                    f64::from(length as f32 * scores.max) - 0.1
                } else {
                    f64::from(piece.score)
                };
                let candidate = score + f64::from(here);
                let target = &mut best[end];
                if target.start.is_none() || candidate > f64::from(target.score) {
                    *target = Best { id, score: candidate as f32, start: Some(start) };
                }
                covers_character |= length == char_len;
            }
            if !covers_character {
                let candidate = unknown_score + here;
                let target = &mut best[start + char_len];
                if target.start.is_none() || candidate > target.score {
                    *target = Best { id: self.unk_id, score: candidate, start: Some(start) };
                }
            }
            start += char_len;
        }
        let mut out = Vec::new();
        let mut end = size;
        while end > 0 {
            let node = best[end];
            let Some(start) = node.start else { break };
            out.push((&normalized[start..end], node.id));
            end = start;
        }
        out.reverse();
        out
    }

    /// The text of `ids` (the library's `decode(ids)`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let spec = &self.proto.normalizer_spec;
        let strip_leading_space = spec.add_dummy_prefix || spec.remove_extra_whitespaces;
        let mut text: Vec<u8> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut at_start = true;
        let mut stripped_space = false;
        for &given in ids {
            let piece = self.piece(given).ok_or(SentencePieceError::UnknownId { id: given, size: self.len() })?;
            let id = self.lookup(piece.text.as_bytes());
            if let Some(&byte) = self.piece_bytes.get(&id) {
                bytes.push(byte);
                continue;
            }
            flush_bytes(&mut bytes, &mut text);
            if stripped_space || !text.is_empty() {
                at_start = false;
            }
            stripped_space = false;
            match self.kind(id) {
                PieceType::Control => {}
                PieceType::Unknown => text.extend_from_slice(self.proto.trainer_spec.unk_surface.as_bytes()),
                _ => {
                    let mut surface = piece.text.as_str();
                    if at_start
                        && strip_leading_space
                        && let Some(rest) = surface.strip_prefix(SPACE_SYMBOL)
                    {
                        surface = rest;
                        // With whitespace cleanup every leading space goes, so the start lasts.
                        stripped_space = !spec.remove_extra_whitespaces;
                    }
                    text.extend_from_slice(surface.replace(SPACE_SYMBOL, " ").as_bytes());
                }
            }
        }
        flush_bytes(&mut bytes, &mut text);
        if let Some(denormalizer) = &self.denormalizer {
            text = denormalizer.normalize(&text, None);
        }
        Ok(match String::from_utf8(text) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        })
    }
}

/// Appends the bytes of a run of byte pieces as UTF-8, each byte that does not start a valid character as
/// U+FFFD, and empties the run.
fn flush_bytes(bytes: &mut Vec<u8>, text: &mut Vec<u8>) {
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (length, valid) = decode_utf8(rest);
        text.extend_from_slice(if valid { &rest[..length] } else { REPLACEMENT_CHARACTER.as_bytes() });
        rest = &rest[length..];
    }
    bytes.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field key: `number << 3 | wire`.
    fn key(number: u64, wire: u64) -> Vec<u8> {
        varint(number << 3 | wire)
    }

    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, body: &[u8]) -> Vec<u8> {
        [key(number, 2), varint(body.len() as u64), body.to_vec()].concat()
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let body = [bytes_field(1, text.as_bytes()), key(2, 5), score.to_le_bytes().to_vec(), key(3, 0), varint(kind)]
            .concat();
        bytes_field(1, &body)
    }

    /// A small BPE model: `<unk>`, `<s>`, `</s>`, the letters a–c, `ab`, `abc`, the user symbol `<x>`.
    fn tiny_bpe(extra: &[u8]) -> Vec<u8> {
        let trainer = [key(3, 0), varint(2), key(41, 0), varint(1), key(43, 0), varint(u64::MAX)].concat();
        let normalizer = [key(3, 0), varint(0), key(4, 0), varint(0)].concat();
        [
            piece("<unk>", 0.0, 2),
            piece("<s>", 0.0, 3),
            piece("</s>", 0.0, 3),
            piece("a", -1.0, 1),
            piece("b", -1.0, 1),
            piece("c", -1.0, 1),
            piece("ab", -2.0, 1),
            piece("abc", -3.0, 1),
            piece("<x>", 0.0, 4),
            piece("\u{2581}", -1.0, 1),
            bytes_field(2, &trainer),
            bytes_field(3, &normalizer),
            extra.to_vec(),
        ]
        .concat()
    }

    #[test]
    fn a_hand_made_model_reads_and_encodes() {
        let model = SentencePieceModel::from_bytes(&tiny_bpe(&[])).unwrap();
        assert_eq!(model.len(), 10);
        assert_eq!(model.proto().trainer_spec.pad_id, -1);
        assert_eq!(model.proto().trainer_spec.model_type, ModelType::Bpe);
        assert_eq!((model.unk_id(), model.bos_id(), model.eos_id(), model.pad_id()), (0, Some(1), Some(2), None));
        assert_eq!(model.encode("abc"), [7]);
        assert_eq!(model.encode("ab<x>c"), [6, 8, 5]);
        // Characters outside the vocabulary without byte fallback: one unknown id per run.
        assert_eq!(model.encode("zzab z"), [0, 6, 9, 0]);
        assert_eq!(model.decode(&[1, 7, 9, 0, 2]).unwrap(), "abc  \u{2047} ");
        assert!(matches!(model.decode(&[10]), Err(SentencePieceError::UnknownId { id: 10, size: 10 })));
    }

    #[test]
    fn malformed_bytes_name_what_was_expected() {
        let good = tiny_bpe(&[]);
        for cut in 1..good.len() {
            // Any prefix either reads or fails cleanly; none panics.
            let _ = SentencePieceModel::from_bytes(&good[..cut]);
        }
        let error = ModelProto::parse(&good[..good.len() - 3]).unwrap_err();
        assert!(matches!(error, SentencePieceError::Malformed { .. }), "{error}");
        let error = ModelProto::parse(&[0x0f]).unwrap_err().to_string();
        assert!(error.contains("wire type of 0, 1, 2 or 5"), "{error}");
        let error = ModelProto::parse(&[0x0a, 0x05, 0x01]).unwrap_err().to_string();
        assert!(error.contains("5 bytes"), "{error}");
        // A piece's score sent as a varint.
        let error = ModelProto::parse(&bytes_field(1, &[key(2, 0), varint(3)].concat())).unwrap_err().to_string();
        assert!(error.contains("SentencePiece.score (field 2) as a 32-bit float"), "{error}");
        let error = ModelProto::parse(&[0x80; 12]).unwrap_err().to_string();
        assert!(error.contains("at most 10 bytes"), "{error}");
        let error = SentencePieceModel::from_bytes(&[]).unwrap_err();
        assert!(matches!(error, SentencePieceError::Unsupported(_) | SentencePieceError::Invalid(_)), "{error}");
    }

    #[test]
    fn invalid_models_are_refused() {
        let error = SentencePieceModel::from_bytes(&tiny_bpe(&piece("ab", 0.0, 1))).unwrap_err().to_string();
        assert!(error.contains("defined twice"), "{error}");
        let error = SentencePieceModel::from_bytes(&tiny_bpe(&piece("<0x41>", 0.0, 6))).unwrap_err().to_string();
        assert!(error.contains("without byte fallback"), "{error}");
        let error = SentencePieceModel::from_bytes(&tiny_bpe(&piece("<u>", 0.0, 2))).unwrap_err().to_string();
        assert!(error.contains("second unknown"), "{error}");
        let word = bytes_field(2, &[key(3, 0), varint(3)].concat());
        let error = SentencePieceModel::from_bytes(&tiny_bpe(&word)).unwrap_err();
        assert!(matches!(error, SentencePieceError::Unsupported(_)), "{error}");
        let fallback = bytes_field(2, &[key(35, 0), varint(1)].concat());
        let error = SentencePieceModel::from_bytes(&tiny_bpe(&fallback)).unwrap_err().to_string();
        assert!(error.contains("0 of the 256 byte pieces"), "{error}");
    }

    #[test]
    fn byte_runs_decode_as_the_library_does() {
        let mut text = Vec::new();
        let mut bytes = vec![0xe6, 0x97, b'a', 0xe6, 0x97, 0xa5, 0xff, 0xed, 0xa0, 0x80];
        flush_bytes(&mut bytes, &mut text);
        // A cut character gives one U+FFFD per byte, a surrogate too.
        assert_eq!(String::from_utf8(text).unwrap(), "\u{fffd}\u{fffd}a日\u{fffd}\u{fffd}\u{fffd}\u{fffd}");
        assert!(bytes.is_empty());
        assert_eq!(byte_of_piece("<0x0A>"), Some(10));
        assert_eq!(byte_of_piece("<0x0a>"), None);
    }
}
