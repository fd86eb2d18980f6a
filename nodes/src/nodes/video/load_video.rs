//! `LoadVideo`: an MP4 from the input folder as a VIDEO, with its sound track.

use crate::media::mp4_audio::read_mp4_sound;
use crate::media::mp4_reader::Mp4Reader;
use crate::nodes::image::{input_file_fingerprint, input_files, media_error, resolve_image, validate_input_file};
use crate::values::{Audio, Image, Video, tensor_error};
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Extensions listed in the `file` combo: the containers [`Mp4Reader`] reads.
const VIDEO_EXTENSIONS: [&str; 3] = ["mp4", "mov", "m4v"];

/// Loads every frame of an H.264 MP4 (as kinograph and ComfyUI write them) and its AAC sound track.
/// ComfyUI decodes lazily when the video is used; kinograph decodes here, to the same components:
/// frames as floats in 0..1, the rate from the track's timing, and the audio as libav gives it (the
/// encoder's priming skipped, see [`crate::media::mp4_audio`]).
pub struct LoadVideo;

impl Node for LoadVideo {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoadVideo")
            .display_name("Load Video")
            .category("video")
            .input(InputSpec::combo("file", input_videos(&env.input_dir)).image_upload().node_validated())
            .output("VIDEO", "VIDEO")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("file")?;
        let path = resolve_image(name, context.env()).map_err(|message| NodeError::input("file", message))?;
        if !path.is_file() {
            return Err(NodeError::input(
                "file",
                format!("Invalid video file: {name} ({} does not exist)", path.display()),
            ));
        }
        let loading = |error: crate::media::MediaError| media_error(&format!("loading {}", path.display()), &error);
        let mut reader = Mp4Reader::open(&path).map_err(loading)?;
        let (width, height) = reader.size();
        let count = reader.frame_count();
        let mut pixels = Vec::with_capacity(count * width * height * 3);
        let mut frames = 0;
        while let Some(rgb) = reader.next_frame().map_err(loading)? {
            context.progress(frames as u64, count as u64)?;
            pixels.extend(rgb.iter().map(|&value| f32::from(value) / 255.0));
            frames += 1;
        }
        if frames == 0 {
            return Err(NodeError::input("file", format!("{} holds no frames", path.display())));
        }
        let images = Tensor::from_vec(pixels, (frames, height, width, 3), &Device::Cpu)
            .map_err(|error| tensor_error("building the frames", &error))?;
        let audio = match read_mp4_sound(&path).map_err(loading)? {
            Some(sound) if !sound.channels.is_empty() => {
                let (channels, samples) = (sound.channels.len(), sound.channels[0].len());
                let waveform = Tensor::from_vec(sound.channels.concat(), (1, channels, samples), &Device::Cpu)
                    .map_err(|error| tensor_error("building the audio", &error))?;
                Some(Audio::new(waveform, sound.sample_rate))
            }
            _ => None,
        };
        let fps = reader.fps().unwrap_or(1.0);
        let video = Video { frames: Image::new(images), fps, audio };
        Ok(NodeOutput::new(vec![Value::Object(Arc::new(video))]))
    }

    fn validate(&self, constants: &NodeInputs, env: &Environment) -> Vec<(String, String)> {
        validate_input_file(constants, env, "file", "video")
    }

    fn fingerprint(&self, constants: &NodeInputs, env: &Environment) -> Option<Vec<u8>> {
        input_file_fingerprint(constants, env, "file")
    }
}

/// The videos directly in `folder`, sorted by name.
fn input_videos(folder: &Path) -> Vec<String> {
    input_files(folder, &VIDEO_EXTENSIONS)
}
