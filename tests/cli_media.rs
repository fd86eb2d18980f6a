//! End-to-end: the `kinograph` binary loads an image, saves it as a PNG and as an MP4, and runs the
//! workflow stored inside each of those files again.

use kinograph_nodes::media::png::write_png;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

fn run(file: &Path, input: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinograph"))
        .arg("run")
        .arg(file)
        .arg("--input-dir")
        .arg(input)
        .arg("--output-dir")
        .arg(output)
        .output()
        .expect("kinograph runs")
}

fn check(result: &Output) {
    assert!(
        result.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn saved_pngs_and_videos_carry_a_workflow_that_runs_again() {
    let folder = tempfile::tempdir().unwrap();
    let (input, output) = (folder.path().join("input"), folder.path().join("output"));
    std::fs::create_dir_all(&input).unwrap();
    let rgb: Vec<u8> = (0..48 * 32).flat_map(|i| [(i % 48 * 5) as u8, (i / 48 * 8) as u8, 90]).collect();
    let mut png = Vec::new();
    write_png(&mut png, &rgb, 48, 32, &[]).unwrap();
    std::fs::write(input.join("frame.png"), png).unwrap();
    let workflow = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "stills/frame"}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 24}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "video/clip", "format": "auto", "codec": "auto"}},
    });
    let file = folder.path().join("workflow.json");
    std::fs::write(&file, workflow.to_string()).unwrap();

    check(&run(&file, &input, &output));
    let (still, clip) = (output.join("stills/frame_00001_.png"), output.join("video/clip_00001_.mp4"));
    assert!(still.is_file() && clip.is_file());

    // Each file holds the prompt that made it; running the file runs that prompt again.
    check(&run(&still, &input, &output));
    check(&run(&clip, &input, &output));
    for path in ["stills/frame_00002_.png", "stills/frame_00003_.png", "video/clip_00002_.mp4", "video/clip_00003_.mp4"]
    {
        assert!(output.join(path).is_file(), "{path} was written");
    }
    assert_eq!(std::fs::read(output.join("stills/frame_00003_.png")).unwrap(), std::fs::read(&still).unwrap());

    // A saved image can be loaded back from the output folder by its annotated name.
    let reload = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "stills/frame_00001_.png [output]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    });
    std::fs::write(&file, reload.to_string()).unwrap();
    let result = run(&file, &input, &output);
    check(&result);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("wrote") && stdout.contains("ComfyUI_temp_00001_.png"), "{stdout}");
    assert!(folder.path().join("temp/ComfyUI_temp_00001_.png").is_file());

    // A missing file is a validation error that names it.
    let missing = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "nowhere.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    });
    std::fs::write(&file, missing.to_string()).unwrap();
    let result = run(&file, &input, &output);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("Invalid image file: nowhere.png") && stderr.contains("does not exist"), "{stderr}");
}
