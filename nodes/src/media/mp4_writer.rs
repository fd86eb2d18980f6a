//! A streaming MP4 writer for H.264 video.
//!
//! Layout: `ftyp`, then `mdat` written frame by frame (a 64-bit size patched at the end), then `moov`
//! with one video track. Only each sample's size and key-frame flag stay in memory until `moov` is
//! written; all samples form one chunk, so no per-sample offsets are needed. Metadata goes where ffmpeg
//! puts it with `-movflags use_metadata_tags` (what ComfyUI's `SaveVideo` uses): `moov/udta/meta` with
//! an `mdta` handler, a `keys` box naming each key and an `ilst` box holding UTF-8 `data` values, so
//! `ffprobe` lists them as format tags.
//!
//! Timing follows ComfyUI: the rate is `round(fps·1000)/1000` as a reduced fraction `num/den`; each
//! frame lasts `den` ticks of a `num` Hz clock, both scaled by two until the clock reaches 10000 Hz as
//! ffmpeg's muxer does. Frames of odd width or height are cropped to even (yuv420p needs even sizes;
//! libx264 refuses odd ones), dropping the last column or row.

use super::MediaError;
use super::h264::{AccessUnit, DEFAULT_QP, H264Encoder, NAL_PPS, NAL_SPS, nal_type};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Movie-level clock, as ffmpeg writes it.
const MOVIE_TIMESCALE: u32 = 1000;

/// Writes H.264 frames into an MP4 as they come.
pub struct Mp4Writer<W: Write + Seek> {
    writer: W,
    encoder: H264Encoder,
    /// Width and height of the frames given to [`Self::write_frame`].
    source_width: usize,
    source_height: usize,
    timescale: u32,
    frame_duration: u32,
    metadata: Vec<(String, String)>,
    mdat_start: u64,
    mdat_length: u64,
    sample_sizes: Vec<u32>,
    key_frames: Vec<u32>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl Mp4Writer<BufWriter<File>> {
    /// Creates `path` (replacing it) for `width × height` RGB frames at `fps`, with `metadata` as
    /// container tags (values are stored as given; ComfyUI stores JSON text).
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        fps: f64,
        metadata: &[(String, String)],
    ) -> Result<Self, MediaError> {
        let file = File::create(path)
            .map_err(|error| MediaError::Format(format!("cannot create {}: {error}", path.display())))?;
        Self::new(BufWriter::new(file), width, height, fps, metadata)
    }
}

impl<W: Write + Seek> Mp4Writer<W> {
    /// Starts an MP4 in `writer` (at its current position, normally the start) at the default quality.
    pub fn new(
        writer: W,
        width: usize,
        height: usize,
        fps: f64,
        metadata: &[(String, String)],
    ) -> Result<Self, MediaError> {
        Self::with_qp(writer, width, height, fps, DEFAULT_QP, metadata)
    }

    /// Like [`Self::new`], coding every frame at quantiser `qp` (12 = best, 51 = smallest; see
    /// [`super::h264::MIN_QP`]).
    pub fn with_qp(
        mut writer: W,
        width: usize,
        height: usize,
        fps: f64,
        qp: u8,
        metadata: &[(String, String)],
    ) -> Result<Self, MediaError> {
        let (timescale, frame_duration) = track_timing(fps)?;
        let (even_width, even_height) = (width & !1, height & !1);
        let encoder = H264Encoder::new(even_width, even_height, fps, qp)?;
        let start = writer.stream_position()?;
        let mut ftyp = Vec::new();
        put_box(&mut ftyp, *b"ftyp", |b| {
            b.extend_from_slice(b"isom");
            b.extend_from_slice(&0x200_u32.to_be_bytes());
            for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
                b.extend_from_slice(brand);
            }
        });
        writer.write_all(&ftyp)?;
        // mdat with a 64-bit size, filled in by `finish`.
        writer.write_all(&1_u32.to_be_bytes())?;
        writer.write_all(b"mdat")?;
        writer.write_all(&0_u64.to_be_bytes())?;
        Ok(Mp4Writer {
            writer,
            encoder,
            source_width: width,
            source_height: height,
            timescale,
            frame_duration,
            metadata: metadata.to_vec(),
            mdat_start: start + ftyp.len() as u64,
            mdat_length: 16,
            sample_sizes: Vec::new(),
            key_frames: Vec::new(),
            sps: None,
            pps: None,
        })
    }

    /// Number of frames written so far.
    pub fn frame_count(&self) -> usize {
        self.sample_sizes.len()
    }

    /// Encodes and writes one RGB frame of the size given at creation.
    pub fn write_frame(&mut self, rgb: &[u8]) -> Result<(), MediaError> {
        super::check_rgb(rgb, self.source_width, self.source_height)?;
        let (width, height) = self.encoder.size();
        let unit = if (width, height) == (self.source_width, self.source_height) {
            self.encoder.encode(rgb)?
        } else {
            self.encoder.encode(&super::crop_rgb(rgb, self.source_width, width, height))?
        };
        self.write_access_unit(&unit)
    }

    fn write_access_unit(&mut self, unit: &AccessUnit) -> Result<(), MediaError> {
        let mut sample_size = 0_u64;
        for nal in &unit.nal_units {
            // Parameter sets go into `avcC`; openh264 repeats the same ones before every IDR.
            match nal_type(nal) {
                NAL_SPS if self.sps.as_deref().is_none_or(|sps| sps == nal.as_slice()) => {
                    self.sps.get_or_insert_with(|| nal.clone());
                    continue;
                }
                NAL_PPS if self.pps.as_deref().is_none_or(|pps| pps == nal.as_slice()) => {
                    self.pps.get_or_insert_with(|| nal.clone());
                    continue;
                }
                _ => {}
            }
            let length = u32::try_from(nal.len())
                .map_err(|_| MediaError::Format(format!("a NAL unit of {} bytes is too large", nal.len())))?;
            self.writer.write_all(&length.to_be_bytes())?;
            self.writer.write_all(nal)?;
            sample_size += 4 + nal.len() as u64;
        }
        let sample_size = u32::try_from(sample_size)
            .map_err(|_| MediaError::Format(format!("an encoded frame of {sample_size} bytes is too large")))?;
        self.sample_sizes.push(sample_size);
        if unit.is_key {
            self.key_frames.push(self.sample_sizes.len() as u32);
        }
        self.mdat_length += u64::from(sample_size);
        Ok(())
    }

    /// Writes the index and metadata, and returns the writer (flushed).
    pub fn finish(mut self) -> Result<W, MediaError> {
        if self.sample_sizes.is_empty() {
            return Err(MediaError::Format("a video needs at least one frame".into()));
        }
        let (Some(sps), Some(pps)) = (self.sps.take(), self.pps.take()) else {
            return Err(MediaError::codec("writing the MP4", "the encoder produced no SPS/PPS parameter sets"));
        };
        let moov = self.moov(&sps, &pps);
        self.writer.write_all(&moov)?;
        let end = self.writer.stream_position()?;
        self.writer.seek(SeekFrom::Start(self.mdat_start + 8))?;
        self.writer.write_all(&self.mdat_length.to_be_bytes())?;
        self.writer.seek(SeekFrom::Start(end))?;
        self.writer.flush()?;
        Ok(self.writer)
    }

    fn moov(&self, sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let frames = self.sample_sizes.len() as u64;
        let media_duration = frames * u64::from(self.frame_duration);
        let movie_duration = (media_duration * u64::from(MOVIE_TIMESCALE)).div_ceil(u64::from(self.timescale));
        let (width, height) = self.encoder.size();
        let chunk_offset = self.mdat_start + 16;
        let mut moov = Vec::new();
        put_box(&mut moov, *b"moov", |moov| {
            put_full_box(moov, *b"mvhd", 1, 0, |b| {
                b.extend_from_slice(&[0; 16]); // creation and modification times
                b.extend_from_slice(&MOVIE_TIMESCALE.to_be_bytes());
                b.extend_from_slice(&movie_duration.to_be_bytes());
                b.extend_from_slice(&0x0001_0000_u32.to_be_bytes()); // rate 1.0
                b.extend_from_slice(&0x0100_u16.to_be_bytes()); // volume 1.0
                b.extend_from_slice(&[0; 10]);
                put_matrix(b);
                b.extend_from_slice(&[0; 24]);
                b.extend_from_slice(&2_u32.to_be_bytes()); // next track id
            });
            put_box(moov, *b"trak", |trak| {
                put_full_box(trak, *b"tkhd", 1, 3, |b| {
                    b.extend_from_slice(&[0; 16]);
                    b.extend_from_slice(&1_u32.to_be_bytes()); // track id
                    b.extend_from_slice(&[0; 4]);
                    b.extend_from_slice(&movie_duration.to_be_bytes());
                    b.extend_from_slice(&[0; 8]);
                    b.extend_from_slice(&[0; 4]); // layer, alternate group
                    b.extend_from_slice(&[0; 4]); // volume, reserved
                    put_matrix(b);
                    b.extend_from_slice(&((width as u32) << 16).to_be_bytes());
                    b.extend_from_slice(&((height as u32) << 16).to_be_bytes());
                });
                put_box(trak, *b"mdia", |mdia| {
                    put_full_box(mdia, *b"mdhd", 1, 0, |b| {
                        b.extend_from_slice(&[0; 16]);
                        b.extend_from_slice(&self.timescale.to_be_bytes());
                        b.extend_from_slice(&media_duration.to_be_bytes());
                        b.extend_from_slice(&0x55c4_u16.to_be_bytes()); // language "und"
                        b.extend_from_slice(&[0; 2]);
                    });
                    put_handler(mdia, *b"vide", "VideoHandler");
                    put_box(mdia, *b"minf", |minf| {
                        put_full_box(minf, *b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                        put_box(minf, *b"dinf", |dinf| {
                            put_full_box(dinf, *b"dref", 0, 0, |b| {
                                b.extend_from_slice(&1_u32.to_be_bytes());
                                put_full_box(b, *b"url ", 0, 1, |_| {});
                            });
                        });
                        put_box(minf, *b"stbl", |stbl| self.put_sample_table(stbl, sps, pps, chunk_offset));
                    });
                });
            });
            if !self.metadata.is_empty() {
                put_box(moov, *b"udta", |udta| put_metadata(udta, &self.metadata));
            }
        });
        moov
    }

    fn put_sample_table(&self, stbl: &mut Vec<u8>, sps: &[u8], pps: &[u8], chunk_offset: u64) {
        let (width, height) = self.encoder.size();
        let frames = self.sample_sizes.len() as u32;
        put_full_box(stbl, *b"stsd", 0, 0, |b| {
            b.extend_from_slice(&1_u32.to_be_bytes());
            put_box(b, *b"avc1", |entry| {
                entry.extend_from_slice(&[0; 6]);
                entry.extend_from_slice(&1_u16.to_be_bytes()); // data reference index
                entry.extend_from_slice(&[0; 16]);
                entry.extend_from_slice(&(width as u16).to_be_bytes());
                entry.extend_from_slice(&(height as u16).to_be_bytes());
                entry.extend_from_slice(&0x0048_0000_u32.to_be_bytes()); // 72 dpi
                entry.extend_from_slice(&0x0048_0000_u32.to_be_bytes());
                entry.extend_from_slice(&[0; 4]);
                entry.extend_from_slice(&1_u16.to_be_bytes()); // frames per sample
                entry.extend_from_slice(&[0; 32]); // compressor name
                entry.extend_from_slice(&0x0018_u16.to_be_bytes()); // depth
                entry.extend_from_slice(&0xffff_u16.to_be_bytes());
                put_box(entry, *b"avcC", |c| {
                    c.push(1);
                    c.extend_from_slice(&sps[1..4]); // profile, compatibility, level
                    c.push(0xff); // 4-byte NAL lengths
                    c.push(0xe1); // one SPS
                    c.extend_from_slice(&(sps.len() as u16).to_be_bytes());
                    c.extend_from_slice(sps);
                    c.push(1); // one PPS
                    c.extend_from_slice(&(pps.len() as u16).to_be_bytes());
                    c.extend_from_slice(pps);
                });
            });
        });
        put_full_box(stbl, *b"stts", 0, 0, |b| {
            b.extend_from_slice(&1_u32.to_be_bytes());
            b.extend_from_slice(&frames.to_be_bytes());
            b.extend_from_slice(&self.frame_duration.to_be_bytes());
        });
        put_full_box(stbl, *b"stss", 0, 0, |b| {
            b.extend_from_slice(&(self.key_frames.len() as u32).to_be_bytes());
            for frame in &self.key_frames {
                b.extend_from_slice(&frame.to_be_bytes());
            }
        });
        put_full_box(stbl, *b"stsc", 0, 0, |b| {
            b.extend_from_slice(&1_u32.to_be_bytes());
            b.extend_from_slice(&1_u32.to_be_bytes()); // first chunk
            b.extend_from_slice(&frames.to_be_bytes()); // samples per chunk
            b.extend_from_slice(&1_u32.to_be_bytes()); // sample description
        });
        put_full_box(stbl, *b"stsz", 0, 0, |b| {
            b.extend_from_slice(&0_u32.to_be_bytes());
            b.extend_from_slice(&frames.to_be_bytes());
            for size in &self.sample_sizes {
                b.extend_from_slice(&size.to_be_bytes());
            }
        });
        if let Ok(offset) = u32::try_from(chunk_offset) {
            put_full_box(stbl, *b"stco", 0, 0, |b| {
                b.extend_from_slice(&1_u32.to_be_bytes());
                b.extend_from_slice(&offset.to_be_bytes());
            });
        } else {
            put_full_box(stbl, *b"co64", 0, 0, |b| {
                b.extend_from_slice(&1_u32.to_be_bytes());
                b.extend_from_slice(&chunk_offset.to_be_bytes());
            });
        }
    }
}

/// `(timescale, ticks per frame)` for `fps` as ComfyUI rounds it: `round(fps·1000)/1000`.
pub fn track_timing(fps: f64) -> Result<(u32, u32), MediaError> {
    let thousandths = (fps * 1000.0).round();
    if !(1.0..=1e9).contains(&thousandths) {
        return Err(MediaError::Format(format!("a frame rate of {fps} cannot be stored; use 0.001 to 1000000")));
    }
    let thousandths = thousandths as u64;
    let divisor = gcd(thousandths, 1000);
    let (mut timescale, mut duration) = (thousandths / divisor, 1000 / divisor);
    while timescale < 10_000 {
        timescale *= 2;
        duration *= 2;
    }
    Ok((timescale as u32, duration as u32))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Appends a box: 32-bit size, type, then what `body` writes.
fn put_box(out: &mut Vec<u8>, kind: [u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and 24-bit flags after the header).
fn put_full_box(out: &mut Vec<u8>, kind: [u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_box(out, kind, |b| {
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(b);
    });
}

fn put_matrix(out: &mut Vec<u8>) {
    for value in [0x0001_0000_u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn put_handler(out: &mut Vec<u8>, handler: [u8; 4], name: &str) {
    put_full_box(out, *b"hdlr", 0, 0, |b| {
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&handler);
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    });
}

/// `meta` (`mdta` handler) with `keys` and `ilst`, as ffmpeg's `use_metadata_tags` writes it.
fn put_metadata(udta: &mut Vec<u8>, metadata: &[(String, String)]) {
    put_full_box(udta, *b"meta", 0, 0, |meta| {
        put_handler(meta, *b"mdta", "");
        put_full_box(meta, *b"keys", 0, 0, |b| {
            b.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
            for (key, _) in metadata {
                b.extend_from_slice(&(8 + key.len() as u32).to_be_bytes());
                b.extend_from_slice(b"mdta");
                b.extend_from_slice(key.as_bytes());
            }
        });
        put_box(meta, *b"ilst", |ilst| {
            for (index, (_, value)) in metadata.iter().enumerate() {
                put_box(ilst, (index as u32 + 1).to_be_bytes(), |item| {
                    put_box(item, *b"data", |data| {
                        data.extend_from_slice(&1_u32.to_be_bytes()); // UTF-8 text
                        data.extend_from_slice(&0_u32.to_be_bytes()); // default locale
                        data.extend_from_slice(value.as_bytes());
                    });
                });
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_follows_the_rounded_rate() {
        assert_eq!(track_timing(24.0).unwrap(), (12288, 512));
        assert_eq!(track_timing(30.0).unwrap(), (15360, 512));
        // 29.97 = 2997/100
        assert_eq!(track_timing(29.97).unwrap(), (11988, 400));
        // 23.9761 rounds to 23.976 = 2997/125
        assert_eq!(track_timing(23.9761).unwrap(), (11988, 500));
        assert!(track_timing(0.0).is_err());
        assert!(track_timing(f64::NAN).is_err());
    }
}
