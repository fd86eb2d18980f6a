//! The LTX-Video causal video VAE (`AutoencoderKLLTXVideo` in diffusers), layouts 0.9.0, 0.9.1 and 0.9.5.
