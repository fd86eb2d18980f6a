//! `SaveVideo`: a VIDEO as an H.264 MP4 (with an AAC sound track when the video has audio) in the
//! output folder, encoded frame by frame.

use crate::media::mp4_writer::{AudioOptions, Mp4Options, Mp4Writer};
use crate::nodes::image::{check_prefix, media_error, output_metadata};
use crate::values::{Audio, Video, tensor_error};
use kinograph_engine::prelude::*;
use serde_json::json;

/// The containers ComfyUI's `format` offers.
const FORMATS: [&str; 4] = ["auto", "mp4", "mkv", "webm"];

/// A codec dynamic combo under `name` (`format.codec`, or the hidden top-level `codec`) with its
/// `encoding` choice and that choice's `crf`, all optional.
fn codec_inputs(name: &str, tooltip: &str) -> Vec<InputSpec> {
    let encoding = format!("{name}.encoding");
    vec![
        InputSpec::dynamic_combo(name, [("auto", &[][..]), ("h264", &["encoding"][..]), ("av1", &["encoding"][..])])
            .optional()
            .tooltip(tooltip),
        InputSpec::dynamic_combo(&encoding, [("auto", &[][..]), ("re-encode", &["crf"][..])])
            .optional()
            .tooltip("Automatic preserves compatible streams. Re-encode applies custom encoding options."),
        InputSpec::float(&format!("{encoding}.crf"), 23.0)
            .min(0.0)
            .max(63.0)
            .step(1.0)
            .optional()
            .tooltip("Lower values produce higher quality and larger files."),
    ]
}

/// Saves `<prefix>_00001_.mp4` (H.264 yuv420p, index first) with the prompt and workflow as container
/// metadata, and returns the video unchanged. Odd widths and heights lose their last column or row
/// (yuv420p needs even sizes).
///
/// The sound track is written as ComfyUI's `VideoFromComponents.save_to` writes it: the first item of
/// the AUDIO batch only (a batch of several clips keeps the first and says so), cut to
/// `ceil(sample_rate / fps × frames)` samples so it ends with the video (shorter audio is padded with
/// silence to that length, where ComfyUI leaves it shorter: LTX-2's decoded sound ends a few hundredths
/// of a second before the last frame), AAC-LC at the audio's own rate, 128 kb/s, stereo (mono is written to both channels;
/// ComfyUI keeps it mono; more than two channels is an error).
///
/// The schema is ComfyUI's current one, where `format` is a dynamic combo whose child `format.codec`
/// picks the codec; `codec` is the hidden input older prompts set, used when `format.codec` is absent.
pub struct SaveVideo;

impl Node for SaveVideo {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let codec_tooltip = "The output video codec. Auto preserves a compatible source stream. H.264 and AV1 re-encoding support SDR, HDR (HLG), and HDR PQ.";
        NodeSchema::new("SaveVideo")
            .display_name("Save Video")
            .category("video")
            .description("Saves the input videos to your ComfyUI output directory.")
            .input(InputSpec::socket("video", "VIDEO").tooltip("The video to save."))
            .input(
                InputSpec::string("filename_prefix", "video/ComfyUI")
                    .tooltip("The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."),
            )
            .input(
                InputSpec::dynamic_combo("format", FORMATS.map(|format| (format, &["codec"][..]))).tooltip(
                    "The output container. Auto uses MP4 for Auto/H.264 and WebM for AV1. MP4, MKV, and WebM select a specific container.",
                ),
            )
            .inputs(codec_inputs("format.codec", codec_tooltip))
            .inputs(codec_inputs("codec", codec_tooltip))
            .output("VIDEO", "video")
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let video = inputs.object::<Video>("video")?;
        let prefix = inputs.string("filename_prefix")?;
        check_prefix(prefix)?;
        let format = inputs.string("format")?;
        if !matches!(format, "auto" | "mp4") {
            return Err(NodeError::input("format", format!("'{format}' is not supported; use auto or mp4")));
        }
        let (codec_input, codec) = match inputs.optional_string("format.codec")? {
            Some(codec) => ("format.codec", codec),
            None => ("codec", inputs.optional_string("codec")?.unwrap_or("auto")),
        };
        if !matches!(codec, "auto" | "h264") {
            return Err(NodeError::input(codec_input, format!("'{codec}' is not supported; use auto or h264")));
        }
        let encoding_input = format!("{codec_input}.encoding");
        if let Some(encoding) = inputs.optional_string(&encoding_input)?
            && encoding != "auto"
        {
            return Err(NodeError::input(
                &encoding_input,
                format!("'{encoding}' is not supported: the H.264 encoder keeps its own rate control; use auto"),
            ));
        }
        let (frames, height, width, _) = video.frames.dims()?;
        if frames == 0 {
            return Err(NodeError::input("video", "the video has no frames"));
        }
        if width < 2 || height < 2 {
            return Err(NodeError::input(
                "video",
                format!("{width}x{height} frames are too small for H.264 (2x2 at least)"),
            ));
        }
        let sound = match &video.audio {
            Some(audio) => sound_track(audio, frames, video.fps, context)?,
            None => None,
        };
        let options = Mp4Options {
            planned_frames: Some(frames),
            audio: sound.as_ref().map(|sound| AudioOptions::new(sound.sample_rate, sound.length)),
            ..Mp4Options::default()
        };
        let file = context.create_numbered_output(prefix, "mp4")?;
        let metadata = output_metadata(context);
        let mut writer = Mp4Writer::with_options(file, width, height, video.fps, &metadata, &options)
            .map_err(|error| media_error("starting the MP4", &error))?;
        let mut audio_written = 0;
        for index in 0..frames {
            context.progress(index as u64, frames as u64)?;
            let rgb = video.frames.frame_rgb8(index)?;
            writer.write_frame(&rgb).map_err(|error| media_error(&format!("encoding frame {index}"), &error))?;
            // The audio up to the end of this frame, so the two tracks interleave.
            if let Some(sound) = &sound {
                let until = sound.samples_before(index + 1, video.fps).min(sound.length);
                let parts: Vec<&[f32]> = sound.channels.iter().map(|channel| &channel[audio_written..until]).collect();
                writer.write_audio(&parts).map_err(|error| media_error("encoding the audio", &error))?;
                audio_written = until;
            }
        }
        let file = writer.finish().map_err(|error| media_error("finishing the MP4", &error))?;
        let written = file.commit()?;
        Ok(NodeOutput::new(vec![Value::Object(video)])
            .with_ui(json!({"images": [context.output_file_entry(&written)], "animated": [true]})))
    }
}

/// The samples of a sound track to save.
struct SoundTrack {
    sample_rate: u32,
    /// One or two channels, each `length` samples.
    channels: Vec<Vec<f32>>,
    length: usize,
}

impl SoundTrack {
    /// Samples in the first `frames` frames at `fps` as ComfyUI rounds the rate (to thousandths),
    /// rounded up: `ceil(sample_rate · frames / fps)`.
    fn samples_before(&self, frames: usize, fps: f64) -> usize {
        let thousandths = (fps * 1000.0).round().max(1.0) as u128;
        (u128::from(self.sample_rate) * frames as u128 * 1000).div_ceil(thousandths) as usize
    }
}

/// The first clip of `audio`, cut to the video's length; `None` (with a warning) when nothing is left.
fn sound_track(
    audio: &Audio,
    frames: usize,
    fps: f64,
    context: &ExecutionContext,
) -> Result<Option<SoundTrack>, NodeError> {
    let (batch, channels, samples) = audio.dims().map_err(|error| NodeError::input("video", error.to_string()))?;
    if channels > 2 {
        return Err(NodeError::input(
            "video",
            format!("the sound track has {channels} channels; SaveVideo writes mono or stereo (AAC, stereo)"),
        ));
    }
    if batch == 0 || channels == 0 || samples == 0 {
        context.warn("SaveVideo: the sound track is empty; the video is saved without one");
        return Ok(None);
    }
    if batch > 1 {
        context.warn(&format!("SaveVideo: the audio holds {batch} clips; only the first is saved with the video"));
    }
    let mut track = SoundTrack { sample_rate: audio.sample_rate, channels: Vec::new(), length: 0 };
    track.length = track.samples_before(frames, fps);
    let first = audio
        .waveform
        .get(0)
        .and_then(|clip| clip.narrow(1, 0, track.length.min(samples)))
        .and_then(|clip| clip.to_dtype(candle_core::DType::F32))
        .and_then(|clip| clip.to_vec2::<f32>())
        .map_err(|error| tensor_error("reading the sound track", &error))?;
    // A shorter sound ends in silence, so that both tracks last as long as the video.
    track.channels = first
        .into_iter()
        .map(|mut channel| {
            channel.resize(track.length, 0.0);
            channel
        })
        .collect();
    Ok(Some(track))
}
