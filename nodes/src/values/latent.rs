//! LATENT: the latent video between the nodes, with its image-to-video noise mask and batch indices.

use super::{restore_tensor, store_tensor, tensor_bytes};
use candle_core::Tensor;
use kinograph_engine::{NodeValue, StoredObject};
use serde_json::json;
use std::sync::Arc;

/// LATENT: `samples` `[B, C, T, H, W]` plus, for image-to-video, a noise mask `[B, 1, T, 1, 1]` (1 = denoise
/// fully, 0 = keep the given latent), and the batch indices ComfyUI uses to draw per-item noise.
#[derive(Debug, Clone)]
pub struct Latent {
    pub samples: Tensor,
    pub noise_mask: Option<Tensor>,
    pub batch_index: Option<Vec<usize>>,
}

impl Latent {
    /// A latent without mask or batch indices.
    pub fn new(samples: Tensor) -> Self {
        Latent { samples, noise_mask: None, batch_index: None }
    }

    /// The same latent with other samples (mask and indices kept).
    pub fn with_samples(&self, samples: Tensor) -> Self {
        Latent { samples, noise_mask: self.noise_mask.clone(), batch_index: self.batch_index.clone() }
    }

    /// Decoder for [`Latent::to_stored`].
    #[allow(clippy::needless_pass_by_value)] // the decoder signature the registry expects
    pub fn from_stored(stored: StoredObject) -> Result<Arc<dyn NodeValue>, String> {
        let mut samples = None;
        let mut noise_mask = None;
        for tensor in &stored.tensors {
            match tensor.name.as_str() {
                "samples" => samples = Some(restore_tensor(tensor)?),
                "noise_mask" => noise_mask = Some(restore_tensor(tensor)?),
                other => return Err(format!("unexpected tensor '{other}' in a stored latent")),
            }
        }
        let batch_index = match stored.metadata.get("batch_index") {
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| item.as_u64().map(|i| i as usize).ok_or("batch_index holds a non-integer"))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let samples = samples.ok_or("a stored latent has no 'samples' tensor")?;
        Ok(Arc::new(Latent { samples, noise_mask, batch_index }))
    }
}

/// The stored kind of [`Latent`].
pub const LATENT_KIND: &str = "kinograph.latent";

impl NodeValue for Latent {
    fn type_name(&self) -> &'static str {
        "LATENT"
    }
    fn byte_size(&self) -> usize {
        tensor_bytes(&self.samples) + self.noise_mask.as_ref().map_or(0, tensor_bytes)
    }
    fn describe(&self) -> String {
        format!("LATENT {:?}{}", self.samples.dims(), if self.noise_mask.is_some() { " with noise mask" } else { "" })
    }
    fn to_stored(&self) -> Option<StoredObject> {
        let mut tensors = vec![store_tensor("samples", &self.samples)?];
        if let Some(mask) = &self.noise_mask {
            tensors.push(store_tensor("noise_mask", mask)?);
        }
        Some(StoredObject { kind: LATENT_KIND.into(), metadata: json!({"batch_index": self.batch_index}), tensors })
    }
}
