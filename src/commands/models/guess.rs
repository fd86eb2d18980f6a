//! Which folder kind a file from a model repository belongs in, when `--folder` does not say.

/// Folder names inside repositories that tell the kind: ComfyUI's own folder names (repackaged
/// repositories keep `split_files/text_encoders/...`) and diffusers' subfolders.
const FOLDER_HINTS: &[(&str, &str)] = &[
    ("checkpoints", "checkpoints"),
    ("text_encoders", "text_encoders"),
    ("text_encoder", "text_encoders"),
    ("text_encoder_2", "text_encoders"),
    ("text_encoder_3", "text_encoders"),
    ("clip", "text_encoders"),
    ("diffusion_models", "diffusion_models"),
    ("unet", "diffusion_models"),
    ("transformer", "diffusion_models"),
    ("vae", "vae"),
    ("loras", "loras"),
    ("lora", "loras"),
    ("latent_upscale_models", "latent_upscale_models"),
    ("upscale_models", "upscale_models"),
    ("clip_vision", "clip_vision"),
    ("controlnet", "controlnet"),
    ("embeddings", "embeddings"),
];

/// The folder kind for `file` (a path inside a repository): a folder in its path that names a kind
/// wins; otherwise words in the file name decide (`lora`, `upscaler`, `vae`, `t5`/`umt5`/`text_encoder`,
/// `clip_l`, `gemma`, ...); anything else is a checkpoint.
pub fn folder_for(file: &str) -> &'static str {
    let lower = file.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split(['/', '\\']).filter(|part| !part.is_empty()).collect();
    let file_name = parts.pop().unwrap_or_default();
    for folder in parts.iter().rev() {
        if let Some((_, kind)) = FOLDER_HINTS.iter().find(|(hint, _)| hint == folder) {
            return kind;
        }
    }
    let stem = file_name.rsplit_once('.').map_or(file_name, |(stem, _)| stem);
    let words: Vec<&str> = stem.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |wanted: &str| words.contains(&wanted);
    let starts = |prefix: &str| words.iter().any(|word| word.starts_with(prefix));
    let follows =
        |first: &str, second: &[&str]| words.windows(2).any(|pair| pair[0] == first && second.contains(&pair[1]));
    if starts("lora") {
        "loras"
    } else if starts("upscale") || words.iter().any(|word| word.contains("esrgan")) {
        if has("latent") || has("spatial") || has("temporal") { "latent_upscale_models" } else { "upscale_models" }
    } else if follows("clip", &["vision"]) {
        "clip_vision"
    } else if words.iter().any(|word| word.contains("vae")) {
        "vae"
    } else if starts("t5")
        || starts("umt5")
        || starts("mt5")
        || starts("gemma")
        || starts("textencoder")
        || follows("text", &["encoder", "encoders"])
        || follows("clip", &["l", "g", "h"])
    {
        "text_encoders"
    } else {
        "checkpoints"
    }
}

#[cfg(test)]
mod tests {
    use super::folder_for;

    #[test]
    fn folders_in_the_path_decide_first() {
        assert_eq!(folder_for("split_files/text_encoders/umt5_xxl_fp8.safetensors"), "text_encoders");
        assert_eq!(folder_for("split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"), "diffusion_models");
        assert_eq!(folder_for("vae/diffusion_pytorch_model.safetensors"), "vae");
        assert_eq!(folder_for("transformer/diffusion_pytorch_model-00001-of-00002.safetensors"), "diffusion_models");
        assert_eq!(folder_for("text_encoder_2/model.safetensors"), "text_encoders");
    }

    #[test]
    fn words_in_the_name_decide_next() {
        assert_eq!(folder_for("t5xxl_fp16.safetensors"), "text_encoders");
        assert_eq!(folder_for("umt5-xxl-enc-bf16.safetensors"), "text_encoders");
        assert_eq!(folder_for("clip_l.safetensors"), "text_encoders");
        assert_eq!(folder_for("text_encoder.safetensors"), "text_encoders");
        assert_eq!(folder_for("gemma_3_12B_it.safetensors"), "text_encoders");
        assert_eq!(folder_for("ltxv_vae_0.9.8.safetensors"), "vae");
        assert_eq!(folder_for("LTX-Video-VAE.safetensors"), "vae");
        assert_eq!(folder_for("ltxv-spatial-upscaler-0.9.8.safetensors"), "latent_upscale_models");
        assert_eq!(folder_for("4x-UltraSharp_upscaler.pth"), "upscale_models");
        assert_eq!(folder_for("RealESRGAN_x4plus.pth"), "upscale_models");
        assert_eq!(folder_for("ltxv-13b-0.9.8-distilled-lora128.safetensors"), "loras");
        assert_eq!(folder_for("clip_vision_h.safetensors"), "clip_vision");
    }

    #[test]
    fn anything_else_is_a_checkpoint() {
        assert_eq!(folder_for("ltxv-13b-0.9.8-distilled.safetensors"), "checkpoints");
        assert_eq!(folder_for("ltx-video-2b-v0.9.5.safetensors"), "checkpoints");
        assert_eq!(folder_for("model.safetensors"), "checkpoints");
    }
}
