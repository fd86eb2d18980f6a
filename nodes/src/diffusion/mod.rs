//! What sampling calls each step: the LTX-Video and LTX-2 model evaluations, guidance over the conditionings,
//! the noise mask fitted to the latent, and the latent previews sent with progress.

pub mod av_call;
pub mod guidance;
pub mod guides;
pub mod latent_preview;
pub mod model_call;
pub mod noise_mask;
pub mod rgb_factors;

pub use latent_preview::latent_preview;
pub use model_call::predict_denoised;
