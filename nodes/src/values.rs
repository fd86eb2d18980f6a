//! The values that travel between the built-in nodes, one type per socket type, with ComfyUI's shapes:
//! LATENT `[B, C, T, H, W]`, IMAGE `[B, H, W, C]` in 0..1, MASK `[B, H, W]`, VIDEO (frames and a rate),
//! CONDITIONING (text embeddings with their options), SIGMAS, NOISE.
//!
//! Tensors live on the CPU in f32 between nodes; the models move them where they compute.

use candle_core::{DType, Device, Tensor};
use kinograph_engine::{NodeError, NodeValue, StoredObject, StoredTensor};
use serde_json::json;
use std::sync::Arc;

/// The bytes a tensor holds.
pub fn tensor_bytes(tensor: &Tensor) -> usize {
    tensor.elem_count() * tensor.dtype().size_in_bytes()
}

/// A candle error on `input` of the running node, in words.
pub fn tensor_error(what: &str, error: &candle_core::Error) -> NodeError {
    NodeError::msg(format!("{what}: {error}"))
}

/// A float32 tensor as a stored tensor (little-endian bytes).
pub fn store_tensor(name: &str, tensor: &Tensor) -> Option<StoredTensor> {
    let data: Vec<f32> = tensor.to_dtype(DType::F32).ok()?.flatten_all().ok()?.to_vec1().ok()?;
    Some(StoredTensor {
        name: name.to_string(),
        dtype: safetensors::Dtype::F32,
        shape: tensor.dims().to_vec(),
        data: data.iter().flat_map(|value| value.to_le_bytes()).collect(),
    })
}

/// A stored float32 tensor back as a CPU tensor.
pub fn restore_tensor(stored: &StoredTensor) -> Result<Tensor, String> {
    if stored.dtype != safetensors::Dtype::F32 {
        return Err(format!("tensor '{}' is {:?}, expected F32", stored.name, stored.dtype));
    }
    let expected = stored.shape.iter().product::<usize>() * 4;
    if stored.data.len() != expected {
        return Err(format!("tensor '{}' has {} bytes, its shape needs {expected}", stored.name, stored.data.len()));
    }
    let values: Vec<f32> =
        stored.data.chunks_exact(4).map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).collect();
    Tensor::from_vec(values, stored.shape.clone(), &Device::Cpu).map_err(|e| e.to_string())
}

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
}

/// VIDEO: frames and their rate (ComfyUI's `VideoFromComponents`).
#[derive(Debug, Clone)]
pub struct Video {
    pub frames: Image,
    /// Frames per second.
    pub fps: f64,
}

impl NodeValue for Video {
    fn type_name(&self) -> &'static str {
        "VIDEO"
    }
    fn byte_size(&self) -> usize {
        self.frames.byte_size()
    }
    fn describe(&self) -> String {
        format!("VIDEO {:?} at {} fps", self.frames.pixels.dims(), self.fps)
    }
}

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

/// SIGMAS: the noise levels a sampler steps through, from high to low (ComfyUI keeps them in f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Sigmas {
    pub values: Vec<f32>,
}

impl NodeValue for Sigmas {
    fn type_name(&self) -> &'static str {
        "SIGMAS"
    }
    fn byte_size(&self) -> usize {
        self.values.len() * 4
    }
    fn describe(&self) -> String {
        let shown: Vec<String> = self.values.iter().map(|s| format!("{s:.4}")).collect();
        format!("SIGMAS [{}]", shown.join(", "))
    }
}

/// NOISE: where a sampler's starting noise comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noise {
    /// `torch.manual_seed(seed)` then `torch.randn(latent shape)` on the CPU.
    Random { seed: i128 },
    /// Zeros: sample from the latent as it is.
    Disabled,
}

impl Noise {
    /// The seed the sampler's own randomness (ancestral, SDE) derives from.
    pub fn seed(&self) -> i128 {
        match self {
            Noise::Random { seed } => *seed,
            Noise::Disabled => 0,
        }
    }

    /// The starting noise for `latent`, shaped like its samples.
    pub fn generate(&self, latent: &Latent) -> Result<Tensor, NodeError> {
        let shape = latent.samples.dims().to_vec();
        let values = match self {
            Noise::Random { seed } => {
                kinograph_models::sampling::noise::prepare_noise(*seed, &shape, latent.batch_index.as_deref())
            }
            Noise::Disabled => vec![0.0; shape.iter().product()],
        };
        Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| tensor_error("making noise", &e))
    }
}

impl NodeValue for Noise {
    fn type_name(&self) -> &'static str {
        "NOISE"
    }
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// Registers the decoders that read stored values back from the disk cache.
pub fn register_decoders(registry: &mut kinograph_engine::Registry) {
    registry.register_decoder(LATENT_KIND, Latent::from_stored);
    registry.register_decoder(IMAGE_KIND, Image::from_stored);
}
