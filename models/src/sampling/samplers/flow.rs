//! ComfyUI's `KSAMPLER.sample` for flow (CONST) models, with the `KSamplerX0Inpaint` mask blend.

use candle_core::Tensor;

use super::{Denoiser, SampleOptions, Sampler, SamplingError, check_sigmas, combine};

/// The denoise-mask shapes [`sample_flow`] accepts, for error messages and documentation.
pub const MASK_SHAPES: &str = "a mask with the latent's rank whose every dimension is the latent's size or 1 \
     (e.g. [B,1,T,1,1], as LTXVImgToVideo makes)";

/// Runs `sampler` the way ComfyUI's `KSAMPLER.sample` does for a flow model:
/// 1. `x = σ0·noise + (1 − σ0)·latent` (CONST `noise_scaling`);
/// 2. with a `denoise_mask` m (1 = generate, 0 = keep), every model call sees `x·m + latent·(1 − m)` and its
///    prediction is replaced by `prediction·m + latent·(1 − m)`. The kept region is the clean latent, as
///    LTX-Video's `scale_latent_inpaint` gives it;
/// 3. the sampler runs from `x` down the `sigmas`;
/// 4. the result is divided by `1 − σ_last` (CONST `inverse_noise_scaling`; no-op when `σ_last = 0`).
///
/// `noise` and `latent` have the same shape; ComfyUI samples in float32, and so should callers that want its
/// results (the latent is converted to the noise's dtype). ComfyUI resamples any mask to the latent with
/// `comfy.utils.reshape_mask` (trilinear); kinograph accepts the masks for which that is a broadcast:
/// see [`MASK_SHAPES`]. Resampling a mask of another size is the node layer's job.
pub fn sample_flow(
    sampler: &dyn Sampler,
    denoiser: &mut dyn Denoiser,
    noise: &Tensor,
    latent: &Tensor,
    sigmas: &[f64],
    denoise_mask: Option<&Tensor>,
    options: &mut SampleOptions<'_>,
) -> Result<Tensor, SamplingError> {
    check_sigmas(sigmas)?;
    if noise.dims() != latent.dims() {
        return Err(SamplingError::Shape {
            what: "the noise",
            found: noise.dims().to_vec(),
            expected: format!("the latent's shape {:?}", latent.dims()),
        });
    }
    let last = sigmas[sigmas.len() - 1];
    if last >= 1.0 {
        return Err(SamplingError::InvalidSigmas {
            sigmas: sigmas.to_vec(),
            reason: "the last sigma must be below 1 (the result is divided by 1 − σ_last)".into(),
        });
    }
    let latent = latent.to_dtype(noise.dtype())?;
    let first = sigmas[0];
    let x = combine(noise, first, &latent, 1.0 - first)?;
    let samples = match denoise_mask {
        None => sampler.sample(denoiser, x, sigmas, options)?,
        Some(mask) => {
            let mask = expand_mask(mask, &latent)?;
            let mut masked = MaskedDenoiser { inner: denoiser, keep: (&latent * (1.0 - &mask)?)?, mask };
            sampler.sample(&mut masked, x, sigmas, options)?
        }
    };
    if last == 0.0 { Ok(samples) } else { Ok(samples.affine(1.0 / (1.0 - last), 0.0)?) }
}

/// Broadcasts `mask` to the latent's shape and dtype, or says why it cannot.
fn expand_mask(mask: &Tensor, latent: &Tensor) -> Result<Tensor, SamplingError> {
    let fits = mask.rank() == latent.rank()
        && mask.dims().iter().zip(latent.dims()).all(|(&size, &wanted)| size == wanted || size == 1);
    if !fits {
        return Err(SamplingError::Shape {
            what: "the denoise mask",
            found: mask.dims().to_vec(),
            expected: format!("{MASK_SHAPES}, for a latent of shape {:?}", latent.dims()),
        });
    }
    Ok(mask.to_device(latent.device())?.to_dtype(latent.dtype())?.broadcast_as(latent.shape())?.contiguous()?)
}

/// `KSamplerX0Inpaint` around the caller's denoiser. `keep` is `latent·(1 − m)`.
struct MaskedDenoiser<'a> {
    inner: &'a mut dyn Denoiser,
    mask: Tensor,
    keep: Tensor,
}

impl Denoiser for MaskedDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        let blended = ((x * &self.mask)? + &self.keep)?;
        let prediction = self.inner.denoise(&blended, sigma)?;
        Ok(((prediction * &self.mask)? + &self.keep)?)
    }
}
