//! Model code: plain candle modules mirroring the reference implementations, with no engine types.

pub mod bench;
pub mod ltxv;
pub mod t5;
pub mod weights;
