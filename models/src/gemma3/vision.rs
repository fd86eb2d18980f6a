//! Gemma 3's vision tower and projector, as ComfyUI runs them for an image given to Gemma 3
//! (`comfy/text_encoders/llama.py` `Gemma3_12B.preprocess_embed`, `Gemma3MultiModalProjector`;
//! `comfy/clip_model.py` `CLIPVision` with `model_type: siglip_vision_model`), which is transformers'
//! `SiglipVisionModel` and `Gemma3MultiModalProjector` (`modeling_siglip.py`, `modeling_gemma3.py`).
//!
//! - [`SiglipVisionModel`]: the image `[B, 3, S, S]` in [-1, 1] cut into `patch`-sized patches (a strided
//!   convolution with bias), plus learned position embeddings, then pre-norm encoder layers (layer norm,
//!   multi-head attention with biases and no mask, layer norm, `fc2(GELU_tanh(fc1(x)))`) and `post_layernorm`.
//!   The layer norms use torch's default ε 1e-5, as ComfyUI builds them (transformers reads `layer_norm_eps`,
//!   1e-6 in the real config).
//! - [`Gemma3Projector`]: the `G × G` patch grid average-pooled to `√mm_tokens_per_image` per side (64 → 16,
//!   a 4×4 kernel, in the 12B model), Gemma's RMS norm `mm_soft_emb_norm` (`1 + w`, with the text model's ε, as
//!   ComfyUI builds it), then `@ mm_input_projection_weight` `[vision, text]`: `mm_tokens_per_image`
//!   embeddings of the text model's width per image.
//!
//! Sizes come from the tensors (width, patch, grid, layers, MLP) and from the file's `config` metadata
//! (heads, `mm_tokens_per_image`), with the 12B model's values (16 heads, 256 tokens) where it has none.
//! Names: ComfyUI's `vision_model.*` and `multi_modal_projector.*`; transformers'
//! `vision_tower.vision_model.*` / `model.vision_tower.vision_model.*` and `[model.]multi_modal_projector.*`.

use super::config::Gemma3Config;
use super::model::GemmaNorm;
use crate::ops::activations::{gelu_tanh, softmax_last_dim};
use crate::ops::stored_linear::StoredLinear;
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use std::sync::Arc;

/// Where the vision tower's tensors may sit, ComfyUI's first.
const VISION_PREFIXES: [&str; 4] =
    ["vision_model.", "vision_tower.vision_model.", "model.vision_tower.vision_model.", "model.vision_tower."];
/// Where the projector's tensors may sit.
const PROJECTOR_PREFIXES: [&str; 2] = ["multi_modal_projector.", "model.multi_modal_projector."];
/// ComfyUI builds the `SigLIP` layer norms with torch's default ε.
const LAYER_NORM_EPS: f32 = 1e-5;
/// Attention heads computed at once: bounds the scores of a 4096-patch image to about 270 MB.
const HEADS_PER_CHUNK: usize = 4;

/// The vision tower's and projector's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gemma3VisionConfig {
    /// Width of the tower (1152).
    pub hidden_size: usize,
    /// Width of its MLP (4304).
    pub intermediate_size: usize,
    /// Encoder layers (27).
    pub num_hidden_layers: usize,
    /// Attention heads (16).
    pub num_attention_heads: usize,
    /// Side of the square input (896).
    pub image_size: usize,
    /// Side of a patch (14).
    pub patch_size: usize,
    /// Input channels (3).
    pub num_channels: usize,
    /// Embeddings per image after pooling (256).
    pub mm_tokens_per_image: usize,
}

impl Gemma3VisionConfig {
    /// Patches per side of the image (64).
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Embeddings per side after pooling (16).
    pub fn tokens_per_side(&self) -> usize {
        (self.mm_tokens_per_image as f64).sqrt().round() as usize
    }
}

/// One `SigLIP` encoder layer (`SiglipEncoderLayer`).
#[derive(Debug, Clone)]
struct SiglipLayer {
    layer_norm1: (Tensor, Tensor),
    layer_norm2: (Tensor, Tensor),
    q_proj: StoredLinear,
    k_proj: StoredLinear,
    v_proj: StoredLinear,
    out_proj: StoredLinear,
    fc1: StoredLinear,
    fc2: StoredLinear,
    heads: usize,
}

fn layer_norm_weights(width: usize, vb: &VarBuilder<'_>) -> Result<(Tensor, Tensor)> {
    Ok((vb.get(width, "weight")?.to_dtype(DType::F32)?, vb.get(width, "bias")?.to_dtype(DType::F32)?))
}

fn layer_norm(x: &Tensor, (weight, bias): &(Tensor, Tensor)) -> Result<Tensor> {
    candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, LAYER_NORM_EPS)
}

impl SiglipLayer {
    fn new(config: &Gemma3VisionConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let (d, m) = (config.hidden_size, config.intermediate_size);
        let attn = vb.pp("self_attn");
        Ok(SiglipLayer {
            layer_norm1: layer_norm_weights(d, &vb.pp("layer_norm1"))?,
            layer_norm2: layer_norm_weights(d, &vb.pp("layer_norm2"))?,
            q_proj: StoredLinear::with_bias(&attn.pp("q_proj"), d, d)?,
            k_proj: StoredLinear::with_bias(&attn.pp("k_proj"), d, d)?,
            v_proj: StoredLinear::with_bias(&attn.pp("v_proj"), d, d)?,
            out_proj: StoredLinear::with_bias(&attn.pp("out_proj"), d, d)?,
            fc1: StoredLinear::with_bias(&vb.pp("mlp").pp("fc1"), d, m)?,
            fc2: StoredLinear::with_bias(&vb.pp("mlp").pp("fc2"), m, d)?,
            heads: config.num_attention_heads,
        })
    }

    /// `x` `[B, T, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attention(&layer_norm(x, &self.layer_norm1)?)?)?;
        let hidden = gelu_tanh(self.fc1.forward(&layer_norm(&x, &self.layer_norm2)?)?)?;
        x + self.fc2.forward(&hidden)?
    }

    /// Full (unmasked) attention, scores scaled by `head_dim^-1/2`, a few heads at a time.
    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let head_dim = d / self.heads;
        let split = |projection: &StoredLinear| -> Result<Tensor> {
            projection.forward(x)?.reshape((b, t, self.heads, head_dim))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(&self.q_proj)?, split(&self.k_proj)?, split(&self.v_proj)?);
        let q = (q * (head_dim as f64).powf(-0.5))?;
        let mut outputs = Vec::with_capacity(self.heads.div_ceil(HEADS_PER_CHUNK));
        for first in (0..self.heads).step_by(HEADS_PER_CHUNK) {
            let count = HEADS_PER_CHUNK.min(self.heads - first);
            let (q, k, v) = (q.narrow(1, first, count)?, k.narrow(1, first, count)?, v.narrow(1, first, count)?);
            let scores = q.matmul(&k.t()?)?;
            outputs.push(softmax_last_dim(scores)?.matmul(&v)?);
        }
        let attended = Tensor::cat(&outputs, 1)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out_proj.forward(&attended)
    }
}

/// The `SigLIP` vision tower (`SiglipVisionTransformer` without the pooling head).
#[derive(Debug, Clone)]
pub struct SiglipVisionModel {
    config: Gemma3VisionConfig,
    patch_embedding: StoredLinear,
    position_embedding: Tensor,
    layers: Vec<SiglipLayer>,
    post_layernorm: (Tensor, Tensor),
}

impl SiglipVisionModel {
    /// Weights under `vision_model.` (`embeddings`, `encoder.layers.{i}`, `post_layernorm`).
    pub fn new(config: &Gemma3VisionConfig, vb: &VarBuilder<'_>) -> Result<Self> {
        let (d, c, p) = (config.hidden_size, config.num_channels, config.patch_size);
        let embeddings = vb.pp("embeddings");
        let patch = embeddings.pp("patch_embedding");
        let weight = patch.get((d, c, p, p), "weight")?.reshape((d, c * p * p))?;
        let bias = patch.get(d, "bias")?.to_dtype(DType::F32)?;
        let positions = config.patches_per_side() * config.patches_per_side();
        let position_embedding =
            embeddings.pp("position_embedding").get((positions, d), "weight")?.to_dtype(DType::F32)?;
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers =
            (0..config.num_hidden_layers).map(|i| SiglipLayer::new(config, &layers_vb.pp(i))).collect::<Result<_>>()?;
        Ok(SiglipVisionModel {
            config: config.clone(),
            patch_embedding: StoredLinear::from_weight(weight, Some(bias)),
            position_embedding,
            layers,
            post_layernorm: layer_norm_weights(d, &vb.pp("post_layernorm"))?,
        })
    }

    /// `pixels` `[B, C, S, S]` (normalised to [-1, 1]) → the last hidden state after `post_layernorm`,
    /// `[B, G², D]` with patches in row-major order.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = pixels.dims4()?;
        let (p, side) = (self.config.patch_size, self.config.patches_per_side());
        if c != self.config.num_channels || height != self.config.image_size || width != self.config.image_size {
            candle_core::bail!(
                "the vision tower takes [B, {}, {s}, {s}] images, got {:?}",
                self.config.num_channels,
                pixels.dims(),
                s = self.config.image_size
            );
        }
        // The strided convolution as a product: each patch flattened as (channel, row, column).
        let patches = pixels
            .to_dtype(DType::F32)?
            .reshape((b, c, side, p, side, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, side * side, c * p * p))?;
        let mut x = self.patch_embedding.forward(&patches)?.broadcast_add(&self.position_embedding)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        layer_norm(&x, &self.post_layernorm)
    }
}

/// `Gemma3MultiModalProjector`: pooling, `mm_soft_emb_norm`, `mm_input_projection_weight`.
#[derive(Debug, Clone)]
pub struct Gemma3Projector {
    norm: GemmaNorm,
    projection: StoredLinear,
    patches_per_side: usize,
    tokens_per_side: usize,
}

impl Gemma3Projector {
    /// Weights under `multi_modal_projector.`; the norm's ε is the text model's `rms_norm_eps`.
    pub fn new(config: &Gemma3VisionConfig, text: &Gemma3Config, vb: &VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get((config.hidden_size, text.hidden_size), "mm_input_projection_weight")?;
        Ok(Gemma3Projector {
            norm: GemmaNorm::new(config.hidden_size, text.rms_norm_eps, &vb.pp("mm_soft_emb_norm"))?,
            projection: StoredLinear::from_weight(weight.t()?.contiguous()?, None),
            patches_per_side: config.patches_per_side(),
            tokens_per_side: config.tokens_per_side(),
        })
    }

    /// The tower's output `[B, G², D]` → `[B, tokens, text width]`.
    pub fn forward(&self, vision: &Tensor) -> Result<Tensor> {
        let (b, _, d) = vision.dims3()?;
        let (side, tokens) = (self.patches_per_side, self.tokens_per_side);
        let kernel = side / tokens;
        // `AvgPool2d(kernel, stride = kernel)` over the [D, G, G] grid.
        let pooled = vision
            .transpose(1, 2)?
            .reshape((b, d, tokens, kernel, tokens, kernel))?
            .sum(5)?
            .sum(3)?
            .affine(1.0 / (kernel * kernel) as f64, 0.0)?
            .reshape((b, d, tokens * tokens))?
            .transpose(1, 2)?;
        self.projection.forward(&self.norm.forward(&pooled)?)
    }
}

/// Gemma 3's image encoder: the `SigLIP` tower and the projector into the text model's embedding space.
#[derive(Debug, Clone)]
pub struct Gemma3Vision {
    config: Gemma3VisionConfig,
    tower: SiglipVisionModel,
    projector: Gemma3Projector,
}

impl Gemma3Vision {
    /// The sizes.
    pub fn config(&self) -> &Gemma3VisionConfig {
        &self.config
    }

    /// `pixels` `[B, C, S, S]` from [`super::image::comfy_pixel_values`] → `[B, mm_tokens_per_image, text
    /// width]`, which go into the prompt in place of its image placeholder, unscaled.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        self.projector.forward(&self.tower.forward(pixels)?)
    }

    /// Loads the tower and projector that sit beside the text model `text` (its width and norm ε) in
    /// `source`. A file with the text model only is an error that says so.
    pub fn load(
        source: &Arc<WeightSource>,
        text: &Gemma3Config,
        device: &Device,
    ) -> std::result::Result<Self, WeightError> {
        let (vision_prefix, projector_prefix) = find_prefixes(source)?;
        let config = read_vision_config(source, vision_prefix, projector_prefix, text)?;
        let names = || source.names().filter(|n| n.starts_with(vision_prefix) || n.starts_with(projector_prefix));
        let dtype = source.common_dtype(names(), "Gemma 3 vision weights")?;
        let tower_vb = source.var_builder(vision_prefix.trim_end_matches('.'), dtype, device);
        let projector_vb = source.var_builder(projector_prefix.trim_end_matches('.'), dtype, device);
        let build = || -> Result<Self> {
            Ok(Gemma3Vision {
                tower: SiglipVisionModel::new(&config, &tower_vb)?,
                projector: Gemma3Projector::new(&config, text, &projector_vb)?,
                config: config.clone(),
            })
        };
        let vision = build().map_err(|e| source.explain(&e))?;
        let unused: Vec<String> =
            source.unused(vision_prefix).into_iter().chain(source.unused(projector_prefix)).collect();
        if let Some(first) = unused.first() {
            return Err(WeightError::Unexpected { file: source.file_of(first), tensors: unused });
        }
        Ok(vision)
    }
}

impl Gemma3VisionConfig {
    /// The sizes of the vision tower and projector in `source`, beside the text model `text`, without reading
    /// any weight.
    pub fn read(source: &WeightSource, text: &Gemma3Config) -> std::result::Result<Self, WeightError> {
        let (vision, projector) = find_prefixes(source)?;
        read_vision_config(source, vision, projector, text)
    }
}

/// Where the vision tower and the projector sit in `source`, or why there is none.
fn find_prefixes(source: &WeightSource) -> std::result::Result<(&'static str, &'static str), WeightError> {
    let file = describe(source);
    let vision = VISION_PREFIXES
        .iter()
        .find(|prefix| source.contains(&format!("{prefix}embeddings.patch_embedding.weight")))
        .ok_or_else(|| WeightError::Invalid {
            file: file.clone(),
            message: "this Gemma 3 file holds the text model only: it has no vision tower \
                      ('vision_model.embeddings.patch_embedding.weight'), which an image input needs; use a \
                      Gemma 3 file with the vision tower (ComfyUI's gemma_3_12B_it.safetensors has it) or \
                      disconnect the image"
                .into(),
        })?;
    let projector = PROJECTOR_PREFIXES
        .iter()
        .find(|prefix| source.contains(&format!("{prefix}mm_input_projection_weight")))
        .ok_or_else(|| WeightError::Invalid {
            file,
            message: format!(
                "the file has a vision tower ('{vision}*') but no projector \
                 ('multi_modal_projector.mm_input_projection_weight') to bring it into the text model"
            ),
        })?;
    Ok((vision, projector))
}

/// Sizes from the tensors, heads and tokens per image from the `config` metadata (12B values otherwise).
fn read_vision_config(
    source: &WeightSource,
    vision: &str,
    projector: &str,
    text: &Gemma3Config,
) -> std::result::Result<Gemma3VisionConfig, WeightError> {
    let file = describe(source);
    let invalid = |message: String| WeightError::Invalid { file: file.clone(), message };
    let shape = |name: String| -> std::result::Result<Vec<usize>, WeightError> {
        source.shape(&name).ok_or_else(|| WeightError::Missing { files: file.clone(), tensor: name, expected: vec![] })
    };
    let patch = shape(format!("{vision}embeddings.patch_embedding.weight"))?;
    let [hidden_size, num_channels, patch_size, patch_width] = patch[..] else {
        return Err(invalid(format!("'{vision}embeddings.patch_embedding.weight' has shape {patch:?}, not 4-D")));
    };
    if patch_size != patch_width || patch_size == 0 {
        return Err(invalid(format!("the vision patches are {patch_size}×{patch_width}, not square")));
    }
    let positions = shape(format!("{vision}embeddings.position_embedding.weight"))?.first().copied().unwrap_or(0);
    let side = (positions as f64).sqrt().round() as usize;
    if side * side != positions {
        return Err(invalid(format!("{positions} vision position embeddings do not form a square patch grid")));
    }
    let intermediate_size =
        shape(format!("{vision}encoder.layers.0.mlp.fc1.weight"))?.first().copied().unwrap_or_default();
    let num_hidden_layers = (0..usize::MAX)
        .take_while(|i| source.contains(&format!("{vision}encoder.layers.{i}.layer_norm1.weight")))
        .count();
    let json: Option<Value> = source.metadata("config").and_then(|text| serde_json::from_str(text).ok());
    let vision_json = json.as_ref().and_then(|j| j.get("vision_config"));
    let number = |value: Option<&Value>, key: &str| value.and_then(|v| v.get(key)).and_then(Value::as_u64);
    let config = Gemma3VisionConfig {
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads: number(vision_json, "num_attention_heads").unwrap_or(16) as usize,
        image_size: side * patch_size,
        patch_size,
        num_channels,
        mm_tokens_per_image: number(json.as_ref(), "mm_tokens_per_image").unwrap_or(256) as usize,
    };
    for (key, value) in [("image_size", config.image_size), ("patch_size", patch_size), ("hidden_size", hidden_size)] {
        if let Some(stated) = number(vision_json, key)
            && stated as usize != value
        {
            return Err(invalid(format!("the config's vision {key} is {stated} but the tensors give {value}")));
        }
    }
    let tokens = config.tokens_per_side();
    if config.num_attention_heads == 0 || !hidden_size.is_multiple_of(config.num_attention_heads) {
        return Err(invalid(format!(
            "{} vision heads do not divide the width {hidden_size}",
            config.num_attention_heads
        )));
    }
    if tokens == 0 || tokens * tokens != config.mm_tokens_per_image || !side.is_multiple_of(tokens) {
        return Err(invalid(format!(
            "{} image tokens do not pool evenly from the {side}×{side} patch grid",
            config.mm_tokens_per_image
        )));
    }
    let projection = shape(format!("{projector}mm_input_projection_weight"))?;
    if projection != [hidden_size, text.hidden_size] {
        return Err(invalid(format!(
            "'{projector}mm_input_projection_weight' has shape {projection:?}, expected [{hidden_size}, {}] (vision \
             width, text width)",
            text.hidden_size
        )));
    }
    Ok(config)
}

fn describe(source: &WeightSource) -> String {
    source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}
