//! A streaming MP4 writer for H.264 video with an optional AAC-LC sound track.
//!
//! Samples go into `mdat` as they are encoded; only each sample's size, each chunk's offset and the
//! key frames stay in memory until `moov` is written. Video frames and audio packets written in turns
//! form alternating chunks (interleaved, as a player reading the file front to back wants them).
//!
//! Layout: `ftyp`, then room for `moov`, then `mdat` (a 64-bit size patched at the end). When the
//! number of frames (and audio samples) is planned ahead ([`Mp4Options::planned_frames`]), room for the
//! largest `moov` they can need is kept before `mdat` and `moov` is written there, with a `free` box
//! after it: the file starts with its index, as ffmpeg's `faststart` (which ComfyUI uses) leaves it,
//! so players can start before the whole file is read. Without a plan, or when more was written than
//! planned, `moov` goes after `mdat` instead. See `mp4_moov.rs` for the boxes, the metadata (what
//! ffmpeg writes with `-movflags use_metadata_tags`) and the audio edit list.
//!
//! Timing follows ComfyUI: the rate is `round(fps·1000)/1000` as a reduced fraction `num/den`; each
//! frame lasts `den` ticks of a `num` Hz clock, both scaled by two until the clock reaches 10000 Hz as
//! ffmpeg's muxer does. Frames of odd width or height are cropped to even (yuv420p needs even sizes;
//! libx264 refuses odd ones), dropping the last column or row. Audio runs at its own sample rate.

use super::MediaError;
use super::aac::{AacEncoder, DEFAULT_BIT_RATE, FRAME_LENGTH};
use super::h264::{AccessUnit, DEFAULT_QP, H264Encoder, NAL_PPS, NAL_SPS, nal_type};
use super::mp4_moov::{AudioTrackBoxes, SampleTable, VideoTrackBoxes, moov, put_box};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// The largest SPS and PPS the room kept for `moov` allows for (openh264's are under 30 bytes).
const PARAMETER_SET_ROOM: usize = 256;

/// Choices beyond the frame size and rate.
#[derive(Debug, Clone)]
pub struct Mp4Options {
    /// The quantiser of every frame (12 = best, 51 = smallest; see [`super::h264::MIN_QP`]).
    pub qp: u8,
    /// How many frames will be written, when known: the index then goes first ("fast start").
    pub planned_frames: Option<usize>,
    /// A stereo AAC-LC sound track.
    pub audio: Option<AudioOptions>,
}

impl Default for Mp4Options {
    fn default() -> Self {
        Mp4Options { qp: DEFAULT_QP, planned_frames: None, audio: None }
    }
}

/// The sound track of an MP4.
#[derive(Debug, Clone)]
pub struct AudioOptions {
    /// Samples per second of the audio given to [`Mp4Writer::write_audio`]; the track keeps it.
    pub sample_rate: u32,
    /// Bits per second ([`DEFAULT_BIT_RATE`] is what ComfyUI's `PyAV` writes).
    pub bit_rate: u32,
    /// Samples per channel that will be written, for the room kept for the index; more is allowed.
    pub planned_samples: usize,
}

impl AudioOptions {
    /// A track at `sample_rate` with ComfyUI's bit rate, `planned_samples` long.
    pub fn new(sample_rate: u32, planned_samples: usize) -> Self {
        AudioOptions { sample_rate, bit_rate: DEFAULT_BIT_RATE, planned_samples }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Video,
    Audio,
}

struct AudioTrack {
    encoder: AacEncoder,
    table: SampleTable,
}

/// Writes H.264 frames, and AAC audio if asked for, into an MP4 as they come.
pub struct Mp4Writer<W: Write + Seek> {
    writer: W,
    encoder: H264Encoder,
    /// Width and height of the frames given to [`Self::write_frame`].
    source_width: usize,
    source_height: usize,
    timescale: u32,
    frame_duration: u32,
    metadata: Vec<(String, String)>,
    /// Where the room for `moov` starts, and its size, when there is one.
    moov_room: Option<(u64, u64)>,
    mdat_start: u64,
    mdat_length: u64,
    video: SampleTable,
    key_frames: Vec<u32>,
    audio: Option<AudioTrack>,
    last_track: Option<Track>,
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
    /// Starts an MP4 in `writer` (at its current position, normally the start) at the default quality,
    /// video only, with the index at the end.
    pub fn new(
        writer: W,
        width: usize,
        height: usize,
        fps: f64,
        metadata: &[(String, String)],
    ) -> Result<Self, MediaError> {
        Self::with_options(writer, width, height, fps, metadata, &Mp4Options::default())
    }

    /// Like [`Self::new`], coding every frame at quantiser `qp`.
    pub fn with_qp(
        writer: W,
        width: usize,
        height: usize,
        fps: f64,
        qp: u8,
        metadata: &[(String, String)],
    ) -> Result<Self, MediaError> {
        Self::with_options(writer, width, height, fps, metadata, &Mp4Options { qp, ..Mp4Options::default() })
    }

    /// Starts an MP4 in `writer` as `options` say.
    pub fn with_options(
        mut writer: W,
        width: usize,
        height: usize,
        fps: f64,
        metadata: &[(String, String)],
        options: &Mp4Options,
    ) -> Result<Self, MediaError> {
        let (timescale, frame_duration) = track_timing(fps)?;
        let (even_width, even_height) = (width & !1, height & !1);
        let encoder = H264Encoder::new(even_width, even_height, fps, options.qp)?;
        let audio = match &options.audio {
            Some(audio) => Some(AudioTrack {
                encoder: AacEncoder::new(audio.sample_rate, audio.bit_rate)?,
                table: SampleTable::default(),
            }),
            None => None,
        };
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
        let mut mdat_start = start + ftyp.len() as u64;
        let moov_room = match options.planned_frames {
            Some(frames) => {
                let planned_audio = options.audio.as_ref().map_or(0, |audio| audio.planned_samples);
                let room =
                    largest_moov(&(even_width, even_height), frames, audio.as_ref(), planned_audio, metadata) + 8;
                // A `free` box until `moov` replaces its start, so the file is well formed meanwhile.
                let mut free = Vec::with_capacity(room);
                put_box(&mut free, *b"free", |b| b.resize(room, 0));
                writer.write_all(&free)?;
                let room_start = mdat_start;
                mdat_start += room as u64;
                Some((room_start, room as u64))
            }
            None => None,
        };
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
            moov_room,
            mdat_start,
            mdat_length: 16,
            video: SampleTable::default(),
            key_frames: Vec::new(),
            audio,
            last_track: None,
            sps: None,
            pps: None,
        })
    }

    /// Number of frames written so far.
    pub fn frame_count(&self) -> usize {
        self.video.sizes.len()
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

    /// Encodes audio samples: one or two planar channels of equal length (one is written to both
    /// sides of the stereo track), at the rate given in [`Mp4Options::audio`]. Packets are written as
    /// the encoder completes them; the rest waits for the next call or [`Self::finish`].
    pub fn write_audio(&mut self, channels: &[&[f32]]) -> Result<(), MediaError> {
        let Some(mut audio) = self.audio.take() else {
            return Err(MediaError::Format("this MP4 was started without a sound track".into()));
        };
        let mut packets = Vec::new();
        let encoded = audio.encoder.encode(channels, |bytes| {
            packets.push(bytes.to_vec());
            Ok(())
        });
        let written = packets.iter().try_for_each(|packet| self.write_audio_packet(&mut audio.table, packet));
        self.audio = Some(audio);
        encoded.and(written)
    }

    fn write_audio_packet(&mut self, table: &mut SampleTable, packet: &[u8]) -> Result<(), MediaError> {
        let offset = self.mdat_start + self.mdat_length;
        self.writer.write_all(packet)?;
        table.push(offset, packet.len() as u32, self.last_track == Some(Track::Audio));
        self.last_track = Some(Track::Audio);
        self.mdat_length += packet.len() as u64;
        Ok(())
    }

    fn write_access_unit(&mut self, unit: &AccessUnit) -> Result<(), MediaError> {
        let offset = self.mdat_start + self.mdat_length;
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
        self.video.push(offset, sample_size, self.last_track == Some(Track::Video));
        self.last_track = Some(Track::Video);
        if unit.is_key {
            self.key_frames.push(self.video.sizes.len() as u32);
        }
        self.mdat_length += u64::from(sample_size);
        Ok(())
    }

    /// Encodes the audio still buffered, writes the index and metadata, and returns the writer
    /// (flushed).
    pub fn finish(mut self) -> Result<W, MediaError> {
        if self.video.sizes.is_empty() {
            return Err(MediaError::Format("a video needs at least one frame".into()));
        }
        let (Some(sps), Some(pps)) = (self.sps.take(), self.pps.take()) else {
            return Err(MediaError::codec("writing the MP4", "the encoder produced no SPS/PPS parameter sets"));
        };
        let audio = match self.audio.take() {
            Some(AudioTrack { encoder, mut table }) => {
                let (sample_rate, delay, samples) =
                    (encoder.sample_rate(), encoder.delay() as u64, encoder.samples_in());
                let config = encoder.audio_specific_config().to_vec();
                let mut packets = Vec::new();
                encoder.finish(|bytes| {
                    packets.push(bytes.to_vec());
                    Ok(())
                })?;
                for packet in &packets {
                    self.write_audio_packet(&mut table, packet)?;
                }
                (samples > 0).then_some((sample_rate, delay, samples, config, table))
            }
            None => None,
        };
        let video = VideoTrackBoxes {
            width: self.encoder.size().0,
            height: self.encoder.size().1,
            timescale: self.timescale,
            frame_duration: self.frame_duration,
            table: &self.video,
            key_frames: &self.key_frames,
            sps: &sps,
            pps: &pps,
        };
        let audio_boxes = audio.as_ref().map(|(sample_rate, delay, samples, config, table)| AudioTrackBoxes {
            sample_rate: *sample_rate,
            channels: 2,
            config,
            delay: *delay,
            samples: *samples,
            table,
        });
        let moov = moov(&video, audio_boxes.as_ref(), &self.metadata);
        let end = self.writer.stream_position()?;
        match self.moov_room {
            Some((start, room)) if moov.len() as u64 == room || moov.len() as u64 + 8 <= room => {
                self.writer.seek(SeekFrom::Start(start))?;
                self.writer.write_all(&moov)?;
                let free = room - moov.len() as u64;
                if free > 0 {
                    self.writer.write_all(&(free as u32).to_be_bytes())?;
                    self.writer.write_all(b"free")?;
                }
            }
            _ => self.writer.write_all(&moov)?,
        }
        let end = end.max(self.writer.stream_position()?);
        self.writer.seek(SeekFrom::Start(self.mdat_start + 8))?;
        self.writer.write_all(&self.mdat_length.to_be_bytes())?;
        self.writer.seek(SeekFrom::Start(end))?;
        self.writer.flush()?;
        Ok(self.writer)
    }
}

/// The size of the largest `moov` a file of `frames` frames and `audio_samples` audio samples can
/// need: every frame a key frame, every sample its own chunk, 64-bit chunk offsets.
fn largest_moov(
    size: &(usize, usize),
    frames: usize,
    audio: Option<&AudioTrack>,
    audio_samples: usize,
    metadata: &[(String, String)],
) -> usize {
    let parameter_set = [0_u8; PARAMETER_SET_ROOM];
    let video_table = SampleTable::worst_case(frames);
    let key_frames: Vec<u32> = (1..=frames as u32).collect();
    let video = VideoTrackBoxes {
        width: size.0,
        height: size.1,
        timescale: 1,
        frame_duration: 1,
        table: &video_table,
        key_frames: &key_frames,
        sps: &parameter_set,
        pps: &parameter_set,
    };
    let audio_table =
        audio.map(|audio| SampleTable::worst_case((audio.encoder.delay() + audio_samples).div_ceil(FRAME_LENGTH) + 2));
    let audio_boxes = audio.zip(audio_table.as_ref()).map(|(audio, table)| AudioTrackBoxes {
        sample_rate: audio.encoder.sample_rate(),
        channels: 2,
        config: audio.encoder.audio_specific_config(),
        delay: 0,
        samples: 1,
        table,
    });
    moov(&video, audio_boxes.as_ref(), metadata).len()
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

    fn top_level(bytes: &[u8]) -> Vec<[u8; 4]> {
        kinograph_engine::mp4::boxes(bytes).unwrap().iter().map(|found| found.kind).collect()
    }

    #[test]
    fn a_planned_file_has_its_index_first_and_an_overrun_moves_it_to_the_end() {
        for (planned, written) in [(3, 3), (3, 1), (2, 300)] {
            let options = Mp4Options { planned_frames: Some(planned), ..Mp4Options::default() };
            let mut writer =
                Mp4Writer::with_options(std::io::Cursor::new(Vec::new()), 16, 16, 24.0, &[], &options).unwrap();
            for frame in 0..written {
                writer.write_frame(&vec![(frame % 50 * 5) as u8; 16 * 16 * 3]).unwrap();
            }
            let bytes = writer.finish().unwrap().into_inner();
            let expected: &[&[u8; 4]] = if written <= planned {
                &[b"ftyp", b"moov", b"free", b"mdat"]
            } else {
                &[b"ftyp", b"free", b"mdat", b"moov"]
            };
            assert_eq!(
                top_level(&bytes),
                expected.iter().map(|kind| **kind).collect::<Vec<_>>(),
                "{written} of {planned}"
            );
        }
    }
}
