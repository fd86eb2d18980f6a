//! ComfyUI's official LTX-2 templates (`tests/data/comfy-templates/video_ltx2*.json`: 2.0 and 2.3, text and
//! image to video, distilled), unmodified: each converts to an API prompt without a guessed widget and runs
//! end to end on the demo's tiny LTX-2 models placed under the file names it asks for, with only the size,
//! the length and the number of steps set on the command line. Each writes an MP4 with an H.264 video and
//! an AAC sound track that last equally long.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/comfy-templates").join(name)
}

fn kinograph(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph")).current_dir(root).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The demo's LTX-2 models under every file name the five templates load, and their input images.
fn template_folders(root: &Path) {
    let models = root.join("models");
    let written = kinograph_nodes::demo_ltx2::write_ltx2_demo_models(&models).unwrap();
    // The camera-control LoRA the 2.0 templates chain (bypassed there) is any LoRA of the 2.0 transformer.
    let camera = models.join("loras/ltx-2-19b-lora-camera-control-dolly-left.safetensors");
    std::fs::copy(&written.lora, camera).unwrap();
    for image in ["freckled_curly_girl.png", "egyptian_queen.png"] {
        kinograph_nodes::demo::write_demo_image(&root.join("input").join(image)).unwrap();
    }
}

/// What ffprobe says of each stream: codec, size, frames and duration.
fn streams(video: &Path) -> Option<Vec<Json>> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("stream=codec_type,codec_name,width,height,nb_read_frames,duration,sample_rate,channels")
        .args(["-of", "json"])
        .arg(video)
        .output()
        .ok()?;
    let probe: Json = serde_json::from_slice(&probe.stdout).unwrap();
    Some(probe["streams"].as_array().unwrap().clone())
}

/// Converts `name` (no warning may be printed), runs it with `set`, and checks the MP4 it writes: 256×128,
/// `frames` frames, sound at `sample_rate` as long as the video. Returns what the run printed.
fn runs_to_a_video_with_sound(name: &str, set: &[&str], frames: &str, sample_rate: &str) -> String {
    let root = tempfile::tempdir().unwrap();
    template_folders(root.path());
    let path = template(name);
    let path = path.to_str().unwrap();

    let converted = kinograph(root.path(), &["convert", path]);
    assert!(converted.status.success(), "{name}: {}", stderr(&converted));
    assert!(stderr(&converted).trim().is_empty(), "{name} converts without warnings: {}", stderr(&converted));

    let mut args = vec!["run", path];
    for item in set {
        args.extend(["--set", item]);
    }
    let run = kinograph(root.path(), &args);
    assert!(run.status.success(), "{name}: {}", stderr(&run));
    // Every LoRA the template loads applies fully (the 2.3 templates' Gemma LoRA to the text encoder).
    assert!(!stderr(&run).contains("not loaded") && !stderr(&run).contains("none of its"), "{}", stderr(&run));

    let folder = root.path().join("output/video");
    let videos: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(videos.len(), 1, "{name} writes one video: {videos:?}");
    let printed = format!("{}{}", String::from_utf8_lossy(&run.stdout), stderr(&run));
    let Some(streams) = streams(&videos[0]) else {
        println!("skipped the ffprobe checks: ffprobe is not installed (apt-get install ffmpeg)");
        return printed;
    };
    let stream = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind).cloned();
    let video = stream("video").expect("a video stream");
    let audio = stream("audio").unwrap_or_else(|| panic!("{name}: the MP4 has no sound track"));
    assert_eq!(video["codec_name"], "h264", "{name}");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(256), Some(128)), "{name}");
    assert_eq!(video["nb_read_frames"], frames, "{name}");
    assert_eq!(audio["codec_name"], "aac", "{name}");
    assert_eq!((audio["sample_rate"].as_str(), audio["channels"].as_u64()), (Some(sample_rate), Some(2)), "{name}");
    let duration = |stream: &Json| stream["duration"].as_str().unwrap().parse::<f64>().unwrap();
    assert!(
        (duration(&audio) - duration(&video)).abs() < 1e-3,
        "{name}: sound {} s, video {} s",
        duration(&audio),
        duration(&video)
    );
    printed
}

#[test]
fn ltx2_text_to_video() {
    // Stage 1 at half the EmptyImage's size, x2 upsampled; 25 frames at 24 fps; 2 scheduler steps.
    let set = ["92:89.width=256", "92:89.height=128", "92:62.value=25", "92:9.steps=2"];
    runs_to_a_video_with_sound("video_ltx2_t2v.json", &set, "25", "24000");
}

#[test]
fn ltx2_text_to_video_distilled() {
    let set = ["177:131.width=256", "177:131.height=128", "177:113.value=25", "177:176.sigmas=1.0, 0.725, 0.0"];
    runs_to_a_video_with_sound("video_ltx2_t2v_distilled.json", &set, "25", "24000");
}

#[test]
fn ltx2_image_to_video() {
    let set = ["102.resize_type.width=256", "102.resize_type.height=128", "92:62.value=25", "92:9.steps=2"];
    runs_to_a_video_with_sound("video_ltx2_i2v.json", &set, "25", "24000");
}

#[test]
fn ltx23_text_to_video() {
    // Width, height, seconds and fps are primitives of the template's subgraph; its prompt enhancer is on.
    let set = [
        "267:257.value=256",
        "267:258.value=128",
        "267:225.value=1",
        "267:260.value=24",
        "267:252.sigmas=1.0, 0.725, 0.0",
    ];
    runs_to_a_video_with_sound("video_ltx2_3_t2v.json", &set, "25", "48000");
}

#[test]
fn ltx23_image_to_video() {
    let set = [
        "320:312.value=256",
        "320:299.value=128",
        "320:301.value=1",
        "320:300.value=24",
        "320:306.sigmas=1.0, 0.725, 0.0",
    ];
    let printed = runs_to_a_video_with_sound("video_ltx2_3_i2v.json", &set, "25", "48000");
    // The template's switch leaves the prompt enhancer off: its lazy branch never runs.
    assert!(!printed.contains("TextGenerateLTX2Prompt"), "{printed}");

    // Switched on, the enhancer writes the prompt from the text and the input image (Gemma's vision tower).
    let on = [&set[..], &["320:328.value=true"]].concat();
    let printed = runs_to_a_video_with_sound("video_ltx2_3_i2v.json", &on, "25", "48000");
    assert!(printed.contains("TextGenerateLTX2Prompt"), "{printed}");
}
