//! `kinograph run` of ComfyUI's LTX-Video workflows on tiny models against a reference that runs
//! ComfyUI's maths in PyTorch (`tools/fixtures/make_pipeline_fixtures.py`, data in
//! `tests/data/pipeline/`): text-to-video and image-to-video, same seeds, same weights. Tolerances: the
//! sampled latent within 1e-4 (max abs), the decoded frames within 1/255: each saved 8-bit value is
//! ComfyUI's truncation `(x·255) as u8` of the reference frame, or one step from it where our frame and
//! the reference fall on either side of a step.

use candle_core::{Device, Tensor};
use kinograph_nodes::media::png::load_image;
use kinograph_nodes::nodes::latent::read_latent_file;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pipeline")
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// `kinograph run` of `prompt` (written to `root/name`) on the fixture's models and input folder, with
/// outputs under `root/output`.
pub fn kinograph_run(prompt: &Json, root: &Path, name: &str) -> Output {
    let file = root.join(name);
    std::fs::write(&file, prompt.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kinograph"))
        .arg("run")
        .arg(&file)
        .arg("--models-dir")
        .arg(data().join("models"))
        .arg("--input-dir")
        .arg(data().join("input"))
        .arg("--output-dir")
        .arg(root.join("output"))
        .output()
        .unwrap()
}

/// Runs `workflow` from the fixture folder with a `SaveLatent` of the output `latent` (node id, slot) and a
/// `SaveImage` of node 8 added, and checks the latent, every frame and the video against the reference.
pub fn run_against_reference(workflow: &str, expected: &str, (latent_node, latent_slot): (&str, u64)) {
    let root = tempfile::tempdir().unwrap();
    let mut prompt: Json = serde_json::from_str(&std::fs::read_to_string(data().join(workflow)).unwrap()).unwrap();
    prompt["90"] = json!({"class_type": "SaveLatent", "inputs": {"samples": [latent_node, latent_slot], "filename_prefix": "ref/latent"}});
    prompt["91"] = json!({"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ref/frame"}});
    let output = kinograph_run(&prompt, root.path(), workflow);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let reference = candle_core::safetensors::load(data().join("expected").join(expected), &Device::Cpu).unwrap();
    let latent = read_latent_file(&root.path().join("output/ref/latent_00001_.latent")).unwrap();
    let error = max_abs(&latent, &reference["samples"]);
    assert!(error <= 1e-4, "{workflow}: latent max abs error {error}");

    let frames = &reference["frames"];
    let (count, height, width, _) = frames.dims4().unwrap();
    let mut saved: Vec<PathBuf> =
        std::fs::read_dir(root.path().join("output/ref")).unwrap().flatten().map(|e| e.path()).collect();
    saved.retain(|path| path.extension().is_some_and(|e| e == "png"));
    saved.sort();
    assert_eq!(saved.len(), count, "one PNG per frame");
    let (mut worst, mut off_by_one, mut total) = (0i32, 0usize, 0usize);
    for (index, path) in saved.iter().enumerate() {
        let image = load_image(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!((image.width, image.height), (width, height));
        let expected: Vec<f32> = frames.get(index).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (pixel, rgba) in image.frames[0].chunks_exact(4).enumerate() {
            for channel in 0..3 {
                let theirs = (expected[pixel * 3 + channel] * 255.0).clamp(0.0, 255.0) as i32;
                let difference = (i32::from(rgba[channel]) - theirs).abs();
                worst = worst.max(difference);
                off_by_one += usize::from(difference == 1);
                total += 1;
            }
        }
    }
    assert!(worst <= 1, "{workflow}: frames differ by up to {worst}/255 (limit 1/255)");
    assert!(off_by_one * 100 <= total, "{workflow}: {off_by_one} of {total} values one step off (expected under 1%)");
    println!("{workflow}: latent max abs error {error:e}; frames: {off_by_one} of {total} 8-bit values one step off");
    let videos = std::fs::read_dir(root.path().join("output/video")).unwrap().count();
    assert_eq!(videos, 1, "SaveVideo wrote the MP4");
}

#[test]
fn text_to_video_matches_comfyui_maths() {
    run_against_reference("ltxv_t2v_tiny.json", "ltxv_t2v_tiny.safetensors", ("72", 0));
}

#[test]
fn image_to_video_matches_comfyui_maths() {
    run_against_reference("ltxv_i2v_tiny.json", "ltxv_i2v_tiny.safetensors", ("72", 0));
}
