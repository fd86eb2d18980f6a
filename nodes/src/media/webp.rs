//! Animated WebP through libwebp (built from its vendored C source by `libwebp-sys2`), for
//! `SaveAnimatedWEBP`. Settings follow Pillow's WebP writer as ComfyUI calls it: `quality` 0..100,
//! `lossless`, `method` 0 (fastest) .. 6 (slowest), every frame shown for `1000/fps` ms (truncated to
//! whole milliseconds), looping forever.

use super::MediaError;
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
