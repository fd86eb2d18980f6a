//! IMAGE (`[B, H, W, C]` in 0..1) and MASK (`[B, H, W]`).

use super::{restore_tensor, store_tensor, tensor_bytes, tensor_error};
use candle_core::Tensor;
use kinograph_engine::{NodeError, NodeValue, StoredObject};
use serde_json::json;
use std::sync::Arc;

/// IMAGE: a batch of frames `[B, H, W, 3]`, f32 in 0..1.
#[derive(Debug, Clone)]
pub struct Image {
    pub pixels: Tensor,
}

/// The stored kind of [`Image`].
pub const IMAGE_KIND: &str = "kinograph.image";

impl Image {
    /// Frames `[B, H, W, C]`.
    pub fn new(pixels: Tensor) -> Self {
        Image { pixels }
    }

    /// `(batch, height, width, channels)`.
    pub fn dims(&self) -> Result<(usize, usize, usize, usize), NodeError> {
        self.pixels
            .dims4()
            .map_err(|_| NodeError::msg(format!("an IMAGE must be [B, H, W, C], got {:?}", self.pixels.dims())))
    }

    /// Decoder for [`Image::to_stored`].
    #[allow(clippy::needless_pass_by_value)] // the decoder signature the registry expects
    pub fn from_stored(stored: StoredObject) -> Result<Arc<dyn NodeValue>, String> {
        let tensor = stored.tensors.first().ok_or("a stored image has no tensor")?;
        Ok(Arc::new(Image { pixels: restore_tensor(tensor)? }))
    }

    /// Frame `index` as RGB bytes the way ComfyUI saves it: `(x·255).clamp(0, 255)` truncated.
    pub fn frame_rgb8(&self, index: usize) -> Result<Vec<u8>, NodeError> {
        let (_, _, _, channels) = self.dims()?;
        let frame = self
            .pixels
            .get(index)
            .and_then(|f| f.flatten_all())
            .and_then(|f| f.to_vec1::<f32>())
            .map_err(|e| tensor_error("reading an image frame", &e))?;
        let mut rgb = Vec::with_capacity(frame.len() / channels * 3);
        for pixel in frame.chunks_exact(channels) {
            for c in 0..3 {
                let value = pixel[c.min(channels - 1)];
                rgb.push((value * 255.0).clamp(0.0, 255.0) as u8);
            }
        }
        Ok(rgb)
    }
}

impl NodeValue for Image {
    fn type_name(&self) -> &'static str {
        "IMAGE"
    }
    fn byte_size(&self) -> usize {
        tensor_bytes(&self.pixels)
    }
    fn describe(&self) -> String {
        format!("IMAGE {:?}", self.pixels.dims())
    }
    fn to_stored(&self) -> Option<StoredObject> {
        Some(StoredObject {
            kind: IMAGE_KIND.into(),
            metadata: json!({}),
            tensors: vec![store_tensor("pixels", &self.pixels)?],
        })
    }
}

/// MASK: `[B, H, W]`, f32 in 0..1.
#[derive(Debug, Clone)]
pub struct Mask {
    pub values: Tensor,
}

/// The stored kind of [`Mask`].
pub const MASK_KIND: &str = "kinograph.mask";

impl Mask {
    /// Decoder for [`Mask::to_stored`].
    #[allow(clippy::needless_pass_by_value)] // the decoder signature the registry expects
    pub fn from_stored(stored: StoredObject) -> Result<Arc<dyn NodeValue>, String> {
        let tensor =
            stored.tensors.iter().find(|t| t.name == "values").ok_or("a stored mask has no 'values' tensor")?;
        Ok(Arc::new(Mask { values: restore_tensor(tensor)? }))
    }
}

impl NodeValue for Mask {
    fn type_name(&self) -> &'static str {
        "MASK"
    }
    fn byte_size(&self) -> usize {
        tensor_bytes(&self.values)
    }
    fn describe(&self) -> String {
        format!("MASK {:?}", self.values.dims())
    }
    fn to_stored(&self) -> Option<StoredObject> {
        Some(StoredObject {
            kind: MASK_KIND.into(),
            metadata: json!({}),
            tensors: vec![store_tensor("values", &self.values)?],
        })
    }
}
