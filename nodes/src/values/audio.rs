//! AUDIO: a waveform and its sample rate, as ComfyUI passes audio between nodes.

use super::tensor_bytes;
use candle_core::Tensor;
use kinograph_engine::{NodeError, NodeValue};

/// AUDIO: `waveform` `[B, C, S]` (batch, channels, samples), f32 in −1..1, at `sample_rate` Hz
/// (ComfyUI's `{"waveform", "sample_rate"}`).
#[derive(Debug, Clone)]
pub struct Audio {
    pub waveform: Tensor,
    pub sample_rate: u32,
}

impl Audio {
    /// Audio from a `[B, C, S]` waveform.
    pub fn new(waveform: Tensor, sample_rate: u32) -> Self {
        Audio { waveform, sample_rate }
    }

    /// `(batch, channels, samples)`.
    pub fn dims(&self) -> Result<(usize, usize, usize), NodeError> {
        self.waveform
            .dims3()
            .map_err(|_| NodeError::msg(format!("an AUDIO waveform must be [B, C, S], got {:?}", self.waveform.dims())))
    }

    /// The length in seconds.
    pub fn duration(&self) -> Result<f64, NodeError> {
        let (_, _, samples) = self.dims()?;
        Ok(samples as f64 / f64::from(self.sample_rate.max(1)))
    }
}

impl NodeValue for Audio {
    fn type_name(&self) -> &'static str {
        "AUDIO"
    }
    fn byte_size(&self) -> usize {
        tensor_bytes(&self.waveform)
    }
    fn describe(&self) -> String {
        format!("AUDIO {:?} at {} Hz", self.waveform.dims(), self.sample_rate)
    }
}
