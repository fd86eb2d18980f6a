//! Parsing a GGUF header (versions 2 and 3) from the bytes of the file: the key–value metadata of every
//! value kind, arrays included, and the tensor infos of any rank. Nothing here trusts a count or a length
//! read from the file: each is checked against the bytes that remain before anything is allocated for it.

use super::types::GgmlType;

/// `GGUF` as the first four bytes of the file.
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";

/// The data-section alignment when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a tensor may have: ggml uses 4; ComfyUI-GGUF re-inserts 5-D conv weights after
/// quantizing; more is taken as a corrupt header.
pub const MAX_DIMS: usize = 8;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// An array of values of one kind (arrays of arrays are allowed).
    Array(Vec<MetadataValue>),
}

impl MetadataValue {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// An integer value of any width, if it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => i64::try_from(v).ok()?,
            MetadataValue::I64(v) => v,
            _ => return None,
        })
    }

    /// A non-negative integer value of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U64(v) => Some(v),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// A floating-point or integer value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The items of an array value.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            MetadataValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF name of the value's kind (`u32`, `string`, `array`, …), for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataValue::U8(_) => "u8",
            MetadataValue::I8(_) => "i8",
            MetadataValue::U16(_) => "u16",
            MetadataValue::I16(_) => "i16",
            MetadataValue::U32(_) => "u32",
            MetadataValue::I32(_) => "i32",
            MetadataValue::U64(_) => "u64",
            MetadataValue::I64(_) => "i64",
            MetadataValue::F32(_) => "f32",
            MetadataValue::F64(_) => "f64",
            MetadataValue::Bool(_) => "bool",
            MetadataValue::String(_) => "string",
            MetadataValue::Array(_) => "array",
        }
    }
}

/// One tensor info as the header states it.
#[derive(Debug, Clone)]
pub(crate) struct RawTensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying axis.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Relative to the start of the data section.
    pub offset: u64,
}

/// A parsed header.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: Vec<(String, MetadataValue)>,
    pub tensors: Vec<RawTensorInfo>,
    /// Where the tensor infos end (the data section starts at the next multiple of the alignment).
    pub end: usize,
}

/// A reader over the header bytes that turns every short read into a message saying what was expected
/// where.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        let end = self.position.checked_add(count).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
            format!(
                "the file ends at byte {} inside the header, reading {} ({count} bytes at byte {}); is it truncated?",
                self.bytes.len(),
                what(),
                self.position
            )
        })?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count that must fit in the bytes left, each item taking at least `min_item_bytes`.
    fn count(&mut self, min_item_bytes: usize, what: &dyn Fn() -> String) -> Result<usize, String> {
        let count = self.u64(what)?;
        let left = (self.bytes.len() - self.position) as u64;
        if count.saturating_mul(min_item_bytes as u64) > left {
            return Err(format!(
                "{} says {count} items but only {left} bytes of the file follow; is it truncated or corrupt?",
                what()
            ));
        }
        Ok(count as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, String> {
        let length = self.count(1, &|| format!("the length of {}", what()))?;
        let bytes = self.take(length, what)?;
        // Tokenizer vocabularies can hold byte pieces that are not UTF-8 on their own; keep them readable.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, kind: u32, depth: usize, what: &dyn Fn() -> String) -> Result<MetadataValue, String> {
        Ok(match kind {
            0 => MetadataValue::U8(self.array::<1>(what)?[0]),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => return Err(format!("{} is a bool stored as {other}, expected 0 or 1", what())),
            },
            8 => MetadataValue::String(self.string(what)?),
            9 => {
                if depth > 8 {
                    return Err(format!("{} nests arrays more than 8 deep", what()));
                }
                let item_kind = self.u32(&|| format!("the item type of {}", what()))?;
                let min_item_bytes = match item_kind {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(format!("{} is an array of unknown value type {other}", what())),
                };
                let count = self.count(min_item_bytes, &|| format!("the length of {}", what()))?;
                let mut items = Vec::with_capacity(count);
                for index in 0..count {
                    items.push(self.value(item_kind, depth + 1, &|| format!("item {index} of {}", what()))?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(format!("{} has unknown value type {other} (GGUF defines 0–12)", what())),
        })
    }
}

/// Parses the header at the start of `bytes` (the whole file).
pub(crate) fn parse(bytes: &[u8]) -> Result<Header, String> {
    let mut cursor = Cursor { bytes, position: 0 };
    let magic = cursor
        .array::<4>(&|| "the magic number".into())
        .map_err(|_| format!("the file is {} bytes long, too short to be a GGUF file", bytes.len()))?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file: it starts with {:?} ({}), expected \"GGUF\"",
            String::from_utf8_lossy(&magic),
            magic.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
        ));
    }
    let version = cursor.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 (counts of 32 bits) is not supported; expected version 2 or 3".into()),
        other if other.swap_bytes() <= 3 => {
            return Err(format!("a big-endian GGUF file (version {}) is not supported", other.swap_bytes()));
        }
        other => return Err(format!("unknown GGUF version {other}; expected 2 or 3")),
    }
    // The smallest tensor info: an empty name (8), no dimensions (4), type (4), offset (8).
    let tensor_count = cursor.count(24, &|| "the tensor count".into())?;
    // The smallest key-value pair: an empty key (8), a kind (4), a one-byte value.
    let metadata_count = cursor.count(13, &|| "the metadata count".into())?;
    let mut metadata = Vec::with_capacity(metadata_count);
    for index in 0..metadata_count {
        let key = cursor.string(&|| format!("the key of metadata entry {index}"))?;
        let what = || format!("metadata '{key}'");
        let kind = cursor.u32(&|| format!("the value type of {}", what()))?;
        let value = cursor.value(kind, 0, &what)?;
        metadata.push((key, value));
    }
    let mut tensors = Vec::with_capacity(tensor_count);
    for index in 0..tensor_count {
        let name = cursor.string(&|| format!("the name of tensor {index}"))?;
        let what = |field: &str| format!("the {field} of tensor '{name}'");
        let rank = cursor.u32(&|| what("rank"))? as usize;
        if rank > MAX_DIMS {
            return Err(format!("tensor '{name}' has {rank} dimensions; at most {MAX_DIMS} are supported"));
        }
        let mut dims = Vec::with_capacity(rank);
        for axis in 0..rank {
            dims.push(cursor.u64(&|| what(&format!("dimension {axis}")))?);
        }
        let ty = GgmlType::from_id(cursor.u32(&|| what("type"))?);
        let offset = cursor.u64(&|| what("data offset"))?;
        tensors.push(RawTensorInfo { name, dims, ty, offset });
    }
    Ok(Header { version, metadata, tensors, end: cursor.position })
}
