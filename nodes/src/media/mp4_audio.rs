//! Reads the AAC sound track of an MP4 and decodes it (symphonia's AAC-LC decoder), packet by packet.
//!
//! What comes out is what ComfyUI's `VideoFromFile.get_components` gets from `PyAV`: the priming samples
//! that the track's edit list skips are dropped from the start, and the end is kept as decoded (libav
//! does not cut the last packet to the edit's duration either), so the sound runs up to one AAC frame
//! past the video.

use super::MediaError;
use super::aac::AacDecoder;
use super::mp4_reader::{SampleEntry, first_sample_entry, sample_places};
use kinograph_engine::mp4::{boxes, child, read_top_level_box};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Decoded sound: one vector of samples per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Sound {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

/// The first AAC (`mp4a`) track of the MP4 at `path`, decoded; `None` when it has no such track.
pub fn read_mp4_sound(path: &Path) -> Result<Option<Sound>, MediaError> {
    let fail = |message: String| MediaError::Format(format!("{}: {message}", path.display()));
    let file = File::open(path).map_err(|error| fail(format!("cannot open: {error}")))?;
    let mut file = BufReader::new(file);
    let moov = read_top_level_box(&mut file, *b"moov")
        .map_err(|error| fail(format!("cannot read: {error}")))?
        .ok_or_else(|| fail("no `moov` box: not an MP4 file, or one cut short".into()))?;
    let mut track = None;
    for trak in boxes(&moov).map_err(&fail)?.into_iter().filter(|found| &found.kind == b"trak") {
        if let Some(found) = AacTrack::parse(trak.body).map_err(|message| fail(format!("sound track: {message}")))? {
            track = Some(found);
            break;
        }
    }
    let Some(track) = track else { return Ok(None) };
    let mut decoder = AacDecoder::new(&track.config).map_err(|error| fail(error.to_string()))?;
    let mut packet = Vec::new();
    for (index, &(offset, size)) in track.samples.iter().enumerate() {
        packet.resize(size as usize, 0);
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut packet).map_err(|error| {
            fail(format!("audio packet {index} ({size} bytes at {offset}) cannot be read: {error}"))
        })?;
        decoder.decode(&packet).map_err(|error| fail(format!("audio packet {index}: {error}")))?;
    }
    let mut channels = decoder.into_channels();
    let skip = usize::try_from(track.skip).unwrap_or(usize::MAX);
    for channel in &mut channels {
        channel.drain(..skip.min(channel.len()));
    }
    Ok(Some(Sound { sample_rate: track.sample_rate, channels }))
}

/// What decoding needs of an AAC track.
struct AacTrack {
    sample_rate: u32,
    config: Vec<u8>,
    samples: Vec<(u64, u32)>,
    /// Samples the edit list skips at the start.
    skip: u64,
}

impl AacTrack {
    /// The track in `trak`, or `None` when it is not AAC audio.
    fn parse(trak: &[u8]) -> Result<Option<Self>, String> {
        let Some(SampleEntry { mdia, stbl, kind, body: entry }) = first_sample_entry(trak)? else { return Ok(None) };
        if &kind != b"mp4a" {
            return Ok(None);
        }
        // The audio sample entry: 28 bytes of fields (QuickTime's version 1 and 2 add 16 and 36), then
        // child boxes.
        let fields = match read_u16(entry, 8)? {
            0 => 28,
            1 => 44,
            2 => 64,
            version => return Err(format!("an `mp4a` entry of version {version}")),
        };
        let entry_rate = read_u32(entry, 24)? >> 16;
        let esds = child(entry.get(fields..).unwrap_or_default(), *b"esds")?.ok_or("no `esds` box")?;
        let config = decoder_specific_info(esds.get(4..).unwrap_or_default())?;
        let timescale = match child(mdia, *b"mdhd")?.ok_or("no `mdhd` box")? {
            mdhd if mdhd.first() == Some(&1) => read_u32(mdhd, 20)?,
            mdhd => read_u32(mdhd, 12)?,
        };
        let sample_rate = if entry_rate > 0 { entry_rate } else { timescale };
        let media_time = first_media_time(trak)?.unwrap_or(0);
        let skip = media_time * u64::from(sample_rate) / u64::from(timescale.max(1));
        let samples = sample_places(stbl)?;
        Ok(Some(AacTrack { sample_rate, config, samples, skip }))
    }
}

/// The media time where the first non-empty edit of `trak`'s edit list starts.
fn first_media_time(trak: &[u8]) -> Result<Option<u64>, String> {
    let Some(edts) = child(trak, *b"edts")? else { return Ok(None) };
    let Some(elst) = child(edts, *b"elst")? else { return Ok(None) };
    let wide = elst.first() == Some(&1);
    let entries = read_u32(elst, 4)? as usize;
    let entry_size = if wide { 20 } else { 12 };
    for index in 0..entries {
        let at = 8 + index * entry_size;
        let media_time = if wide {
            i64::from_be_bytes(elst.get(at + 8..at + 16).ok_or("`elst` is cut short")?.try_into().unwrap_or_default())
        } else {
            i64::from(read_u32(elst, at + 4)? as i32)
        };
        if media_time >= 0 {
            return Ok(Some(media_time as u64));
        }
    }
    Ok(None)
}

/// The `DecoderSpecificInfo` (the `AudioSpecificConfig`) inside an `esds` box's ES descriptor.
fn decoder_specific_info(descriptors: &[u8]) -> Result<Vec<u8>, String> {
    let (tag, es, _) = descriptor(descriptors)?;
    if tag != 0x03 {
        return Err(format!("`esds` starts with descriptor {tag:#x}, not an ES descriptor"));
    }
    let flags = *es.get(2).ok_or("the ES descriptor is cut short")?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at).ok_or("the ES descriptor is cut short")?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, config, _) = descriptor(es.get(at..).unwrap_or_default())?;
    if tag != 0x04 {
        return Err(format!("expected a decoder config descriptor, found {tag:#x}"));
    }
    if config.first() != Some(&0x40) {
        return Err(format!("the audio is not MPEG-4 AAC (object type {:#x})", config.first().unwrap_or(&0)));
    }
    let (tag, info, _) = descriptor(config.get(13..).unwrap_or_default())?;
    if tag != 0x05 {
        return Err("no `AudioSpecificConfig` in `esds`".into());
    }
    Ok(info.to_vec())
}

/// The tag, body and total size of the descriptor at the start of `bytes` (lengths of up to four
/// 7-bit bytes).
fn descriptor(bytes: &[u8]) -> Result<(u8, &[u8], usize), String> {
    let tag = *bytes.first().ok_or("a descriptor is cut short")?;
    let mut length = 0_usize;
    let mut at = 1;
    loop {
        let byte = *bytes.get(at).ok_or("a descriptor is cut short")?;
        length = length << 7 | usize::from(byte & 0x7f);
        at += 1;
        if byte & 0x80 == 0 || at == 5 {
            break;
        }
    }
    let body = bytes.get(at..at + length).ok_or("a descriptor runs past its box")?;
    Ok((tag, body, at + length))
}

fn read_u16(data: &[u8], at: usize) -> Result<u16, String> {
    data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "a box is cut short".into())
}

fn read_u32(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "a box is cut short".into())
}
