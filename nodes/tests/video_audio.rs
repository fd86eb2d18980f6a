//! Videos with sound: `SaveVideo`'s H.264 + AAC-LC MP4s as ffprobe and ffmpeg see them, `LoadVideo` →
//! `GetVideoComponents` round trips, `Video Slice`, and the video nodes' schemas against ComfyUI's
//! current ones (and the LTX-2 templates that use them). The ffmpeg checks skip, saying so, only where
//! ffmpeg is not installed; CI installs it.

use crate::support::{folders, inputs, node};
use candle_core::{Device, Tensor};
use kinograph_engine::workflow::embedded::extract;
use kinograph_engine::workflow::{ConvertOptions, WorkflowFile};
use kinograph_engine::{Environment, ExecutionContext, InputSpec, Value};
use kinograph_nodes::media::mp4_writer::{AudioOptions, Mp4Options, Mp4Writer};
use kinograph_nodes::values::{Audio, Image, Video};
use serde_json::{Value as Json, json};
use std::f32::consts::TAU;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const RATE: u32 = 24000;
const FPS: f64 = 24.0;
const FRAMES: usize = 30;
/// `ceil(RATE / FPS × FRAMES)`: the audio `SaveVideo` keeps.
const KEPT: usize = 30000;

fn ffmpeg_available() -> bool {
    let found = Command::new("ffprobe").arg("-version").output().is_ok_and(|out| out.status.success());
    if !found {
        println!("skipped: ffprobe/ffmpeg are not installed (apt-get install ffmpeg)");
    }
    found
}

/// ffprobe's streams and format as JSON.
fn ffprobe(path: &Path) -> Json {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// Decodes every stream of `path` with ffmpeg, which must print nothing.
fn assert_ffmpeg_decodes_cleanly(path: &Path) {
    let output =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "ffmpeg reports: {}", String::from_utf8_lossy(&output.stderr));
}

/// The audio ffmpeg decodes from `path`: two channels.
fn ffmpeg_audio(path: &Path) -> [Vec<f32>; 2] {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a", "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let samples: Vec<f32> =
        output.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    [samples.iter().step_by(2).copied().collect(), samples.iter().skip(1).step_by(2).copied().collect()]
}

/// A 440 Hz tone on the left and a 660 Hz tone on the right, `samples` long.
fn stereo_tone(samples: usize) -> [Vec<f32>; 2] {
    let tone = |hz: f32, gain: f32| (0..samples).map(|i| gain * (i as f32 * hz * TAU / RATE as f32).sin()).collect();
    [tone(440.0, 0.5), tone(660.0, 0.3)]
}

/// Signal-to-noise ratio of `decoded` against `reference` over the reference's length, in dB.
fn snr(reference: &[f32], decoded: &[f32]) -> f64 {
    let noise: f64 = reference.iter().zip(decoded).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let signal: f64 = reference.iter().map(|a| f64::from(*a).powi(2)).sum();
    10.0 * (signal / noise).log10()
}

/// The lag (decoded behind reference, in samples) that best lines the two up, within ±`range`.
fn best_lag(reference: &[f32], decoded: &[f32], range: i64) -> i64 {
    let score = |lag: i64| -> f64 {
        (0..reference.len() as i64)
            .filter_map(|i| {
                Some(f64::from(reference[i as usize]) * f64::from(*decoded.get(usize::try_from(i + lag).ok()?)?))
            })
            .sum()
    };
    (-range..=range).max_by(|a, b| score(*a).total_cmp(&score(*b))).unwrap()
}

fn frames_tensor(width: usize, height: usize, frames: usize) -> Tensor {
    let mut values = Vec::new();
    for frame in 0..frames {
        for y in 0..height {
            for x in 0..width {
                values.push(x as f32 / width as f32);
                values.push(y as f32 / height as f32);
                values.push((frame * 8 % 256) as f32 / 255.0);
            }
        }
    }
    Tensor::from_vec(values, (frames, height, width, 3), &Device::Cpu).unwrap()
}

fn audio_value(channels: &[Vec<f32>], rate: u32) -> Audio {
    let samples = channels[0].len();
    Audio::new(Tensor::from_vec(channels.concat(), (1, channels.len(), samples), &Device::Cpu).unwrap(), rate)
}

/// Runs `CreateVideo` (with `audio` when given) and `SaveVideo`; returns the VIDEO and the saved file.
fn create_and_save(env: &Environment, audio: Option<Audio>) -> (Arc<Video>, PathBuf) {
    let context = ExecutionContext::detached("1", "CreateVideo", env.clone());
    let mut values = inputs(vec![
        ("images", Value::Object(Arc::new(Image::new(frames_tensor(32, 24, FRAMES))))),
        ("fps", Value::Float(FPS)),
    ]);
    if let Some(audio) = audio {
        values.insert("audio", Value::Object(Arc::new(audio)));
    }
    let created = node("CreateVideo").execute(&values, &context).unwrap();
    let video = created.values[0].downcast::<Video>().unwrap();
    let context = ExecutionContext::detached("2", "SaveVideo", env.clone());
    let values = inputs(vec![
        ("video", created.values[0].clone()),
        ("filename_prefix", Value::String("video/sound".into())),
        ("format", Value::String("auto".into())),
        ("format.codec", Value::String("auto".into())),
    ]);
    let output = node("SaveVideo").execute(&values, &context).unwrap();
    assert!(output.values[0].downcast::<Video>().is_some(), "SaveVideo passes the video on");
    let entry = &output.ui.unwrap()["images"][0];
    let path = env.output_dir.join(entry["subfolder"].as_str().unwrap()).join(entry["filename"].as_str().unwrap());
    (video, path)
}

/// The types of an MP4's top-level boxes, in order.
fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    kinograph_engine::mp4::boxes(&bytes)
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(&b.kind).into_owned())
        .collect()
}

#[test]
fn a_stereo_tone_is_saved_as_aac_lc_as_long_as_the_video_and_decodes_back_in_sync() {
    let folders = folders();
    // 1.5 s of sound for 1.25 s of video: SaveVideo cuts it to the video, as ComfyUI does.
    let tone = stereo_tone(36000);
    let (_, path) = create_and_save(&folders.env, Some(audio_value(&tone, RATE)));
    assert_eq!(top_level_boxes(&path), ["ftyp", "moov", "free", "mdat"], "the index comes first (fast start)");
    if !ffmpeg_available() {
        return;
    }
    let probe = ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let (video, audio) = (&streams[0], &streams[1]);
    assert_eq!((video["codec_name"].as_str(), audio["codec_name"].as_str()), (Some("h264"), Some("aac")));
    assert_eq!(audio["profile"], "LC");
    assert_eq!(audio["sample_rate"], "24000");
    assert_eq!(audio["channels"], 2);
    assert_eq!(audio["channel_layout"], "stereo");
    let seconds = |stream: &Json| stream["duration"].as_str().unwrap().parse::<f64>().unwrap();
    println!("durations: video {} s, audio {} s", seconds(video), seconds(audio));
    assert_eq!(seconds(video), 1.25);
    assert!((seconds(audio) - seconds(video)).abs() <= 1024.0 / f64::from(RATE), "within one AAC frame");
    assert_eq!(seconds(audio), 1.25, "the edit list ends the audio where the kept samples end");
    let bit_rate: f64 = audio["bit_rate"].as_str().unwrap().parse().unwrap();
    assert!((100_000.0..=140_000.0).contains(&bit_rate), "about 128 kb/s, got {bit_rate}");
    assert_ffmpeg_decodes_cleanly(&path);

    // ffmpeg skips the priming the edit list names, so the sound starts where it started: no lag. The
    // tolerance is what AAC at 128 kb/s keeps of pure tones (measured about 50 dB here; a lag of even
    // one sample costs more than 20 dB of it).
    let decoded = ffmpeg_audio(&path);
    assert!(decoded[0].len() >= KEPT && decoded[0].len() < KEPT + 1024, "{} samples", decoded[0].len());
    assert_eq!(best_lag(&tone[0][..4800], &decoded[0][..4800 + 100], 100), 0);
    for (channel, (reference, decoded)) in tone.iter().zip(&decoded).enumerate() {
        let snr = snr(&reference[..KEPT], &decoded[..KEPT]);
        println!("channel {channel}: SNR {snr:.1} dB");
        assert!(snr > 30.0, "channel {channel}: SNR {snr:.1} dB");
    }
}

#[test]
fn mono_at_48_khz_goes_to_both_channels_and_the_metadata_stays() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("mono.mp4");
    let metadata = vec![("workflow".to_string(), json!({"nodes": [], "links": []}).to_string())];
    let frames = 12;
    let samples = 48000 * frames / 24;
    let options = Mp4Options {
        planned_frames: Some(frames),
        audio: Some(AudioOptions::new(48000, samples)),
        ..Default::default()
    };
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut writer = Mp4Writer::with_options(file, 16, 16, 24.0, &metadata, &options).unwrap();
    let tone: Vec<f32> = (0..samples).map(|i| 0.4 * (i as f32 * 1000.0 * TAU / 48000.0).sin()).collect();
    for (frame, part) in tone.chunks(samples / frames).enumerate() {
        writer.write_frame(&vec![(frame * 20) as u8; 16 * 16 * 3]).unwrap();
        writer.write_audio(&[part]).unwrap();
    }
    assert!(writer.write_audio(&[&tone[..4], &tone[..4], &tone[..4]]).is_err(), "three channels are refused");
    writer.finish().unwrap();
    let embedded = extract(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(embedded.workflow.as_deref(), Some(metadata[0].1.as_str()));
    assert_eq!(top_level_boxes(&path)[1], "moov");
    if !ffmpeg_available() {
        return;
    }
    let probe = ffprobe(&path);
    assert_eq!(probe["streams"][1]["channels"], 2);
    assert_eq!(probe["streams"][1]["sample_rate"], "48000");
    assert_eq!(probe["format"]["tags"]["workflow"].as_str(), Some(metadata[0].1.as_str()));
    assert_ffmpeg_decodes_cleanly(&path);
    let [left, right] = ffmpeg_audio(&path);
    assert_eq!(left[..samples], right[..samples], "mono is written to both channels");
    assert!(snr(&tone, &left[..samples]) > 30.0, "SNR {:.1} dB", snr(&tone, &left[..samples]));
}

#[test]
fn create_video_without_audio_still_writes_a_video_only_mp4() {
    let folders = folders();
    let (video, path) = create_and_save(&folders.env, None);
    assert!(video.audio.is_none());
    assert_eq!(top_level_boxes(&path), ["ftyp", "moov", "free", "mdat"]);
    if ffmpeg_available() {
        let probe = ffprobe(&path);
        assert_eq!(probe["streams"].as_array().unwrap().len(), 1);
        assert_eq!(probe["streams"][0]["codec_name"], "h264");
        assert_eq!(probe["streams"][0]["nb_frames"], FRAMES.to_string());
        assert_ffmpeg_decodes_cleanly(&path);
    }
}

#[test]
fn create_and_save_refuse_what_they_cannot_write_and_name_the_input() {
    let folders = folders();
    let context = ExecutionContext::detached("1", "CreateVideo", folders.env.clone());
    let base = || {
        inputs(vec![
            ("images", Value::Object(Arc::new(Image::new(frames_tensor(8, 8, 2))))),
            ("fps", Value::Float(FPS)),
        ])
    };
    for (input, value) in [("bit_depth", Value::String("10".into())), ("color_space", Value::String("HDR".into()))] {
        let mut values = base();
        values.insert(input, value);
        let error = node("CreateVideo").execute(&values, &context).unwrap_err().to_string();
        assert!(error.contains(input) && error.contains("not supported"), "{error}");
    }
    let mut values = base();
    values.insert("bit_depth", Value::Int(8));
    assert!(node("CreateVideo").execute(&values, &context).is_ok(), "GetVideoComponents' bit_depth links in");

    let save = |audio: Audio| {
        let video = Video { frames: Image::new(frames_tensor(8, 8, 2)), fps: FPS, audio: Some(audio) };
        let values = inputs(vec![
            ("video", Value::Object(Arc::new(video))),
            ("filename_prefix", Value::String("bad".into())),
            ("format", Value::String("mp4".into())),
            ("codec", Value::String("h264".into())),
        ]);
        let context = ExecutionContext::detached("2", "SaveVideo", folders.env.clone());
        node("SaveVideo").execute(&values, &context).map(|_| ()).map_err(|error| error.to_string())
    };
    let surround = vec![vec![0.0; 4000]; 6];
    let error = save(audio_value(&surround, RATE)).unwrap_err();
    assert!(error.contains("6 channels") && error.contains("video"), "{error}");
    let error = save(audio_value(&stereo_tone(4000), 44000)).unwrap_err();
    assert!(error.contains("44000 Hz"), "{error}");
}

#[test]
fn load_video_and_get_video_components_give_back_frames_rate_and_sound() {
    let folders = folders();
    let tone = stereo_tone(KEPT);
    let (original, saved) = create_and_save(&folders.env, Some(audio_value(&tone, RATE)));
    std::fs::copy(&saved, folders.env.input_dir.join("clip.mp4")).unwrap();
    std::fs::write(folders.env.input_dir.join("notes.txt"), b"").unwrap();
    let loader = node("LoadVideo");
    assert_eq!(
        loader.schema(&folders.env).input_spec("file").unwrap().kind,
        InputSpec::combo("file", ["clip.mp4"]).image_upload().node_validated().kind,
        "the combo lists the input folder's videos"
    );
    let missing = inputs(vec![("file", Value::String("gone.mp4".into()))]);
    assert!(loader.validate(&missing, &folders.env)[0].1.contains("gone.mp4"));

    let context = ExecutionContext::detached("3", "LoadVideo", folders.env.clone());
    let loaded = loader.execute(&inputs(vec![("file", Value::String("clip.mp4".into()))]), &context).unwrap();
    let context = ExecutionContext::detached("4", "GetVideoComponents", folders.env.clone());
    let parts =
        node("GetVideoComponents").execute(&inputs(vec![("video", loaded.values[0].clone())]), &context).unwrap();
    let images = parts.values[0].downcast::<Image>().unwrap();
    let audio = parts.values[1].downcast::<Audio>().expect("the sound track comes back");
    assert!(matches!(parts.values[2], Value::Float(fps) if fps == FPS));
    assert!(matches!(parts.values[3], Value::Int(8)));

    assert_eq!(images.pixels.dims(), [FRAMES, 24, 32, 3]);
    let mean_error = (images.pixels.clone() - original.frames.pixels.clone())
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(mean_error < 0.02, "mean frame error {mean_error}");

    // As PyAV gives it: the priming skipped, the last packet kept whole.
    let (batch, channels, samples) = audio.dims().unwrap();
    assert_eq!((batch, channels, audio.sample_rate), (1, 2, RATE));
    assert!((KEPT..KEPT + 1024).contains(&samples), "{samples} samples");
    let waveform = audio.waveform.get(0).unwrap().to_vec2::<f32>().unwrap();
    for (channel, reference) in tone.iter().enumerate() {
        let snr = snr(reference, &waveform[channel][..KEPT]);
        println!("LoadVideo channel {channel}: SNR {snr:.1} dB");
        assert!(snr > 30.0, "channel {channel}: SNR {snr:.1} dB");
    }
    if ffmpeg_available() {
        // Same samples as ffmpeg's own decoder, up to the two decoders' rounding.
        let decoded = ffmpeg_audio(&saved);
        assert_eq!(decoded[0].len(), samples, "the same length as ffmpeg decodes");
        let difference = waveform[0].iter().zip(&decoded[0]).map(|(a, b)| (a - b).abs()).fold(0.0_f32, f32::max);
        assert!(difference < 1e-3, "largest difference from ffmpeg's decode {difference}");
    }
}

/// A VIDEO of 10 frames at 5 fps (2 s) with a 1000 Hz mono ramp whose samples count themselves.
fn ten_frames() -> Value {
    let ramp: Vec<f32> = (0..2000).map(|i| i as f32).collect();
    let video =
        Video { frames: Image::new(frames_tensor(4, 4, 10)), fps: 5.0, audio: Some(audio_value(&[ramp], 1000)) };
    Value::Object(Arc::new(video))
}

fn slice(start_time: f64, duration: f64, strict: bool) -> Result<(Vec<f32>, Vec<f32>), String> {
    let values = inputs(vec![
        ("video", ten_frames()),
        ("start_time", Value::Float(start_time)),
        ("duration", Value::Float(duration)),
        ("strict_duration", Value::Bool(strict)),
    ]);
    let context = ExecutionContext::detached("5", "Video Slice", Environment::default());
    let output = node("Video Slice").execute(&values, &context).map_err(|error| error.to_string())?;
    let video = output.values[0].downcast::<Video>().unwrap();
    assert_eq!(video.fps, 5.0);
    // Frame k's blue channel is 8k/255: read the frame numbers back.
    let blue = video.frames.pixels.narrow(3, 2, 1).unwrap().mean((1, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
    let frames = blue.iter().map(|value| (value * 255.0 / 8.0).round()).collect();
    let audio = video.audio.as_ref().unwrap().waveform.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    Ok((frames, audio))
}

#[test]
fn video_slice_keeps_the_frames_and_sound_of_its_window() {
    let (frames, audio) = slice(0.4, 0.8, false).unwrap();
    assert_eq!(frames, [2.0, 3.0, 4.0, 5.0], "frames at 0.4, 0.6, 0.8 and 1.0 s");
    assert_eq!((audio.len(), audio[0]), (800, 400.0));

    let (frames, audio) = slice(1.0, 0.0, false).unwrap();
    assert_eq!(frames, [5.0, 6.0, 7.0, 8.0, 9.0], "a duration of 0 runs to the end");
    assert_eq!((audio.len(), audio[0]), (1000, 1000.0));

    let (frames, audio) = slice(-0.5, 0.0, false).unwrap();
    assert_eq!(frames, [8.0, 9.0], "a negative start counts back from the end: 1.5 s");
    assert_eq!((audio.len(), audio[0]), (500, 1500.0));

    let (frames, audio) = slice(1.5, 1.0, false).unwrap();
    assert_eq!((frames, audio.len()), (vec![8.0, 9.0], 500), "without strict_duration, what there is");
    let error = slice(1.5, 1.0, true).unwrap_err();
    assert!(error.contains("duration") && error.contains("0.500 s"), "{error}");
    assert!(slice(1.0, 1.0, true).is_ok(), "exactly what there is is enough");

    let error = slice(3.0, 0.0, false).unwrap_err();
    assert!(error.contains("start_time"), "{error}");
}

/// ComfyUI's current schemas of the video nodes (`comfy_extras/nodes_video.py`): input names, order,
/// kinds, defaults and ranges. `SaveVideo`'s `format` is a dynamic combo whose `codec` child is the
/// `format.codec` widget the editor stores.
#[test]
fn the_video_node_schemas_match_comfyui() {
    let env = folders().env;
    let strip = |class: &str| -> Vec<InputSpec> {
        node(class)
            .schema(&env)
            .inputs
            .into_iter()
            .map(|mut input| {
                input.tooltip = None;
                input
            })
            .collect()
    };
    let codec = |name: &str| {
        let encoding = format!("{name}.encoding");
        [
            InputSpec::dynamic_combo(
                name,
                [("auto", &[][..]), ("h264", &["encoding"][..]), ("av1", &["encoding"][..])],
            )
            .optional(),
            InputSpec::dynamic_combo(&encoding, [("auto", &[][..]), ("re-encode", &["crf"][..])]).optional(),
            InputSpec::float(&format!("{encoding}.crf"), 23.0).min(0.0).max(63.0).step(1.0).optional(),
        ]
    };
    let containers = ["auto", "mp4", "mkv", "webm"].map(|format| (format, &["codec"][..]));
    let expected: Vec<InputSpec> = [
        InputSpec::socket("video", "VIDEO"),
        InputSpec::string("filename_prefix", "video/ComfyUI"),
        InputSpec::dynamic_combo("format", containers),
    ]
    .into_iter()
    .chain(codec("format.codec"))
    .chain(codec("codec"))
    .collect();
    assert_eq!(strip("SaveVideo"), expected);
    // As `/object_info` lists it: the codec under each container, the encoding under each codec.
    let info = node("SaveVideo").schema(&env).object_info();
    let format = &info["input"]["required"]["format"];
    assert_eq!(format[0], "COMFY_DYNAMICCOMBO_V3");
    let mp4 = &format[1]["options"][1];
    assert_eq!(mp4["key"], "mp4");
    let codec = &mp4["inputs"]["required"]["codec"];
    assert_eq!(codec[1]["options"][1]["key"], "h264");
    assert_eq!(codec[1]["options"][1]["inputs"]["required"]["encoding"][1]["options"][1]["key"], "re-encode");
    assert_eq!(info["input_order"]["optional"], serde_json::json!(["codec"]));
    assert_eq!(
        strip("CreateVideo"),
        [
            InputSpec::socket("images", "IMAGE"),
            InputSpec::float("fps", 30.0).min(1.0).max(120.0).step(1.0),
            InputSpec::socket("audio", "AUDIO").optional(),
            InputSpec::combo("bit_depth", ["auto", "8", "10"]).default_option("auto").optional(),
            InputSpec::combo("color_space", ["sRGB", "HDR", "HDR PQ"]).default_option("sRGB").optional(),
        ]
    );
    assert_eq!(
        strip("Video Slice"),
        [
            InputSpec::socket("video", "VIDEO"),
            InputSpec::float("start_time", 0.0).min(-1e5).max(1e5).step(0.001),
            InputSpec::float("duration", 0.0).min(0.0).step(0.001),
            InputSpec::boolean("strict_duration", false),
        ]
    );
    let outputs = |class: &str| -> Vec<(String, String)> {
        node(class).schema(&env).outputs.into_iter().map(|output| (output.type_name, output.name)).collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(
        outputs("GetVideoComponents"),
        pairs(&[
            ("IMAGE", "images"),
            ("AUDIO", "audio"),
            ("FLOAT", "fps"),
            ("COMBO", "bit_depth"),
            ("COMBO", "color_space")
        ])
    );
    assert_eq!(outputs("SaveVideo"), pairs(&[("VIDEO", "video")]));
    assert_eq!(outputs("LoadVideo"), pairs(&[("VIDEO", "VIDEO")]));
    assert_eq!(node("Video Slice").schema(&env).display_name, "Trim Video");
}

/// Converts a template from the repository's copy of ComfyUI's templates with the real registry.
fn convert_template(name: &str) -> kinograph_engine::workflow::Conversion {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates").join(name);
    WorkflowFile::load(&path)
        .unwrap()
        .into_prompt(&kinograph_nodes::registry(), &folders().env, &ConvertOptions::default())
        .unwrap()
}

fn inputs_of<'a>(
    conversion: &'a kinograph_engine::workflow::Conversion,
    class: &str,
) -> &'a kinograph_engine::workflow::PromptNode {
    conversion.prompt.nodes.values().find(|node| node.class_type.as_deref() == Some(class)).unwrap()
}

#[test]
fn the_ltx2_3_template_maps_its_video_widgets_by_name_without_warnings() {
    let conversion = convert_template("video_ltx2_3_t2v.json");
    let video_warnings: Vec<String> = conversion
        .warnings
        .iter()
        .filter(|warning| matches!(warning.class_type.as_str(), "SaveVideo" | "CreateVideo"))
        .map(ToString::to_string)
        .collect();
    assert!(video_warnings.is_empty(), "{video_warnings:#?}");
    let literal = |node: &kinograph_engine::workflow::PromptNode, name: &str| match node.inputs.get(name) {
        Some(kinograph_engine::workflow::InputValue::Literal(value)) => value.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let save = inputs_of(&conversion, "SaveVideo");
    assert_eq!(literal(save, "filename_prefix"), json!("video/LTX_2.3_t2v"));
    assert_eq!(
        (literal(save, "format"), literal(save, "format.codec"), literal(save, "codec")),
        (json!("auto"), json!("auto"), json!("auto"))
    );
    let create = inputs_of(&conversion, "CreateVideo");
    assert_eq!((literal(create, "bit_depth"), literal(create, "color_space")), (json!("auto"), json!("sRGB")));

    // The older LTX-2 template was saved before `color_space` and `format.codec` existed: its shorter
    // lists still land on the right inputs (new widgets are appended), though the engine warns.
    let older = convert_template("video_ltx2_t2v.json");
    let save = inputs_of(&older, "SaveVideo");
    assert_eq!((literal(save, "format"), literal(save, "format.codec")), (json!("mp4"), json!("auto")));
    let create = inputs_of(&older, "CreateVideo");
    assert_eq!(literal(create, "bit_depth"), json!(8));
    for warning in older.warnings.iter().filter(|w| matches!(w.class_type.as_str(), "SaveVideo" | "CreateVideo")) {
        println!("older template: {warning}");
    }
}
