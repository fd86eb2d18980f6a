//! Animated WebP through libwebp (built from its vendored C source by `libwebp-sys2`), for
//! `SaveAnimatedWEBP`. Settings follow Pillow's WebP writer as ComfyUI calls it: `quality` 0..100,
//! `lossless`, `method` 0 (fastest) .. 6 (slowest), every frame shown for `1000/fps` ms (truncated to
//! whole milliseconds), looping forever.

use super::MediaError;
use std::fmt::Write as _;
use webp_animation::{ColorMode, Encoder, EncoderOptions, EncodingConfig, EncodingType, LossyEncodingConfig};

/// Encoding settings.
#[derive(Debug, Clone, Copy)]
pub struct WebpSettings {
    pub fps: f64,
    pub lossless: bool,
    /// 0..100.
    pub quality: f32,
    /// 0 (fastest) to 6 (slowest, smallest).
    pub method: usize,
}

/// Encodes RGB frames of one size into an animated WebP file's bytes.
pub fn encode_animation<'a>(
    frames: impl IntoIterator<Item = Result<Vec<u8>, MediaError>> + 'a,
    width: usize,
    height: usize,
    settings: WebpSettings,
) -> Result<Vec<u8>, MediaError> {
    if width == 0 || height == 0 || width > 16383 || height > 16383 {
        return Err(MediaError::Format(format!("WebP sizes are 1..16383 pixels a side, got {width}x{height}")));
    }
    if !(settings.fps.is_finite() && settings.fps > 0.0) {
        return Err(MediaError::Format(format!("fps must be positive, got {}", settings.fps)));
    }
    let encoding_type =
        if settings.lossless { EncodingType::Lossless } else { EncodingType::Lossy(LossyEncodingConfig::default()) };
    let config =
        EncodingConfig { encoding_type, quality: settings.quality.clamp(0.0, 100.0), method: settings.method.min(6) };
    let options =
        EncoderOptions { color_mode: ColorMode::Rgb, encoding_config: Some(config), ..EncoderOptions::default() };
    let codec = |error: webp_animation::Error| MediaError::codec("encoding WebP", format!("{error:?}"));
    let mut encoder = Encoder::new_with_options((width as u32, height as u32), options).map_err(codec)?;
    let frame_ms = ((1000.0 / settings.fps) as i64).clamp(1, i64::from(i32::MAX) / 100_000) as i32;
    let mut timestamp = 0_i32;
    for frame in frames {
        let frame = frame?;
        super::check_rgb(&frame, width, height)?;
        encoder.add_frame(&frame, timestamp).map_err(codec)?;
        timestamp = timestamp
            .checked_add(frame_ms)
            .ok_or_else(|| MediaError::Format("the animation is too long for WebP timestamps".into()))?;
    }
    let data = encoder.finalize(timestamp).map_err(codec)?;
    Ok(data.to_vec())
}

/// EXIF holding a workflow the way ComfyUI's WebP savers store it: tag 0x0110 (`Model`) holds
/// `prompt:<JSON>`, and each other metadata key takes the next tag down from 0x010F (`Make`) as
/// `<key>:<JSON>`, stopping above 0x0100. Values are ASCII strings, non-ASCII characters escaped as
/// `\uXXXX` as Python's `json.dumps` does. Returns TIFF bytes (little-endian), without the `Exif\0\0`
/// prefix that WebP files leave out; `None` when there is nothing to store.
pub fn workflow_exif(metadata: &[(String, String)]) -> Option<Vec<u8>> {
    let mut entries: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut next_tag = 0x010f_u16;
    for (key, value) in metadata {
        let tag = if key == "prompt" {
            0x0110
        } else if next_tag >= 0x0100 {
            let tag = next_tag;
            next_tag -= 1;
            tag
        } else {
            continue;
        };
        let mut text = ascii_json(&format!("{key}:{value}")).into_bytes();
        text.push(0);
        entries.push((tag, text));
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort_by_key(|(tag, _)| *tag);
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8_u32.to_le_bytes());
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    // Values follow the directory: 12 bytes per entry, 4 for the next-directory offset.
    let mut value_offset = 8 + 2 + 12 * entries.len() + 4;
    for (tag, text) in &entries {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&2_u16.to_le_bytes()); // ASCII
        tiff.extend_from_slice(&(text.len() as u32).to_le_bytes());
        if text.len() <= 4 {
            let mut inline = [0_u8; 4];
            inline[..text.len()].copy_from_slice(text);
            tiff.extend_from_slice(&inline);
        } else {
            tiff.extend_from_slice(&(value_offset as u32).to_le_bytes());
            value_offset += text.len() + text.len() % 2;
        }
    }
    tiff.extend_from_slice(&0_u32.to_le_bytes());
    for (_, text) in entries.iter().filter(|(_, text)| text.len() > 4) {
        tiff.extend_from_slice(text);
        if text.len() % 2 == 1 {
            tiff.push(0); // values start on word boundaries
        }
    }
    Some(tiff)
}

/// `text` with every non-ASCII character written as a JSON `\uXXXX` escape (UTF-16 units). Only valid
/// where those characters sit inside JSON strings, as in serialised JSON.
fn ascii_json(text: &str) -> String {
    let mut ascii = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_ascii() {
            ascii.push(character);
        } else {
            let mut units = [0_u16; 2];
            for unit in character.encode_utf16(&mut units) {
                let _ = write!(ascii, "\\u{unit:04x}"); // writing to a String cannot fail
            }
        }
    }
    ascii
}

/// Adds an `EXIF` chunk to a WebP file of `width × height` and flags it in the `VP8X` header. A simple
/// (single-frame) file, which has no `VP8X` header, gets one first, as the extended format requires.
pub fn add_exif(webp: &[u8], exif: &[u8], width: usize, height: usize) -> Result<Vec<u8>, MediaError> {
    if webp.len() < 20 || &webp[..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return Err(MediaError::Format("the WebP encoder's output has no RIFF/WEBP header".into()));
    }
    let mut out = webp[..12].to_vec();
    match &webp[12..16] {
        b"VP8X" => out.extend_from_slice(&webp[12..]),
        b"VP8 " | b"VP8L" => {
            if width == 0 || height == 0 || width > 1 << 24 || height > 1 << 24 {
                return Err(MediaError::Format(format!("{width}x{height} is not a WebP canvas size")));
            }
            out.extend_from_slice(b"VP8X");
            out.extend_from_slice(&10_u32.to_le_bytes());
            out.extend_from_slice(&[0; 4]); // flags (set below) and reserved bytes
            out.extend_from_slice(&((width - 1) as u32).to_le_bytes()[..3]);
            out.extend_from_slice(&((height - 1) as u32).to_le_bytes()[..3]);
            out.extend_from_slice(&webp[12..]);
        }
        other => {
            return Err(MediaError::Format(format!(
                "unexpected first WebP chunk '{}'",
                String::from_utf8_lossy(other)
            )));
        }
    }
    out[20] |= 0x08; // VP8X flags: EXIF present
    out.extend_from_slice(b"EXIF");
    let length = u32::try_from(exif.len()).map_err(|_| MediaError::Format("EXIF metadata over 4 GiB".into()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        out.push(0);
    }
    let riff_size = u32::try_from(out.len() - 8).map_err(|_| MediaError::Format("WebP file over 4 GiB".into()))?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_orders_tags_and_escapes_non_ascii() {
        let metadata = vec![
            ("prompt".to_string(), r#"{"a":"é"}"#.to_string()),
            ("workflow".to_string(), "{}".to_string()),
            ("extra".to_string(), "1".to_string()),
        ];
        let tiff = workflow_exif(&metadata).unwrap();
        assert_eq!(&tiff[..8], b"II*\0\x08\0\0\0");
        assert_eq!(u16::from_le_bytes([tiff[8], tiff[9]]), 3);
        let tags: Vec<u16> = (0..3).map(|i| u16::from_le_bytes([tiff[10 + 12 * i], tiff[11 + 12 * i]])).collect();
        assert_eq!(tags, [0x010e, 0x010f, 0x0110]);
        let text = String::from_utf8_lossy(&tiff);
        assert!(text.contains(r#"prompt:{"a":"\u00e9"}"#), "{text}");
        assert!(text.contains("workflow:{}") && text.contains("extra:1"));
        assert!(workflow_exif(&[]).is_none());
        assert_eq!(ascii_json("😀"), "\\ud83d\\ude00");
    }

    #[test]
    fn an_exif_chunk_is_read_back_and_the_animation_still_decodes() {
        use image::{AnimationDecoder, ImageDecoder};
        let settings = WebpSettings { fps: 4.0, lossless: false, quality: 80.0, method: 0 };
        let frames = (0..2).map(|i| Ok(vec![i * 100; 8 * 6 * 3]));
        let webp = encode_animation(frames, 8, 6, settings).unwrap();
        let exif = workflow_exif(&[("workflow".into(), "{\"nodes\":[]}".into())]).unwrap();
        let tagged = add_exif(&webp, &exif, 8, 6).unwrap();
        let mut decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&tagged)).unwrap();
        assert_eq!(decoder.exif_metadata().unwrap(), Some(exif.clone()));
        assert!(decoder.has_animation());
        assert_eq!(decoder.into_frames().collect_frames().unwrap().len(), 2);
        assert!(add_exif(b"RIFF\0\0\0\0WEBPXXXX\0\0\0\0", b"x", 8, 6).is_err());

        // One frame comes out as a simple WebP; it gains a VP8X header.
        for lossless in [false, true] {
            let settings = WebpSettings { lossless, ..settings };
            let single = encode_animation([Ok(vec![90; 7 * 5 * 3])], 7, 5, settings).unwrap();
            let tagged = add_exif(&single, &exif, 7, 5).unwrap();
            let mut decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&tagged)).unwrap();
            assert_eq!(decoder.dimensions(), (7, 5));
            assert_eq!(decoder.exif_metadata().unwrap(), Some(exif.clone()));
            let image = image::DynamicImage::from_decoder(decoder).unwrap().into_rgb8();
            assert!(image.pixels().all(|p| p.0.iter().all(|&v| v.abs_diff(90) <= 3)));
        }
    }
}
