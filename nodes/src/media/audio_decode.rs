//! Decoding audio files to float samples with symphonia (pure Rust), for `LoadAudio`.
//!
//! What comes out matches what ComfyUI's `LoadAudio` gets from `PyAV` (libavcodec): every channel of the
//! first audio track at the file's own rate, integers scaled to −1..1 by 2^15 (16-bit) or 2^23 (24-bit),
//! floats as stored. Where symphonia's framing differs from libavcodec's the difference is undone here,
//! so that a workflow sees the same samples in kinograph as in ComfyUI:
//! - MP3: both drop the encoder delay and padding that the LAME/Xing header records.
//! - Ogg Vorbis: libavcodec keeps the samples of the last page that lie past its granule position;
//!   symphonia trims them. They are kept here.
//! - AAC in MP4: libavcodec drops the priming samples the edit list skips; symphonia ignores edit lists,
//!   so they are dropped here. ADTS `.aac` has no such list: both keep the priming frame.

use super::MediaError;
use std::path::Path;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatId, FormatOptions, FormatReader, TrackType, well_known};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::Duration;

/// The formats [`decode_audio_file`] reads, for error messages.
pub const AUDIO_FORMATS: &str = "WAV, FLAC, MP3, AAC (.aac, .m4a/.mp4) or Ogg Vorbis";

/// Decoded audio: one sample vector per channel, all the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl DecodedAudio {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Decodes the first audio track of the file at `path`.
pub fn decode_audio_file(path: &Path) -> Result<DecodedAudio, MediaError> {
    let file = std::fs::File::open(path)?;
    let stream = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension() {
        hint.with_extension(&extension.to_string_lossy().to_ascii_lowercase());
    }
    let mut reader = symphonia::default::get_probe()
        .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
        .map_err(|error| failure("not a readable audio file", &error))?;
    let container = reader.format_info().format;
    let declared = declared_frames(reader.as_ref(), container);
    let decoded = decode_track(reader.as_mut(), container == well_known::FORMAT_ID_OGG)?;
    if let Some(declared) = declared.filter(|&declared| (decoded.audio.frames() as u64) < declared) {
        return Err(MediaError::Format(format!(
            "the file is truncated: its header promises {declared} samples but only {} could be decoded",
            decoded.audio.frames()
        )));
    }
    if container == well_known::FORMAT_ID_ISOMP4 {
        let edit = mp4_edit::first_sound_edit(path)?;
        return Ok(decoded.into_edited(edit));
    }
    Ok(decoded.audio)
}

/// The number of samples per channel the first audio track's header promises, where that count is
/// exact: WAV and FLAC headers, and MP3s with a LAME header (which also records the delay). A WAV
/// written while streaming may carry the largest size as "unknown", so a count that large is not used.
fn declared_frames(reader: &dyn FormatReader, container: FormatId) -> Option<u64> {
    let track = reader.first_track(TrackType::Audio)?;
    let frames = track.num_frames?;
    let parameters = track.codec_params.as_ref()?.audio()?;
    match container {
        well_known::FORMAT_ID_WAVE => {
            let channels = parameters.channels.as_ref().map_or(1, |channels| channels.count() as u64);
            let bytes_per_sample =
                u64::from(parameters.bits_per_coded_sample.or(parameters.bits_per_sample)?.div_ceil(8));
            (frames.saturating_mul(channels).saturating_mul(bytes_per_sample) < u64::from(u32::MAX) - 8)
                .then_some(frames)
        }
        well_known::FORMAT_ID_FLAC => Some(frames),
        well_known::FORMAT_ID_MP3 => track.delay.map(|_| frames),
        _ => None,
    }
}

/// Decoded samples and where each packet's samples begin.
struct Decoded {
    audio: DecodedAudio,
    packet_starts: Vec<usize>,
}

impl Decoded {
    /// Keeps what libavcodec keeps of an MP4 edit: from the edit's start, through every packet that
    /// begins before its end (a packet that straddles the end is kept whole).
    fn into_edited(self, edit: Option<mp4_edit::Edit>) -> DecodedAudio {
        let Some(edit) = edit else { return self.audio };
        let rate = u128::from(self.audio.sample_rate);
        let to_samples = |value: u64, timescale: u32| {
            usize::try_from(u128::from(value) * rate / u128::from(timescale.max(1))).unwrap_or(usize::MAX)
        };
        let total = self.audio.frames();
        let start = to_samples(edit.media_start, edit.media_timescale).min(total);
        let end = match edit.duration {
            Some(duration) => {
                let edit_end = start.saturating_add(to_samples(duration, edit.movie_timescale));
                self.packet_starts.iter().copied().find(|&packet_start| packet_start >= edit_end).unwrap_or(total)
            }
            None => total,
        };
        let end = end.max(start);
        let channels = self.audio.channels.into_iter().map(|channel| channel[start..end].to_vec()).collect();
        DecodedAudio { sample_rate: self.audio.sample_rate, channels }
    }
}

/// Decodes every packet of the reader's first audio track. `keep_end_padding`: decode each packet
/// whole, as libavcodec does for Ogg, where symphonia would cut the last page at its granule position.
fn decode_track(reader: &mut dyn FormatReader, keep_end_padding: bool) -> Result<Decoded, MediaError> {
    let track =
        reader.first_track(TrackType::Audio).ok_or_else(|| MediaError::Format("the file has no audio track".into()))?;
    let track_id = track.id;
    let parameters = track
        .codec_params
        .as_ref()
        .and_then(|parameters| parameters.audio())
        .ok_or_else(|| MediaError::Format("the audio track has no codec parameters".into()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&parameters, &AudioDecoderOptions::default())
        .map_err(|error| failure("the audio codec is not supported", &error))?;

    let mut sample_rate = parameters.sample_rate;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut packet_starts = Vec::new();
    let mut scratch: Vec<Vec<f32>> = Vec::new();
    loop {
        let mut packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::ResetRequired) => {
                return Err(MediaError::Format(
                    "the file chains several audio streams one after another (a chained Ogg file), which is not \
                     supported"
                        .into(),
                ));
            }
            Err(error) => return Err(truncated(&error, &channels)),
        };
        if packet.track_id != track_id {
            continue;
        }
        if keep_end_padding {
            packet.trim_end = Duration::default();
        }
        let decoded = decoder.decode(&packet).map_err(|error| truncated(&error, &channels))?;
        if decoded.frames() == 0 {
            continue;
        }
        let spec = decoded.spec();
        if channels.is_empty() {
            channels = vec![Vec::new(); spec.channels().count()];
            sample_rate = Some(spec.rate());
        } else if channels.len() != spec.channels().count() || sample_rate != Some(spec.rate()) {
            return Err(MediaError::Format(format!(
                "the audio changes from {} channels at {} Hz to {} at {} Hz part way through",
                channels.len(),
                sample_rate.unwrap_or_default(),
                spec.channels().count(),
                spec.rate()
            )));
        }
        packet_starts.push(channels[0].len());
        decoded.copy_to_vecs_planar(&mut scratch);
        for (channel, samples) in channels.iter_mut().zip(&scratch) {
            channel.extend_from_slice(samples);
        }
    }
    let sample_rate = sample_rate
        .filter(|&rate| rate > 0)
        .ok_or_else(|| MediaError::Format("the audio track does not give its sample rate".into()))?;
    if channels.is_empty() {
        return Err(MediaError::Format("no audio could be decoded from the file".into()));
    }
    Ok(Decoded { audio: DecodedAudio { sample_rate, channels }, packet_starts })
}

/// A symphonia error before any audio was read.
fn failure(what: &str, error: &SymphoniaError) -> MediaError {
    MediaError::Format(format!("{what} ({error})"))
}

/// A symphonia error while reading packets: the file ends early or is damaged there.
fn truncated(error: &SymphoniaError, channels: &[Vec<f32>]) -> MediaError {
    let decoded = channels.first().map_or(0, Vec::len);
    MediaError::Format(format!("the file is truncated or damaged after {decoded} samples ({error})"))
}

/// The edit list of an MP4's sound track, which symphonia reads but does not apply: AAC encoders put
/// their priming samples before the edit's start, and libavcodec drops them.
mod mp4_edit {
    use super::MediaError;
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::Path;

    /// The most `moov` box read into memory (its sample tables grow with the length of the file).
    const MAX_MOVIE_BOX: u64 = 256 << 20;

    /// The first edit of a sound track that plays media (an empty edit only delays the start).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Edit {
        /// Where playback starts, in `media_timescale` units.
        pub media_start: u64,
        pub media_timescale: u32,
        /// How long it plays, in `movie_timescale` units; `None` when the file leaves it open.
        pub duration: Option<u64>,
        pub movie_timescale: u32,
    }

    /// The edit of the first sound track of the MP4 at `path`, if it has one.
    pub fn first_sound_edit(path: &Path) -> Result<Option<Edit>, MediaError> {
        let Some(movie) = read_movie_box(&mut File::open(path)?)? else { return Ok(None) };
        let movie_timescale = child(&movie, *b"mvhd").and_then(|header| timescale(header, 12, 20));
        let Some(movie_timescale) = movie_timescale else { return Ok(None) };
        for track in children(&movie).filter(|(kind, _)| kind == b"trak").map(|(_, body)| body) {
            let Some(media) = child(track, *b"mdia") else { continue };
            if child(media, *b"hdlr").and_then(|handler| handler.get(8..12)) != Some(b"soun".as_slice()) {
                continue;
            }
            let media_timescale = child(media, *b"mdhd").and_then(|header| timescale(header, 12, 20));
            let edits = child(track, *b"edts").and_then(|edits| child(edits, *b"elst"));
            return Ok(match (media_timescale, edits) {
                (Some(media_timescale), Some(list)) => first_playing_edit(list, media_timescale, movie_timescale),
                _ => None,
            });
        }
        Ok(None)
    }

    /// Reads the top-level `moov` box's body, skipping the others (`mdat` may be huge).
    fn read_movie_box(file: &mut File) -> Result<Option<Vec<u8>>, MediaError> {
        let length = file.metadata()?.len();
        let mut position = 0_u64;
        while position + 8 <= length {
            file.seek(SeekFrom::Start(position))?;
            let mut header = [0_u8; 16];
            file.read_exact(&mut header[..8])?;
            let mut size = u64::from(u32::from_be_bytes([header[0], header[1], header[2], header[3]]));
            let mut header_length = 8;
            if size == 1 {
                file.read_exact(&mut header[8..])?;
                size = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
                header_length = 16;
            } else if size == 0 {
                size = length - position;
            }
            if size < header_length || position + size > length {
                return Ok(None);
            }
            if &header[4..8] == b"moov" {
                if size - header_length > MAX_MOVIE_BOX {
                    return Ok(None);
                }
                let mut body = vec![0_u8; (size - header_length) as usize];
                file.read_exact(&mut body)?;
                return Ok(Some(body));
            }
            position += size;
        }
        Ok(None)
    }

    /// The boxes directly inside `data`, as (type, body); stops at the first malformed header.
    fn children(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
        let mut rest = data;
        std::iter::from_fn(move || {
            let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
            let (header, size) = match size {
                0 => (8, rest.len()),
                1 => (16, usize::try_from(u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)).ok()?),
                size => (8, size),
            };
            let body = rest.get(header..size)?;
            rest = &rest[size..];
            Some((kind, body))
        })
    }

    fn child(data: &[u8], kind: [u8; 4]) -> Option<&[u8]> {
        children(data).find(|(found, _)| *found == kind).map(|(_, body)| body)
    }

    /// The timescale of an `mvhd` or `mdhd` box: at `offset_v0` in version 0, `offset_v1` in version 1.
    fn timescale(header: &[u8], offset_v0: usize, offset_v1: usize) -> Option<u32> {
        let offset = if *header.first()? == 1 { offset_v1 } else { offset_v0 };
        Some(u32::from_be_bytes(header.get(offset..offset + 4)?.try_into().ok()?)).filter(|&scale| scale > 0)
    }

    /// The first entry of an `elst` box whose media time is not −1 (an empty edit).
    fn first_playing_edit(list: &[u8], media_timescale: u32, movie_timescale: u32) -> Option<Edit> {
        let version = *list.first()?;
        let count = u32::from_be_bytes(list.get(4..8)?.try_into().ok()?) as usize;
        let entry_length = if version == 1 { 20 } else { 12 };
        for index in 0..count {
            let entry = list.get(8 + index * entry_length..8 + (index + 1) * entry_length)?;
            let (duration, media_time) = if version == 1 {
                (u64::from_be_bytes(entry[..8].try_into().ok()?), i64::from_be_bytes(entry[8..16].try_into().ok()?))
            } else {
                (
                    u64::from(u32::from_be_bytes(entry[..4].try_into().ok()?)),
                    i64::from(i32::from_be_bytes(entry[4..8].try_into().ok()?)),
                )
            };
            if media_time < 0 {
                continue;
            }
            return Some(Edit {
                media_start: media_time as u64,
                media_timescale,
                duration: (duration > 0).then_some(duration),
                movie_timescale,
            });
        }
        None
    }
}
