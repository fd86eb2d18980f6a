//! Audio files and nodes: `LoadAudio` on every format against ffmpeg's own decode of the same file
//! (`tools/fixtures/make_audio_fixtures.py`), `SaveAudio` FLACs checked with ffprobe, ffmpeg and our own
//! decoder, and `TrimAudioDuration`. The ffmpeg checks skip (saying so) only where ffmpeg is not
//! installed; CI installs it.

use crate::support::{folders, inputs, node};
use candle_core::{Device, Tensor};
use kinograph_engine::{Environment, ExecutionContext, Executor, RunOptions, RunStatus, Value};
use kinograph_nodes::media::flac::quantize_16;
use kinograph_nodes::values::Audio;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Lossy formats: symphonia's decoders against libavcodec's on the same file. The largest difference
/// measured is 7.5e-7 (MP3); a misaligned sample or frame costs orders of magnitude more.
const LOSSY_TOLERANCE: f32 = 1e-5;
/// Lossless formats decode to the same integers, scaled the same way.
const LOSSLESS_TOLERANCE: f32 = 1e-6;

/// (file, sample rate, channels, lossless)
const FIXTURES: [(&str, u32, usize, bool); 10] = [
    ("tone_s16.wav", 16000, 2, true),
    ("tone_s24.wav", 22050, 1, true),
    ("tone_f32.wav", 16000, 1, true),
    ("recording.wav", 48000, 1, true),
    ("tone.flac", 16000, 2, true),
    ("tone_s24.flac", 22050, 1, true),
    ("tone.mp3", 44100, 2, false),
    ("tone.aac", 22050, 1, false),
    ("tone.m4a", 16000, 2, false),
    ("tone.ogg", 22050, 2, false),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/audio")
}

/// ffmpeg's decode of a fixture, one vector per channel.
fn reference(name: &str, channels: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(data_dir().join(format!("{name}.f32"))).unwrap();
    let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (0..channels).map(|channel| values.iter().skip(channel).step_by(channels).copied().collect()).collect()
}

fn load(env: &Environment, name: &str) -> Result<Arc<Audio>, kinograph_engine::NodeError> {
    let context = ExecutionContext::detached("1", "LoadAudio", env.clone());
    let output = node("LoadAudio").execute(&inputs(vec![("audio", Value::String(name.into()))]), &context)?;
    Ok(output.values[0].downcast::<Audio>().unwrap())
}

/// The waveform of item 0 of the batch, one vector per channel.
fn channels(audio: &Audio) -> Vec<Vec<f32>> {
    audio.waveform.get(0).unwrap().to_vec2::<f32>().unwrap()
}

fn audio_value(channels: &[Vec<f32>], sample_rate: u32) -> Arc<Audio> {
    let samples = channels[0].len();
    let waveform = Tensor::from_vec(channels.concat(), (1, channels.len(), samples), &Device::Cpu).unwrap();
    Arc::new(Audio::new(waveform, sample_rate))
}

fn ffmpeg_available() -> bool {
    let found = Command::new("ffprobe").arg("-version").output().is_ok_and(|out| out.status.success())
        && Command::new("ffmpeg").arg("-version").output().is_ok_and(|out| out.status.success());
    if !found {
        println!("skipped: ffmpeg is not installed (apt-get install ffmpeg)");
    }
    found
}

/// ffprobe's JSON for the first audio stream and the container tags.
fn ffprobe(path: &Path) -> Json {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .arg("stream=codec_name,sample_rate,channels,sample_fmt,bits_per_raw_sample,duration_ts:format_tags")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// ffmpeg's decode of `path` as signed 16-bit integers, interleaved.
fn ffmpeg_s16(path: &Path) -> Vec<i16> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// A stereo test signal that hits the quantiser's edges: half-steps, full scale and beyond.
fn edge_signal(samples: usize) -> Vec<Vec<f32>> {
    let mut left: Vec<f32> = (0..samples).map(|i| 0.8 * (i as f32 * 0.05).sin()).collect();
    let mut right: Vec<f32> = (0..samples).map(|i| 1.3 * (i as f32 * 0.031).cos()).collect();
    let edges = [0.5 / 32768.0, 1.5 / 32768.0, -2.5 / 32768.0, 1.0, -1.0, 32767.5 / 32768.0, -1.5, 2.0];
    left[..edges.len()].copy_from_slice(&edges);
    right[..edges.len()].copy_from_slice(&edges.map(|edge| -edge));
    vec![left, right]
}

#[test]
fn every_format_loads_with_ffmpegs_rate_channels_and_samples() {
    let env = Environment { input_dir: data_dir(), ..Environment::default() };
    for (name, rate, channel_count, lossless) in FIXTURES {
        let audio = load(&env, name).unwrap_or_else(|error| panic!("{name}: {error}"));
        let expected = reference(name, channel_count);
        assert_eq!(audio.sample_rate, rate, "{name}: sample rate");
        assert_eq!(audio.waveform.dims(), [1, channel_count, expected[0].len()], "{name}: [1, channels, samples]");
        let tolerance = if lossless { LOSSLESS_TOLERANCE } else { LOSSY_TOLERANCE };
        let mut largest = 0.0_f32;
        for (ours, theirs) in channels(&audio).iter().zip(&expected) {
            for (a, b) in ours.iter().zip(theirs) {
                largest = largest.max((a - b).abs());
            }
        }
        println!("{name}: {} samples, largest difference from ffmpeg {largest:e}", expected[0].len());
        assert!(largest <= tolerance, "{name}: differs from ffmpeg's decode by {largest}");
    }
}

#[test]
fn the_signal_survives_lossless_files_and_channels_stay_in_order() {
    // The fixtures hold 0.5 sin(440 Hz) on the left and 0.3 sin(660 Hz) + 0.2 sin(440 Hz) on the right.
    let env = Environment { input_dir: data_dir(), ..Environment::default() };
    let audio = load(&env, "tone_f32.wav").unwrap();
    let left = &channels(&audio)[0];
    for (index, sample) in left.iter().enumerate() {
        let expected = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * index as f64 / 16000.0).sin();
        assert!((f64::from(*sample) - expected).abs() < 1e-6, "sample {index}: {sample} vs {expected}");
    }
    let stereo = channels(&load(&env, "tone.flac").unwrap());
    let at = 7;
    let t = at as f64 / 16000.0;
    let right =
        0.3 * (2.0 * std::f64::consts::PI * 660.0 * t).sin() + 0.2 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
    assert!((f64::from(stereo[1][at]) - right).abs() < 1.0 / 32768.0, "the right channel is the right one");
}

#[test]
fn a_record_audio_upload_loads_from_the_temp_folder() {
    // The frontend's recorder uploads `recording-<ms>.wav` to temp/audio and names it `audio/… [temp]`.
    let folders = folders();
    let temp = kinograph_nodes::nodes::image::temp_dir(&folders.env).join("audio");
    std::fs::create_dir_all(&temp).unwrap();
    std::fs::copy(data_dir().join("recording.wav"), temp.join("recording-1733400000000.wav")).unwrap();
    let audio = load(&folders.env, "audio/recording-1733400000000.wav [temp]").unwrap();
    assert_eq!((audio.sample_rate, audio.waveform.dims()), (48000, [1, 1, 9600].as_slice()));
    assert_eq!(channels(&audio), reference("recording.wav", 1));
}

#[test]
fn damaged_files_are_errors_that_name_the_file_and_the_formats() {
    let folders = folders();
    let flac = std::fs::read(data_dir().join("tone.flac")).unwrap();
    let mp3 = std::fs::read(data_dir().join("tone.mp3")).unwrap();
    let wav = std::fs::read(data_dir().join("tone_s16.wav")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("noise.wav", (0..3000_u32).map(|i| (i * 7919 % 251) as u8).collect(), "not a readable audio file"),
        ("empty.mp3", Vec::new(), "not a readable audio file"),
        ("header_only.wav", wav[..30].to_vec(), "not a readable audio file"),
        ("half.wav", wav[..wav.len() / 2].to_vec(), "truncated"),
        ("short.mp3", mp3[..mp3.len() * 6 / 10].to_vec(), "truncated"),
        ("cut.flac", flac[..flac.len() - 1].to_vec(), "truncated"),
    ];
    for (name, bytes, why) in cases {
        std::fs::write(folders.env.input_dir.join(name), bytes).unwrap();
        let error = load(&folders.env, name).err().unwrap_or_else(|| panic!("{name} loads")).to_string();
        assert!(error.contains(name), "{error}");
        assert!(error.contains(why), "{name}: {error}");
        assert!(error.contains("WAV, FLAC, MP3, AAC"), "{error}");
    }
}

#[test]
fn load_audio_lists_checks_and_fingerprints_its_file() {
    let folders = folders();
    for name in ["b.flac", "a.mp3", "c.M4A", "notes.txt", "picture.png"] {
        std::fs::write(folders.env.input_dir.join(name), b"").unwrap();
    }
    let loader = node("LoadAudio");
    let schema = loader.schema(&folders.env);
    assert_eq!(
        schema.object_info()["input"]["required"]["audio"][0],
        json!(["a.mp3", "b.flac", "c.M4A"]),
        "the combo lists the input folder's audio files"
    );
    let path = folders.env.input_dir.join("take.wav");
    std::fs::copy(data_dir().join("tone_s16.wav"), &path).unwrap();
    let chosen = inputs(vec![("audio", Value::String("take.wav".into()))]);
    assert!(loader.validate(&chosen, &folders.env).is_empty());
    let first = loader.fingerprint(&chosen, &folders.env).unwrap();
    assert_eq!(loader.fingerprint(&chosen, &folders.env).unwrap(), first);
    std::fs::copy(data_dir().join("recording.wav"), &path).unwrap();
    assert_ne!(loader.fingerprint(&chosen, &folders.env).unwrap(), first, "a changed file runs again");

    let missing = inputs(vec![("audio", Value::String("gone.wav".into()))]);
    let errors = loader.validate(&missing, &folders.env);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("Invalid audio file: gone.wav"), "{}", errors[0].1);
    let escaping = inputs(vec![("audio", Value::String("../secret.wav".into()))]);
    assert!(loader.validate(&escaping, &folders.env)[0].1.contains("inside the folder"));
    assert!(load(&folders.env, "gone.wav").unwrap_err().to_string().contains("gone.wav"));
}

#[test]
fn the_audio_nodes_have_comfyuis_schemas() {
    let folders = folders();
    let info = |class: &str| {
        let mut info = node(class).schema(&folders.env).object_info();
        info.as_object_mut().unwrap().remove("python_module");
        info
    };
    assert_eq!(
        info("SaveAudio"),
        json!({
            "input": {"required": {"audio": ["AUDIO"], "filename_prefix": ["STRING", {"default": "audio/ComfyUI"}]}},
            "input_order": {"required": ["audio", "filename_prefix"]},
            "output": [], "output_is_list": [], "output_name": [],
            "name": "SaveAudio", "display_name": "Save Audio (FLAC)", "description": "",
            "category": "audio", "output_node": true
        })
    );
    assert_eq!(info("PreviewAudio")["input"], json!({"required": {"audio": ["AUDIO"]}}));
    assert_eq!(info("PreviewAudio")["output_node"], json!(true));
    assert_eq!(info("PreviewAudio")["display_name"], "Preview Audio");
    assert_eq!(info("LoadAudio")["output"], json!(["AUDIO"]));
    assert_eq!(info("LoadAudio")["display_name"], "Load Audio");
    assert_eq!(info("LoadAudio")["category"], "audio");
    // ComfyUI's ±(2^64 − 1), as the double the frontend reads it as.
    let bound = u64::MAX as f64;
    assert_eq!(
        info("TrimAudioDuration"),
        json!({
            "input": {"required": {
                "audio": ["AUDIO"],
                "start_index": ["FLOAT", {"default": 0.0, "min": -bound, "max": bound, "step": 0.01,
                    "tooltip": "Start time in seconds, can be negative to count from the end (supports sub-seconds)."}],
                "duration": ["FLOAT", {"default": 60.0, "min": 0.0, "step": 0.01, "tooltip": "Duration in seconds"}]
            }},
            "input_order": {"required": ["audio", "start_index", "duration"]},
            "output": ["AUDIO"], "output_is_list": [false], "output_name": ["AUDIO"],
            "name": "TrimAudioDuration", "display_name": "Trim Audio Duration",
            "description": "Trim audio tensor into chosen time range.", "category": "audio", "output_node": false
        })
    );
}

#[test]
fn save_audio_writes_numbered_16_bit_flacs_that_load_back_quantised() {
    let folders = folders();
    let signal = edge_signal(5000);
    let context = ExecutionContext::detached("7", "SaveAudio", folders.env.clone());
    let values = inputs(vec![
        ("audio", Value::Object(audio_value(&signal, 24000))),
        ("filename_prefix", Value::String("audio/ComfyUI".into())),
    ]);
    let save = node("SaveAudio");
    let ui = save.execute(&values, &context).unwrap().ui.unwrap();
    assert_eq!(ui, json!({"audio": [{"filename": "ComfyUI_00001_.flac", "subfolder": "audio", "type": "output"}]}));
    let second = save.execute(&values, &context).unwrap().ui.unwrap();
    assert_eq!(second["audio"][0]["filename"], "ComfyUI_00002_.flac");

    let quantised: Vec<Vec<f32>> =
        signal.iter().map(|channel| channel.iter().map(|&x| quantize_16(x) as f32 / 32768.0).collect()).collect();
    let output_env = Environment { input_dir: folders.env.output_dir.clone(), ..folders.env.clone() };
    let back = load(&output_env, "audio/ComfyUI_00001_.flac").unwrap();
    assert_eq!(back.sample_rate, 24000);
    assert_eq!(channels(&back), quantised, "lossless after quantising to 16 bits");
    assert_eq!(
        channels(&back)[0][..8],
        [0.0, 2.0, -2.0, 32767.0, -32768.0, 32767.0, -32768.0, 32767.0].map(|v| v / 32768.0)
    );

    if !ffmpeg_available() {
        return;
    }
    let path = folders.env.output_dir.join("audio/ComfyUI_00001_.flac");
    let stream = &ffprobe(&path)["streams"][0];
    assert_eq!(stream["codec_name"], "flac");
    assert_eq!(stream["sample_rate"], "24000");
    assert_eq!(stream["channels"], 2);
    assert_eq!(stream["sample_fmt"], "s16");
    // ffmpeg's own FLAC encoder, given the same floats the way ComfyUI's PyAV gives them, stores the
    // same integers: the quantisation is libswresample's.
    let raw = folders.env.output_dir.join("signal.f32");
    let interleaved: Vec<u8> =
        (0..5000).flat_map(|i| [signal[0][i], signal[1][i]]).flat_map(f32::to_le_bytes).collect();
    std::fs::write(&raw, interleaved).unwrap();
    let by_ffmpeg = folders.env.output_dir.join("by_ffmpeg.flac");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "f32le", "-ar", "24000", "-ac", "2", "-i"])
        .arg(&raw)
        .args(["-c:a", "flac", "-sample_fmt", "s16"])
        .arg(&by_ffmpeg)
        .status()
        .unwrap();
    assert!(status.success());
    let ours = ffmpeg_s16(&path);
    assert_eq!(ours.len(), 10000);
    assert_eq!(ours, ffmpeg_s16(&by_ffmpeg));
}

#[test]
fn save_audio_writes_one_file_per_batch_item_and_preview_goes_to_temp() {
    let folders = folders();
    let context = ExecutionContext::detached("7", "SaveAudio", folders.env.clone());
    let mono: Vec<f32> = (0..300).map(|i| (i as f32 / 300.0) - 0.5).collect();
    let batch = Tensor::from_vec([mono.clone(), mono.iter().map(|x| -x).collect()].concat(), (2, 1, 300), &Device::Cpu)
        .unwrap();
    let audio = Arc::new(Audio::new(batch, 8000));
    let values = inputs(vec![
        ("audio", Value::Object(audio.clone())),
        ("filename_prefix", Value::String("takes/take_%batch_num%".into())),
    ]);
    let ui = node("SaveAudio").execute(&values, &context).unwrap().ui.unwrap();
    assert_eq!(
        ui,
        json!({"audio": [
            {"filename": "take_0_00001_.flac", "subfolder": "takes", "type": "output"},
            {"filename": "take_1_00001_.flac", "subfolder": "takes", "type": "output"},
        ]})
    );
    let output_env = Environment { input_dir: folders.env.output_dir.clone(), ..folders.env.clone() };
    let second = channels(&load(&output_env, "takes/take_1_00001_.flac").unwrap());
    assert_eq!(second[0], mono.iter().map(|&x| quantize_16(-x) as f32 / 32768.0).collect::<Vec<_>>());

    let preview = node("PreviewAudio").execute(&inputs(vec![("audio", Value::Object(audio))]), &context).unwrap();
    let entries = preview.ui.unwrap()["audio"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    let temp = kinograph_nodes::nodes::image::temp_dir(&folders.env);
    for entry in entries {
        assert_eq!((entry["type"].as_str(), entry["subfolder"].as_str()), (Some("temp"), Some("")));
        let filename = entry["filename"].as_str().unwrap();
        assert!(filename.starts_with("ComfyUI_temp_") && filename.ends_with("_.flac"), "{filename}");
        assert!(temp.join(filename).is_file());
    }

    let bad = inputs(vec![
        ("audio", Value::Object(audio_value(&vec![vec![0.0; 4]; 9], 8000))),
        ("filename_prefix", Value::String("many".into())),
    ]);
    let error = node("SaveAudio").execute(&bad, &context).unwrap_err().to_string();
    assert!(error.contains("audio") && error.contains("has 9"), "{error}");
    let escaping = inputs(vec![
        ("audio", Value::Object(audio_value(&[mono], 8000))),
        ("filename_prefix", Value::String("../out".into())),
    ]);
    assert!(node("SaveAudio").execute(&escaping, &context).unwrap_err().to_string().contains("filename_prefix"));
}

fn trim(audio: &Arc<Audio>, start_index: f64, duration: f64) -> Result<Arc<Audio>, kinograph_engine::NodeError> {
    let context = ExecutionContext::detached("3", "TrimAudioDuration", Environment::default());
    let values = inputs(vec![
        ("audio", Value::Object(audio.clone())),
        ("start_index", Value::Float(start_index)),
        ("duration", Value::Float(duration)),
    ]);
    node("TrimAudioDuration").execute(&values, &context).map(|output| output.values[0].downcast::<Audio>().unwrap())
}

#[test]
fn trim_audio_duration_cuts_like_comfyui() {
    // Two channels of 100 samples at 100 Hz: the left is the sample index, the right its negative.
    let ramp: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let audio = audio_value(&[ramp.clone(), ramp.iter().map(|x| -x).collect()], 100);
    let range = |trimmed: &Audio| {
        let left = &channels(trimmed)[0];
        (left[0] as usize, left.len())
    };
    assert_eq!(range(&trim(&audio, 0.0, 60.0).unwrap()), (0, 100), "the defaults keep everything");
    assert_eq!(range(&trim(&audio, 0.25, 0.5).unwrap()), (25, 50));
    assert_eq!(range(&trim(&audio, -0.3, 60.0).unwrap()), (70, 30), "a negative start counts from the end");
    assert_eq!(range(&trim(&audio, -0.3, 0.1).unwrap()), (70, 10));
    assert_eq!(range(&trim(&audio, -9.0, 0.2).unwrap()), (0, 20), "a start before the beginning is the beginning");
    assert_eq!(range(&trim(&audio, 0.125, 0.015).unwrap()), (12, 2), "12.5 and 1.5 samples round half to even");
    assert_eq!(range(&trim(&audio, 5.0, 1.0).unwrap()), (99, 1), "ComfyUI 0.3.64 keeps the last sample");
    let trimmed = trim(&audio, 0.5, 0.1).unwrap();
    assert_eq!((trimmed.sample_rate, trimmed.waveform.dims()), (100, [1, 2, 10].as_slice()));
    assert_eq!(channels(&trimmed)[1][0], -50.0, "every channel is cut the same");
    let error = trim(&audio, 0.5, 0.0).unwrap_err().to_string();
    assert!(error.contains("Start time must be less than end time"), "{error}");
}

#[test]
fn a_workflow_loads_trims_and_saves_audio_with_its_prompt_and_workflow() {
    let folders = folders();
    std::fs::copy(data_dir().join("tone.flac"), folders.env.input_dir.join("tone.flac")).unwrap();
    let prompt = json!({
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "tone.flac"}},
        "2": {"class_type": "TrimAudioDuration", "inputs": {"audio": ["1", 0], "start_index": -0.1, "duration": 60.0}},
        "3": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "audio/ComfyUI"}},
        "4": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}},
    });
    let workflow = json!({"nodes": [{"id": 1, "type": "LoadAudio"}], "links": []});
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), folders.env.clone());
    let api = kinograph_engine::workflow::ApiPrompt::from_json(prompt, "test").unwrap();
    let graph = executor.validate(&api).unwrap_or_else(|report| panic!("{}", report.to_text()));
    let options = RunOptions { extra_pnginfo: json!({"workflow": workflow}), ..RunOptions::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let outcome = runtime.block_on(executor.run(Arc::new(graph), options));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    assert_eq!(outcome.outputs["3"]["audio"][0]["filename"], "ComfyUI_00001_.flac");

    // The last 0.1 s of the 16-bit file, saved as 16 bits again: the same samples.
    let expected: Vec<Vec<f32>> = reference("tone.flac", 2).iter().map(|channel| channel[3200..].to_vec()).collect();
    let output_env = Environment { input_dir: folders.env.output_dir.clone(), ..folders.env.clone() };
    let saved = load(&output_env, "audio/ComfyUI_00001_.flac").unwrap();
    assert_eq!(channels(&saved), expected);
    if ffmpeg_available() {
        let probe = ffprobe(&folders.env.output_dir.join("audio/ComfyUI_00001_.flac"));
        let tags = &probe["format"]["tags"];
        let tagged: Json = serde_json::from_str(tags["workflow"].as_str().expect("a workflow tag")).unwrap();
        assert_eq!(tagged, workflow);
        let saved_prompt: Json = serde_json::from_str(tags["prompt"].as_str().expect("a prompt tag")).unwrap();
        assert_eq!(saved_prompt["2"]["class_type"], "TrimAudioDuration");
    }
}
