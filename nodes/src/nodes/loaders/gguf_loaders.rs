//! ComfyUI-GGUF's diffusion-model loaders, `UnetLoaderGGUF` and `UnetLoaderGGUFAdvanced` (city96's
//! `nodes.py`): a `.gguf` file from `models/unet` or `models/diffusion_models` (folder kind `unet_gguf`)
//! as MODEL, an LTX-Video 0.9 or LTX-2 transformer told apart by its tensor names as the safetensors
//! loaders do. The matrices stay GGUF blocks and are multiplied through `QuantLinear`.
//!
//! ComfyUI-GGUF accepts the architectures it knows; kinograph runs `ltxv` (LTX-Video and LTX-2 files both
//! say so), and, as ComfyUI-GGUF's "compat mode", files without `general.architecture` (stable-diffusion.cpp's
//! converter) or with its placeholders `pig`/`cow`, recognised by their tensor names.

use super::model_loaders::{file_fingerprint, load_error, load_model, resolve};
use crate::values::DiffusionModel;
use kinograph_engine::prelude::*;
use kinograph_models::weights::WeightSource;
use std::path::Path;
use std::sync::Arc;

/// The folder kind of `.gguf` diffusion models.
const FOLDER: &str = "unet_gguf";

/// ComfyUI-GGUF's choices for `dequant_dtype` and `patch_dtype`.
const DTYPE_CHOICES: [&str; 5] = ["default", "target", "float32", "float16", "bfloat16"];

/// `general.architecture` values ComfyUI-GGUF reads by tensor names instead.
const COMPAT_ARCHITECTURES: [&str; 2] = ["pig", "cow"];

/// Opens `path` and checks that it is a GGUF file of a diffusion model kinograph runs.
fn open_gguf(input: &str, path: &Path) -> Result<Arc<WeightSource>, NodeError> {
    let source = WeightSource::open(&[path]).map(Arc::new).map_err(|e| load_error(input, path, &e))?;
    let Some(gguf) = source.gguf_files().next() else {
        return Err(NodeError::input(
            input,
            format!(
                "{} is not a GGUF file: this loader reads ComfyUI-GGUF's .gguf files; load safetensors with \
                 UNETLoader (Load Diffusion Model)",
                path.display()
            ),
        ));
    };
    match gguf.architecture() {
        Some("ltxv") | None => Ok(source),
        Some(compat) if COMPAT_ARCHITECTURES.contains(&compat) => Ok(source),
        Some(other) => Err(NodeError::input(
            input,
            format!(
                "{} is a GGUF of architecture '{other}' (general.architecture); kinograph runs LTX-Video and LTX-2 \
                 diffusion models, whose GGUF files say 'ltxv'",
                path.display()
            ),
        )),
    }
}

fn load(inputs: &NodeInputs, context: &ExecutionContext) -> Result<Arc<DiffusionModel>, NodeError> {
    let path = resolve(context.env(), FOLDER, inputs, "unet_name")?;
    let source = open_gguf("unet_name", &path)?;
    load_model("unet_name", &path, &source, None)
}

fn unet_name(env: &Environment) -> InputSpec {
    InputSpec::model_file("unet_name", FOLDER, env)
}

/// `UnetLoaderGGUF` ("Unet Loader (GGUF)"): the transformer of a `.gguf` file, its matrices kept quantized.
pub struct UnetLoaderGguf;

impl Node for UnetLoaderGguf {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("UnetLoaderGGUF")
            .display_name("Unet Loader (GGUF)")
            .category("bootleg")
            .description("Loads an LTX-Video or LTX-2 diffusion model from a ComfyUI-GGUF .gguf file, kept quantized.")
            .input(unet_name(env))
            .output("MODEL", "MODEL")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, FOLDER, constants, "unet_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::from(load(inputs, context)?)]))
    }
}

/// `UnetLoaderGGUFAdvanced` ("Unet Loader (GGUF/Advanced)"): [`UnetLoaderGguf`] with ComfyUI-GGUF's
/// dtype and device inputs. kinograph computes in f32 whatever they say (see `docs/models.md`): blocks are
/// widened to f32 exactly or multiplied by candle's quantized kernels, and LoRA updates are kept in f32,
/// factored, on the model's device.
pub struct UnetLoaderGgufAdvanced;

impl Node for UnetLoaderGgufAdvanced {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("UnetLoaderGGUFAdvanced")
            .display_name("Unet Loader (GGUF/Advanced)")
            .category("bootleg")
            .description("Unet Loader (GGUF) with ComfyUI-GGUF's dtype options, accepted for workflow compatibility.")
            .input(unet_name(env))
            .input(InputSpec::combo("dequant_dtype", DTYPE_CHOICES).tooltip(
                "ComfyUI-GGUF: the dtype weights are dequantized to. kinograph dequantizes to float32 (exactly) \
                 or multiplies by candle's quantized kernels, whichever is faster, for every choice.",
            ))
            .input(InputSpec::combo("patch_dtype", DTYPE_CHOICES).tooltip(
                "ComfyUI-GGUF: the dtype LoRA patches are computed in. kinograph keeps LoRA updates in float32, \
                 factored, beside the quantized weight, for every choice.",
            ))
            .input(InputSpec::boolean("patch_on_device", false).tooltip(
                "ComfyUI-GGUF: keep LoRA patches on the GPU. kinograph keeps them on the model's device either way.",
            ))
            .output("MODEL", "MODEL")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        file_fingerprint(env, FOLDER, constants, "unet_name")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        for input in ["dequant_dtype", "patch_dtype"] {
            let choice = inputs.string(input)?;
            if !DTYPE_CHOICES.contains(&choice) {
                return Err(NodeError::input(input, format!("'{choice}' is not one of {}", DTYPE_CHOICES.join(", "))));
            }
        }
        Ok(NodeOutput::new(vec![Value::from(load(inputs, context)?)]))
    }
}
