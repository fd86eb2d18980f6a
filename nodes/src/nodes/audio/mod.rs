//! Audio nodes: `LoadAudio`, `SaveAudio`, `PreviewAudio` and `TrimAudioDuration`, with ComfyUI's class
//! names, inputs and UI results (ComfyUI's `comfy_extras/nodes_audio.py`).
//!
//! `SaveAudioMP3`, `SaveAudioOpus` and `RecordAudio` are not here: there is no pure-Rust MP3 or Opus
//! encoder, and `RecordAudio`'s `AUDIO_RECORD` widget is not a kind of input the engine declares. The
//! WAV files the frontend's recorder uploads (`audio/recording-….wav [temp]`) load with `LoadAudio`.

mod load_audio;
mod save_audio;
mod trim_audio;

pub use load_audio::LoadAudio;
pub use save_audio::{PreviewAudio, SaveAudio};
pub use trim_audio::TrimAudioDuration;

use kinograph_engine::prelude::*;
use std::sync::Arc;

/// The audio nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(LoadAudio), Arc::new(SaveAudio), Arc::new(PreviewAudio), Arc::new(TrimAudioDuration)]
}
