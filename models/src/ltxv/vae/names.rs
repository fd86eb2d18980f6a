//! Tensor names: the diffusers VAE layout (`AutoencoderKLLTXVideo`) renamed onto the original flat
//! layout that the model is built from, and the `VarBuilder` backend that applies the renaming.
//!
//! Rules (ltx-video.md §6.4, applied in reverse): diffusers groups the flat blocks into down/up blocks
//! (`resnets`, `downsamplers.0`, `conv_out` / `conv_in`, `upsamplers.0`, `time_embedder`) and mid blocks;
//! walking its blocks in forward order and numbering each present part gives the flat index. Inside a
//! resnet, `norm3.{weight,bias}` becomes `norm3.norm.*` and `conv_shortcut.conv.*` becomes
//! `conv_shortcut.*`; at the top, `latents_mean`/`latents_std` become the per-channel statistics and the
//! decoder's `time_embedder`/`scale_shift_table` become `last_time_embedder`/`last_scale_shift_table`.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// Whether the names (without prefix) are in the diffusers layout.
pub fn is_diffusers(names: &[String]) -> bool {
    names.iter().any(|n| n == "latents_mean" || n.contains(".resnets.") || n.contains(".upsamplers.0."))
}

fn has_part(names: &[String], prefix: &str) -> bool {
    names.iter().any(|n| n.starts_with(prefix))
}

/// Maps each diffusers name (without prefix) to its original name.
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

/// A `VarBuilder` backend that looks original names up under their diffusers names.
pub struct RenamedBackend {
    /// Builder over the diffusers tensors (with the source's prefix applied).
    pub inner: VarBuilder<'static>,
    /// Original name → diffusers name.
    pub names: HashMap<String, String>,
}

impl RenamedBackend {
    fn lookup<'a>(&'a self, name: &'a str) -> &'a str {
        self.names.get(name).map_or(name, String::as_str)
    }
}

impl candle_nn::var_builder::SimpleBackend for RenamedBackend {
    fn get(&self, shape: Shape, name: &str, init: candle_nn::Init, dtype: DType, device: &Device) -> Result<Tensor> {
        self.inner.get_with_hints_dtype(shape, self.lookup(name), init, dtype)?.to_device(device)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        self.inner.get_unchecked_dtype(self.lookup(name), dtype)?.to_device(device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(self.lookup(name))
    }
}
