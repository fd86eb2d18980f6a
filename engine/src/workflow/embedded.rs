//! Workflows carried inside outputs: the `workflow` (UI) and `prompt` (API) texts that ComfyUI writes
//! into PNG text chunks and into MP4 container metadata.
//!
//! PNG: `tEXt` chunks (`keyword NUL text`, Latin-1) and uncompressed `iTXt` chunks (UTF-8).
//! MP4: ffmpeg with `movflags=use_metadata_tags` writes `moov/udta/meta` (handler `mdta`) holding a
//! `keys` box (the key names, numbered from 1) and an `ilst` box whose items, typed by key number, hold
//! `data` atoms with the values. Both readers check every length against the bytes they have and never
//! index past them.

use crate::mp4::{be32, boxes, child};

/// The workflow texts found in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedWorkflow {
    /// The UI workflow JSON (`workflow`).
    pub workflow: Option<String>,
    /// The API prompt JSON (`prompt`).
    pub prompt: Option<String>,
}

impl EmbeddedWorkflow {
    fn is_empty(&self) -> bool {
        self.workflow.is_none() && self.prompt.is_none()
    }

    fn take(&mut self, key: &str, value: String) {
        match key {
            "workflow" => self.workflow = Some(value),
            "prompt" => self.prompt = Some(value),
            _ => {}
        }
    }
}

/// What kind of container the bytes are, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Png,
    Mp4,
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Recognises a PNG or an MP4/MOV (an `ftyp` box first).
pub fn container(bytes: &[u8]) -> Option<Container> {
    if bytes.starts_with(&PNG_SIGNATURE) {
        Some(Container::Png)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some(Container::Mp4)
    } else {
        None
    }
}

/// Reads the workflow texts of a PNG or MP4; `Err` says why none could be read.
pub fn extract(bytes: &[u8]) -> Result<EmbeddedWorkflow, String> {
    let found = match container(bytes) {
        Some(Container::Png) => png_texts(bytes)?,
        Some(Container::Mp4) => mp4_texts(bytes)?,
        None => return Err("not a PNG or MP4 file".into()),
    };
    if found.is_empty() {
        return Err("the file carries no workflow (no 'workflow' or 'prompt' metadata)".into());
    }
    Ok(found)
}

fn png_texts(bytes: &[u8]) -> Result<EmbeddedWorkflow, String> {
    let mut found = EmbeddedWorkflow::default();
    let mut at = PNG_SIGNATURE.len();
    while at < bytes.len() {
        let length = be32(bytes, at).ok_or("truncated PNG chunk header")? as usize;
        let kind = bytes.get(at + 4..at + 8).ok_or("truncated PNG chunk header")?;
        let data_start = at + 8;
        let data_end = data_start.checked_add(length).filter(|&end| end <= bytes.len()).ok_or_else(|| {
            format!("PNG chunk '{}' claims {length} bytes past the end of the file", String::from_utf8_lossy(kind))
        })?;
        let data = &bytes[data_start..data_end];
        match kind {
            b"tEXt" => {
                if let Some(split) = data.iter().position(|&b| b == 0) {
                    let key = latin1(&data[..split]);
                    found.take(&key, latin1(&data[split + 1..]));
                }
            }
            b"iTXt" => {
                if let Some((key, value)) = itxt(data)? {
                    found.take(&key, value);
                }
            }
            b"IEND" => break,
            _ => {}
        }
        at = data_end + 4; // CRC
    }
    Ok(found)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// An `iTXt` chunk: keyword NUL, compression flag, method, language NUL, translated keyword NUL, text.
fn itxt(data: &[u8]) -> Result<Option<(String, String)>, String> {
    let Some(key_end) = data.iter().position(|&b| b == 0) else { return Ok(None) };
    let key = latin1(&data[..key_end]);
    if key != "workflow" && key != "prompt" {
        return Ok(None);
    }
    let compressed = data.get(key_end + 1).copied().unwrap_or(0) != 0;
    if compressed {
        return Err(format!("the '{key}' text is compressed (zlib iTXt), which kinograph does not read"));
    }
    let mut at = key_end + 3;
    for _ in 0..2 {
        let rest = data.get(at..).unwrap_or_default();
        let Some(end) = rest.iter().position(|&b| b == 0) else { return Ok(None) };
        at += end + 1;
    }
    let text = data.get(at..).unwrap_or_default();
    Ok(Some((key, String::from_utf8_lossy(text).into_owned())))
}

fn mp4_texts(bytes: &[u8]) -> Result<EmbeddedWorkflow, String> {
    let moov = child(bytes, *b"moov")?.ok_or("the MP4 has no 'moov' box")?;
    let mut found = EmbeddedWorkflow::default();
    let mut metas = Vec::new();
    if let Some(udta) = child(moov, *b"udta")?
        && let Some(meta) = child(udta, *b"meta")?
    {
        metas.push(meta);
    }
    if let Some(meta) = child(moov, *b"meta")? {
        metas.push(meta);
    }
    for meta in metas {
        read_meta(meta, &mut found)?;
    }
    Ok(found)
}

/// A `meta` box: a full box in MP4 (4 bytes of version and flags first), a plain one in `QuickTime`.
fn read_meta(meta: &[u8], found: &mut EmbeddedWorkflow) -> Result<(), String> {
    let inner = if meta.get(4..8) == Some(b"hdlr") { meta } else { meta.get(4..).unwrap_or_default() };
    let children = boxes(inner)?;
    let Some(keys) = children.iter().find(|b| &b.kind == b"keys") else { return Ok(()) };
    let Some(items) = children.iter().find(|b| &b.kind == b"ilst") else { return Ok(()) };
    let count = be32(keys.body, 4).ok_or("truncated 'keys' box")? as usize;
    let mut names = Vec::new();
    let mut at = 8;
    for _ in 0..count {
        let size = be32(keys.body, at).ok_or("truncated 'keys' entry")? as usize;
        let end = at.checked_add(size).filter(|&end| size >= 8 && end <= keys.body.len()).ok_or("bad 'keys' entry")?;
        names.push(String::from_utf8_lossy(&keys.body[at + 8..end]).into_owned());
        at = end;
    }
    for item in boxes(items.body)? {
        let index = u32::from_be_bytes(item.kind) as usize;
        let Some(name) = index.checked_sub(1).and_then(|i| names.get(i)) else { continue };
        if let Some(data) = child(item.body, *b"data")? {
            // type indicator (4 bytes) and locale (4 bytes) precede the value
            let value = data.get(8..).unwrap_or_default();
            found.take(name, String::from_utf8_lossy(value).into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        for length in 0..64 {
            let mut bytes: Vec<u8> = (0..length).map(|i| (i * 37 % 251) as u8).collect();
            let _ = extract(&bytes);
            if bytes.len() > 8 {
                bytes[..8].copy_from_slice(&PNG_SIGNATURE);
                let _ = extract(&bytes);
                bytes[4..8].copy_from_slice(b"ftyp");
                let _ = extract(&bytes);
            }
        }
        let mut huge = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
        huge.extend_from_slice(&[0, 0, 0, 1, b'm', b'o', b'o', b'v', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(extract(&huge).is_err());
    }
}
