//! `ResizeImageMaskNode` ("Resize Image/Mask"): one node for every way ComfyUI resizes an IMAGE or a MASK,
//! chosen by the dynamic combo `resize_type`.
//!
//! ComfyUI's dynamic combo shows the inputs of the selected option only and sends them as
//! `resize_type.<name>` (`resize_type.width`, `resize_type.crop`, ...). The schema declares every such input
//! as optional, so API prompts validate and run; `execute` requires the ones the selected option needs and
//! names any that is missing. (A VIDEO input, which ComfyUI also takes, is not supported here.)

use super::resample::{Frames, ResizeMethod};
use super::resize::{MAX_RESOLUTION, upscale};
use crate::values::{Image, Mask};
use kinograph_engine::prelude::*;
use std::cmp::Ordering;
use std::sync::Arc;

/// The options of `resize_type`, in ComfyUI's order.
pub const RESIZE_TYPES: [&str; 9] = [
    "scale dimensions",
    "scale by multiplier",
    "scale longer dimension",
    "scale shorter dimension",
    "scale width",
    "scale height",
    "scale total pixels",
    "match size",
    "scale to multiple",
];

/// The inputs each resize type shows, under `resize_type.`.
fn option_inputs(resize_type: &str) -> &'static [&'static str] {
    match resize_type {
        "scale dimensions" => &["width", "height", "crop"],
        "scale by multiplier" => &["multiplier"],
        "scale longer dimension" => &["longer_size"],
        "scale shorter dimension" => &["shorter_size"],
        "scale width" => &["width"],
        "scale height" => &["height"],
        "scale total pixels" => &["megapixels"],
        "match size" => &["match", "crop"],
        "scale to multiple" => &["multiple"],
        _ => &[],
    }
}

/// Resizes an IMAGE or a MASK; the output has the input's type.
pub struct ResizeImageMaskNode;

impl Node for ResizeImageMaskNode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let size = |name: &str, tooltip: &str| {
            InputSpec::int(&format!("resize_type.{name}"), 512)
                .min(0)
                .max(MAX_RESOLUTION)
                .step(1)
                .optional()
                .tooltip(tooltip)
        };
        NodeSchema::new("ResizeImageMaskNode")
            .display_name("Resize Image/Mask")
            .category("image/transform")
            .description("Resize an image or mask using various scaling methods.")
            .input(InputSpec::socket("input", "IMAGE,MASK"))
            .input(
                InputSpec::dynamic_combo("resize_type", RESIZE_TYPES.iter().map(|&key| (key, option_inputs(key))))
                    .tooltip("Select how to resize: by exact dimensions, scale factor, matching another image, etc."),
            )
            .input(size("width", "Target width in pixels; 0 keeps the aspect ratio from the height."))
            .input(size("height", "Target height in pixels; 0 keeps the aspect ratio from the width."))
            .input(
                InputSpec::combo("resize_type.crop", ["disabled", "center"])
                    .default_option("center")
                    .optional()
                    .tooltip("'disabled' stretches to fit, 'center' crops to keep the aspect ratio."),
            )
            .input(
                InputSpec::float("resize_type.multiplier", 1.0)
                    .min(0.01)
                    .max(8.0)
                    .step(0.01)
                    .optional()
                    .tooltip("Scale factor (2.0 doubles the size, 0.5 halves it)."),
            )
            .input(size("longer_size", "The longer edge is resized to this value, keeping the aspect ratio."))
            .input(size("shorter_size", "The shorter edge is resized to this value, keeping the aspect ratio."))
            .input(
                InputSpec::float("resize_type.megapixels", 1.0)
                    .min(0.01)
                    .max(16.0)
                    .step(0.01)
                    .optional()
                    .tooltip("Target total megapixels (1.0 is about 1024x1024), keeping the aspect ratio."),
            )
            .input(
                InputSpec::socket("resize_type.match", "IMAGE,MASK")
                    .optional()
                    .tooltip("Resize the input to the size of this image or mask."),
            )
            .input(
                InputSpec::int("resize_type.multiple", 8)
                    .min(1)
                    .max(MAX_RESOLUTION)
                    .step(1)
                    .optional()
                    .tooltip("Resize so that width and height are divisible by this number (cover, then centre crop)."),
            )
            .input(InputSpec::combo("scale_method", ResizeMethod::NAMES).default_option("area").tooltip(
                "Interpolation: 'area' for downscaling, 'lanczos' for upscaling, 'nearest-exact' for pixel art.",
            ))
            .output("IMAGE,MASK", "resized")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let value = inputs.get("input").ok_or_else(|| NodeError::input("input", "is missing"))?;
        let (frames, is_mask) = image_or_mask("input", value)?;
        let method = ResizeMethod::parse("scale_method", inputs.string("scale_method")?)?;
        let resize_type = inputs.string("resize_type")?;
        let Some(plan) = plan(inputs, resize_type, (frames.height, frames.width))? else {
            return Ok(NodeOutput::new(vec![value.clone()]));
        };
        let mut resized = upscale(&frames, plan.size, method, plan.center_crop, plan.input)?;
        if let Some(window) = plan.then_crop {
            resized = resized.crop(window);
        }
        let output = if is_mask {
            Value::Object(Arc::new(Mask { values: resized.into_mask()? }))
        } else {
            Value::Object(Arc::new(Image::new(resized.into_image()?)))
        };
        Ok(NodeOutput::new(vec![output]))
    }
}

/// The frames of an IMAGE or MASK value, and whether it is a mask.
fn image_or_mask(input: &str, value: &Value) -> Result<(Frames, bool), NodeError> {
    if let Some(image) = value.downcast::<Image>() {
        image.dims().map_err(|error| NodeError::input(input, error))?;
        return Ok((Frames::from_tensor(input, &image.pixels)?, false));
    }
    if let Some(mask) = value.downcast::<Mask>() {
        if mask.values.rank() != 3 {
            return Err(NodeError::input(input, format!("a MASK must be [B, H, W], got {:?}", mask.values.dims())));
        }
        return Ok((Frames::from_tensor(input, &mask.values)?, true));
    }
    Err(NodeError::input(input, format!("expected an IMAGE or a MASK, got {}", value.type_name())))
}

/// What to do: resize to `size` (height, width), maybe centre-cropping first, maybe cropping a window after.
struct Plan {
    size: (usize, usize),
    center_crop: bool,
    then_crop: Option<(usize, usize, usize, usize)>,
    /// The input a failure is reported on.
    input: &'static str,
}

impl Plan {
    fn scale(size: (usize, usize), input: &'static str) -> Plan {
        Plan { size, center_crop: false, then_crop: None, input }
    }
}

/// A sub-input of the selected resize type, which it requires.
fn required<'a>(inputs: &'a NodeInputs, name: &str, resize_type: &str) -> Result<&'a Value, NodeError> {
    inputs.get(name).ok_or_else(|| NodeError::input(name, format!("is required when resize_type is '{resize_type}'")))
}

fn size_input(inputs: &NodeInputs, name: &str, resize_type: &str) -> Result<usize, NodeError> {
    required(inputs, name, resize_type)?;
    let value = inputs.int(name)?;
    usize::try_from(value).map_err(|_| NodeError::input(name, format!("{value} is negative; expected 0 or more")))
}

fn crop_input(inputs: &NodeInputs, resize_type: &str) -> Result<bool, NodeError> {
    required(inputs, "resize_type.crop", resize_type)?;
    Ok(inputs.string("resize_type.crop")? == "center")
}

/// Python's `round` for a size.
fn round(value: f64) -> usize {
    value.round_ties_even().max(0.0) as usize
}

/// ComfyUI's `resolve_resize_ops`: `None` leaves the input unchanged.
fn plan(inputs: &NodeInputs, resize_type: &str, (height, width): (usize, usize)) -> Result<Option<Plan>, NodeError> {
    let (h, w) = (height as f64, width as f64);
    Ok(match resize_type {
        "scale by multiplier" => {
            required(inputs, "resize_type.multiplier", resize_type)?;
            let factor = inputs.float("resize_type.multiplier")?;
            Some(Plan::scale((round(h * factor), round(w * factor)), "resize_type.multiplier"))
        }
        "scale dimensions" | "scale width" | "scale height" => {
            let (target_width, target_height, center_crop) = match resize_type {
                "scale dimensions" => (
                    size_input(inputs, "resize_type.width", resize_type)?,
                    size_input(inputs, "resize_type.height", resize_type)?,
                    crop_input(inputs, resize_type)?,
                ),
                "scale width" => (size_input(inputs, "resize_type.width", resize_type)?, 0, false),
                _ => (0, size_input(inputs, "resize_type.height", resize_type)?, false),
            };
            let size = match (target_width, target_height) {
                (0, 0) => return Ok(None),
                (0, th) => (th, round(w * th as f64 / h).max(1)),
                (tw, 0) => (round(h * tw as f64 / w).max(1), tw),
                (tw, th) => (th, tw),
            };
            Some(Plan { size, center_crop, then_crop: None, input: "resize_type" })
        }
        "scale longer dimension" => {
            let longer = size_input(inputs, "resize_type.longer_size", resize_type)? as f64;
            let size = match height.cmp(&width) {
                Ordering::Greater => (longer as usize, round(w / h * longer)),
                Ordering::Less => (round(h / w * longer), longer as usize),
                Ordering::Equal => (longer as usize, longer as usize),
            };
            Some(Plan::scale(size, "resize_type.longer_size"))
        }
        "scale shorter dimension" => {
            let shorter = size_input(inputs, "resize_type.shorter_size", resize_type)? as f64;
            let size = match height.cmp(&width) {
                Ordering::Less => (shorter as usize, round(w / h * shorter)),
                Ordering::Greater => (round(h / w * shorter), shorter as usize),
                Ordering::Equal => (shorter as usize, shorter as usize),
            };
            Some(Plan::scale(size, "resize_type.shorter_size"))
        }
        "scale total pixels" => {
            required(inputs, "resize_type.megapixels", resize_type)?;
            let total = (inputs.float("resize_type.megapixels")? * 1024.0 * 1024.0).trunc();
            let scale = (total / (w * h)).sqrt();
            Some(Plan::scale((round(h * scale), round(w * scale)), "resize_type.megapixels"))
        }
        "match size" => {
            let reference = required(inputs, "resize_type.match", resize_type)?;
            let (frames, _) = image_or_mask("resize_type.match", reference)?;
            let center_crop = crop_input(inputs, resize_type)?;
            Some(Plan { size: (frames.height, frames.width), center_crop, then_crop: None, input: "resize_type.match" })
        }
        "scale to multiple" => {
            let multiple = size_input(inputs, "resize_type.multiple", resize_type)?;
            if multiple <= 1 {
                return Ok(None);
            }
            let (crop_width, crop_height) = (width / multiple * multiple, height / multiple * multiple);
            if crop_width == 0 || crop_height == 0 || (crop_width, crop_height) == (width, height) {
                return Ok(None);
            }
            let (scale_width, scale_height) = (crop_width as f64 / w, crop_height as f64 / h);
            let (target_width, target_height) = if scale_width >= scale_height {
                (crop_width, crop_height.max((h * scale_width).ceil() as usize))
            } else {
                (crop_width.max((w * scale_height).ceil() as usize), crop_height)
            };
            let window = ((target_height - crop_height) / 2, (target_width - crop_width) / 2, crop_height, crop_width);
            Some(Plan {
                size: (target_height, target_width),
                center_crop: false,
                then_crop: Some(window),
                input: "resize_type.multiple",
            })
        }
        other => {
            return Err(NodeError::input(
                "resize_type",
                format!("unknown resize type '{other}'; expected one of {}", RESIZE_TYPES.join(", ")),
            ));
        }
    })
}
