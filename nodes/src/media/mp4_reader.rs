//! Reads the first H.264 video track of an MP4 back as RGB frames, one at a time.
//!
//! Only `moov` is read whole; each frame's bytes are found through the sample table (`stsz` sizes,
//! `stsc` samples per chunk, `stco`/`co64` chunk offsets) and read when that frame is asked for, so
//! memory stays at one encoded frame and one picture whatever the length. The parameter sets come from
//! `avcC` and go before the first frame. Files [`super::mp4_writer::Mp4Writer`] makes are read this way; so are
//! other files with an `avc1` track of 4:2:0 Baseline, Main or High without B-frame reordering that
//! openh264 can decode.

use super::MediaError;
use super::h264::H264Decoder;
use kinograph_engine::mp4::{Mp4Box, boxes, child, read_top_level_box};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An MP4's video track, decoded on demand.
pub struct Mp4Reader {
    path: PathBuf,
    file: BufReader<File>,
    track: VideoTrack,
    decoder: H264Decoder,
    next_sample: usize,
    /// Pictures the decoder gave back after the last sample.
    flushed: std::collections::VecDeque<Vec<u8>>,
    finished: bool,
}

impl Mp4Reader {
    /// Opens `path` and reads its sample table.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let fail = |message: String| MediaError::Format(format!("{}: {message}", path.display()));
        let file = File::open(path).map_err(|error| fail(format!("cannot open: {error}")))?;
        let mut file = BufReader::new(file);
        let moov = read_top_level_box(&mut file, *b"moov")
            .map_err(|error| fail(format!("cannot read: {error}")))?
            .ok_or_else(|| fail("no `moov` box: not an MP4 file, or one cut short".into()))?;
        let track = boxes(&moov)
            .map_err(&fail)?
            .into_iter()
            .filter(|found| &found.kind == b"trak")
            .find_map(|trak| VideoTrack::parse(trak.body).transpose())
            .ok_or_else(|| fail("no H.264 (`avc1`) video track".into()))?
            .map_err(fail)?;
        let decoder = H264Decoder::new(track.width, track.height)?;
        Ok(Mp4Reader {
            path: path.to_path_buf(),
            file,
            track,
            decoder,
            next_sample: 0,
            flushed: std::collections::VecDeque::new(),
            finished: false,
        })
    }

    /// Width and height of the frames.
    pub fn size(&self) -> (usize, usize) {
        (self.track.width, self.track.height)
    }

    /// How many frames the track holds.
    pub fn frame_count(&self) -> usize {
        self.track.samples.len()
    }

    /// Frames per second, from the track's first sample duration.
    pub fn fps(&self) -> Option<f64> {
        self.track.timing.filter(|(_, ticks)| *ticks > 0).map(|(scale, ticks)| f64::from(scale) / f64::from(ticks))
    }

    /// The next frame as `width × height` RGB bytes, or `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, MediaError> {
        while let Some(&(offset, size)) = self.track.samples.get(self.next_sample) {
            let mut sample = vec![0; size as usize];
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(&mut sample).map_err(|error| {
                MediaError::Format(format!(
                    "{}: frame {} ({size} bytes at {offset}) cannot be read: {error}",
                    self.path.display(),
                    self.next_sample
                ))
            })?;
            let mut annex_b = if self.next_sample == 0 { self.track.parameter_sets.clone() } else { Vec::new() };
            length_prefixed_to_annex_b(&sample, self.track.length_size, &mut annex_b).map_err(|message| {
                MediaError::Format(format!("{}: frame {}: {message}", self.path.display(), self.next_sample))
            })?;
            self.next_sample += 1;
            if let Some(rgb) = self.decoder.decode(&annex_b)? {
                return Ok(Some(rgb));
            }
        }
        if !self.finished {
            self.finished = true;
            self.flushed.extend(self.decoder.flush()?);
        }
        Ok(self.flushed.pop_front())
    }
}

/// What the reader needs of a video track.
struct VideoTrack {
    width: usize,
    height: usize,
    /// Where each frame's bytes are: offset and size.
    samples: Vec<(u64, u32)>,
    /// Bytes of each NAL unit's length prefix (1, 2 or 4).
    length_size: usize,
    /// SPS and PPS units in Annex B form, sent before the first frame.
    parameter_sets: Vec<u8>,
    /// Ticks per second and ticks per frame of the first sample (`stts`), when the track states them.
    timing: Option<(u32, u32)>,
}

impl VideoTrack {
    /// The track in `trak`, or `None` when it is not H.264 video.
    fn parse(trak: &[u8]) -> Result<Option<Self>, String> {
        let Some(SampleEntry { mdia, stbl, kind, body: entry }) = first_sample_entry(trak)? else { return Ok(None) };
        if &kind != b"avc1" && &kind != b"avc3" {
            return Ok(None);
        }
        // The visual sample entry's fixed fields take 78 bytes; its child boxes follow.
        let width = usize::from(read_u16(entry, 24)?);
        let height = usize::from(read_u16(entry, 26)?);
        let avcc = child(entry.get(78..).unwrap_or_default(), *b"avcC")?.ok_or("no `avcC` box")?;
        let (length_size, parameter_sets) = parse_avcc(avcc)?;
        let timescale = child(mdia, *b"mdhd")?.map(|mdhd| match mdhd.first() {
            Some(1) => read_u32(mdhd, 20),
            _ => read_u32(mdhd, 12),
        });
        let first_duration = child(stbl, *b"stts")?.map(|stts| read_u32(stts, 12));
        let timing = match (timescale, first_duration) {
            (Some(Ok(scale)), Some(Ok(ticks))) => Some((scale, ticks)),
            _ => None,
        };
        let samples = sample_places(stbl)?;
        Ok(Some(VideoTrack { width, height, samples, length_size, parameter_sets, timing }))
    }
}

/// A track's media boxes and the first entry of its sample description.
pub(super) struct SampleEntry<'a> {
    pub mdia: &'a [u8],
    pub stbl: &'a [u8],
    /// The entry's format (`avc1`, `mp4a`, ...).
    pub kind: [u8; 4],
    pub body: &'a [u8],
}

/// `trak`'s `mdia`, `stbl` and first sample entry (`mdia/minf/stbl/stsd`), or `None` when a box is missing.
pub(super) fn first_sample_entry(trak: &[u8]) -> Result<Option<SampleEntry<'_>>, String> {
    let Some(mdia) = child(trak, *b"mdia")? else { return Ok(None) };
    let Some(minf) = child(mdia, *b"minf")? else { return Ok(None) };
    let Some(stbl) = child(minf, *b"stbl")? else { return Ok(None) };
    let Some(stsd) = child(stbl, *b"stsd")? else { return Ok(None) };
    // Full box header and entry count, then the first sample entry.
    let first = boxes(stsd.get(8..).unwrap_or_default())?.first().copied();
    Ok(first.map(|Mp4Box { kind, body }| SampleEntry { mdia, stbl, kind, body }))
}

/// Each sample's offset and size, from `stsz`, `stsc` and `stco` or `co64`.
pub(super) fn sample_places(stbl: &[u8]) -> Result<Vec<(u64, u32)>, String> {
    let stsz = child(stbl, *b"stsz")?.ok_or("no `stsz` box")?;
    let uniform = read_u32(stsz, 4)?;
    let count = read_u32(stsz, 8)? as usize;
    let sizes: Vec<u32> = if uniform == 0 {
        (0..count).map(|index| read_u32(stsz, 12 + 4 * index)).collect::<Result<_, _>>()?
    } else {
        vec![uniform; count]
    };
    let offsets: Vec<u64> = if let Some(stco) = child(stbl, *b"stco")? {
        let chunks = read_u32(stco, 4)? as usize;
        (0..chunks).map(|index| read_u32(stco, 8 + 4 * index).map(u64::from)).collect::<Result<_, _>>()?
    } else {
        let co64 = child(stbl, *b"co64")?.ok_or("no `stco` or `co64` box")?;
        let chunks = read_u32(co64, 4)? as usize;
        (0..chunks).map(|index| read_u64(co64, 8 + 8 * index)).collect::<Result<_, _>>()?
    };
    let stsc = child(stbl, *b"stsc")?.ok_or("no `stsc` box")?;
    let runs = read_u32(stsc, 4)? as usize;
    // (first chunk, counted from 1; samples in each chunk from there on)
    let runs: Vec<(usize, usize)> = (0..runs)
        .map(|index| Ok((read_u32(stsc, 8 + 12 * index)? as usize, read_u32(stsc, 12 + 12 * index)? as usize)))
        .collect::<Result<_, String>>()?;
    let mut places = Vec::with_capacity(count);
    let mut sizes_left = sizes.iter();
    for (chunk, &offset) in offsets.iter().enumerate() {
        let per_chunk = runs.iter().rev().find(|(first, _)| *first <= chunk + 1).map_or(0, |(_, samples)| *samples);
        let mut at = offset;
        for _ in 0..per_chunk {
            let Some(&size) = sizes_left.next() else { break };
            places.push((at, size));
            at += u64::from(size);
        }
    }
    if places.len() != count {
        return Err(format!("the sample table places {} of its {count} frames", places.len()));
    }
    Ok(places)
}

/// The NAL length size and the SPS and PPS units (Annex B) of an `avcC` box.
fn parse_avcc(avcc: &[u8]) -> Result<(usize, Vec<u8>), String> {
    let length_size = usize::from(avcc.get(4).ok_or("`avcC` is cut short")? & 3) + 1;
    let mut at = 5;
    let mut parameter_sets = Vec::new();
    for mask in [0x1f, 0xff] {
        let count = avcc.get(at).ok_or("`avcC` is cut short")? & mask;
        at += 1;
        for _ in 0..count {
            let length = usize::from(read_u16(avcc, at)?);
            let unit = avcc.get(at + 2..at + 2 + length).ok_or("`avcC` is cut short")?;
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(unit);
            at += 2 + length;
        }
    }
    Ok((length_size, parameter_sets))
}

/// Appends the NAL units of a length-prefixed sample to `annex_b`, each after a start code.
fn length_prefixed_to_annex_b(sample: &[u8], length_size: usize, annex_b: &mut Vec<u8>) -> Result<(), String> {
    let mut at = 0;
    while at < sample.len() {
        let prefix = sample.get(at..at + length_size).ok_or("a NAL length is cut short")?;
        let length = prefix.iter().fold(0_usize, |value, byte| value << 8 | usize::from(*byte));
        let unit = sample.get(at + length_size..at + length_size + length).ok_or("a NAL unit is cut short")?;
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(unit);
        at += length_size + length;
    }
    Ok(())
}

fn read_u16(data: &[u8], at: usize) -> Result<u16, String> {
    data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "a box is cut short".into())
}

fn read_u32(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "a box is cut short".into())
}

fn read_u64(data: &[u8], at: usize) -> Result<u64, String> {
    data.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| "a box is cut short".into())
}

#[cfg(test)]
mod tests {
    use super::super::mp4_writer::Mp4Writer;
    use super::*;

    /// A frame whose colours move with `index`: a horizontal ramp, a vertical ramp and a flat channel.
    fn frame(index: usize, width: usize, height: usize) -> Vec<u8> {
        (0..width * height)
            .flat_map(|pixel| {
                let (x, y) = (pixel % width, pixel / width);
                [(x * 255 / width) as u8, (y * 255 / height) as u8, (40 + index * 20) as u8]
            })
            .collect()
    }

    #[test]
    fn frames_written_by_our_writer_read_back_close_to_what_went_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let (width, height, count) = (48, 32, 7);
        let mut writer = Mp4Writer::create(&path, width, height, 24.0, &[]).unwrap();
        for index in 0..count {
            writer.write_frame(&frame(index, width, height)).unwrap();
        }
        writer.finish().unwrap();

        let mut reader = Mp4Reader::open(&path).unwrap();
        assert_eq!((reader.size(), reader.frame_count()), ((width, height), count));
        assert!((reader.fps().unwrap() - 24.0).abs() < 1e-9, "{:?}", reader.fps());
        let mut index = 0;
        while let Some(rgb) = reader.next_frame().unwrap() {
            let original = frame(index, width, height);
            assert_eq!(rgb.len(), original.len());
            // QP 28 on smooth ramps plus 4:2:0 chroma: a few levels on average. The flat channel tells
            // the frames apart (20 levels a frame), so a frame out of order would fail here.
            let mean =
                original.iter().zip(&rgb).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / original.len() as f64;
            assert!(mean < 4.0, "frame {index}: mean difference {mean}");
            let blue = rgb.iter().skip(2).step_by(3).map(|v| f64::from(*v)).sum::<f64>() / (width * height) as f64;
            assert!((blue - (40 + index * 20) as f64).abs() < 5.0, "frame {index}: blue {blue}");
            index += 1;
        }
        assert_eq!(index, count);
    }

    #[test]
    fn files_that_are_not_h264_mp4_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-video.mp4");
        std::fs::write(&path, b"\0\0\0\x10ftypisom\0\0\0\0plain text after").unwrap();
        let error = Mp4Reader::open(&path).err().expect("refused").to_string();
        assert!(error.contains("not-a-video.mp4") && error.contains("no `moov` box"), "{error}");

        // A real file cut short inside its index.
        let whole = dir.path().join("whole.mp4");
        let mut writer = Mp4Writer::create(&whole, 16, 16, 8.0, &[]).unwrap();
        writer.write_frame(&frame(0, 16, 16)).unwrap();
        writer.finish().unwrap();
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
        let error = Mp4Reader::open(&cut).err().expect("refused").to_string();
        assert!(error.contains("cut.mp4"), "{error}");
    }
}
