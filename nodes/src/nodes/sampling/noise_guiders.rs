//! NOISE and GUIDER nodes: `RandomNoise`, `DisableNoise`, `CFGGuider`, `BasicGuider`, `LTXVDualCFGGuider`.

use crate::values::DiffusionModel;
use crate::values::Guider;
use crate::values::{Conditioning, Noise};
use kinograph_engine::prelude::*;
use std::sync::Arc;

/// The noise seed input ComfyUI's samplers share: 0 to 2^64 − 1, changed after each run by the editor.
pub fn seed_input(name: &str) -> InputSpec {
    InputSpec::int(name, 0).min(0).max(u64::MAX).control_after_generate()
}

/// `RandomNoise`.
pub struct RandomNoise;

impl Node for RandomNoise {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("RandomNoise")
            .category("sampling/custom_sampling/noise")
            .input(seed_input("noise_seed"))
            .output("NOISE", "NOISE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Noise::Random { seed: inputs.int_wide("noise_seed")? }))]))
    }
}

/// `DisableNoise`.
pub struct DisableNoise;

impl Node for DisableNoise {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("DisableNoise").category("sampling/custom_sampling/noise").output("NOISE", "NOISE")
    }

    fn execute(&self, _: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Noise::Disabled))]))
    }
}

/// The CFG scale input: 0 to 100, step 0.1, rounded to 0.01.
pub fn cfg_input(default: f64) -> InputSpec {
    InputSpec::float("cfg", default).min(0.0).max(100.0).step(0.1).round(0.01)
}

/// `CFGGuider`.
pub struct CfgGuider;

impl Node for CfgGuider {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("CFGGuider")
            .category("sampling/custom_sampling/guiders")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(cfg_input(8.0))
            .output("GUIDER", "GUIDER")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let guider = Guider {
            model: inputs.object::<DiffusionModel>("model")?,
            positive: inputs.object::<Conditioning>("positive")?,
            negative: Some(inputs.object::<Conditioning>("negative")?),
            cfg: inputs.float("cfg")?,
            audio_cfg: None,
        };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(guider))]))
    }
}

/// `BasicGuider`: the positive prediction alone.
pub struct BasicGuider;

impl Node for BasicGuider {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("BasicGuider")
            .category("sampling/custom_sampling/guiders")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::socket("conditioning", "CONDITIONING"))
            .output("GUIDER", "GUIDER")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let guider = Guider {
            model: inputs.object::<DiffusionModel>("model")?,
            positive: inputs.object::<Conditioning>("conditioning")?,
            negative: None,
            cfg: 1.0,
            audio_cfg: None,
        };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(guider))]))
    }
}

/// `LTXVDualCFGGuider`: CFG with one scale for the video stream of an LTX-2 audio-video latent and
/// another for its audio stream (see `Guider::dual_scales` and `dual_cfg`). On a video-only latent, or
/// with equal scales, it is `CFGGuider` with `video_cfg`.
pub struct LtxvDualCfgGuider;

impl Node for LtxvDualCfgGuider {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let scale =
            |name: &str, default: f64| InputSpec::float(name, default).min(0.0).max(100.0).step(0.1).round(0.01);
        NodeSchema::new("LTXVDualCFGGuider")
            .display_name("LTXV Dual CFG Guider")
            .category("model/sampling/guiders")
            .description("Classifier-free guidance with its own scale for the video and for the audio of an LTX-2 audio-video latent.")
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::socket("positive", "CONDITIONING"))
            .input(InputSpec::socket("negative", "CONDITIONING"))
            .input(scale("video_cfg", 3.0))
            .input(scale("audio_cfg", 7.0))
            .output("GUIDER", "GUIDER")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let scale = |name: &str| -> Result<f64, NodeError> {
            let value = inputs.float(name)?;
            if value.is_finite() {
                Ok(value)
            } else {
                Err(NodeError::input(
                    name,
                    format!("{value} is not a guidance scale; expected a finite number from 0 to 100"),
                ))
            }
        };
        let (video_cfg, audio_cfg) = (scale("video_cfg")?, scale("audio_cfg")?);
        let guider = Guider {
            model: inputs.object::<DiffusionModel>("model")?,
            positive: inputs.object::<Conditioning>("positive")?,
            negative: Some(inputs.object::<Conditioning>("negative")?),
            cfg: video_cfg,
            audio_cfg: Some(audio_cfg),
        };
        Ok(NodeOutput::new(vec![Value::from(Arc::new(guider))]))
    }
}
