//! `LoadAudio`: an audio file from the input folder as AUDIO.

use crate::media::audio_decode::{AUDIO_FORMATS, decode_audio_file};
use crate::nodes::image::{input_file_fingerprint, input_files, resolve_image, validate_input_file};
use crate::values::{Audio, tensor_error};
use candle_core::{Device, Tensor};
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
        validate_input_file(constants, env, "audio", "audio")
    }

    /// The file's content, so that a changed file runs again.
    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        input_file_fingerprint(constants, env, "audio")
    }
}

/// The audio files directly in `folder`, sorted by name.
fn input_audio_files(folder: &Path) -> Vec<String> {
    input_files(folder, &AUDIO_EXTENSIONS)
}
