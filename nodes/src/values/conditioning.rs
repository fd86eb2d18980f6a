//! CONDITIONING: text embeddings with their options, one entry per encoded prompt.

use super::tensor_bytes;
use candle_core::Tensor;
use kinograph_engine::NodeValue;

/// One conditioning entry: the text encoder's output and the options nodes set on it.
#[derive(Debug, Clone)]
pub struct CondEntry {
    /// `[1, L, D]` text embeddings.
    pub context: Tensor,
    /// `[1, L]`, 1 for tokens, 0 for padding; `None` attends to every token.
    pub attention_mask: Option<Tensor>,
    /// Set by `LTXVConditioning`; 25 when absent.
    pub frame_rate: Option<f64>,
}

/// CONDITIONING: a list of entries (ComfyUI's `[[cond, {options}], ...]`).
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub entries: Vec<CondEntry>,
}

impl NodeValue for Conditioning {
    fn type_name(&self) -> &'static str {
        "CONDITIONING"
    }
    fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|entry| tensor_bytes(&entry.context) + entry.attention_mask.as_ref().map_or(0, tensor_bytes))
            .sum()
    }
    fn describe(&self) -> String {
        let shapes: Vec<String> = self.entries.iter().map(|e| format!("{:?}", e.context.dims())).collect();
        format!("CONDITIONING [{}]", shapes.join(", "))
    }
}
