//! What sampling calls each step: the LTX-Video model evaluation, guidance over the conditionings, and
//! the latent previews sent with progress.

pub mod guidance;
pub mod model_call;
pub mod preview;
pub mod rgb_factors;

pub use guidance::Guider;
pub use model_call::predict_denoised;
pub use preview::latent_preview;
