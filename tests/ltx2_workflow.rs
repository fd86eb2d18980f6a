//! LTX-2 end to end: `kinograph demo --ltx2` writes tiny LTX-2 models of every part under the file names
//! ComfyUI's templates use and runs `workflows/ltx2_text_to_video.json` (two stages, latent upsampler,
//! distilled LoRA, tiled decode, audio decode) to an MP4; and what users meet when an LTX-2 workflow is
//! given the wrong files: an error naming the node, the file and what was expected, and nothing written.

use serde_json::Value as Json;
use std::path::Path;
use std::process::{Command, Output};

fn kinograph(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph")).current_dir(root).args(args).output().expect("kinograph runs")
}

fn stderr(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!text.contains("panicked"), "{text}");
    text
}

fn workflow() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/ltx2_text_to_video.json").display().to_string()
}

#[test]
fn the_ltx2_demo_runs_both_stages_with_sound_to_an_mp4() {
    let root = tempfile::tempdir().unwrap();
    let output = kinograph(root.path(), &["demo", "--ltx2", "--steps", "2", "--events", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in [
        "checkpoints/ltx-2-19b-dev-fp8.safetensors",
        "checkpoints/ltx-2-19b-distilled.safetensors",
        "text_encoders/gemma_3_12B_it_fp4_mixed.safetensors",
        "latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors",
        "loras/ltx-2-19b-distilled-lora-384.safetensors",
        "checkpoints/ltx-2.3-22b-dev-fp8.safetensors",
        "latent_upscale_models/ltx-2.3-spatial-upscaler-x2-1.1.safetensors",
        "loras/ltx_2.3_22b_distilled_1.1_lora_dynamic_fro09_avg_rank_111_bf16.safetensors",
    ] {
        assert!(root.path().join("models").join(file).is_file(), "{file} was written");
    }
    let events: Vec<Json> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(events.iter().any(|event| event["type"] == "execution_success"));
    // Stage 1 takes the scheduler's 2 steps, stage 2 the 3 manual sigmas' steps.
    let steps = |node: &str| events.iter().filter(|e| e["type"] == "progress" && e["data"]["node"] == node).count();
    assert_eq!((steps("15"), steps("24")), (2, 3));
    let ran = |node: &str| events.iter().any(|e| e["type"] == "executing" && e["data"]["node"] == node);
    assert!(ran("17") && ran("19") && ran("27"), "upsampler, LoRA and audio decode ran");

    let video = root.path().join("output/video/demo_ltx2_00001_.mp4");
    assert!(video.is_file());
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,nb_read_frames,duration,sample_rate,channels",
        ])
        .args(["-of", "json"])
        .arg(&video)
        .output();
    let Ok(probe) = probe else {
        println!("skipped the ffprobe checks: ffprobe is not installed (apt-get install ffmpeg)");
        return;
    };
    let probe: Json = serde_json::from_slice(&probe.stdout).unwrap();
    let video_stream = probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(video_stream["codec_name"], "h264");
    // Stage 1 at 192×128, the x2 upsampler doubles it for stage 2.
    assert_eq!((video_stream["width"].as_u64(), video_stream["height"].as_u64()), (Some(384), Some(256)));
    assert_eq!(video_stream["nb_read_frames"], "25");
    // The vocoder's sound as an AAC track of the video's duration: 25 frames at 24 fps, 24 kHz stereo.
    let audio_stream = probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "audio");
    let audio_stream = audio_stream.expect("the MP4 has a sound track");
    assert_eq!(audio_stream["codec_name"], "aac");
    assert_eq!((audio_stream["sample_rate"].as_str(), audio_stream["channels"].as_u64()), (Some("24000"), Some(2)));
    let duration = |stream: &Json| stream["duration"].as_str().unwrap().parse::<f64>().unwrap();
    assert!((duration(video_stream) - 25.0 / 24.0).abs() < 1e-5, "{}", duration(video_stream));
    assert!((duration(audio_stream) - duration(video_stream)).abs() < 1e-3, "{}", duration(audio_stream));

    // Same seeds, same files: a second run of the workflow gives the same frames.
    let rerun = kinograph(
        root.path(),
        &[
            "run",
            &workflow(),
            "--set",
            "8.width=192",
            "--set",
            "8.height=128",
            "--set",
            "8.length=25",
            "--set",
            "9.frames_number=25",
            "--set",
            "11.steps=2",
            "--set",
            "29.filename_prefix=video/again",
        ],
    );
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let frames = |path: &Path| {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "rawvideo", "-"])
            .output()
            .unwrap();
        out.stdout
    };
    assert_eq!(frames(&video), frames(&root.path().join("output/video/again_00001_.mp4")));
}

/// Writes the LTX-2 demo models and the LTX-Video ones beside them.
fn models(root: &Path) {
    kinograph_nodes::demo_ltx2::write_ltx2_demo_models(&root.join("models")).unwrap();
    kinograph_nodes::demo::write_demo_models(&root.join("models")).unwrap();
}

fn run_with(root: &Path, set: &[&str]) -> Output {
    let mut args = vec!["run".to_string(), workflow(), "--set".into(), "11.steps=1".into()];
    for item in set {
        args.extend(["--set".to_string(), (*item).to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kinograph(root, &args)
}

#[test]
fn an_ltx_video_checkpoint_given_to_the_audio_vae_loader_names_the_file_and_the_part() {
    let root = tempfile::tempdir().unwrap();
    models(root.path());
    let output = run_with(root.path(), &["3.ckpt_name=ltxv-demo-tiny.safetensors"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("LTXVAudioVAELoader") && text.contains("ltxv-demo-tiny.safetensors"), "{text}");
    assert!(text.contains("no audio VAE") && text.contains("LTX-Video 0.9 checkpoint"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing written");
}

#[test]
fn a_text_encoder_that_is_not_gemma_3_names_the_file() {
    let root = tempfile::tempdir().unwrap();
    models(root.path());
    let output = run_with(root.path(), &["2.text_encoder=t5-demo-tiny.safetensors"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("LTXAVTextEncoderLoader") && text.contains("t5-demo-tiny.safetensors"), "{text}");
    assert!(text.contains("Gemma 3"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing written");
}

#[test]
fn an_ltx_video_checkpoint_as_the_connector_source_names_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    models(root.path());
    let output = run_with(root.path(), &["2.ckpt_name=ltxv-demo-tiny.safetensors"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("ltxv-demo-tiny.safetensors") && text.contains("text"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing written");
}

#[test]
fn an_ltx_video_checkpoint_as_the_ltx2_model_names_the_file_and_what_is_expected() {
    let root = tempfile::tempdir().unwrap();
    models(root.path());
    let output = run_with(root.path(), &["1.ckpt_name=ltxv-demo-tiny.safetensors", "8.width=192", "8.height=128"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("SamplerCustomAdvanced") && text.contains("ltxv-demo-tiny.safetensors"), "{text}");
    assert!(text.contains("only LTX-2 models") && text.contains("LTX-Video 0.9"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing written");
}

/// An audio VAE whose config does not fit its weights (a file re-saved with 32 mel bins, whose latent would
/// not fit the transformer's audio stream either): the loader names the file, the tensor and the shape.
#[test]
fn a_mismatched_audio_vae_names_the_file_and_the_tensor() {
    let root = tempfile::tempdir().unwrap();
    models(root.path());
    let checkpoints = root.path().join("models/checkpoints");
    let bytes = std::fs::read(checkpoints.join("ltx-2-19b-dev-fp8.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut config: Json = serde_json::from_str(&header.metadata().as_ref().unwrap()["config"]).unwrap();
    config["audio_vae"]["model"]["params"]["ddconfig"]["mel_bins"] = 32.into();
    config["audio_vae"]["preprocessing"]["mel"]["n_mel_channels"] = 32.into();
    let audio: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("audio_vae.") || name.starts_with("vocoder."))
        .collect();
    let metadata = std::collections::HashMap::from([("config".to_string(), config.to_string())]);
    safetensors::serialize_to_file(audio, Some(metadata), &checkpoints.join("audio-vae-32-mels.safetensors")).unwrap();

    let output = run_with(root.path(), &["3.ckpt_name=audio-vae-32-mels.safetensors"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("LTXVAudioVAELoader") && text.contains("audio-vae-32-mels.safetensors"), "{text}");
    assert!(text.contains("audio_vae.per_channel_statistics") && text.contains("expected [64]"), "{text}");
    assert!(!root.path().join("output").exists(), "nothing written");
}
