//! LoRA files as ComfyUI reads them (Comfy-Org/ComfyUI a125cd84: `comfy/lora.py` `load_lora` and
//! `model_lora_keys_unet`/`model_lora_keys_clip`, `comfy/weight_adapter/lora.py`), turned into updates of a
//! model's linear layers that are applied on the fly rather than merged into a copy of the weights.
//!
//! A LoRA file names each layer it changes by a key prefix `x`. A [`KeyMap`] lists, for one model, every
//! prefix ComfyUI accepts and the layer it means: for the LTX-Video transformer `diffusion_model.<name>`
//! and kohya's `lora_unet_<name with _ for .>`; for the T5 text encoder `text_encoders.t5xxl.transformer.<name>`
//! and `lora_te1_<name with _>`; for LTX-2's Gemma 3 text encoder `text_encoders.gemma3_12b.transformer.model.
//! <name>` and `text_encoders.transformer.model.<name>`. Under each prefix ComfyUI reads, in this order:
//! - `x.alpha` (optional) and a low-rank pair, the first found of `x.lora_up.weight`/`x.lora_down.weight`
//!   (kohya and ComfyUI), `x_lora.up.weight`/`x_lora.down.weight`, `x.lora_B.weight`/`x.lora_A.weight`
//!   (diffusers/PEFT), `x.lora.up.weight`/`x.lora.down.weight`, `x.lora_B`/`x.lora_A`,
//!   `x.lora_linear_layer.up.weight`/`…down.weight`, `x.lora_B.default.weight`/`x.lora_A.default.weight`:
//!   the weight becomes `W + strength · (alpha / rank, or 1) · up · down`;
//! - `x.w_norm`/`x.b_norm` and `x.diff`/`x.diff_b`: full differences of the weight and the bias, scaled by
//!   the strength; a later one replaces an earlier one for the same layer, as in ComfyUI. A one-dimensional
//!   weight (Gemma's norms, [`Part::Vector`]) takes only these.
//!
//! Keys under none of the prefixes are not loaded, and the caller warns about them, as ComfyUI does. What
//! ComfyUI would apply but kinograph cannot yet (DoRA's `dora_scale`, LoCon's `lora_mid`, LoHa, LoKr,
//! GLoRA, OFT and BOFT, `set_weight`) is an error that names the key, never a silent difference.

use crate::ops::add_product::add_product;
use crate::weights::{WeightError, WeightSource};
use candle_core::{DType, Device, Result as TensorResult, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A LoRA file that cannot be applied, phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoraError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("{file}: '{key}' is a {what}, which kinograph cannot apply yet")]
    Unsupported { file: String, key: String, what: &'static str },
    #[error(
        "{file}: '{key}' has shape {found:?}, but the layer it changes needs {expected}: is this LoRA for another model?"
    )]
    Shape { file: String, key: String, found: Vec<usize>, expected: String },
    #[error("{file}: '{key}': {message}")]
    Invalid { file: String, key: String, message: String },
}

/// Which tensor of a layer a key changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Weight,
    Bias,
    /// A one-dimensional weight (a norm's scale), `shape.0` wide: only full differences apply.
    Vector,
}

/// What a key prefix changes: the model (`unet` or `clip`, so that two models' maps can be joined), the
/// layer by the model's own name (`transformer_blocks.0.attn1.to_q`), its weight's `(out, in)`, the part.
#[derive(Debug, Clone)]
struct Target {
    model: &'static str,
    layer: String,
    shape: (usize, usize),
    part: Part,
}

/// The prefixes a model accepts, in ComfyUI's order, each with what it changes.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    entries: Vec<(String, Target)>,
    /// Prefixes ComfyUI also accepts, for tensors that are not a linear layer's (norms, modulation tables):
    /// a file that updates one is refused rather than half applied.
    other: Vec<String>,
}

impl KeyMap {
    /// ComfyUI's keys for a diffusion model (`model_lora_keys_unet`): for each linear layer `name` with
    /// weight `[out, in]`, `lora_unet_<name with _>` and `diffusion_model.<name>` for the weight and
    /// `diffusion_model.<name>.bias` for the bias.
    pub fn diffusion_model(layers: &[(String, (usize, usize))]) -> Self {
        let mut map = KeyMap::default();
        for (name, shape) in layers {
            map.push(format!("lora_unet_{}", name.replace('.', "_")), name, Part::Weight, *shape, "unet");
            map.push(format!("diffusion_model.{name}"), name, Part::Weight, *shape, "unet");
        }
        for (name, shape) in layers {
            map.push(format!("diffusion_model.{name}.bias"), name, Part::Bias, *shape, "unet");
        }
        map
    }

    /// The same map knowing the model's other tensors (full names, e.g. `scale_shift_table`,
    /// `transformer_blocks.0.attn1.q_norm.weight`), under the prefixes of [`Self::diffusion_model`].
    pub fn with_other_diffusion_model_tensors(mut self, names: &[String]) -> Self {
        for name in names {
            match name.strip_suffix(".weight") {
                Some(stem) => {
                    self.other.push(format!("lora_unet_{}", stem.replace('.', "_")));
                    self.other.push(format!("diffusion_model.{stem}"));
                }
                None => self.other.push(format!("diffusion_model.{name}")),
            }
        }
        self
    }

    /// ComfyUI's keys for LTX-Video's T5 text encoder (`model_lora_keys_clip`, where ComfyUI names its
    /// weights `t5xxl.transformer.<name>`): `text_encoders.t5xxl.transformer.<name>` and
    /// `lora_te1_<name with _>`.
    pub fn t5_text_encoder(layers: &[(String, (usize, usize))]) -> Self {
        let mut map = KeyMap::default();
        for (name, shape) in layers {
            map.push(format!("text_encoders.t5xxl.transformer.{name}"), name, Part::Weight, *shape, "clip");
            map.push(format!("lora_te1_{}", name.replace('.', "_")), name, Part::Weight, *shape, "clip");
        }
        map
    }

    /// ComfyUI's keys for LTX-2's Gemma 3 text encoder (`model_lora_keys_clip` on `LTXAVTEModel`, whose
    /// state dict names the text model `gemma3_12b.transformer.model.<name>` beside `text_embedding_projection`):
    /// `text_encoders.gemma3_12b.transformer.model.<name>` (the generic format) and
    /// `text_encoders.transformer.model.<name>` (the same without the wrapper module, Comfy-Org/ComfyUI#12852).
    /// `layers` are the matrices by their names under the text model (`layers.0.self_attn.q_proj`,
    /// `embed_tokens`) and `vectors` its one-dimensional weights (the norms, `layers.0.input_layernorm`) with
    /// their widths, which take full differences only. A file that changes the feature projection
    /// (`text_encoders.text_embedding_projection`, part of the connectors here) is refused. ComfyUI's kohya form
    /// (`lora_te_<name with _>`) applies only to a text encoder with a single top-level module, which
    /// `LTXAVTEModel` is not, so it is not accepted here either.
    pub fn gemma_text_encoder(layers: &[(String, (usize, usize))], vectors: &[(String, usize)]) -> Self {
        const ROOTS: [&str; 2] = ["text_encoders.gemma3_12b.transformer.model.", "text_encoders.transformer.model."];
        let mut map = KeyMap::default();
        for (name, shape) in layers {
            for root in ROOTS {
                map.push(format!("{root}{name}"), name, Part::Weight, *shape, "clip");
            }
        }
        for (name, width) in vectors {
            for root in ROOTS {
                map.push(format!("{root}{name}"), name, Part::Vector, (*width, 0), "clip");
            }
        }
        map.other.push("text_encoders.text_embedding_projection".into());
        map
    }

    /// This map followed by `other` (ComfyUI joins the model's and the text encoder's maps before reading).
    pub fn join(mut self, other: KeyMap) -> Self {
        self.entries.extend(other.entries);
        self.other.extend(other.other);
        self
    }

    fn push(&mut self, key: String, layer: &str, part: Part, shape: (usize, usize), model: &'static str) {
        self.entries.push((key, Target { model, layer: layer.to_string(), shape, part }));
    }
}

/// The update of one linear layer, `y = x Wᵀ + b` → `y + x Δᵀ (+ Δb)`.
#[derive(Debug, Clone)]
pub enum WeightDelta {
    /// `Δ = scale · up · down`, kept factored: `down_t` `[in, r]`, `up_t` `[r, out]`, f32, the LoRA file's
    /// own tensors (shared, not copied).
    LowRank { down_t: Tensor, up_t: Tensor, scale: f32 },
    /// `Δ = scale · diff`, `diff_t` `[in, out]`, f32.
    Full { diff_t: Tensor, scale: f32 },
}

impl WeightDelta {
    /// `y + x Δᵀ` for `x` `[rows, in]` and `y` `[rows, out]` (f32): `((x · down_t) · scale) · up_t` added
    /// into `y` itself on the CPU, so `y` must be a fresh output nothing else holds.
    pub fn add_to(&self, x: &Tensor, y: Tensor) -> TensorResult<Tensor> {
        match self {
            WeightDelta::LowRank { down_t, up_t, scale } => {
                let reduced = (x.matmul(down_t)? * f64::from(*scale))?;
                add_product(y, &reduced, up_t)
            }
            WeightDelta::Full { diff_t, scale } => add_product(y, &(x * f64::from(*scale))?, diff_t),
        }
    }

    /// The same update with its tensors on `device` (shared, not copied, when they are there already).
    pub fn to_device(&self, device: &Device) -> TensorResult<WeightDelta> {
        Ok(match self {
            WeightDelta::LowRank { down_t, up_t, scale } => {
                WeightDelta::LowRank { down_t: down_t.to_device(device)?, up_t: up_t.to_device(device)?, scale: *scale }
            }
            WeightDelta::Full { diff_t, scale } => {
                WeightDelta::Full { diff_t: diff_t.to_device(device)?, scale: *scale }
            }
        })
    }

    /// Rows `ids` (u32) of `Δ`, `[ids, in]` f32: what the update adds to an embedding table's lookups.
    pub fn rows(&self, ids: &Tensor) -> TensorResult<Tensor> {
        match self {
            WeightDelta::LowRank { down_t, up_t, scale } => {
                up_t.index_select(ids, 1)?.t()?.matmul(&down_t.t()?)? * f64::from(*scale)
            }
            WeightDelta::Full { diff_t, scale } => diff_t.index_select(ids, 1)?.t()? * f64::from(*scale),
        }
    }

    /// Bytes held.
    pub fn byte_size(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        match self {
            WeightDelta::LowRank { down_t, up_t, .. } => bytes(down_t) + bytes(up_t),
            WeightDelta::Full { diff_t, .. } => bytes(diff_t),
        }
    }
}

/// The updates of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerPatch {
    pub weight: Option<WeightDelta>,
    /// `strength · Δb`, `[out]`, f32.
    pub bias: Option<Tensor>,
    /// `strength · Δw` of a one-dimensional weight (a norm's scale), `[width]`, f32.
    pub vector: Option<Tensor>,
}

/// Replaces each of `layers` (by name) that `patches` names with `patch(layer, its patch)`; fails on a name
/// none of the layers has.
pub fn patch_layers<L>(
    layers: Vec<(String, &mut L)>,
    patches: &BTreeMap<String, LayerPatch>,
    patch: impl Fn(&L, &LayerPatch) -> TensorResult<L>,
) -> TensorResult<()> {
    let mut remaining: BTreeMap<&str, &LayerPatch> = patches.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (name, layer) in layers {
        if let Some(layer_patch) = remaining.remove(name.as_str()) {
            *layer = patch(layer, layer_patch)?;
        }
    }
    match remaining.keys().next() {
        Some(name) => candle_core::bail!("the model has no linear layer '{name}'"),
        None => Ok(()),
    }
}

/// A LoRA file read into memory (f32).
pub struct LoraFile {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    /// The file's `__metadata__` (trainer settings; IC-LoRAs keep `reference_downscale_factor` here).
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for LoraFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoraFile({}, {} tensors)", self.path.display(), self.tensors.len())
    }
}

/// What [`LoraFile::patches`] found: the updates by model tag (`unet`, `clip`) and layer, and the file's
/// keys none of the prefixes matched.
#[derive(Debug, Clone, Default)]
pub struct LoraPatches {
    pub layers: BTreeMap<&'static str, BTreeMap<String, LayerPatch>>,
    pub not_loaded: Vec<String>,
    /// How many keys the file has.
    pub keys: usize,
}

const LOW_RANK_NAMES: [(&str, &str); 7] = [
    (".lora_up.weight", ".lora_down.weight"),
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    (".lora_B", ".lora_A"),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"),
    (".lora_B.default.weight", ".lora_A.default.weight"),
];

/// Suffixes of the adapters ComfyUI applies and kinograph does not.
const UNSUPPORTED: [(&str, &str); 11] = [
    (".dora_scale", "DoRA scale"),
    (".lora_mid.weight", "LoCon middle weight"),
    (".reshape_weight", "weight reshape"),
    (".hada_w1_a", "LoHa adapter"),
    (".lokr_w1", "LoKr adapter"),
    (".lokr_w1_a", "LoKr adapter"),
    (".lokr_w2", "LoKr adapter"),
    (".a1.weight", "GLoRA adapter"),
    (".oft_blocks", "OFT/BOFT adapter"),
    (".set_weight", "weight replacement"),
    (".oft_diag", "OFT adapter"),
];

impl LoraFile {
    /// Reads every tensor of a LoRA safetensors file as f32.
    pub fn open(path: &Path) -> Result<Self, LoraError> {
        let source = WeightSource::open(&[path])?;
        let mut tensors = BTreeMap::new();
        for name in source.names() {
            let tensor = source.load(name, DType::F32, &Device::Cpu)?;
            let dims = tensor.dims().to_vec();
            let tensor = if is_matrix_key(name) && dims.len() >= 2 && dims[2..].iter().all(|&d| d == 1) {
                // Kept transposed, `[in, out]` as the layers multiply by them; only this copy is kept.
                let transpose = |t: Tensor| t.reshape((dims[0], dims[1]))?.t()?.contiguous();
                transpose(tensor).map_err(|e| LoraError::Invalid {
                    file: path.display().to_string(),
                    key: name.to_string(),
                    message: e.to_string(),
                })?
            } else {
                tensor
            };
            tensors.insert(name.to_string(), tensor);
        }
        let (_, metadata) = crate::weights::read_header(path)?;
        Ok(LoraFile { path: path.to_path_buf(), tensors, metadata: metadata.into_iter().collect() })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's `__metadata__` entries, by key (what ComfyUI attaches to a patched model as
    /// `lora_metadata`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Bytes of the tensors held.
    pub fn byte_size(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count() * 4).sum()
    }

    /// The updates this file makes to the layers of `keys`, each scaled by the strength of its model tag
    /// (`strengths`: e.g. `[("unet", 0.7), ("clip", 1.0)]`; a tag with no strength is read but not returned).
    pub fn patches(&self, keys: &KeyMap, strengths: &[(&'static str, f64)]) -> Result<LoraPatches, LoraError> {
        for prefix in &keys.other {
            let dotted = format!("{prefix}.");
            if let Some(key) = self.tensors.keys().find(|key| key.starts_with(&dotted)) {
                let what = "update of a tensor that is not a linear layer's (a norm or a modulation table)";
                return Err(LoraError::Unsupported { file: self.file(), key: key.clone(), what });
            }
        }
        let mut loaded = BTreeSet::new();
        let mut found = FoundUpdates::new();
        for (x, target) in &keys.entries {
            let Target { model, layer, shape, part } = target;
            let mut place = |part: Part, what: Found| found.insert((*model, layer.clone(), part), (what, *shape));
            for (suffix, what) in UNSUPPORTED {
                let key = format!("{x}{suffix}");
                if self.tensors.contains_key(&key) {
                    return Err(LoraError::Unsupported { file: self.file(), key, what });
                }
            }
            let alpha_key = format!("{x}.alpha");
            let alpha = match self.tensors.get(&alpha_key) {
                Some(alpha) => {
                    loaded.insert(alpha_key.clone());
                    Some(self.scalar(&alpha_key, alpha)?)
                }
                None => None,
            };
            if let Some((up_key, down_key)) = LOW_RANK_NAMES
                .iter()
                .map(|(up, down)| (format!("{x}{up}"), format!("{x}{down}")))
                .find(|(up, _)| self.tensors.contains_key(up))
            {
                if *part != Part::Weight {
                    let what = if *part == Part::Bias { "low-rank bias update" } else { "low-rank update of a norm" };
                    return Err(LoraError::Unsupported { file: self.file(), key: up_key, what });
                }
                loaded.insert(up_key.clone());
                loaded.insert(down_key.clone());
                place(Part::Weight, Found::LowRank { up_key, down_key, alpha });
            }
            let (w_norm, b_norm) = (format!("{x}.w_norm"), format!("{x}.b_norm"));
            if self.tensors.contains_key(&w_norm) {
                loaded.insert(w_norm.clone());
                place(*part, Found::Diff(w_norm));
                if self.tensors.contains_key(&b_norm) {
                    self.refuse_norm_bias(*part, &b_norm)?;
                    loaded.insert(b_norm.clone());
                    place(Part::Bias, Found::Diff(b_norm));
                }
            }
            let diff = format!("{x}.diff");
            if self.tensors.contains_key(&diff) {
                loaded.insert(diff.clone());
                place(*part, Found::Diff(diff));
            }
            let diff_bias = format!("{x}.diff_b");
            if self.tensors.contains_key(&diff_bias) {
                self.refuse_norm_bias(*part, &diff_bias)?;
                loaded.insert(diff_bias.clone());
                place(Part::Bias, Found::Diff(diff_bias));
            }
        }

        let mut patches = LoraPatches {
            not_loaded: self.tensors.keys().filter(|key| !loaded.contains(*key)).cloned().collect(),
            keys: self.tensors.len(),
            ..LoraPatches::default()
        };
        for ((model, layer, part), (what, shape)) in found {
            let Some(&(_, strength)) = strengths.iter().find(|(tag, _)| *tag == model) else { continue };
            let patch = patches.layers.entry(model).or_default().entry(layer).or_default();
            match part {
                Part::Weight => patch.weight = Some(self.weight_delta(&what, shape, strength)?),
                Part::Bias => patch.bias = Some(self.bias_delta(&what, shape.0, strength)?),
                Part::Vector => patch.vector = Some(self.bias_delta(&what, shape.0, strength)?),
            }
        }
        Ok(patches)
    }

    fn weight_delta(
        &self,
        found: &Found,
        (out, inputs): (usize, usize),
        strength: f64,
    ) -> Result<WeightDelta, LoraError> {
        match found {
            Found::LowRank { up_key, down_key, alpha } => {
                // Stored transposed: `up_t` `[r, out]`, `down_t` `[in, r]`; errors show the file's shapes.
                let (up_t, up_dims) = self.matrix(up_key)?;
                let (down_t, down_dims) = self.matrix(down_key)?;
                let rank = down_dims[0];
                let expected = format!("[{out}, r] and [r, {inputs}]");
                if up_dims[0] != out || up_dims[1] != rank {
                    return Err(LoraError::Shape { file: self.file(), key: up_key.clone(), found: up_dims, expected });
                }
                if down_dims[1] != inputs || rank == 0 {
                    let key = down_key.clone();
                    return Err(LoraError::Shape { file: self.file(), key, found: down_dims, expected });
                }
                // ComfyUI: `(strength * alpha / rank) * (up @ down)`, the factor in Python floats.
                let scale = strength * alpha.map_or(1.0, |alpha| alpha / rank as f64);
                Ok(WeightDelta::LowRank { down_t, up_t, scale: scale as f32 })
            }
            Found::Diff(key) => {
                let (diff_t, dims) = self.matrix(key)?;
                if dims != [out, inputs] {
                    let expected = format!("[{out}, {inputs}]");
                    return Err(LoraError::Shape { file: self.file(), key: key.clone(), found: dims, expected });
                }
                Ok(WeightDelta::Full { diff_t, scale: strength as f32 })
            }
        }
    }

    /// Gemma's norms have no bias: ComfyUI would drop such an update without a word, kinograph says so.
    fn refuse_norm_bias(&self, part: Part, key: &str) -> Result<(), LoraError> {
        if part != Part::Vector {
            return Ok(());
        }
        Err(LoraError::Unsupported {
            file: self.file(),
            key: key.to_string(),
            what: "bias update of a norm without bias",
        })
    }

    /// A full difference of a bias or a one-dimensional weight, `[out]`, times the strength.
    fn bias_delta(&self, found: &Found, out: usize, strength: f64) -> Result<Tensor, LoraError> {
        let Found::Diff(key) = found else { unreachable!("low-rank bias updates are refused when read") };
        let diff = &self.tensors[key];
        if diff.dims() != [out] {
            let expected = format!("[{out}]");
            return Err(LoraError::Shape {
                file: self.file(),
                key: key.clone(),
                found: diff.dims().to_vec(),
                expected,
            });
        }
        (diff * f64::from(strength as f32)).map_err(|e| self.invalid(key, &e))
    }

    /// An update matrix as stored (transposed by [`Self::open`]) and its shape in the file, `[out, in]`.
    fn matrix(&self, key: &str) -> Result<(Tensor, Vec<usize>), LoraError> {
        let tensor = &self.tensors[key];
        match *tensor.dims() {
            [inputs, out] if is_matrix_key(key) => Ok((tensor.clone(), vec![out, inputs])),
            _ => Err(LoraError::Shape {
                file: self.file(),
                key: key.to_string(),
                found: tensor.dims().to_vec(),
                expected: "a matrix".into(),
            }),
        }
    }

    fn scalar(&self, key: &str, tensor: &Tensor) -> Result<f64, LoraError> {
        let values: Vec<f32> = tensor.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| self.invalid(key, &e))?;
        match values.as_slice() {
            [value] => Ok(f64::from(*value)),
            _ => Err(LoraError::Invalid {
                file: self.file(),
                key: key.to_string(),
                message: format!("an alpha must be one number, found {} values", values.len()),
            }),
        }
    }

    fn invalid(&self, key: &str, error: &candle_core::Error) -> LoraError {
        LoraError::Invalid { file: self.file(), key: key.to_string(), message: error.to_string() }
    }

    fn file(&self) -> String {
        self.path.display().to_string()
    }
}

/// Whether `key` names an update matrix (a low-rank factor, a full difference), which
/// [`LoraFile::open`] stores transposed.
fn is_matrix_key(key: &str) -> bool {
    LOW_RANK_NAMES.iter().any(|(up, down)| key.ends_with(up) || key.ends_with(down))
        || [".diff", ".w_norm"].iter().any(|suffix| key.ends_with(suffix))
}

/// By (model, layer, part): where its update was found, and the layer's weight shape `(out, in)`.
type FoundUpdates = BTreeMap<(&'static str, String, Part), (Found, (usize, usize))>;

/// Where a layer's update was found.
#[derive(Debug, Clone)]
enum Found {
    LowRank { up_key: String, down_key: String, alpha: Option<f64> },
    Diff(String),
}

/// The patches of the layers under `prefix` (`transformer_blocks.3.`, with the dot), by their names under it:
/// what a block read from the file applies as it is read.
pub fn patches_under(patches: &BTreeMap<String, LayerPatch>, prefix: &str) -> BTreeMap<String, LayerPatch> {
    patches
        .range(prefix.to_string()..)
        .take_while(|(name, _)| name.starts_with(prefix))
        .map(|(name, patch)| (name[prefix.len()..].to_string(), patch.clone()))
        .collect()
}
