//! `VAEDecode`, `VAEDecodeTiled` and `VAEEncode`.

use crate::values::VideoVae;
use crate::values::{Image, Latent, tensor_error};
use candle_core::{DType, Device, Tensor};
use kinograph_engine::prelude::*;
use kinograph_models::ltxv::vae::noise::NoiseSource;
use kinograph_models::ltxv::vae::tiling::SpatialTiles;
use kinograph_models::ltxv::vae::{DecodeOptions, LtxvVae};
use kinograph_models::sampling::torch_noise::TorchGenerator;
use std::sync::Arc;

/// The decode timestep ComfyUI uses for timestep-conditioned decoders (0.9.1+).
pub const DECODE_TIMESTEP: f64 = 0.05;
/// How much noise ComfyUI mixes into the latent before such a decoder.
pub const DECODE_NOISE_SCALE: f64 = 0.025;
/// The seed of that noise. ComfyUI leaves it unseeded; kinograph seeds it so decodes repeat exactly.
pub const DECODE_NOISE_SEED: u64 = 0;
/// Latent frames decoded at a time unless tiles say otherwise: memory stays bounded by the chunk, not
/// the video length (the causal decoder streams exactly).
pub const DEFAULT_TEMPORAL_CHUNK: usize = 4;

/// Decoder noise from torch's CPU generator (`torch.randn` draws in order).
pub struct TorchNoise(pub TorchGenerator);

impl NoiseSource for TorchNoise {
    fn sample(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let count = shape.iter().product();
        Tensor::from_vec(self.0.randn(count), shape, device)
    }
}

/// Decodes a normalised latent `[B, 128, T, H, W]` into frames `[B·F, H, W, 3]` in 0..1, as ComfyUI's
/// `VAE.decode` does for LTX-Video (seeded decode noise for timestep-conditioned decoders).
pub fn decode_latent(vae: &LtxvVae, samples: &Tensor, options: &DecodeOptions) -> candle_core::Result<Tensor> {
    let mut generator = TorchGenerator::new(DECODE_NOISE_SEED);
    let conditioned = vae.config().timestep_conditioning;
    let mut latent = samples.to_dtype(DType::F32)?;
    if conditioned {
        let noise = Tensor::from_vec(generator.randn(latent.elem_count()), latent.dims(), latent.device())?;
        latent = ((noise * DECODE_NOISE_SCALE)? + (latent * (1.0 - DECODE_NOISE_SCALE))?)?;
    }
    let latent = vae.denormalize(&latent.to_device(vae.device())?)?;
    let timestep = conditioned.then_some(DECODE_TIMESTEP);
    let video = vae.decode(&latent, timestep, &mut TorchNoise(generator), options)?;
    let (batch, _, frames, height, width) = video.dims5()?;
    let images = ((video + 1.0)? / 2.0)?.clamp(0f32, 1f32)?;
    images.permute((0, 2, 3, 4, 1))?.reshape((batch * frames, height, width, 3))?.to_device(&Device::Cpu)
}

/// Encodes frames `[N, H, W, C]` in 0..1 (N = 8k + 1) into a normalised latent `[1, 128, k + 1, H/32, W/32]`,
/// cropping H and W to multiples of 32 around the centre as ComfyUI does.
pub fn encode_frames(vae: &LtxvVae, pixels: &Tensor) -> Result<Tensor, NodeError> {
    let (frames, height, width, channels) = pixels
        .dims4()
        .map_err(|_| NodeError::input("pixels", format!("expected an IMAGE [N, H, W, C], got {:?}", pixels.dims())))?;
    let (spatial, temporal) = vae.compression();
    if (frames - 1) % temporal != 0 {
        return Err(NodeError::input(
            "pixels",
            format!("the LTX-Video VAE encodes {temporal}k + 1 frames (1, 9, 17, ...); got {frames}"),
        ));
    }
    if height < spatial || width < spatial || channels < 3 {
        return Err(NodeError::input(
            "pixels",
            format!(
                "images must be at least {spatial}×{spatial} RGB to encode, got {width}×{height} with {channels} channels"
            ),
        ));
    }
    let crop = |size: usize| ((size % spatial) / 2, size / spatial * spatial);
    let (top, crop_height) = crop(height);
    let (left, crop_width) = crop(width);
    let encode = || -> candle_core::Result<Tensor> {
        let video = pixels
            .narrow(1, top, crop_height)?
            .narrow(2, left, crop_width)?
            .narrow(3, 0, 3)?
            .to_dtype(DType::F32)?
            .affine(2.0, -1.0)?
            .permute((3, 0, 1, 2))?
            .unsqueeze(0)?
            .contiguous()?;
        let mean = vae.encode(&video.to_device(vae.device())?)?;
        vae.normalize(&mean)?.to_device(&Device::Cpu)
    };
    encode().map_err(|e| tensor_error("VAE encode", &e))
}

/// `VAEDecode`.
pub struct VaeDecode;

impl Node for VaeDecode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("VAEDecode")
            .display_name("VAE Decode")
            .category("latent")
            .description("Decodes latent frames into images.")
            .input(InputSpec::socket("samples", "LATENT").tooltip("The latent to be decoded."))
            .input(InputSpec::socket("vae", "VAE").tooltip("The VAE model used for decoding the latent."))
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let vae = inputs.object::<VideoVae>("vae")?;
        let options = DecodeOptions { temporal_chunk: Some(DEFAULT_TEMPORAL_CHUNK), spatial_tiles: None };
        context.check_interrupted()?;
        let frames = decode_latent(&vae.vae, &latent.samples, &options).map_err(|e| tensor_error("VAE decode", &e))?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Image::new(frames)))]))
    }
}

/// `VAEDecodeTiled`: spatial tiles blended across their overlap, and time decoded in chunks. Sizes are
/// in pixels and frames as in ComfyUI; the causal decoder streams time exactly, so `temporal_overlap` is
/// accepted for compatibility but no overlap is needed.
pub struct VaeDecodeTiled;

impl Node for VaeDecodeTiled {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("VAEDecodeTiled")
            .display_name("VAE Decode (Tiled)")
            .category("_for_testing")
            .input(InputSpec::socket("samples", "LATENT"))
            .input(InputSpec::socket("vae", "VAE"))
            .input(InputSpec::int("tile_size", 512).min(64).max(4096).step(32))
            .input(InputSpec::int("overlap", 64).min(0).max(4096).step(32))
            .input(
                InputSpec::int("temporal_size", 64)
                    .min(8)
                    .max(4096)
                    .step(4)
                    .tooltip("Frames decoded at a time (video VAEs only)."),
            )
            .input(
                InputSpec::int("temporal_overlap", 8)
                    .min(4)
                    .max(4096)
                    .step(4)
                    .tooltip("Frames shared by neighbouring time chunks (not needed by the causal LTX-Video decoder)."),
            )
            .output("IMAGE", "IMAGE")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let vae = inputs.object::<VideoVae>("vae")?;
        let (spatial, temporal) = vae.vae.compression();
        let tile_size = inputs.int("tile_size")?.max(1) as usize;
        let mut overlap = inputs.int("overlap")?.max(0) as usize;
        if tile_size / 4 < overlap {
            // ComfyUI's rule: the overlap is at most a quarter of the tile.
            overlap = tile_size / 4;
        }
        let temporal_size = inputs.int("temporal_size")?.max(1) as usize;
        let tile = (tile_size / spatial).max(1);
        let options = DecodeOptions {
            temporal_chunk: Some((temporal_size / temporal).max(1)),
            spatial_tiles: Some(SpatialTiles { tile, overlap: (overlap / spatial).min(tile.saturating_sub(1)) }),
        };
        context.check_interrupted()?;
        let frames = decode_latent(&vae.vae, &latent.samples, &options).map_err(|e| tensor_error("VAE decode", &e))?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Image::new(frames)))]))
    }
}

/// `VAEEncode`.
pub struct VaeEncode;

impl Node for VaeEncode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("VAEEncode")
            .display_name("VAE Encode")
            .category("latent")
            .input(InputSpec::socket("pixels", "IMAGE"))
            .input(InputSpec::socket("vae", "VAE"))
            .output("LATENT", "LATENT")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let image = inputs.object::<Image>("pixels")?;
        let vae = inputs.object::<VideoVae>("vae")?;
        context.check_interrupted()?;
        let samples = encode_frames(&vae.vae, &image.pixels)?;
        Ok(NodeOutput::new(vec![Value::from(Arc::new(Latent::new(samples)))]))
    }
}
