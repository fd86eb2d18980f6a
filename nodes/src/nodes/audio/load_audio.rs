//! `LoadAudio`: an audio file from the input folder as AUDIO.

use crate::media::audio_decode::{AUDIO_FORMATS, decode_audio_file};
use crate::nodes::image::resolve_image;
use crate::values::{Audio, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::content_hash;
use kinograph_engine::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Extensions listed in the `audio` combo: the containers [`decode_audio_file`] reads. ComfyUI lists
/// every audio and video file; the ones listed here are those whose sound kinograph can decode.
const AUDIO_EXTENSIONS: [&str; 10] = ["wav", "wave", "flac", "mp3", "aac", "m4a", "mp4", "mov", "ogg", "oga"];

/// Loads the first audio track of a file as `[1, channels, samples]` at the file's sample rate.
pub struct LoadAudio;

impl Node for LoadAudio {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoadAudio")
            .display_name("Load Audio")
            .category("audio")
            .input(InputSpec::combo("audio", input_audio_files(&env.input_dir)).node_validated())
            .output("AUDIO", "AUDIO")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("audio")?;
        let path = resolve_image(name, context.env()).map_err(|message| NodeError::input("audio", message))?;
        if !path.is_file() {
            return Err(NodeError::input(
                "audio",
                format!("Invalid audio file: {name} ({} does not exist)", path.display()),
            ));
        }
        let decoded = decode_audio_file(&path).map_err(|error| {
            NodeError::input(
                "audio",
                format!("cannot load {}: {error}. LoadAudio reads {AUDIO_FORMATS}", path.display()),
            )
        })?;
        let (channels, samples) = (decoded.channels.len(), decoded.frames());
        let waveform = Tensor::from_vec(decoded.channels.concat(), (1, channels, samples), &Device::Cpu)
            .map_err(|error| tensor_error("building the AUDIO waveform", &error))?;
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(Audio::new(waveform, decoded.sample_rate)))]))
    }

    fn validate(&self, constants: &NodeInputs, env: &Environment) -> Vec<(String, String)> {
        let Ok(name) = constants.string("audio") else { return Vec::new() };
        match resolve_image(name, env) {
            Ok(path) if path.is_file() => Vec::new(),
            Ok(path) => {
                vec![("audio".into(), format!("Invalid audio file: {name} ({} does not exist)", path.display()))]
            }
            Err(message) => vec![("audio".into(), message)],
        }
    }

    /// The file's content, so that a changed file runs again.
    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        let path = resolve_image(constants.string("audio").ok()?, env).ok()?;
        Some(content_hash::hash_file(&path).ok()?.to_vec())
    }
}

/// The audio files directly in `folder`, sorted by name.
fn input_audio_files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    Path::new(name).extension().is_some_and(|extension| {
                        AUDIO_EXTENSIONS.contains(&extension.to_string_lossy().to_ascii_lowercase().as_str())
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
