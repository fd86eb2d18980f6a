//! Step previews: the first frame of the current clean-latent estimate mapped to RGB with ComfyUI's
//! LTX-Video latent-to-RGB factors (one pixel per latent cell, so a 768×512 video previews at 24×16).

use super::rgb_factors::{LTXV_LATENT_RGB_BIAS, LTXV_LATENT_RGB_FACTORS};
use candle_core::{DType, Result, Tensor};
use kinograph_engine::Preview;

/// The preview of `denoised` (`[B, 128, T, H, W]`): batch item 0, latent frame 0.
pub fn latent_preview(denoised: &Tensor) -> Result<Preview> {
    let (_, channels, _, height, width) = denoised.dims5()?;
    if channels != LTXV_LATENT_RGB_FACTORS.len() {
        candle_core::bail!("previews need {} latent channels, got {channels}", LTXV_LATENT_RGB_FACTORS.len());
    }
    let frame: Vec<f32> = denoised.get(0)?.narrow(1, 0, 1)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let plane = height * width;
    let mut rgb = vec![0u8; plane * 3];
    for pixel in 0..plane {
        for (color, bias) in LTXV_LATENT_RGB_BIAS.iter().enumerate() {
            let mut value = *bias;
            for (channel, factors) in LTXV_LATENT_RGB_FACTORS.iter().enumerate() {
                value += frame[channel * plane + pixel] * factors[color];
            }
            rgb[pixel * 3 + color] = (f32::midpoint(value, 1.0).clamp(0.0, 1.0) * 255.0) as u8;
        }
    }
    Ok(Preview { width: width as u32, height: height as u32, rgb })
}
