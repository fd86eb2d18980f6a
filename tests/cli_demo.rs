//! `kinograph demo`, the built-in default: tiny models written on the spot, text-to-video and
//! image-to-video run, and MP4s that ffprobe reads as H.264 yuv420p with the right frame count and rate
//! and the workflow in their metadata; the MP4 runs again with `kinograph run`. The ffprobe checks skip
//! (saying so) only where ffprobe is not installed; CI installs ffmpeg.

use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;

fn demo(root: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph"))
        .current_dir(root)
        .arg("demo")
        .args(["--events", "json"])
        .args(extra)
        .output()
        .expect("kinograph runs")
}

fn ffprobe(path: &Path) -> Option<Json> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames:format_tags")
        .args(["-of", "json"])
        .arg(path)
        .output();
    match output {
        Ok(output) if output.status.success() => Some(serde_json::from_slice(&output.stdout).unwrap()),
        Ok(output) => panic!("ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&output.stderr)),
        Err(_) => {
            println!("skipped the ffprobe checks: ffprobe is not installed (apt-get install ffmpeg)");
            None
        }
    }
}

fn check_video(path: &Path, loader: &str) {
    assert!(path.is_file(), "{} was written", path.display());
    let Some(probe) = ffprobe(path) else { return };
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(256), Some(192)));
    assert_eq!(stream["nb_read_frames"], "25");
    assert_eq!(stream["r_frame_rate"], "25/1");
    let prompt: Json = serde_json::from_str(probe["format"]["tags"]["prompt"].as_str().expect("prompt tag")).unwrap();
    let classes: Vec<&str> =
        prompt.as_object().unwrap().values().filter_map(|node| node["class_type"].as_str()).collect();
    assert!(classes.contains(&"SaveVideo") && classes.contains(&loader), "{classes:?}");
    // And the same graph in the UI format, for node editors.
    let workflow: Json =
        serde_json::from_str(probe["format"]["tags"]["workflow"].as_str().expect("workflow tag")).unwrap();
    assert_eq!(workflow["nodes"].as_array().map(Vec::len), Some(classes.len()));
}

#[test]
fn the_demo_writes_videos_that_players_open_and_that_run_again() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(root.path(), &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<Json> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(events.iter().any(|event| event["type"] == "execution_success"));
    let steps = events.iter().filter(|event| event["type"] == "progress" && event["data"]["node"] == "72").count();
    assert_eq!(steps, 8, "one progress event per sampler step");
    assert!(root.path().join("models/checkpoints/ltxv-demo-tiny.safetensors").is_file());
    assert!(root.path().join("models/text_encoders/t5-demo-tiny.safetensors").is_file());
    let first = root.path().join("output/video/demo_t2v_00001_.mp4");
    check_video(&first, "EmptyLTXVLatentVideo");

    let output = demo(root.path(), &["--image-to-video"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(root.path().join("input/kinograph-demo.png").is_file());
    check_video(&root.path().join("output/video/demo_i2v_00001_.mp4"), "LTXVImgToVideo");

    // The MP4 carries its workflow: running it makes the same video again, under the next number.
    let rerun =
        Command::new(env!("CARGO_BIN_EXE_kinograph")).current_dir(root.path()).arg("run").arg(&first).output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    let second = root.path().join("output/video/demo_t2v_00002_.mp4");
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap(), "same seed, same bytes");
}
