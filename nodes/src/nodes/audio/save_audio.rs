//! `SaveAudio` and `PreviewAudio`: each waveform of the batch as a numbered 16-bit FLAC carrying the
//! prompt and workflow as Vorbis comments (ComfyUI writes the same with `PyAV`'s FLAC encoder).

use crate::media::flac::{MAX_CHANNELS, write_flac};
use crate::nodes::image::{check_prefix, media_error, output_metadata, temp_dir};
use crate::values::{Audio, tensor_error};
use candle_core::{DType, Device};
use kinograph_engine::prelude::*;
use serde_json::{Value as Json, json};
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

/// Saves every waveform of the batch as `<prefix>_00001_.flac` in the output folder.
pub struct SaveAudio;

impl Node for SaveAudio {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveAudio")
            .display_name("Save Audio (FLAC)")
            .category("audio")
            .input(InputSpec::socket("audio", "AUDIO"))
            .input(InputSpec::string("filename_prefix", "audio/ComfyUI"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let audio = inputs.object::<Audio>("audio")?;
        let prefix = inputs.string("filename_prefix")?;
        check_prefix(prefix)?;
        let output_dir = context.env().output_dir.clone();
        let entries = save_flacs(&audio, &output_dir, prefix, context, "output")?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"audio": entries})))
    }
}

/// Saves the waveforms as numbered FLACs in the temporary folder, for listening only.
pub struct PreviewAudio;

impl Node for PreviewAudio {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PreviewAudio")
            .display_name("Preview Audio")
            .category("audio")
            .input(InputSpec::socket("audio", "AUDIO"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let audio = inputs.object::<Audio>("audio")?;
        let folder = temp_dir(context.env());
        // ComfyUI adds five random letters, so that a browser never plays a stale file of the same name.
        let prefix = format!("ComfyUI_temp_{}", random_letters(5));
        let entries = save_flacs(&audio, &folder, &prefix, context, "temp")?;
        Ok(NodeOutput::new(Vec::new()).with_ui(json!({"audio": entries})))
    }
}

/// Writes each waveform of the batch as `<folder>/<prefix>_NNNNN_.flac` (`%batch_num%` in the file
/// name becomes the batch index, as in ComfyUI); returns the UI entries.
fn save_flacs(
    audio: &Audio,
    folder: &Path,
    prefix: &str,
    context: &ExecutionContext,
    kind: &str,
) -> Result<Vec<Json>, NodeError> {
    let (batch, channels, _) = audio.dims()?;
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(NodeError::input(
            "audio",
            format!("FLAC holds 1 to {MAX_CHANNELS} channels; this audio has {channels}"),
        ));
    }
    let waveform = audio
        .waveform
        .to_device(&Device::Cpu)
        .and_then(|waveform| waveform.to_dtype(DType::F32))
        .map_err(|error| tensor_error("reading the AUDIO waveform", &error))?;
    let metadata = output_metadata(context);
    let mut entries = Vec::with_capacity(batch);
    for index in 0..batch {
        context.check_interrupted()?;
        let samples = waveform
            .get(index)
            .and_then(|item| item.to_vec2::<f32>())
            .map_err(|error| tensor_error("reading the AUDIO waveform", &error))?;
        let planes: Vec<&[f32]> = samples.iter().map(Vec::as_slice).collect();
        let mut file = OutputFile::numbered(folder, &batch_prefix(prefix, index), "flac")?;
        write_flac(&mut file, &planes, audio.sample_rate, &metadata)
            .map_err(|error| media_error("writing a FLAC", &error))?;
        let written = file.commit()?;
        let relative = written.strip_prefix(folder).unwrap_or(&written);
        let filename = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let subfolder = relative.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        entries.push(json!({"filename": filename, "subfolder": subfolder, "type": kind}));
    }
    Ok(entries)
}

/// `prefix` with `%batch_num%` in its file name replaced by `index`.
fn batch_prefix(prefix: &str, index: usize) -> String {
    let (folder, name) = prefix.rsplit_once('/').map_or(("", prefix), |(folder, name)| (folder, name));
    let name = name.replace("%batch_num%", &index.to_string());
    if folder.is_empty() { name } else { format!("{folder}/{name}") }
}

/// `count` lowercase letters drawn from the standard library's per-process random hash keys.
fn random_letters(count: usize) -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_nanos() as u64),
    );
    let mut bits = hasher.finish();
    (0..count)
        .map(|_| {
            let letter = (b'a' + (bits % 26) as u8) as char;
            bits /= 26;
            letter
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_number_goes_into_the_file_name_only() {
        assert_eq!(batch_prefix("audio/take_%batch_num%", 3), "audio/take_3");
        assert_eq!(batch_prefix("%batch_num%/x", 1), "%batch_num%/x");
        assert_eq!(batch_prefix("plain", 0), "plain");
    }

    #[test]
    fn random_letters_are_lowercase() {
        let letters = random_letters(5);
        assert_eq!(letters.len(), 5);
        assert!(letters.bytes().all(|b| b.is_ascii_lowercase()), "{letters}");
    }
}
