//! LATENT: the latent video between the nodes, with its image-to-video noise mask and batch indices, and
//! for LTX-2 the audio latent that travels with it (ComfyUI's nested `samples`).

use super::{restore_tensor, store_tensor, tensor_bytes};
use candle_core::Tensor;
use kinograph_engine::{NodeValue, StoredObject};
use serde_json::json;
use std::sync::Arc;

/// LATENT: `samples` `[B, C, T, H, W]` plus, for image-to-video, a noise mask `[B, 1, T, 1, 1]` (1 = denoise
/// fully, 0 = keep the given latent), and the batch indices ComfyUI uses to draw per-item noise.
///
/// LTX-2 adds sound: `LTXVEmptyLatentAudio` makes an audio latent (`samples` `[B, 8, T, 16]`, four
/// dimensions), and `LTXVConcatAVLatent` joins a video latent and an audio latent into one whose `audio`
/// holds the sound; samplers denoise both together.
#[derive(Debug, Clone)]
pub struct Latent {
    pub samples: Tensor,
    pub noise_mask: Option<Tensor>,
    pub batch_index: Option<Vec<usize>>,
    /// The audio latent of an audio-video latent.
    pub audio: Option<AudioLatent>,
}

/// The audio half of an audio-video latent: `samples` `[B, 8, T, 16]` and its noise mask.
#[derive(Debug, Clone)]
pub struct AudioLatent {
    pub samples: Tensor,
    pub noise_mask: Option<Tensor>,
}

impl Latent {
    /// A latent without mask or batch indices.
    pub fn new(samples: Tensor) -> Self {
        Latent { samples, noise_mask: None, batch_index: None, audio: None }
    }

    /// A latent with a noise mask.
    pub fn masked(samples: Tensor, noise_mask: Tensor) -> Self {
        Latent { samples, noise_mask: Some(noise_mask), batch_index: None, audio: None }
    }

    /// Whether this is an audio latent (`[B, C, T, F]`, from `LTXVEmptyLatentAudio` or an audio VAE).
    pub fn is_audio(&self) -> bool {
        self.samples.rank() == 4 && self.audio.is_none()
    }

    /// The same latent with other samples (mask and indices kept).
    pub fn with_samples(&self, samples: Tensor) -> Self {
        Latent {
            samples,
            noise_mask: self.noise_mask.clone(),
            batch_index: self.batch_index.clone(),
            audio: self.audio.clone(),
        }
    }

    /// Decoder for [`Latent::to_stored`].
    #[allow(clippy::needless_pass_by_value)] // the decoder signature the registry expects
    pub fn from_stored(stored: StoredObject) -> Result<Arc<dyn NodeValue>, String> {
        let mut samples = None;
        let mut noise_mask = None;
        let mut audio_samples = None;
        let mut audio_mask = None;
        for tensor in &stored.tensors {
            match tensor.name.as_str() {
                "samples" => samples = Some(restore_tensor(tensor)?),
                "noise_mask" => noise_mask = Some(restore_tensor(tensor)?),
                "audio_samples" => audio_samples = Some(restore_tensor(tensor)?),
                "audio_noise_mask" => audio_mask = Some(restore_tensor(tensor)?),
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
        let audio = match (audio_samples, audio_mask) {
            (Some(samples), noise_mask) => Some(AudioLatent { samples, noise_mask }),
            (None, None) => None,
            (None, Some(_)) => return Err("a stored latent has an audio noise mask but no audio samples".into()),
        };
        Ok(Arc::new(Latent { samples, noise_mask, batch_index, audio }))
    }
}

/// The stored kind of [`Latent`].
pub const LATENT_KIND: &str = "kinograph.latent";

impl NodeValue for Latent {
    fn type_name(&self) -> &'static str {
        "LATENT"
    }
    fn byte_size(&self) -> usize {
        let audio = self
            .audio
            .as_ref()
            .map_or(0, |audio| tensor_bytes(&audio.samples) + audio.noise_mask.as_ref().map_or(0, tensor_bytes));
        tensor_bytes(&self.samples) + self.noise_mask.as_ref().map_or(0, tensor_bytes) + audio
    }
    fn describe(&self) -> String {
        let mask = if self.noise_mask.is_some() { " with noise mask" } else { "" };
        match &self.audio {
            Some(audio) => format!("LATENT video {:?}{mask} + audio {:?}", self.samples.dims(), audio.samples.dims()),
            None => format!("LATENT {:?}{mask}", self.samples.dims()),
        }
    }
    fn to_stored(&self) -> Option<StoredObject> {
        let mut tensors = vec![store_tensor("samples", &self.samples)?];
        if let Some(mask) = &self.noise_mask {
            tensors.push(store_tensor("noise_mask", mask)?);
        }
        if let Some(audio) = &self.audio {
            tensors.push(store_tensor("audio_samples", &audio.samples)?);
            if let Some(mask) = &audio.noise_mask {
                tensors.push(store_tensor("audio_noise_mask", mask)?);
            }
        }
        Some(StoredObject { kind: LATENT_KIND.into(), metadata: json!({"batch_index": self.batch_index}), tensors })
    }
}
