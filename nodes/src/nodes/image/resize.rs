//! The image resize nodes of ComfyUI that go through `common_upscale`: `ImageScale`, `ImageScaleBy`,
//! `ImageScaleToMaxDimension` and `ResizeAndPadImage`, and `ResizeImagesByLongerEdge`, which resizes each frame
//! with PIL's LANCZOS directly.

use super::pil_lanczos::{quantize, resize_bytes};
use super::resample::{Frames, ResizeMethod, common_upscale};
use crate::values::Image;
use kinograph_engine::prelude::*;
use std::cmp::Ordering;
use std::sync::Arc;

/// ComfyUI's `MAX_RESOLUTION`.
pub const MAX_RESOLUTION: i64 = 16384;

/// Python's `round` on a non-negative size.
fn round_size(value: f64) -> usize {
    value.round_ties_even().max(0.0) as usize
}

/// The image of input `name` as frames.
pub(crate) fn input_frames(inputs: &NodeInputs, name: &str) -> Result<Frames, NodeError> {
    let image = inputs.object::<Image>(name)?;
    image.dims().map_err(|error| NodeError::input(name, error))?;
    Frames::from_tensor(name, &image.pixels)
}

/// Frames back into an IMAGE output.
pub(crate) fn image_output(frames: Frames) -> Result<NodeOutput, NodeError> {
    Ok(NodeOutput::new(vec![Value::Object(Arc::new(Image::new(frames.into_image()?)))]))
}

/// Resizes the frames, with errors naming `input` (the size that could not be used).
pub(crate) fn upscale(
    frames: &Frames,
    size: (usize, usize),
    method: ResizeMethod,
    center_crop: bool,
    input: &str,
) -> Result<Frames, NodeError> {
    common_upscale(frames, size, method, center_crop).map_err(|message| NodeError::input(input, message))
}

/// `ImageScale`: resize to `width × height`; 0 for one side keeps the aspect ratio, 0 for both passes the
/// image through.
pub struct ImageScale;

impl Node for ImageScale {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ImageScale")
            .display_name("Upscale Image")
            .category("image/upscaling")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::combo("upscale_method", ResizeMethod::NAMES))
            .input(InputSpec::int("width", 512).min(0).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::int("height", 512).min(0).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::combo("crop", ["disabled", "center"]))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let method = ResizeMethod::parse("upscale_method", inputs.string("upscale_method")?)?;
        let width = non_negative(inputs, "width")?;
        let height = non_negative(inputs, "height")?;
        let center_crop = inputs.string("crop")? == "center";
        if width == 0 && height == 0 {
            return Ok(NodeOutput::new(vec![Value::Object(inputs.object::<Image>("image")?)]));
        }
        let frames = input_frames(inputs, "image")?;
        let (width, height) = match (width, height) {
            (0, height) => (round_size(frames.width as f64 * height as f64 / frames.height as f64).max(1), height),
            (width, 0) => (width, round_size(frames.height as f64 * width as f64 / frames.width as f64).max(1)),
            size => size,
        };
        image_output(upscale(&frames, (height, width), method, center_crop, "image")?)
    }
}

fn non_negative(inputs: &NodeInputs, name: &str) -> Result<usize, NodeError> {
    let value = inputs.int(name)?;
    usize::try_from(value).map_err(|_| NodeError::input(name, format!("{value} is negative; expected 0 or more")))
}

/// `ImageScaleBy`: resize by a factor, each side rounded.
pub struct ImageScaleBy;

impl Node for ImageScaleBy {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ImageScaleBy")
            .display_name("Upscale Image By")
            .category("image/upscaling")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::combo("upscale_method", ResizeMethod::NAMES))
            .input(InputSpec::float("scale_by", 1.0).min(0.01).max(8.0).step(0.01))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let method = ResizeMethod::parse("upscale_method", inputs.string("upscale_method")?)?;
        let scale = inputs.float("scale_by")?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(NodeError::input("scale_by", format!("{scale} is not a positive factor")));
        }
        let frames = input_frames(inputs, "image")?;
        let size = (round_size(frames.height as f64 * scale), round_size(frames.width as f64 * scale));
        image_output(upscale(&frames, size, method, false, "scale_by")?)
    }
}

/// `ImageScaleToMaxDimension`: the longer side to `largest_size`, the other rounded to keep the aspect ratio.
pub struct ImageScaleToMaxDimension;

impl Node for ImageScaleToMaxDimension {
    fn schema(&self, _: &Environment) -> NodeSchema {
        // ComfyUI's list names bilinear twice; kept so that its workflows' values and `/object_info` match.
        NodeSchema::new("ImageScaleToMaxDimension")
            .display_name("Scale Image to Max Dimension")
            .category("image/upscaling")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::combo(
                "upscale_method",
                ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"],
            ))
            .input(InputSpec::int("largest_size", 512).min(0).max(MAX_RESOLUTION).step(1))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let method = ResizeMethod::parse("upscale_method", inputs.string("upscale_method")?)?;
        let largest = non_negative(inputs, "largest_size")?;
        let frames = input_frames(inputs, "image")?;
        let size = longer_side_size((frames.height, frames.width), largest);
        image_output(upscale(&frames, size, method, false, "largest_size")?)
    }
}

/// `(height, width)` with the longer side set to `longer` and the other rounded (Python's `round`).
pub(crate) fn longer_side_size((height, width): (usize, usize), longer: usize) -> (usize, usize) {
    let (h, w, l) = (height as f64, width as f64, longer as f64);
    match height.cmp(&width) {
        Ordering::Greater => (longer, round_size(w / h * l)),
        Ordering::Less => (round_size(h / w * l), longer),
        Ordering::Equal => (longer, longer),
    }
}

/// `ResizeImagesByLongerEdge`: each frame through PIL's LANCZOS so that its longer edge is `longer_edge`; the
/// other side is truncated, as ComfyUI's `int()` does.
pub struct ResizeImagesByLongerEdge;

impl Node for ResizeImagesByLongerEdge {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ResizeImagesByLongerEdge")
            .display_name("Resize Images by Longer Edge (DEPRECATED)")
            .category("image/transform")
            .description(
                "Resize images so that the longer edge matches the specified dimension while preserving aspect ratio.",
            )
            .input(InputSpec::socket("images", "IMAGE").tooltip("Image to process."))
            .input(
                InputSpec::int("longer_edge", 1024).min(1).max(8192).tooltip("Target dimension for the longer edge."),
            )
            .output("IMAGE", "images")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let edge = non_negative(inputs, "longer_edge")?;
        let frames = input_frames(inputs, "images")?;
        let (height, width, channels) = (frames.height, frames.width, frames.channels);
        if channels != 1 && channels != 3 && channels != 4 {
            return Err(NodeError::input("images", format!("PIL takes 1, 3 or 4 channels, not {channels}")));
        }
        let (out_height, out_width) = if width > height {
            (truncated_size(height, edge, width), edge)
        } else {
            (edge, truncated_size(width, edge, height))
        };
        if out_height == 0 || out_width == 0 || height == 0 || width == 0 {
            return Err(NodeError::input(
                "longer_edge",
                format!("a {width}x{height} image with its longer edge at {edge} would be {out_width}x{out_height}"),
            ));
        }
        let mut data = Vec::with_capacity(frames.count * out_height * out_width * channels);
        for index in 0..frames.count {
            context.check_interrupted()?;
            let bytes: Vec<u8> = frames.frame(index).iter().map(|&value| quantize(value)).collect();
            let resized = resize_bytes(&bytes, (height, width, channels), (out_height, out_width));
            data.extend(resized.iter().map(|&byte| f32::from(byte) / 255.0));
        }
        image_output(Frames { data, count: frames.count, height: out_height, width: out_width, channels })
    }
}

/// `int(side * (edge / longer))`.
fn truncated_size(side: usize, edge: usize, longer: usize) -> usize {
    (side as f64 * (edge as f64 / longer as f64)) as usize
}

/// `ResizeAndPadImage`: fit inside `target_width × target_height` keeping the aspect ratio, centred on a white
/// or black canvas.
pub struct ResizeAndPadImage;

impl Node for ResizeAndPadImage {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("ResizeAndPadImage")
            .display_name("Resize And Pad Image")
            .category("image/transform")
            .input(InputSpec::socket("image", "IMAGE"))
            .input(InputSpec::int("target_width", 512).min(1).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::int("target_height", 512).min(1).max(MAX_RESOLUTION).step(1))
            .input(InputSpec::combo("padding_color", ["white", "black"]))
            .input(InputSpec::combo("interpolation", ["area", "bicubic", "nearest-exact", "bilinear", "lanczos"]))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let target_width = non_negative(inputs, "target_width")?;
        let target_height = non_negative(inputs, "target_height")?;
        let pad = if inputs.string("padding_color")? == "black" { 0.0 } else { 1.0 };
        let method = ResizeMethod::parse("interpolation", inputs.string("interpolation")?)?;
        let frames = input_frames(inputs, "image")?;
        let scale_width = target_width as f64 / frames.width as f64;
        let scale_height = target_height as f64 / frames.height as f64;
        let (new_width, new_height) = if scale_width == scale_height {
            (target_width, target_height)
        } else {
            let scale = scale_width.min(scale_height);
            ((frames.width as f64 * scale) as usize, (frames.height as f64 * scale) as usize)
        };
        let resized = upscale(&frames, (new_height, new_width), method, false, "image")?;
        let channels = frames.channels;
        let (top, left) = ((target_height - new_height) / 2, (target_width - new_width) / 2);
        let mut data = vec![pad; frames.count * target_height * target_width * channels];
        for index in 0..frames.count {
            let source = resized.frame(index);
            let canvas = &mut data[index * target_height * target_width * channels..];
            for row in 0..new_height {
                let from = &source[row * new_width * channels..][..new_width * channels];
                let start = ((top + row) * target_width + left) * channels;
                canvas[start..start + new_width * channels].copy_from_slice(from);
            }
        }
        image_output(Frames { data, count: frames.count, height: target_height, width: target_width, channels })
    }
}
