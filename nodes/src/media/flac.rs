//! FLAC output for `SaveAudio`: 16-bit samples, encoded with flacenc (pure Rust), with the prompt and
//! workflow as Vorbis comments.
//!
//! ComfyUI hands `PyAV` float samples and lets libswresample convert them to the FLAC encoder's first
//! sample format, signed 16-bit: `lrintf(x · 32768)` clipped to −32768..32767. [`quantize_16`] does the
//! same, so a file saved here holds the integers ComfyUI's file would hold.

use super::MediaError;
use flacenc::component::{BitRepr, MetadataBlockData};
use flacenc::error::Verify;
use std::io::Write;

/// The most channels a FLAC stream holds.
pub const MAX_CHANNELS: usize = 8;

/// Bits per sample of the files written.
const BITS_PER_SAMPLE: usize = 16;

/// The FLAC metadata block type of a Vorbis comment.
const VORBIS_COMMENT: u8 = 4;

/// One float sample as the signed 16-bit integer libswresample turns it into (round half to even,
/// then clip). NaN becomes 0.
pub fn quantize_16(sample: f32) -> i32 {
    (sample * 32768.0).round_ties_even().clamp(-32768.0, 32767.0) as i32
}

/// Writes `channels` (one slice of float samples per channel, all the same length) as a 16-bit FLAC
/// stream at `sample_rate`, with each `(key, value)` of `comments` as a Vorbis comment.
pub fn write_flac(
    mut writer: impl Write,
    channels: &[&[f32]],
    sample_rate: u32,
    comments: &[(String, String)],
) -> Result<(), MediaError> {
    let frames = channels.first().map_or(0, |channel| channel.len());
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(MediaError::Format(format!("FLAC holds 1 to {MAX_CHANNELS} channels, not {}", channels.len())));
    }
    if channels.iter().any(|channel| channel.len() != frames) {
        return Err(MediaError::Format("every channel must have the same number of samples".into()));
    }
    let mut interleaved = Vec::with_capacity(frames * channels.len());
    for index in 0..frames {
        interleaved.extend(channels.iter().map(|channel| quantize_16(channel[index])));
    }
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, error)| MediaError::codec("configuring the FLAC encoder", error))?;
    let source =
        flacenc::source::MemSource::from_samples(&interleaved, channels.len(), BITS_PER_SAMPLE, sample_rate as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|error| MediaError::codec("encoding FLAC", error))?;
    // flacenc records the last, shorter block as the minimum block size. The format excludes the last
    // block from that minimum (libFLAC and ffmpeg write the fixed size), and symphonia rejects a
    // stream whose other blocks are larger than its declared minimum.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)
        .map_err(|error| MediaError::codec("encoding FLAC", error))?;
    if !comments.is_empty() {
        let block = MetadataBlockData::new_unknown(VORBIS_COMMENT, &vorbis_comment(comments)?)
            .map_err(|error| MediaError::codec("adding FLAC metadata", error))?;
        stream.add_metadata_block(block);
    }
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|error| MediaError::codec("writing FLAC", error))?;
    writer.write_all(sink.as_slice())?;
    Ok(())
}

/// A Vorbis comment block's content: the vendor string, then `key=value` entries, each prefixed by
/// its little-endian 32-bit length.
fn vorbis_comment(comments: &[(String, String)]) -> Result<Vec<u8>, MediaError> {
    let mut block = Vec::new();
    put_with_length(&mut block, b"kinograph")?;
    let count = u32::try_from(comments.len()).map_err(|_| MediaError::Format("too many FLAC comments".into()))?;
    block.extend_from_slice(&count.to_le_bytes());
    for (key, value) in comments {
        put_with_length(&mut block, format!("{key}={value}").as_bytes())?;
    }
    // A metadata block's length field has 24 bits.
    if block.len() >= 1 << 24 {
        return Err(MediaError::Format(format!(
            "the prompt and workflow take {} bytes, more than a FLAC metadata block holds (16 MiB)",
            block.len()
        )));
    }
    Ok(block)
}

/// Appends `text` after its little-endian 32-bit length.
fn put_with_length(block: &mut Vec<u8>, text: &[u8]) -> Result<(), MediaError> {
    let length =
        u32::try_from(text.len()).map_err(|_| MediaError::Format("a FLAC comment is longer than 4 GiB".into()))?;
    block.extend_from_slice(&length.to_le_bytes());
    block.extend_from_slice(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libswresample's float → s16: `lrintf(x * 32768)`, saturated.
    #[test]
    fn quantisation_rounds_half_to_even_and_clips() {
        assert_eq!(quantize_16(0.0), 0);
        assert_eq!(quantize_16(0.5 / 32768.0), 0);
        assert_eq!(quantize_16(1.5 / 32768.0), 2);
        assert_eq!(quantize_16(-1.5 / 32768.0), -2);
        assert_eq!(quantize_16(1.0), 32767);
        assert_eq!(quantize_16(-1.0), -32768);
        assert_eq!(quantize_16(3.0), 32767);
        assert_eq!(quantize_16(-3.0), -32768);
        assert_eq!(quantize_16(f32::NAN), 0);
    }

    #[test]
    fn vorbis_comment_layout() {
        let block = vorbis_comment(&[("prompt".into(), "{}".into())]).unwrap();
        let mut expected = 9_u32.to_le_bytes().to_vec();
        expected.extend_from_slice(b"kinograph");
        expected.extend_from_slice(&1_u32.to_le_bytes());
        expected.extend_from_slice(&9_u32.to_le_bytes());
        expected.extend_from_slice(b"prompt={}");
        assert_eq!(block, expected);
    }

    #[test]
    fn too_many_channels_is_an_error() {
        let silence = [0.0_f32; 4];
        let channels = vec![silence.as_slice(); 9];
        assert!(write_flac(Vec::new(), &channels, 44100, &[]).is_err());
        assert!(write_flac(Vec::new(), &[], 44100, &[]).is_err());
    }
}
