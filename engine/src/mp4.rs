//! ISO base media (MP4, `QuickTime`) boxes: the container structure shared by the reader of workflows
//! embedded in outputs ([`crate::workflow::embedded`]) and the node library's video reader. Every size is
//! checked against the bytes at hand; nothing indexes past them.

use std::io::{Read, Seek, SeekFrom};

/// One box: its type and its payload (after the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Box<'a> {
    pub kind: [u8; 4],
    pub body: &'a [u8],
}

pub(crate) fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([slice[0], slice[1], slice[2], slice[3]]))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    let mut array = [0_u8; 8];
    array.copy_from_slice(slice);
    Some(u64::from_be_bytes(array))
}

/// The boxes laid end to end in `bytes` (a file's top level, or a box's children); a size of 0 runs to
/// the end, 1 takes the 64-bit size that follows. `Err` names a box whose size does not fit.
pub fn boxes(bytes: &[u8]) -> Result<Vec<Mp4Box<'_>>, String> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u64::from(be32(bytes, at).ok_or("truncated box header")?);
        let mut kind = [0_u8; 4];
        kind.copy_from_slice(&bytes[at + 4..at + 8]);
        let (header, size) = match size {
            0 => (8, (bytes.len() - at) as u64),
            1 => (16, be64(bytes, at + 8).ok_or("truncated 64-bit box size")?),
            size => (8, size),
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| at.checked_add(size))
            .filter(|&end| end <= bytes.len() && end >= at + header)
            .ok_or_else(|| format!("box '{}' has an impossible size {size}", String::from_utf8_lossy(&kind)))?;
        found.push(Mp4Box { kind, body: &bytes[at + header..end] });
        at = end;
    }
    Ok(found)
}

/// The body of the first box of type `kind` among those in `parent`.
pub fn child(parent: &[u8], kind: [u8; 4]) -> Result<Option<&[u8]>, String> {
    Ok(boxes(parent)?.into_iter().find(|b| b.kind == kind).map(|b| b.body))
}

/// Reads the body of the top-level box of type `kind` from a file, seeking past the others (`mdat`,
/// the media, can be most of the file): `None` when there is none, or when a box size runs past the end.
pub fn read_top_level_box(file: &mut (impl Read + Seek), kind: [u8; 4]) -> std::io::Result<Option<Vec<u8>>> {
    let end = file.seek(SeekFrom::End(0))?;
    let mut at = 0;
    while at + 8 <= end {
        file.seek(SeekFrom::Start(at))?;
        let mut header = [0; 8];
        file.read_exact(&mut header)?;
        let mut size = u64::from(u32::from_be_bytes([header[0], header[1], header[2], header[3]]));
        let mut header_size = 8;
        if size == 1 {
            let mut large = [0; 8];
            file.read_exact(&mut large)?;
            size = u64::from_be_bytes(large);
            header_size = 16;
        } else if size == 0 {
            size = end - at;
        }
        if size < header_size || at.checked_add(size).is_none_or(|box_end| box_end > end) {
            return Ok(None);
        }
        if header[4..8] == kind {
            let Ok(length) = usize::try_from(size - header_size) else { return Ok(None) };
            let mut body = vec![0; length];
            file.read_exact(&mut body)?;
            return Ok(Some(body));
        }
        at += size;
    }
    Ok(None)
}
