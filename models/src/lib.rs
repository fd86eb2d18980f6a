//! # kinograph-models
//!
//! Kinograph's model code: plain candle modules mirroring the reference implementations (LTX-Video's
//! transformer and VAE, the T5 encoder), the weight files they load from, and the sampling maths (noise,
//! schedules, samplers). Nothing here knows about nodes, graphs or the engine: the node library wraps
//! these types, and the compiler checks the direction (this crate does not depend on
//! `kinograph-engine` or `kinograph-nodes`).

pub mod bench_support;
pub mod block_stack;
pub mod fp8;
pub mod gemma3;
pub mod gguf;
pub mod lora;
pub mod ltx2;
pub mod ltxv;
pub mod ops;
pub mod sampling;
pub mod t5;
pub mod weights;
