//! Reading and writing image, video and audio files: pure functions over RGB bytes and float samples, no
//! engine types.
//!
//! - [`yuv`]: RGB ↔ YUV 4:2:0 in BT.601 limited range (what ffmpeg's default swscale produces).
//! - [`h264`]: one-frame-at-a-time H.264 encoding and decoding with openh264 (built from source).
//! - [`mp4_writer`]: a streaming MP4 writer for H.264 and AAC with ffmpeg-style `mdta` metadata (boxes in
//!   `mp4_moov`).
//! - [`mp4_reader`]: reads the H.264 track of an MP4 back, frame by frame.
//! - [`mp4_audio`]: reads and decodes the AAC track of an MP4.
//! - [`png`]: PNG with `tEXt` metadata, and loading PNG, JPEG and WebP files.
//! - [`webp`]: animated WebP.
//! - [`aac`]: AAC-LC encoding (FDK, vendored source) and decoding (symphonia) for MP4 sound tracks.
//! - [`audio_decode`]: WAV, FLAC, MP3, AAC and Ogg Vorbis decoded to float samples (symphonia).
//! - [`flac`]: FLAC output with Vorbis comments (flacenc).

pub mod aac;
pub mod audio_decode;
pub mod flac;
pub mod h264;
pub mod mp4_audio;
mod mp4_moov;
pub mod mp4_reader;
pub mod mp4_writer;
pub mod png;
pub mod webp;
pub mod yuv;

/// Why an image or video could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The frame size or format cannot be stored.
    #[error("{0}")]
    Format(String),
    /// The encoder or decoder failed.
    #[error("{what}: {message}")]
    Codec { what: &'static str, message: String },
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl MediaError {
    pub(crate) fn codec(what: &'static str, error: impl std::fmt::Display) -> Self {
        MediaError::Codec { what, message: error.to_string() }
    }
}

/// Checks that `rgb` holds `width × height` RGB pixels.
pub(crate) fn check_rgb(rgb: &[u8], width: usize, height: usize) -> Result<(), MediaError> {
    if rgb.len() == width * height * 3 {
        Ok(())
    } else {
        Err(MediaError::Format(format!(
            "a {width}x{height} RGB frame needs {} bytes, got {}",
            width * height * 3,
            rgb.len()
        )))
    }
}

/// Copies the top-left `width × height` pixels of an RGB frame that is `source_width` pixels wide.
pub fn crop_rgb(rgb: &[u8], source_width: usize, width: usize, height: usize) -> Vec<u8> {
    let mut cropped = Vec::with_capacity(width * height * 3);
    for row in rgb.chunks_exact(source_width * 3).take(height) {
        cropped.extend_from_slice(&row[..width * 3]);
    }
    cropped
}
