//! Integration tests of kinograph-models: the model code and sampling maths against reference fixtures.
//!
//! One test binary per crate: each file below is a module, so the crate's dependencies are linked once
//! rather than once per file (each link is over 100 MB of test binary). nextest still runs every test in
//! its own process. Run one file's tests with `cargo nextest run -p PACKAGE -E 'test(/^MODULE::/)'`.

mod compare;
mod fp8;
mod full_size;
mod gemma3;
mod gemma3_generate;
mod gemma3_vision;
mod gemma_tokenizer;
mod gguf;
mod gguf_models;
mod gguf_text;
mod gguf_weights;
mod ltx2_audio;
mod ltx2_pipeline;
mod ltx2_text;
mod ltx2_transformer;
mod ltx2_upsampler;
mod ltx2_vae;
mod ltx2_video_vae;
mod ltxv_transformer;
mod ltxv_vae;
mod ltxv_vae_comfy;
mod ops;
mod pipeline_fixture;
mod samplers;
mod schedules;
mod t5;
mod torch_noise;
