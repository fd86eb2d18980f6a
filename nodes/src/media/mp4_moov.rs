//! The `moov` box of the MP4s [`super::mp4_writer::Mp4Writer`] makes: an H.264 video track, an optional
//! AAC audio track, and ffmpeg-style `mdta` metadata, built from the sample tables the writer kept.
//!
//! Boxes are laid out as ffmpeg's `mov` muxer writes them, so that ffmpeg, browsers and players treat
//! the files as they treat ComfyUI's. The audio track starts with an edit list that skips the encoder's
//! priming samples and ends where the audio ends, as ffmpeg writes one for AAC; its last packet's
//! duration is cut to match (`stts`), so the track's media time is priming plus audio exactly.

/// Movie-level clock, as ffmpeg writes it.
pub(super) const MOVIE_TIMESCALE: u32 = 1000;

/// Where a track's samples are: each sample's size, and each chunk's file offset and sample count.
#[derive(Debug, Default)]
pub(super) struct SampleTable {
    pub sizes: Vec<u32>,
    pub chunks: Vec<(u64, u32)>,
}

impl SampleTable {
    /// Records a sample of `size` bytes at `offset`, starting a new chunk unless `continues` says it
    /// directly follows this track's previous sample.
    pub fn push(&mut self, offset: u64, size: u32, continues: bool) {
        match self.chunks.last_mut() {
            Some((_, count)) if continues => *count += 1,
            _ => self.chunks.push((offset, 1)),
        }
        self.sizes.push(size);
    }

    /// A table of `samples` samples, each in its own chunk far into a large file: the largest index
    /// that many samples can need, for reserving room for `moov`.
    pub fn worst_case(samples: usize) -> Self {
        SampleTable { sizes: vec![0; samples], chunks: vec![(u64::MAX, 1); samples] }
    }
}

/// What the video track's boxes need.
pub(super) struct VideoTrackBoxes<'a> {
    pub width: usize,
    pub height: usize,
    pub timescale: u32,
    pub frame_duration: u32,
    pub table: &'a SampleTable,
    /// Key frames, counted from 1.
    pub key_frames: &'a [u32],
    pub sps: &'a [u8],
    pub pps: &'a [u8],
}

/// What the audio track's boxes need.
pub(super) struct AudioTrackBoxes<'a> {
    pub sample_rate: u32,
    pub channels: u16,
    /// The `AudioSpecificConfig` for `esds`.
    pub config: &'a [u8],
    /// Priming samples the edit list skips.
    pub delay: u64,
    /// Audio samples per channel after the priming.
    pub samples: u64,
    pub table: &'a SampleTable,
}

impl AudioTrackBoxes<'_> {
    /// Each packet's duration: a frame each, the last one cut so that they add up to priming + audio.
    fn durations(&self) -> Vec<(u32, u32)> {
        let packets = self.table.sizes.len() as u64;
        if packets == 0 {
            return Vec::new();
        }
        let frame = super::aac::FRAME_LENGTH as u64;
        let last = (self.delay + self.samples).saturating_sub((packets - 1) * frame).clamp(1, frame);
        if last == frame {
            vec![(packets as u32, frame as u32)]
        } else if packets == 1 {
            vec![(1, last as u32)]
        } else {
            vec![(packets as u32 - 1, frame as u32), (1, last as u32)]
        }
    }

    fn media_duration(&self) -> u64 {
        self.durations().iter().map(|&(count, ticks)| u64::from(count) * u64::from(ticks)).sum()
    }
}

/// The whole `moov` box.
pub(super) fn moov(
    video: &VideoTrackBoxes<'_>,
    audio: Option<&AudioTrackBoxes<'_>>,
    metadata: &[(String, String)],
) -> Vec<u8> {
    let frames = video.table.sizes.len() as u64;
    let video_duration = movie_time(frames * u64::from(video.frame_duration), video.timescale);
    let audio_duration = audio.map_or(0, |audio| movie_time(audio.samples, audio.sample_rate));
    let mut moov = Vec::new();
    put_box(&mut moov, *b"moov", |moov| {
        put_full_box(moov, *b"mvhd", 1, 0, |b| {
            b.extend_from_slice(&[0; 16]); // creation and modification times
            b.extend_from_slice(&MOVIE_TIMESCALE.to_be_bytes());
            b.extend_from_slice(&video_duration.max(audio_duration).to_be_bytes());
            b.extend_from_slice(&0x0001_0000_u32.to_be_bytes()); // rate 1.0
            b.extend_from_slice(&0x0100_u16.to_be_bytes()); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            put_matrix(b);
            b.extend_from_slice(&[0; 24]);
            b.extend_from_slice(&(if audio.is_some() { 3_u32 } else { 2 }).to_be_bytes()); // next track id
        });
        put_video_track(moov, video, video_duration);
        if let Some(audio) = audio {
            put_audio_track(moov, audio, audio_duration);
        }
        if !metadata.is_empty() {
            put_box(moov, *b"udta", |udta| put_metadata(udta, metadata));
        }
    });
    moov
}

/// `ticks` of a `timescale` clock in movie time, rounded up as ffmpeg does.
fn movie_time(ticks: u64, timescale: u32) -> u64 {
    (ticks * u64::from(MOVIE_TIMESCALE)).div_ceil(u64::from(timescale.max(1)))
}

fn put_track_header(trak: &mut Vec<u8>, track_id: u32, duration: u64, audio: bool, size: (usize, usize)) {
    put_full_box(trak, *b"tkhd", 1, 3, |b| {
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&track_id.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&duration.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&0_u16.to_be_bytes()); // layer
        b.extend_from_slice(&u16::from(audio).to_be_bytes()); // alternate group: ffmpeg puts audio in 1
        b.extend_from_slice(&(if audio { 0x0100_u16 } else { 0 }).to_be_bytes()); // volume
        b.extend_from_slice(&[0; 2]);
        put_matrix(b);
        b.extend_from_slice(&((size.0 as u32) << 16).to_be_bytes());
        b.extend_from_slice(&((size.1 as u32) << 16).to_be_bytes());
    });
}

fn put_media_header(mdia: &mut Vec<u8>, timescale: u32, duration: u64) {
    put_full_box(mdia, *b"mdhd", 1, 0, |b| {
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
        b.extend_from_slice(&0x55c4_u16.to_be_bytes()); // language "und"
        b.extend_from_slice(&[0; 2]);
    });
}

fn put_data_information(minf: &mut Vec<u8>) {
    put_box(minf, *b"dinf", |dinf| {
        put_full_box(dinf, *b"dref", 0, 0, |b| {
            b.extend_from_slice(&1_u32.to_be_bytes());
            put_full_box(b, *b"url ", 0, 1, |_| {});
        });
    });
}

fn put_video_track(moov: &mut Vec<u8>, video: &VideoTrackBoxes<'_>, movie_duration: u64) {
    let frames = video.table.sizes.len() as u32;
    put_box(moov, *b"trak", |trak| {
        put_track_header(trak, 1, movie_duration, false, (video.width, video.height));
        put_box(trak, *b"mdia", |mdia| {
            put_media_header(mdia, video.timescale, u64::from(frames) * u64::from(video.frame_duration));
            put_handler(mdia, *b"vide", "VideoHandler");
            put_box(mdia, *b"minf", |minf| {
                put_full_box(minf, *b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                put_data_information(minf);
                put_box(minf, *b"stbl", |stbl| {
                    put_full_box(stbl, *b"stsd", 0, 0, |b| {
                        b.extend_from_slice(&1_u32.to_be_bytes());
                        put_avc1(b, video);
                    });
                    put_full_box(stbl, *b"stts", 0, 0, |b| {
                        b.extend_from_slice(&1_u32.to_be_bytes());
                        b.extend_from_slice(&frames.to_be_bytes());
                        b.extend_from_slice(&video.frame_duration.to_be_bytes());
                    });
                    put_full_box(stbl, *b"stss", 0, 0, |b| {
                        b.extend_from_slice(&(video.key_frames.len() as u32).to_be_bytes());
                        for frame in video.key_frames {
                            b.extend_from_slice(&frame.to_be_bytes());
                        }
                    });
                    put_chunk_tables(stbl, video.table);
                });
            });
        });
    });
}

fn put_avc1(stsd: &mut Vec<u8>, video: &VideoTrackBoxes<'_>) {
    put_box(stsd, *b"avc1", |entry| {
        entry.extend_from_slice(&[0; 6]);
        entry.extend_from_slice(&1_u16.to_be_bytes()); // data reference index
        entry.extend_from_slice(&[0; 16]);
        entry.extend_from_slice(&(video.width as u16).to_be_bytes());
        entry.extend_from_slice(&(video.height as u16).to_be_bytes());
        entry.extend_from_slice(&0x0048_0000_u32.to_be_bytes()); // 72 dpi
        entry.extend_from_slice(&0x0048_0000_u32.to_be_bytes());
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(&1_u16.to_be_bytes()); // frames per sample
        entry.extend_from_slice(&[0; 32]); // compressor name
        entry.extend_from_slice(&0x0018_u16.to_be_bytes()); // depth
        entry.extend_from_slice(&0xffff_u16.to_be_bytes());
        put_box(entry, *b"avcC", |c| {
            c.push(1);
            c.extend_from_slice(video.sps.get(1..4).unwrap_or(&[0; 3])); // profile, compatibility, level
            c.push(0xff); // 4-byte NAL lengths
            c.push(0xe1); // one SPS
            c.extend_from_slice(&(video.sps.len() as u16).to_be_bytes());
            c.extend_from_slice(video.sps);
            c.push(1); // one PPS
            c.extend_from_slice(&(video.pps.len() as u16).to_be_bytes());
            c.extend_from_slice(video.pps);
        });
    });
}

fn put_audio_track(moov: &mut Vec<u8>, audio: &AudioTrackBoxes<'_>, movie_duration: u64) {
    put_box(moov, *b"trak", |trak| {
        put_track_header(trak, 2, movie_duration, true, (0, 0));
        put_box(trak, *b"edts", |edts| {
            put_full_box(edts, *b"elst", 0, 0, |b| {
                b.extend_from_slice(&1_u32.to_be_bytes());
                b.extend_from_slice(&(movie_duration as u32).to_be_bytes()); // segment duration
                b.extend_from_slice(&(audio.delay as u32).to_be_bytes()); // media time
                b.extend_from_slice(&0x0001_0000_u32.to_be_bytes()); // rate 1.0
            });
        });
        put_box(trak, *b"mdia", |mdia| {
            put_media_header(mdia, audio.sample_rate, audio.media_duration());
            put_handler(mdia, *b"soun", "SoundHandler");
            put_box(mdia, *b"minf", |minf| {
                put_full_box(minf, *b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4]));
                put_data_information(minf);
                put_box(minf, *b"stbl", |stbl| {
                    put_full_box(stbl, *b"stsd", 0, 0, |b| {
                        b.extend_from_slice(&1_u32.to_be_bytes());
                        put_mp4a(b, audio);
                    });
                    let durations = audio.durations();
                    put_full_box(stbl, *b"stts", 0, 0, |b| {
                        b.extend_from_slice(&(durations.len() as u32).to_be_bytes());
                        for (count, ticks) in durations {
                            b.extend_from_slice(&count.to_be_bytes());
                            b.extend_from_slice(&ticks.to_be_bytes());
                        }
                    });
                    put_chunk_tables(stbl, audio.table);
                });
            });
        });
    });
}

/// The `mp4a` sample entry with its `esds` (MPEG-4 audio, `AudioSpecificConfig` as decoder info).
fn put_mp4a(stsd: &mut Vec<u8>, audio: &AudioTrackBoxes<'_>) {
    let sizes = &audio.table.sizes;
    let total_bits: u64 = sizes.iter().map(|&size| u64::from(size) * 8).sum();
    let media = audio.media_duration().max(1);
    let average = total_bits * u64::from(audio.sample_rate) / media;
    // The largest number of bits in any second of packets.
    let per_second = (audio.sample_rate as usize).div_ceil(super::aac::FRAME_LENGTH).max(1);
    let peak = sizes
        .windows(per_second.min(sizes.len()).max(1))
        .map(|w| w.iter().map(|&s| u64::from(s) * 8).sum::<u64>())
        .max()
        .unwrap_or(0);
    let buffer_size = sizes.iter().copied().max().unwrap_or(0);
    put_box(stsd, *b"mp4a", |entry| {
        entry.extend_from_slice(&[0; 6]);
        entry.extend_from_slice(&1_u16.to_be_bytes()); // data reference index
        entry.extend_from_slice(&[0; 8]); // version, revision, vendor
        entry.extend_from_slice(&audio.channels.to_be_bytes());
        entry.extend_from_slice(&16_u16.to_be_bytes()); // sample size
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(&(audio.sample_rate << 16).to_be_bytes());
        put_full_box(entry, *b"esds", 0, 0, |esds| {
            put_descriptor(esds, 0x03, |es| {
                es.extend_from_slice(&2_u16.to_be_bytes()); // ES id: the track's
                es.push(0); // no dependency, URL or OCR stream
                put_descriptor(es, 0x04, |config| {
                    config.push(0x40); // MPEG-4 audio
                    config.push(0x15); // audio stream, upstream 0, reserved 1
                    config.extend_from_slice(&buffer_size.to_be_bytes()[1..]);
                    config.extend_from_slice(&(peak.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                    config.extend_from_slice(&(average.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                    put_descriptor(config, 0x05, |info| info.extend_from_slice(audio.config));
                });
                put_descriptor(es, 0x06, |sl| sl.push(0x02)); // SL config: predefined MP4
            });
        });
    });
}

/// A descriptor with its length in four bytes of 7 bits each, as ffmpeg writes them.
fn put_descriptor(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&[
        0x80 | (length >> 21 & 0x7f) as u8,
        0x80 | (length >> 14 & 0x7f) as u8,
        0x80 | (length >> 7 & 0x7f) as u8,
        (length & 0x7f) as u8,
    ]);
}

/// `stsc` (runs of chunks with equal sample counts), `stsz` and `stco` (or `co64` past 4 GiB).
fn put_chunk_tables(stbl: &mut Vec<u8>, table: &SampleTable) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (index, &(_, count)) in table.chunks.iter().enumerate() {
        if runs.last().is_none_or(|&(_, previous)| previous != count) {
            runs.push((index as u32 + 1, count));
        }
    }
    put_full_box(stbl, *b"stsc", 0, 0, |b| {
        b.extend_from_slice(&(runs.len() as u32).to_be_bytes());
        for (first_chunk, count) in runs {
            b.extend_from_slice(&first_chunk.to_be_bytes());
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&1_u32.to_be_bytes()); // sample description
        }
    });
    put_full_box(stbl, *b"stsz", 0, 0, |b| {
        b.extend_from_slice(&0_u32.to_be_bytes());
        b.extend_from_slice(&(table.sizes.len() as u32).to_be_bytes());
        for size in &table.sizes {
            b.extend_from_slice(&size.to_be_bytes());
        }
    });
    let count = (table.chunks.len() as u32).to_be_bytes();
    if table.chunks.iter().all(|&(offset, _)| u32::try_from(offset).is_ok()) {
        put_full_box(stbl, *b"stco", 0, 0, |b| {
            b.extend_from_slice(&count);
            for &(offset, _) in &table.chunks {
                b.extend_from_slice(&(offset as u32).to_be_bytes());
            }
        });
    } else {
        put_full_box(stbl, *b"co64", 0, 0, |b| {
            b.extend_from_slice(&count);
            for &(offset, _) in &table.chunks {
                b.extend_from_slice(&offset.to_be_bytes());
            }
        });
    }
}

/// Appends a box: 32-bit size, type, then what `body` writes.
pub(super) fn put_box(out: &mut Vec<u8>, kind: [u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
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
