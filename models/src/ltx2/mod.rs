//! LTX-2 (Lightricks, 2026) and its successors 2.3 and 2.5: the joint audio-video transformer.
//!
//! | module | reference |
//! |---|---|
//! | [`rope`] | the split rotary embedding shared by the transformer and the text connectors |
//! | [`transformer`] | `LTX2VideoTransformer3DModel` (diffusers) / `LTXAVModel` (ComfyUI) |

pub mod rope;
pub mod transformer;
