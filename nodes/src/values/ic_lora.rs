//! `IC_LORA_PARAMETERS`: what an IC-LoRA's file says about how its guides are to be prepared.

use kinograph_engine::NodeValue;

/// `IC_LORA_PARAMETERS` (ComfyUI's dict `{"reference_downscale_factor": n}`), made by `GetICLoRAParameters`
/// for `LTXVAddGuide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcLoraParameters {
    /// How many times smaller than the target the IC-LoRA's reference video is (1: the same size).
    pub reference_downscale_factor: i64,
}

impl NodeValue for IcLoraParameters {
    fn type_name(&self) -> &'static str {
        "IC_LORA_PARAMETERS"
    }
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
    fn describe(&self) -> String {
        format!("IC_LORA_PARAMETERS reference_downscale_factor {}", self.reference_downscale_factor)
    }
}
