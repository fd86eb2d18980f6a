//! PNG output with text metadata, and image loading for `LoadImage`.
//!
//! Text chunks follow Pillow's `PngInfo.add_text`, which ComfyUI uses: a value that fits Latin-1 is a
//! `tEXt` chunk, anything else an uncompressed UTF-8 `iTXt` chunk.
//!
//! Loading follows ComfyUI's `LoadImage`: every frame of an animated PNG or WebP whose size matches
//! the first frame (others are skipped), EXIF orientation applied to still images, RGB plus the alpha
//! channel when the file has one.

use super::MediaError;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageFormat, RgbaImage};
use std::io::{Cursor, Write};

/// Compression like ComfyUI's `compress_level=4`: a balance of size and speed.
const COMPRESSION: ::png::Compression = ::png::Compression::Balanced;

/// Writes an 8-bit RGB PNG of `width × height` with `texts` as text chunks.
pub fn write_png(
    writer: impl Write,
    rgb: &[u8],
    width: usize,
    height: usize,
    texts: &[(String, String)],
) -> Result<(), MediaError> {
    super::check_rgb(rgb, width, height)?;
    let (Ok(png_width), Ok(png_height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(MediaError::Format(format!("{width}x{height} is too large for a PNG")));
    };
    let mut encoder = ::png::Encoder::new(writer, png_width, png_height);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(COMPRESSION);
    for (key, value) in texts {
        let result = if value.chars().all(|c| (c as u32) < 256) {
            encoder.add_text_chunk(key.clone(), value.clone())
        } else {
            encoder.add_itxt_chunk(key.clone(), value.clone())
        };
        result.map_err(|error| MediaError::codec("adding PNG text", error))?;
    }
    let mut png = encoder.write_header().map_err(|error| MediaError::codec("writing the PNG header", error))?;
    png.write_image_data(rgb).map_err(|error| MediaError::codec("writing PNG pixels", error))?;
    png.finish().map_err(|error| MediaError::codec("finishing the PNG", error))?;
    Ok(())
}

/// The frames of a loaded image file, all of one size.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub width: usize,
    pub height: usize,
    /// RGBA bytes per frame.
    pub frames: Vec<Vec<u8>>,
    /// Whether the file has an alpha channel (otherwise alpha is 255 everywhere).
    pub has_alpha: bool,
}

/// Decodes a PNG, JPEG or WebP file's bytes.
pub fn load_image(bytes: &[u8]) -> Result<LoadedImage, MediaError> {
    let format = image::guess_format(bytes)
        .map_err(|_| MediaError::Format("not a PNG, JPEG or WebP image (unrecognised file signature)".into()))?;
    let decode = |error: image::ImageError| MediaError::codec("decoding the image", error);
    let (frames, has_alpha) = match format {
        ImageFormat::Png => {
            let decoder = PngDecoder::new(Cursor::new(bytes)).map_err(decode)?;
            let has_alpha = decoder.color_type().has_alpha();
            if decoder.is_apng().map_err(decode)? {
                (animation_frames(decoder.apng().map_err(decode)?)?, has_alpha)
            } else {
                (vec![still_image(decoder)?], has_alpha)
            }
        }
        ImageFormat::WebP => {
            let decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(decode)?;
            let has_alpha = decoder.color_type().has_alpha();
            if decoder.has_animation() {
                (animation_frames(decoder)?, has_alpha)
            } else {
                (vec![still_image(decoder)?], has_alpha)
            }
        }
        ImageFormat::Jpeg => {
            let decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes)).map_err(decode)?;
            (vec![still_image(decoder)?], false)
        }
        other => return Err(MediaError::Format(format!("{other:?} images are not supported; use PNG, JPEG or WebP"))),
    };
    let first = frames.first().ok_or_else(|| MediaError::Format("the image has no frames".into()))?;
    let (width, height) = (first.width(), first.height());
    let frames: Vec<Vec<u8>> =
        frames.into_iter().filter(|frame| frame.dimensions() == (width, height)).map(RgbaImage::into_raw).collect();
    Ok(LoadedImage { width: width as usize, height: height as usize, frames, has_alpha })
}

fn still_image(mut decoder: impl ImageDecoder) -> Result<RgbaImage, MediaError> {
    let orientation = decoder.orientation().map_err(|error| MediaError::codec("reading EXIF orientation", error))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|error| MediaError::codec("decoding the image", error))?;
    image.apply_orientation(orientation);
    Ok(image.into_rgba8())
}

fn animation_frames<'a>(decoder: impl AnimationDecoder<'a>) -> Result<Vec<RgbaImage>, MediaError> {
    decoder
        .into_frames()
        .map(|frame| {
            frame
                .map(image::Frame::into_buffer)
                .map_err(|error| MediaError::codec("decoding an animation frame", error))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(load_image(b"").is_err());
        assert!(load_image(b"not an image at all").is_err());
        let mut truncated = Vec::new();
        write_png(&mut truncated, &[10; 4 * 4 * 3], 4, 4, &[]).unwrap();
        truncated.truncate(truncated.len() / 2);
        assert!(load_image(&truncated).is_err());
    }

    #[test]
    fn a_written_png_loads_back_unchanged() {
        let rgb: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let mut bytes = Vec::new();
        write_png(&mut bytes, &rgb, 5, 3, &[("prompt".into(), "{}".into())]).unwrap();
        let loaded = load_image(&bytes).unwrap();
        assert_eq!((loaded.width, loaded.height, loaded.frames.len(), loaded.has_alpha), (5, 3, 1, false));
        let back: Vec<u8> = loaded.frames[0].chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        assert_eq!(back, rgb);
    }
}
