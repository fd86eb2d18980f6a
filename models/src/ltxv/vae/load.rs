//! Loading the VAE, in every layout it is published in:
//! - original single files (LTX-Video 0.9.x and LTX-2.0 / 2.3 checkpoints), the VAE under `vae.` with the
//!   original code's flat names (`CausalVideoAutoencoder`), which the model is built with; the
//!   configuration comes from the file's `__metadata__.config` (its `vae` entry) when present, otherwise
//!   from the tensor names and shapes ([`VaeConfig::infer`]);
//! - separate VAE files (ComfyUI's and Kijai's LTX-2 VAE extracts): the same names under `vae.` or without
//!   a prefix, with the `vae` config, the VAE config itself, or no config in their metadata;
//! - diffusers `vae/` folders (`AutoencoderKLLTXVideo`, `AutoencoderKLLTX2Video`; no prefix), read through the
//!   shared [`RenamingBackend`] with the table [`diffusers_to_original`] builds from the stored names; the
//!   configuration comes from the names and shapes.
//!
//! Renaming rules (diffusers 0.42.1 `loaders/single_file_utils.py`, `convert_ltx_vae_checkpoint_to_diffusers`
//! and `convert_ltx2_vae_to_diffusers`, applied in reverse): diffusers groups the flat blocks into down/up
//! blocks (`resnets`, `downsamplers.0`, `conv_out` / `conv_in`, `upsamplers.0`, `time_embedder`) and mid
//! blocks; walking its blocks in forward order and numbering each present part gives the flat index (so
//! the LTX-2.3 decoder's fourth up block becomes `up_blocks.7` and `up_blocks.8`).
//! Inside a resnet, `norm3.{weight,bias}` becomes `norm3.norm.*` and `conv_shortcut.conv.*` becomes
//! `conv_shortcut.*`; at the top, `latents_mean`/`latents_std` become the per-channel statistics and the
//! decoder's `time_embedder`/`scale_shift_table` become `last_time_embedder`/`last_scale_shift_table`.

use super::LtxvVae;
use super::config::VaeConfig;
use crate::weights::{RenamingBackend, WeightError, WeightSource};
use candle_core::{DType, Device};
use std::collections::HashMap;
use std::sync::Arc;

/// Single-file tensors that real checkpoints carry and the model does not use.
const FILLER: [&str; 3] = [
    "per_channel_statistics.channel",
    "per_channel_statistics.mean-of-stds",
    "per_channel_statistics.mean-of-stds_over_std-of-means",
];

/// Whether the names (without prefix) are in the diffusers layout.
pub fn is_diffusers(names: &[String]) -> bool {
    names.iter().any(|n| n == "latents_mean" || n.contains(".resnets.") || n.contains(".upsamplers.0."))
}

fn has_part(names: &[String], prefix: &str) -> bool {
    names.iter().any(|n| n.starts_with(prefix))
}

/// The original name of each diffusers name (without prefix), as a table from original name to diffusers
/// name: the direction [`RenamingBackend::from_table`] reads.
pub fn diffusers_to_original(names: &[String]) -> HashMap<String, String> {
    // (diffusers prefix, original prefix) pairs, most specific first.
    let mut prefixes: Vec<(String, String)> = Vec::new();
    let mut flat = 0;
    let mut down = 0;
    while has_part(names, &format!("encoder.down_blocks.{down}.")) {
        let block = format!("encoder.down_blocks.{down}.");
        if has_part(names, &format!("{block}resnets.")) {
            prefixes.push((format!("{block}resnets."), format!("encoder.down_blocks.{flat}.res_blocks.")));
            flat += 1;
        }
        if has_part(names, &format!("{block}downsamplers.0.")) {
            prefixes.push((format!("{block}downsamplers.0."), format!("encoder.down_blocks.{flat}.")));
            flat += 1;
        }
        if has_part(names, &format!("{block}conv_out.")) {
            prefixes.push((format!("{block}conv_out."), format!("encoder.down_blocks.{flat}.")));
            flat += 1;
        }
        down += 1;
    }
    if has_part(names, "encoder.mid_block.") {
        prefixes.push(("encoder.mid_block.resnets.".into(), format!("encoder.down_blocks.{flat}.res_blocks.")));
    }
    prefixes.push(("decoder.mid_block.resnets.".into(), "decoder.up_blocks.0.res_blocks.".into()));
    prefixes.push(("decoder.mid_block.time_embedder.".into(), "decoder.up_blocks.0.time_embedder.".into()));
    let mut flat = 1;
    let mut up = 0;
    while has_part(names, &format!("decoder.up_blocks.{up}.")) {
        let block = format!("decoder.up_blocks.{up}.");
        if has_part(names, &format!("{block}conv_in.")) {
            prefixes.push((format!("{block}conv_in."), format!("decoder.up_blocks.{flat}.")));
            flat += 1;
        }
        if has_part(names, &format!("{block}upsamplers.0.")) {
            prefixes.push((format!("{block}upsamplers.0."), format!("decoder.up_blocks.{flat}.")));
            flat += 1;
        }
        if has_part(names, &format!("{block}resnets.")) {
            prefixes.push((format!("{block}resnets."), format!("decoder.up_blocks.{flat}.res_blocks.")));
            prefixes.push((format!("{block}time_embedder."), format!("decoder.up_blocks.{flat}.time_embedder.")));
            flat += 1;
        }
        up += 1;
    }
    prefixes.push(("decoder.time_embedder.".into(), "decoder.last_time_embedder.".into()));
    prefixes.push(("decoder.scale_shift_table".into(), "decoder.last_scale_shift_table".into()));
    prefixes.push(("latents_mean".into(), "per_channel_statistics.mean-of-means".into()));
    prefixes.push(("latents_std".into(), "per_channel_statistics.std-of-means".into()));

    let mut map = HashMap::with_capacity(names.len());
    for name in names {
        let mut original = name.clone();
        if let Some((from, to)) = prefixes.iter().find(|(from, _)| name.starts_with(from.as_str())) {
            original = format!("{to}{}", &name[from.len()..]);
        }
        original = original
            .replace(".norm3.weight", ".norm3.norm.weight")
            .replace(".norm3.bias", ".norm3.norm.bias")
            .replace(".conv_shortcut.conv.", ".conv_shortcut.");
        map.insert(original, name.clone());
    }
    map
}

impl LtxvVae {
    /// Loads the VAE under `prefix` (`"vae"` or `"vae."` for single files, `""` for a diffusers folder)
    /// onto `device`, as f32.
    pub fn load(source: &Arc<WeightSource>, prefix: &str, device: &Device) -> Result<Self, WeightError> {
        let config = Self::detect(source, prefix)?;
        let (stem, dotted) = split_prefix(prefix);
        config.validate().map_err(|message| WeightError::Invalid {
            file: source.file_of(&format!("{dotted}encoder.conv_in.conv.weight")),
            message: format!("LTX-Video VAE config: {message}"),
        })?;
        let names = names_under(source, &dotted);
        let builder = source.var_builder(stem, DType::F32, device);
        let vb = if is_diffusers(&names) {
            RenamingBackend::from_table(builder, diffusers_to_original(&names)).into_var_builder()
        } else {
            builder
        };
        let vae = Self::new(config, &vb).map_err(|error| source.explain(&error))?;
        let unused: Vec<String> = source
            .unused(&dotted)
            .into_iter()
            .filter(|name| !FILLER.iter().any(|filler| name.strip_prefix(dotted.as_str()) == Some(*filler)))
            .collect();
        if !unused.is_empty() {
            return Err(WeightError::Unexpected { file: source.file_of(&unused[0]), tensors: unused });
        }
        Ok(vae)
    }

    /// The configuration of the VAE under `prefix`: from the single file's metadata config when it has
    /// a `vae` entry, otherwise from tensor names and shapes.
    pub fn detect(source: &WeightSource, prefix: &str) -> Result<VaeConfig, WeightError> {
        let (_, dotted) = split_prefix(prefix);
        let names = names_under(source, &dotted);
        let files = source.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        if names.is_empty() {
            return Err(WeightError::Missing {
                files,
                tensor: format!("{dotted}encoder.conv_in.conv.weight"),
                expected: Vec::new(),
            });
        }
        let invalid = |message: String| WeightError::Invalid { file: files.clone(), message };
        if is_diffusers(&names) {
            let map = diffusers_to_original(&names);
            let original: Vec<String> = map.keys().cloned().collect();
            let shape = |name: &str| map.get(name).and_then(|stored| source.shape(&format!("{dotted}{stored}")));
            return VaeConfig::infer(&original, &shape)
                .map_err(|e| invalid(format!("LTX-Video VAE under '{dotted}': {e}")));
        }
        if let Some(text) = source.metadata("config") {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| invalid(format!("metadata config is not JSON: {e}")))?;
            // A checkpoint's config has a `vae` entry; a separate VAE file may carry the VAE config itself.
            let vae = json.get("vae").or_else(|| {
                ["encoder_blocks", "decoder_blocks", "blocks"]
                    .iter()
                    .any(|key| json.get(key).is_some())
                    .then_some(&json)
            });
            if let Some(vae) = vae {
                let mut config =
                    VaeConfig::from_original_json(vae).map_err(|e| invalid(format!("metadata config: {e}")))?;
                if vae.get("timestep_conditioning").is_none() {
                    config.timestep_conditioning = names.iter().any(|n| n == "decoder.timestep_scale_multiplier");
                }
                return Ok(config);
            }
        }
        let shape = |name: &str| source.shape(&format!("{dotted}{name}"));
        VaeConfig::infer(&names, &shape).map_err(|e| invalid(format!("LTX-Video VAE under '{dotted}': {e}")))
    }
}

/// Where the VAE sits in `source`: `Some("vae")` for checkpoints and for separate files that keep the
/// `vae.` prefix, `Some("")` for separate files without it and for diffusers folders, `None` when the
/// source holds no VAE encoder.
pub fn find_prefix(source: &WeightSource) -> Option<&'static str> {
    let has_encoder = |prefix: &str| source.contains(&format!("{prefix}encoder.conv_in.conv.weight"));
    if has_encoder("vae.") {
        Some("vae")
    } else if has_encoder("") {
        Some("")
    } else {
        None
    }
}

/// `("vae", "vae.")` from `"vae"` or `"vae."`; `("", "")` from `""`.
fn split_prefix(prefix: &str) -> (&str, String) {
    let stem = prefix.trim_end_matches('.');
    let dotted = if stem.is_empty() { String::new() } else { format!("{stem}.") };
    (stem, dotted)
}

fn names_under(source: &WeightSource, dotted: &str) -> Vec<String> {
    let mut names: Vec<String> = source.names().filter_map(|n| n.strip_prefix(dotted)).map(str::to_string).collect();
    names.sort();
    names
}
