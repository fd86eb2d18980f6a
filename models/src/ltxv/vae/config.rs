//! The VAE configuration in the original form (`CausalVideoAutoencoder` config: flat `encoder_blocks` /
//! `decoder_blocks` lists, as LTX-Video and LTX-2 single files carry them in `__metadata__.config`), version
//! detection, and the real 0.9.0 / 0.9.1 / 0.9.5 / LTX-2.0 / LTX-2.3 configurations.
//!
//! The flat block lists are what the single-file checkpoints index by (`encoder.down_blocks.{k}`,
//! `decoder.up_blocks.{k}`), so the model is built from them; diffusers folders are renamed onto them
//! (see `load.rs`). A configuration comes from the checkpoint's `__metadata__.config` when present
//! ([`VaeConfig::from_original_json`], the keys ltx-core's `VideoEncoderConfigurator` /
//! `VideoDecoderConfigurator` read), and otherwise from tensor names and shapes alone ([`VaeConfig::infer`]).
//! diffusers tells 0.9.5 apart only by a 2048-wide encoder; here the version follows from the structure
//! (space-to-depth encoder blocks mean 0.9.5 or LTX-2, a decoder upsampler that is not ×2 in all three
//! dimensions means LTX-2.3), so tiny models are detected too.
//!
//! What the tensors cannot show: the spatial padding of the convs and whether a depth-to-space upsampler
//! adds its residual. [`VaeConfig::infer`] settles them by the released layout the structure belongs to and
//! refuses a structure that belongs to none (see there).

use super::conv3d::SpatialPadding;
use serde_json::Value;

/// Which VAE generation a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeVersion {
    /// 0.9.0: strided-conv encoder, plain decoder.
    V090,
    /// 0.9.1: 0.9.0 encoder; timestep-conditioned decoder with noise injection and residual upsamplers.
    V091,
    /// 0.9.5 (also 0.9.6 – 0.9.8): space-to-depth encoder, timestep-conditioned decoder.
    V095,
    /// LTX-2.0: the 0.9.5 layout without timestep conditioning (and with `reflect` padding in the decoder).
    V20,
    /// LTX-2.3: a slimmer space-to-depth encoder and a decoder of plain depth-to-space upsamplers, some of
    /// them only temporal or only spatial (`zeros` padding).
    V23,
}

impl std::fmt::Display for VaeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VaeVersion::V090 => "0.9.0",
            VaeVersion::V091 => "0.9.1",
            VaeVersion::V095 => "0.9.5",
            VaeVersion::V20 => "LTX-2.0",
            VaeVersion::V23 => "LTX-2.3",
        })
    }
}

/// One entry of the encoder's flat block list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderBlock {
    /// `res_x`: `layers` resnets at constant width (a `UNetMidBlock3D`).
    Res { layers: usize },
    /// `res_x_y`: one resnet multiplying the width by `multiplier`.
    ResChannels { multiplier: usize },
    /// `compress_all` / `compress_time` / `compress_space`: a strided causal conv.
    Compress { stride: [usize; 3] },
    /// `compress_*_res` (0.9.5): space-to-depth downsampler multiplying the width by `multiplier`.
    SpaceToDepth { stride: [usize; 3], multiplier: usize },
}

/// One entry of the decoder's flat block list, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderBlock {
    /// `res_x`: `layers` resnets, with spatial noise injection when `inject_noise`.
    Res { layers: usize, inject_noise: bool },
    /// `res_x_y`: one resnet dividing the width by `multiplier`.
    ResChannels { multiplier: usize },
    /// `compress_*`: depth-to-space upsampler dividing the width by `multiplier`.
    Upsample { stride: [usize; 3], residual: bool, multiplier: usize },
}

/// Everything needed to build the VAE.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    /// Latent channels (128 in every release).
    pub latent_channels: usize,
    /// Spatial patch size of the pixel (un)patchify (4).
    pub patch_size: usize,
    /// Width after the encoder's `conv_in`.
    pub encoder_base_channels: usize,
    /// Width before the decoder's `conv_out`.
    pub decoder_base_channels: usize,
    /// The encoder's flat block list.
    pub encoder_blocks: Vec<EncoderBlock>,
    /// The decoder's flat block list in forward order (the reverse of the config's `decoder_blocks`).
    pub decoder_blocks: Vec<DecoderBlock>,
    /// Whether the decoder takes a timestep (0.9.1+).
    pub timestep_conditioning: bool,
    /// Spatial padding of every encoder conv: the checkpoint config's `spatial_padding_mode`, else zeros.
    pub encoder_padding: SpatialPadding,
    /// Spatial padding of every decoder conv: the checkpoint config's `spatial_padding_mode`, else
    /// reflect. This is ComfyUI's rule (`VideoVAE` in `comfy/ldm/lightricks/vae/causal_video_autoencoder.py`,
    /// commit a125cd84), which users see; diffusers pads with zeros everywhere.
    pub decoder_padding: SpatialPadding,
    /// Whether the decoder's convs are causal (false in every release).
    pub causal_decoder: bool,
    /// Epsilon of the resnet shortcut `LayerNorm`.
    pub norm_eps: f64,
}

impl VaeConfig {
    /// The version implied by the structure.
    pub fn version(&self) -> VaeVersion {
        let space_to_depth = self.encoder_blocks.iter().any(|b| matches!(b, EncoderBlock::SpaceToDepth { .. }));
        if self
            .decoder_blocks
            .iter()
            .any(|b| matches!(b, DecoderBlock::Upsample { stride, .. } if *stride != [2, 2, 2]))
        {
            VaeVersion::V23
        } else if space_to_depth && self.timestep_conditioning {
            VaeVersion::V095
        } else if space_to_depth {
            VaeVersion::V20
        } else if self.timestep_conditioning {
            VaeVersion::V091
        } else {
            VaeVersion::V090
        }
    }

    /// Checks that the configuration describes a buildable model: positive sizes and widths that divide
    /// as the blocks need.
    pub fn validate(&self) -> Result<(), String> {
        if self.latent_channels == 0 || self.patch_size == 0 || self.encoder_base_channels == 0 {
            return Err("latent channels, patch size and base widths must be positive".into());
        }
        if self.decoder_base_channels == 0 {
            return Err("the decoder base width must be positive".into());
        }
        let widths = self.encoder_widths();
        for (index, block) in self.encoder_blocks.iter().enumerate() {
            let valid = match *block {
                EncoderBlock::Res { .. } => true,
                EncoderBlock::ResChannels { multiplier } => multiplier > 0,
                EncoderBlock::Compress { stride } => !stride.contains(&0),
                EncoderBlock::SpaceToDepth { stride, multiplier } => {
                    let factor: usize = stride.iter().product();
                    let (input, output) = (widths[index], widths[index + 1]);
                    multiplier > 0
                        && factor > 0
                        && output.is_multiple_of(factor)
                        && output <= input * factor
                        && (input * factor).is_multiple_of(output)
                }
            };
            if !valid {
                return Err(format!("encoder block {index} ({block:?}) does not fit width {}", widths[index]));
            }
        }
        for (index, block) in self.decoder_blocks.iter().enumerate() {
            let valid = match *block {
                DecoderBlock::Res { .. } => true,
                DecoderBlock::ResChannels { multiplier } => multiplier > 0,
                DecoderBlock::Upsample { stride, residual, multiplier } => {
                    let factor: usize = stride.iter().product();
                    multiplier > 0 && factor > 0 && (!residual || factor.is_multiple_of(multiplier))
                }
            };
            if !valid {
                return Err(format!("decoder block {index} ({block:?}) is invalid (a zero stride or multiplier?)"));
            }
        }
        let decoder_widths = self.decoder_widths();
        if decoder_widths.contains(&0) {
            return Err("decoder widths do not divide by the blocks' multipliers".into());
        }
        Ok(())
    }

    /// Channel widths along the encoder: the input width of each block, then the final width.
    pub fn encoder_widths(&self) -> Vec<usize> {
        let mut widths = vec![self.encoder_base_channels];
        let mut width = self.encoder_base_channels;
        for block in &self.encoder_blocks {
            width = match *block {
                EncoderBlock::Res { .. } | EncoderBlock::Compress { .. } => width,
                EncoderBlock::ResChannels { multiplier } | EncoderBlock::SpaceToDepth { multiplier, .. } => {
                    width * multiplier
                }
            };
            widths.push(width);
        }
        widths
    }

    /// Channel widths along the decoder: the width after `conv_in`, then after each block.
    pub fn decoder_widths(&self) -> Vec<usize> {
        let mut width = self.decoder_base_channels;
        for block in &self.decoder_blocks {
            if let DecoderBlock::ResChannels { multiplier } | DecoderBlock::Upsample { multiplier, .. } = *block {
                width *= multiplier;
            }
        }
        let mut widths = vec![width];
        for block in &self.decoder_blocks {
            if let DecoderBlock::ResChannels { multiplier } | DecoderBlock::Upsample { multiplier, .. } = *block {
                width /= multiplier;
            }
            widths.push(width);
        }
        widths
    }

    /// Reads the original `CausalVideoAutoencoder` config (the `vae` object of a single file's
    /// `__metadata__.config`). The decoder pads with `decoder_spatial_padding_mode`, else
    /// `spatial_padding_mode`, else reflect; the encoder with `encoder_spatial_padding_mode`, else
    /// `spatial_padding_mode`, else zeros (ltx-core's and ComfyUI's defaults: LTX-2.0 files name no mode,
    /// LTX-2.3 files name zeros). A missing `timestep_conditioning` reads as false here; the loader
    /// settles it from the tensors instead (ltx-core would default to true, ComfyUI to false).
    pub fn from_original_json(vae: &Value) -> Result<Self, String> {
        let number = |key: &str, default: usize| -> usize {
            vae.get(key).and_then(Value::as_u64).map_or(default, |v| v as usize)
        };
        if let Some(class) = vae.get("_class_name").and_then(Value::as_str)
            && class != "CausalVideoAutoencoder"
        {
            return Err(format!(
                "VAE class '{class}' is not supported (only `CausalVideoAutoencoder`, the convolutional VAE of \
                 LTX-Video and LTX-2.0 / 2.3)"
            ));
        }
        if let Some(dims) = vae.get("dims")
            && dims.as_u64() != Some(3)
        {
            return Err(format!("unsupported VAE `dims` {dims} (only 3-D convolutions)"));
        }
        if let Some(norm) = vae.get("norm_layer").and_then(Value::as_str)
            && norm != "pixel_norm"
        {
            return Err(format!("unsupported VAE `norm_layer` '{norm}' (only 'pixel_norm')"));
        }
        let (encoder_list, decoder_list) =
            if let (Some(encoder), Some(decoder)) = (vae.get("encoder_blocks"), vae.get("decoder_blocks")) {
                (encoder, decoder)
            } else {
                let blocks = vae.get("blocks").ok_or("the VAE config has neither `blocks` nor `encoder_blocks`")?;
                (blocks, blocks)
            };
        let encoder_blocks = parse_list(encoder_list)?
            .into_iter()
            .map(|(name, params)| parse_encoder_block(&name, &params))
            .collect::<Result<Vec<_>, _>>()?;
        let mut decoder_blocks = parse_list(decoder_list)?
            .into_iter()
            .map(|(name, params)| parse_decoder_block(&name, &params))
            .collect::<Result<Vec<_>, _>>()?;
        decoder_blocks.reverse();
        let padding = |key: &str, default: SpatialPadding| -> Result<SpatialPadding, String> {
            let mode = vae.get(key).or_else(|| vae.get("spatial_padding_mode"));
            match mode.map(|mode| (mode, mode.as_str())) {
                None => Ok(default),
                Some((_, Some("zeros"))) => Ok(SpatialPadding::Zeros),
                Some((_, Some("reflect"))) => Ok(SpatialPadding::Reflect),
                Some((other, _)) => Err(format!("unsupported spatial padding mode {other} (zeros or reflect)")),
            }
        };
        let encoder_padding = padding("encoder_spatial_padding_mode", SpatialPadding::Zeros)?;
        let decoder_padding = padding("decoder_spatial_padding_mode", SpatialPadding::Reflect)?;
        if let Some(kind) = vae.get("latent_log_var").and_then(Value::as_str)
            && kind != "uniform"
        {
            return Err(format!("unsupported latent_log_var '{kind}' (only 'uniform' is used by LTX-Video)"));
        }
        Ok(Self {
            latent_channels: number("latent_channels", 128),
            patch_size: number("patch_size", 4),
            encoder_base_channels: number("encoder_base_channels", 128),
            decoder_base_channels: number("decoder_base_channels", 128),
            encoder_blocks,
            decoder_blocks,
            timestep_conditioning: vae.get("timestep_conditioning").and_then(Value::as_bool).unwrap_or(false),
            encoder_padding,
            decoder_padding,
            causal_decoder: vae.get("causal_decoder").and_then(Value::as_bool).unwrap_or(false),
            norm_eps: 1e-6,
        })
    }

    /// Infers the configuration from tensor names and shapes in the original naming (no prefix).
    /// `shape(name)` returns the shape of a tensor if it exists.
    ///
    /// A space-to-depth block's stride follows from its channel ratio, and so does a depth-to-space
    /// upsampler's (its conv has stride-product × the next width outputs); the strided convs of the
    /// 0.9.0 / 0.9.1 encoder are taken as (2, 2, 2), as in every release. What no shape shows is settled
    /// by the released layout the decoder belongs to:
    /// - upsamplers all (2, 2, 2) and keeping the width: 0.9.0, plain upsamplers;
    /// - upsamplers all (2, 2, 2) and halving the width: 0.9.1, 0.9.5, LTX-2.0, residual upsamplers;
    /// - some upsampler only temporal or only spatial: LTX-2.3, plain upsamplers, zeros padding.
    ///
    /// Other decoders (all (2, 2, 2), some keeping the width and some reducing it) fit no release and are
    /// an error asking for the file's `config` metadata. Without a config the padding is ComfyUI's
    /// default (zeros in the encoder, reflect in the decoder) except for the LTX-2.3 decoder (zeros).
    pub fn infer(names: &[String], shape: &dyn Fn(&str) -> Option<Vec<usize>>) -> Result<Self, String> {
        let dims = |name: &str| -> Result<Vec<usize>, String> {
            let dims = shape(name).ok_or_else(|| format!("tensor '{name}' is missing"))?;
            if dims.len() < 2 && !name.ends_with("bias") {
                return Err(format!("tensor '{name}' has shape {dims:?}, expected at least two dimensions"));
            }
            Ok(dims)
        };
        let count_blocks = |prefix: &str| count_numbered(names, prefix);
        let count_layers = |prefix: &str| count_numbered(names, &format!("{prefix}res_blocks."));
        let has = |name: String| names.contains(&name);

        let conv_in = dims("encoder.conv_in.conv.weight")?;
        let encoder_base_channels = conv_in[0];
        let patch_area = conv_in[1] / 3;
        let patch_size = (1..=16).find(|p| p * p == patch_area).ok_or("encoder.conv_in has an odd input width")?;
        let encoder_count = count_blocks("encoder.down_blocks.");
        let block_input = |k: usize| -> Result<usize, String> {
            let prefix = format!("encoder.down_blocks.{k}.");
            if k == encoder_count {
                return Ok(dims("encoder.conv_out.conv.weight")?[1]);
            }
            if has(format!("{prefix}res_blocks.0.conv1.conv.weight")) {
                Ok(dims(&format!("{prefix}res_blocks.0.conv1.conv.weight"))?[1])
            } else if has(format!("{prefix}conv1.conv.weight")) {
                Ok(dims(&format!("{prefix}conv1.conv.weight"))?[1])
            } else if has(format!("{prefix}conv.conv.weight")) {
                Ok(dims(&format!("{prefix}conv.conv.weight"))?[1])
            } else {
                Ok(dims(&format!("{prefix}conv.weight"))?[1])
            }
        };
        let mut encoder_blocks = Vec::with_capacity(encoder_count);
        for k in 0..encoder_count {
            let prefix = format!("encoder.down_blocks.{k}.");
            let input = block_input(k)?;
            let output = block_input(k + 1)?;
            let block = if has(format!("{prefix}res_blocks.0.conv1.conv.weight")) {
                EncoderBlock::Res { layers: count_layers(&prefix) }
            } else if has(format!("{prefix}conv1.conv.weight")) {
                EncoderBlock::ResChannels { multiplier: ratio(output, input, &prefix)? }
            } else if has(format!("{prefix}conv.conv.weight")) {
                let conv_out = dims(&format!("{prefix}conv.conv.weight"))?[0];
                let stride = match ratio(output, conv_out, &prefix)? {
                    2 => [2, 1, 1],
                    4 => [1, 2, 2],
                    8 => [2, 2, 2],
                    other => return Err(format!("{prefix}conv: unexpected space-to-depth factor {other}")),
                };
                EncoderBlock::SpaceToDepth { stride, multiplier: ratio(output, input, &prefix)? }
            } else {
                EncoderBlock::Compress { stride: [2, 2, 2] }
            };
            encoder_blocks.push(block);
        }

        let (decoder_blocks, decoder_base_channels, ltx23_decoder) = infer_decoder(names, shape)?;
        Ok(Self {
            latent_channels: dims("decoder.conv_in.conv.weight")?[1],
            patch_size,
            encoder_base_channels,
            decoder_base_channels,
            encoder_blocks,
            decoder_blocks,
            timestep_conditioning: has("decoder.timestep_scale_multiplier".into()),
            // No config names a mode: ComfyUI's defaults, except for LTX-2.3's decoder, which pads with zeros.
            encoder_padding: SpatialPadding::Zeros,
            decoder_padding: if ltx23_decoder { SpatialPadding::Zeros } else { SpatialPadding::Reflect },
            causal_decoder: false,
            norm_eps: 1e-6,
        })
    }

    /// The released 0.9.0 VAE (`ltx-video-2b-v0.9`).
    pub fn v090() -> Self {
        use DecoderBlock as Dec;
        use EncoderBlock as E;
        let encoder_blocks = vec![
            E::Res { layers: 4 },
            E::Compress { stride: [2, 2, 2] },
            E::ResChannels { multiplier: 2 },
            E::Res { layers: 3 },
            E::Compress { stride: [2, 2, 2] },
            E::ResChannels { multiplier: 2 },
            E::Res { layers: 3 },
            E::Compress { stride: [2, 2, 2] },
            E::Res { layers: 3 },
            E::Res { layers: 4 },
        ];
        let upsample = Dec::Upsample { stride: [2, 2, 2], residual: false, multiplier: 1 };
        let decoder_blocks = vec![
            Dec::Res { layers: 4, inject_noise: false },
            Dec::Res { layers: 3, inject_noise: false },
            upsample,
            Dec::Res { layers: 3, inject_noise: false },
            Dec::ResChannels { multiplier: 2 },
            upsample,
            Dec::Res { layers: 3, inject_noise: false },
            Dec::ResChannels { multiplier: 2 },
            upsample,
            Dec::Res { layers: 4, inject_noise: false },
        ];
        Self::released(encoder_blocks, decoder_blocks, false)
    }

    /// The released 0.9.1 VAE.
    pub fn v091() -> Self {
        let encoder_blocks = Self::v090().encoder_blocks;
        let decoder_blocks = residual_decoder(&[(8, false), (7, true), (6, true), (5, true)]);
        Self::released(encoder_blocks, decoder_blocks, true)
    }

    /// The released 0.9.5 VAE (identical for 0.9.6 – 0.9.8).
    pub fn v095() -> Self {
        use EncoderBlock as E;
        let encoder_blocks = vec![
            E::Res { layers: 4 },
            E::SpaceToDepth { stride: [1, 2, 2], multiplier: 2 },
            E::Res { layers: 6 },
            E::SpaceToDepth { stride: [2, 1, 1], multiplier: 2 },
            E::Res { layers: 6 },
            E::SpaceToDepth { stride: [2, 2, 2], multiplier: 2 },
            E::Res { layers: 2 },
            E::SpaceToDepth { stride: [2, 2, 2], multiplier: 2 },
            E::Res { layers: 2 },
        ];
        let decoder_blocks = residual_decoder(&[(5, false), (5, false), (5, false), (5, false)]);
        Self::released(encoder_blocks, decoder_blocks, true)
    }

    /// The LTX-2.0 video VAE: the 0.9.5 layout without timestep conditioning; the encoder pads with
    /// zeros and the decoder with reflect (diffusers' `AutoencoderKLLTX2Video` defaults).
    pub fn ltx20() -> Self {
        Self { timestep_conditioning: false, ..Self::v095() }
    }

    /// The LTX-2.3 video VAE: the slimmer encoder (its last space-to-depth keeps the width) and the
    /// decoder of plain depth-to-space upsamplers, (2, 2, 2) halving, (2, 2, 2) keeping, (2, 1, 1) halving
    /// and (1, 2, 2) halving the width in decode order; zeros padding everywhere.
    pub fn ltx23() -> Self {
        use DecoderBlock as D;
        use EncoderBlock as E;
        let encoder_blocks = vec![
            E::Res { layers: 4 },
            E::SpaceToDepth { stride: [1, 2, 2], multiplier: 2 },
            E::Res { layers: 6 },
            E::SpaceToDepth { stride: [2, 1, 1], multiplier: 2 },
            E::Res { layers: 4 },
            E::SpaceToDepth { stride: [2, 2, 2], multiplier: 2 },
            E::Res { layers: 2 },
            E::SpaceToDepth { stride: [2, 2, 2], multiplier: 1 },
            E::Res { layers: 2 },
        ];
        let res = |layers| D::Res { layers, inject_noise: false };
        let upsample = |stride, multiplier| D::Upsample { stride, residual: false, multiplier };
        let decoder_blocks = vec![
            res(2),
            upsample([2, 2, 2], 2),
            res(2),
            upsample([2, 2, 2], 1),
            res(4),
            upsample([2, 1, 1], 2),
            res(6),
            upsample([1, 2, 2], 2),
            res(4),
        ];
        Self {
            encoder_padding: SpatialPadding::Zeros,
            decoder_padding: SpatialPadding::Zeros,
            ..Self::released(encoder_blocks, decoder_blocks, false)
        }
    }

    fn released(encoder_blocks: Vec<EncoderBlock>, decoder_blocks: Vec<DecoderBlock>, conditioned: bool) -> Self {
        Self {
            latent_channels: 128,
            patch_size: 4,
            encoder_base_channels: 128,
            decoder_base_channels: 128,
            encoder_blocks,
            decoder_blocks,
            timestep_conditioning: conditioned,
            // The 0.9.x and LTX-2.0 configs name no mode: ComfyUI's and ltx-core's defaults.
            encoder_padding: SpatialPadding::Zeros,
            decoder_padding: SpatialPadding::Reflect,
            causal_decoder: false,
            norm_eps: 1e-6,
        }
    }
}

/// The decoder part of [`VaeConfig::infer`]: the blocks, the base width, and whether it is LTX-2.3's
/// decoder.
fn infer_decoder(
    names: &[String],
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
) -> Result<(Vec<DecoderBlock>, usize, bool), String> {
    let dims =
        |name: &str| -> Result<Vec<usize>, String> { shape(name).ok_or_else(|| format!("tensor '{name}' is missing")) };
    let has = |name: String| names.contains(&name);
    let count_blocks = |prefix: &str| count_numbered(names, prefix);
    let count_layers = |prefix: &str| count_numbered(names, &format!("{prefix}res_blocks."));
    let decoder_base_channels = dims("decoder.conv_out.conv.weight")?[1];
    let decoder_count = count_blocks("decoder.up_blocks.");
    // The width entering decoder block k (the width leaving the last block for k = count).
    let decoder_input = |k: usize| -> Result<usize, String> {
        let prefix = format!("decoder.up_blocks.{k}.");
        if k == decoder_count {
            Ok(decoder_base_channels)
        } else if has(format!("{prefix}res_blocks.0.conv1.conv.weight")) {
            Ok(dims(&format!("{prefix}res_blocks.0.conv1.conv.weight"))?[1])
        } else if has(format!("{prefix}conv1.conv.weight")) {
            Ok(dims(&format!("{prefix}conv1.conv.weight"))?[1])
        } else {
            Ok(dims(&format!("{prefix}conv.conv.weight"))?[1])
        }
    };
    // An upsampler's conv gives (next width) × (stride product) channels, so its stride shows in the
    // shapes: (2, 2, 2) in every 0.9.x and 2.0 decoder; LTX-2.3's decoder also has time-only and
    // space-only ones. Such a decoder is 2.3's: its upsamplers are plain depth-to-space (not residual)
    // and it pads with zeros.
    let mut upsamplers = Vec::new();
    for k in 0..decoder_count {
        let prefix = format!("decoder.up_blocks.{k}.");
        if !has(format!("{prefix}res_blocks.0.conv1.conv.weight")) && !has(format!("{prefix}conv1.conv.weight")) {
            let conv = dims(&format!("{prefix}conv.conv.weight"))?;
            let next = decoder_input(k + 1)?;
            let stride = match ratio(conv[0], next, &prefix)? {
                8 => [2, 2, 2],
                4 => [1, 2, 2],
                2 => [2, 1, 1],
                other => return Err(format!("{prefix}conv: unexpected depth-to-space factor {other}")),
            };
            upsamplers.push((k, stride, ratio(conv[1], next, &prefix)?));
        }
    }
    let ltx23_decoder = upsamplers.iter().any(|(_, stride, _)| *stride != [2, 2, 2]);
    let keeping = upsamplers.iter().filter(|(_, _, multiplier)| *multiplier == 1).count();
    if !ltx23_decoder && keeping > 0 && keeping < upsamplers.len() {
        return Err(format!(
            "the decoder's ×2 upsamplers partly keep and partly reduce the width ({:?}), which matches no \
             released layout, so the tensors do not tell which of them add a residual; the file needs its \
             `config` metadata (`vae.decoder_blocks`)",
            upsamplers.iter().map(|(index, _, multiplier)| (*index, *multiplier)).collect::<Vec<_>>()
        ));
    }
    let mut decoder_blocks = Vec::with_capacity(decoder_count);
    for k in 0..decoder_count {
        let prefix = format!("decoder.up_blocks.{k}.");
        let block = if has(format!("{prefix}res_blocks.0.conv1.conv.weight")) {
            DecoderBlock::Res {
                layers: count_layers(&prefix),
                inject_noise: has(format!("{prefix}res_blocks.0.per_channel_scale1")),
            }
        } else if has(format!("{prefix}conv1.conv.weight")) {
            let conv1 = dims(&format!("{prefix}conv1.conv.weight"))?;
            DecoderBlock::ResChannels { multiplier: ratio(conv1[1], conv1[0], &prefix)? }
        } else {
            let &(_, stride, multiplier) =
                upsamplers.iter().find(|(index, _, _)| *index == k).ok_or("decoder upsampler not found")?;
            DecoderBlock::Upsample { stride, residual: multiplier > 1 && !ltx23_decoder, multiplier }
        };
        decoder_blocks.push(block);
    }
    Ok((decoder_blocks, decoder_base_channels, ltx23_decoder))
}

/// How many of `{prefix}0.`, `{prefix}1.`, … name some tensor, counting from 0 without gaps.
fn count_numbered(names: &[String], prefix: &str) -> usize {
    (0..=names.len()).take_while(|i| names.iter().any(|n| n.starts_with(&format!("{prefix}{i}.")))).count()
}

/// A 0.9.1-style decoder: `(layers, inject_noise)` per res block, with residual ×2 upsamplers between.
fn residual_decoder(levels: &[(usize, bool)]) -> Vec<DecoderBlock> {
    let mut blocks = Vec::new();
    for (index, &(layers, inject_noise)) in levels.iter().enumerate() {
        if index > 0 {
            blocks.push(DecoderBlock::Upsample { stride: [2, 2, 2], residual: true, multiplier: 2 });
        }
        blocks.push(DecoderBlock::Res { layers, inject_noise });
    }
    blocks
}

fn ratio(numerator: usize, denominator: usize, what: &str) -> Result<usize, String> {
    if denominator == 0 || !numerator.is_multiple_of(denominator) {
        return Err(format!("{what}: widths {numerator} and {denominator} are not a whole multiple"));
    }
    Ok(numerator / denominator)
}

/// `[[name, params], ...]` with params an object, a number (layer count) or absent.
fn parse_list(list: &Value) -> Result<Vec<(String, Value)>, String> {
    let entries = list.as_array().ok_or("a VAE block list is not an array")?;
    entries
        .iter()
        .map(|entry| {
            let name = entry.get(0).and_then(Value::as_str).ok_or("a VAE block has no name")?;
            let params = match entry.get(1) {
                Some(Value::Number(n)) => serde_json::json!({ "num_layers": n }),
                Some(object @ Value::Object(_)) => object.clone(),
                _ => serde_json::json!({}),
            };
            Ok((name.to_string(), params))
        })
        .collect()
}

fn param(params: &Value, key: &str, default: usize) -> usize {
    params.get(key).and_then(Value::as_u64).map_or(default, |v| v as usize)
}

fn parse_encoder_block(name: &str, params: &Value) -> Result<EncoderBlock, String> {
    Ok(match name {
        "res_x" => EncoderBlock::Res { layers: param(params, "num_layers", 1) },
        "res_x_y" => EncoderBlock::ResChannels { multiplier: param(params, "multiplier", 2) },
        "compress_all" => EncoderBlock::Compress { stride: [2, 2, 2] },
        "compress_time" => EncoderBlock::Compress { stride: [2, 1, 1] },
        "compress_space" => EncoderBlock::Compress { stride: [1, 2, 2] },
        "compress_all_res" => {
            EncoderBlock::SpaceToDepth { stride: [2, 2, 2], multiplier: param(params, "multiplier", 2) }
        }
        "compress_time_res" => {
            EncoderBlock::SpaceToDepth { stride: [2, 1, 1], multiplier: param(params, "multiplier", 2) }
        }
        "compress_space_res" => {
            EncoderBlock::SpaceToDepth { stride: [1, 2, 2], multiplier: param(params, "multiplier", 2) }
        }
        other => return Err(format!("unsupported encoder block '{other}'")),
    })
}

fn parse_decoder_block(name: &str, params: &Value) -> Result<DecoderBlock, String> {
    let upsample = |stride| DecoderBlock::Upsample {
        stride,
        residual: params.get("residual").and_then(Value::as_bool).unwrap_or(false),
        multiplier: param(params, "multiplier", 1),
    };
    Ok(match name {
        "res_x" => DecoderBlock::Res {
            layers: param(params, "num_layers", 1),
            inject_noise: params.get("inject_noise").and_then(Value::as_bool).unwrap_or(false),
        },
        "res_x_y" => DecoderBlock::ResChannels { multiplier: param(params, "multiplier", 2) },
        "compress_all" => upsample([2, 2, 2]),
        "compress_time" => upsample([2, 1, 1]),
        "compress_space" => upsample([1, 2, 2]),
        other => return Err(format!("unsupported decoder block '{other}'")),
    })
}
