//! `LoraLoader` and `LoraLoaderModelOnly`: a LoRA from `models/loras` applied to the diffusion model (and the
//! text encoder: T5, or LTX-2's Gemma 3) in ComfyUI's semantics (`kinograph_models::lora`).
//!
//! The nodes return new MODEL and CLIP values whose untouched weights are the input models' own tensors
//! (shared, not copied); the LoRA's updates are kept factored and applied on the fly, so the memory a LoRA
//! costs is its own size. The input models are never changed: the same graph without the LoRA node gives
//! back the base model's outputs exactly. LoRA files are read once per content (a process-wide cache keyed
//! by their BLAKE3 hash), and the node's cache signature includes that hash, so replacing a file under the
//! same name re-runs it.

use crate::values::{DiffusionModel, GemmaText, TextEncoder};
use kinograph_engine::content_hash;
use kinograph_engine::prelude::*;
use kinograph_models::lora::{KeyMap, LoraError, LoraFile, LoraPatches};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

const STRENGTH_LIMIT: f64 = 100.0;

fn strength_input(name: &str) -> InputSpec {
    InputSpec::float(name, 1.0).min(-STRENGTH_LIMIT).max(STRENGTH_LIMIT).step(0.01)
}

/// `LoraLoader`.
pub struct LoraLoader;

impl Node for LoraLoader {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoraLoader")
            .display_name("Load LoRA")
            .category("loaders")
            .description(
                "LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are \
                 denoised such as applying styles. Multiple LoRA nodes can be linked together.",
            )
            .input(InputSpec::socket("model", "MODEL").tooltip("The diffusion model the LoRA will be applied to."))
            .input(InputSpec::socket("clip", "CLIP").tooltip("The CLIP model the LoRA will be applied to."))
            .input(InputSpec::model_file("lora_name", "loras", env).tooltip("The name of the LoRA."))
            .input(
                strength_input("strength_model")
                    .tooltip("How strongly to modify the diffusion model. This value can be negative."),
            )
            .input(
                strength_input("strength_clip")
                    .tooltip("How strongly to modify the CLIP model. This value can be negative."),
            )
            .output("MODEL", "MODEL")
            .output("CLIP", "CLIP")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        lora_fingerprint(constants, env)
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        let clip = inputs.object::<TextEncoder>("clip")?;
        let (strength_model, strength_clip) = (inputs.float("strength_model")?, inputs.float("strength_clip")?);
        if strength_model == 0.0 && strength_clip == 0.0 {
            return Ok(NodeOutput::new(vec![Value::from(model), Value::from(clip)]));
        }
        let lora = read_lora(inputs, context)?;
        let (model, clip) = apply(&lora, &model, Some(&clip), strength_model, strength_clip, context)?;
        let clip = clip.ok_or_else(|| NodeError::msg("the text encoder was not patched"))?;
        Ok(NodeOutput::new(vec![Value::from(model), Value::from(clip)]))
    }
}

/// `LoraLoaderModelOnly`.
pub struct LoraLoaderModelOnly;

impl Node for LoraLoaderModelOnly {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoraLoaderModelOnly")
            .category("loaders")
            .description(
                "LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are \
                 denoised such as applying styles. Multiple LoRA nodes can be linked together.",
            )
            .input(InputSpec::socket("model", "MODEL"))
            .input(InputSpec::model_file("lora_name", "loras", env))
            .input(strength_input("strength_model"))
            .output("MODEL", "MODEL")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        lora_fingerprint(constants, env)
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let model = inputs.object::<DiffusionModel>("model")?;
        let strength = inputs.float("strength_model")?;
        if strength == 0.0 {
            return Ok(NodeOutput::new(vec![Value::from(model)]));
        }
        let lora = read_lora(inputs, context)?;
        let (model, _) = apply(&lora, &model, None, strength, 0.0, context)?;
        Ok(NodeOutput::new(vec![Value::from(model)]))
    }
}

/// ComfyUI's `load_lora_for_models`: the keys of the model (and of the text encoder, when given: T5, or
/// LTX-2's Gemma 3) joined, the file read against them, a warning for the keys that matched nothing, and new
/// values with the updates. A text encoder is patched (and returned) even at strength 0, as ComfyUI clones it.
fn apply(
    lora: &Arc<LoraFile>,
    model: &Arc<DiffusionModel>,
    clip: Option<&Arc<TextEncoder>>,
    strength_model: f64,
    strength_clip: f64,
    context: &ExecutionContext,
) -> Result<(Arc<DiffusionModel>, Option<Arc<TextEncoder>>), NodeError> {
    let failed = |what: &str, error: candle_core::Error| NodeError::msg(format!("{what}: {error}"));
    let unet_layers = model.transformer.linear_layers().map_err(|e| failed("listing the model's layers", e))?;
    let mut keys = KeyMap::diffusion_model(&unet_layers)
        .with_other_diffusion_model_tensors(&model.transformer.other_parameter_names());
    let encoder = clip.and_then(|clip| clip.encoder.clone());
    if let Some(encoder) = &encoder {
        let layers = encoder.linear_layers().map_err(|e| failed("listing the text encoder's layers", e))?;
        keys = keys.join(KeyMap::t5_text_encoder(&layers));
    }
    let gemma = clip.and_then(|clip| clip.gemma.clone());
    if let Some(gemma) = &gemma {
        let layers = gemma.model.linear_layers();
        keys = keys.join(KeyMap::gemma_text_encoder(&layers, &gemma.model.vector_parameters()));
    }
    // A strength of 0 leaves that model as it is (ComfyUI adds the updates times 0).
    let strengths: Vec<(&'static str, f64)> =
        [("unet", strength_model), ("clip", strength_clip)].into_iter().filter(|(_, s)| *s != 0.0).collect();
    let patches = lora.patches(&keys, &strengths).map_err(lora_error)?;
    warn_not_loaded(lora, &patches, context);
    let empty = BTreeMap::default();
    let unet_patches = patches.layers.get("unet").unwrap_or(&empty);
    let transformer = model.transformer.with_patches(unet_patches).map_err(|e| failed("applying the LoRA", e))?;
    // The updates are views of the file's tensors, which the patched values keep alive.
    let patched_model = DiffusionModel {
        transformer,
        file: model.file.clone(),
        shift: model.shift,
        bytes: model.bytes + lora.byte_size(),
        loras: model.loras.iter().cloned().chain([lora.clone()]).collect(),
        identity_guidance: model.identity_guidance.clone(),
    };
    let Some(clip) = clip else { return Ok((Arc::new(patched_model), None)) };
    let clip_patches = patches.layers.get("clip").unwrap_or(&empty);
    let encoder = match encoder {
        Some(encoder) => {
            Some(Arc::new(encoder.with_patches(clip_patches).map_err(|e| failed("applying the LoRA to T5", e))?))
        }
        None => None,
    };
    let gemma = match gemma {
        Some(gemma) if !clip_patches.is_empty() => {
            let model =
                gemma.model.with_patches(clip_patches).map_err(|e| failed("applying the LoRA to Gemma 3", e))?;
            Some(Arc::new(GemmaText { model: Arc::new(model), ..(*gemma).clone() }))
        }
        gemma => gemma,
    };
    let patched_clip = TextEncoder {
        encoder,
        tokenizer: clip.tokenizer.clone(),
        gemma,
        file: clip.file.clone(),
        bytes: clip.bytes + if clip_patches.is_empty() { 0 } else { lora.byte_size() },
    };
    Ok((Arc::new(patched_model), Some(Arc::new(patched_clip))))
}

/// At most this many unloaded keys are named one by one; beyond that one warning counts them.
const NAMED_KEYS: usize = 8;

/// ComfyUI logs each key it did not load ("lora key not loaded"). A file none of whose keys matched says so
/// once, naming the file; a few unloaded keys are named one by one; many are counted in one warning with the
/// first of them.
fn warn_not_loaded(lora: &LoraFile, patches: &LoraPatches, context: &ExecutionContext) {
    let file = lora.path().display();
    let not_loaded = &patches.not_loaded;
    if not_loaded.is_empty() {
        return;
    }
    if not_loaded.len() == patches.keys {
        context.warn(&format!(
            "LoRA {file}: none of its {} keys matches a layer of this model or text encoder (first: '{}'); the \
             model and the text encoder are unchanged",
            not_loaded.len(),
            not_loaded[0]
        ));
    } else if not_loaded.len() <= NAMED_KEYS {
        for key in not_loaded {
            context.warn(&format!("LoRA {file}: key not loaded: {key}"));
        }
    } else {
        let first: Vec<String> = not_loaded.iter().take(NAMED_KEYS).map(|key| format!("'{key}'")).collect();
        context.warn(&format!(
            "LoRA {file}: {} of its {} keys not loaded (no layer of this model or text encoder has them), first: {}",
            not_loaded.len(),
            patches.keys,
            first.join(", ")
        ));
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(lora_error)`
fn lora_error(error: LoraError) -> NodeError {
    NodeError::input("lora_name", error.to_string())
}

fn resolve(env: &Environment, inputs: &NodeInputs) -> Result<PathBuf, NodeError> {
    env.models.resolve("loras", inputs.string("lora_name")?).map_err(|missing| NodeError::input("lora_name", missing))
}

fn lora_fingerprint(constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
    Some(file_hash(&resolve(env, constants).ok()?).ok()?.to_vec())
}

/// The file's content hash, remembered per path, length and modification time.
fn file_hash(path: &Path) -> std::io::Result<[u8; 32]> {
    type Stamp = (PathBuf, u64, Option<SystemTime>);
    static HASHES: Mutex<Option<HashMap<Stamp, [u8; 32]>>> = Mutex::new(None);
    let metadata = std::fs::metadata(path)?;
    let stamp = (std::fs::canonicalize(path)?, metadata.len(), metadata.modified().ok());
    if let Some(hash) = HASHES.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|m| m.get(&stamp)) {
        return Ok(*hash);
    }
    let hash = content_hash::hash_file(path)?;
    HASHES.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(HashMap::new).insert(stamp, hash);
    Ok(hash)
}

/// The LoRA named by `lora_name`, read once per content for as long as some value holds it.
fn read_lora(inputs: &NodeInputs, context: &ExecutionContext) -> Result<Arc<LoraFile>, NodeError> {
    static LOADED: Mutex<Option<HashMap<[u8; 32], Weak<LoraFile>>>> = Mutex::new(None);
    let path = resolve(context.env(), inputs)?;
    let hash = file_hash(&path).map_err(|e| NodeError::input("lora_name", format!("{}: {e}", path.display())))?;
    let cached = LOADED.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|m| m.get(&hash)?.upgrade());
    if let Some(lora) = cached {
        return Ok(lora);
    }
    let lora = Arc::new(LoraFile::open(&path).map_err(lora_error)?);
    let mut guard = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    map.retain(|_, weak| weak.strong_count() > 0);
    map.insert(hash, Arc::downgrade(&lora));
    Ok(lora)
}
