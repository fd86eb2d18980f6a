//! Model code: plain candle modules mirroring the reference implementations, with no engine types.

pub mod weights;
