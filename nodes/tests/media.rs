//! Image and video files: MP4s that ffprobe and kinograph's own reader accept, PNG text chunks, and the
//! image and video nodes run on real files. The ffprobe checks skip (saying so) only where ffprobe is
//! not installed; CI installs ffmpeg.

#[path = "../../engine/tests/comfy_schemas/mod.rs"]
mod comfy_schemas;

use crate::support::{folders, inputs, node};
use candle_core::{Device, Tensor};
use kinograph_engine::workflow::embedded::extract;
use kinograph_engine::{Environment, ExecutionContext, Executor, NodeSchema, RunOptions, RunStatus, Value};
use kinograph_nodes::media::mp4_writer::Mp4Writer;
use kinograph_nodes::media::png::{load_image, write_png};
use kinograph_nodes::values::{Image, Mask, Video};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn ffprobe_available() -> bool {
    let found = Command::new("ffprobe").arg("-version").output().is_ok_and(|out| out.status.success());
    if !found {
        println!("skipped: ffprobe is not installed (apt-get install ffmpeg)");
    }
    found
}

/// ffprobe's JSON for the first video stream (frames counted by decoding) and the container tags.
fn ffprobe(path: &Path) -> Json {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,profile,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,duration:format_tags")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// The frames ffmpeg decodes from `path`, as RGB bytes.
fn ffmpeg_decode(path: &Path) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// A smooth moving test pattern, RGB bytes.
fn pattern(width: usize, height: usize, frame: usize) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let phase = (x + 2 * frame) as f32 / width as f32;
            rgb.push((255.0 * phase.fract()) as u8);
            rgb.push((255.0 * y as f32 / height as f32) as u8);
            rgb.push((128.0 + 100.0 * ((x + y) as f32 * 0.1 + frame as f32 * 0.3).sin()) as u8);
        }
    }
    rgb
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "same number of samples");
    let mse = a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y)).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0_f64.powi(2) / mse).log10()
}

fn metadata() -> Vec<(String, String)> {
    vec![
        ("prompt".into(), json!({"1": {"class_type": "SaveVideo", "inputs": {"text": "ünïcode ✓"}}}).to_string()),
        ("workflow".into(), json!({"nodes": [], "links": [], "version": 0.4}).to_string()),
    ]
}

#[test]
fn a_written_mp4_is_h264_yuv420p_with_its_frames_rate_size_and_tags() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("clip.mp4");
    let (width, height, frames) = (96, 64, 12);
    let mut writer = Mp4Writer::create(&path, width, height, 24.0, &metadata()).unwrap();
    let mut source = Vec::new();
    for frame in 0..frames {
        let rgb = pattern(width, height, frame);
        writer.write_frame(&rgb).unwrap();
        source.extend(rgb);
    }
    assert_eq!(writer.frame_count(), frames);
    writer.finish().unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let embedded = extract(&bytes).expect("kinograph reads the metadata back");
    assert_eq!(embedded.prompt.as_deref(), Some(metadata()[0].1.as_str()));
    assert_eq!(embedded.workflow.as_deref(), Some(metadata()[1].1.as_str()));

    if !ffprobe_available() {
        return;
    }
    let probe = ffprobe(&path);
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(96), Some(64)));
    assert_eq!(stream["r_frame_rate"], "24/1");
    assert_eq!(stream["avg_frame_rate"], "24/1");
    assert_eq!(stream["nb_read_frames"], "12");
    assert_eq!(stream["duration"], "0.500000");
    assert_eq!(probe["format"]["tags"]["prompt"].as_str(), Some(metadata()[0].1.as_str()));
    assert_eq!(probe["format"]["tags"]["workflow"].as_str(), Some(metadata()[1].1.as_str()));

    // ffmpeg's decode matches the source up to compression: a wrong colour matrix or range, or a
    // misplaced sample, would cost far more than this.
    let decoded = ffmpeg_decode(&path);
    let psnr = psnr(&decoded, &source);
    println!("PSNR of the video as ffmpeg decodes it: {psnr:.2} dB");
    assert!(psnr > 30.0, "PSNR {psnr:.2} dB");
}

#[test]
fn flat_colours_decode_to_the_same_colours_in_ffmpeg() {
    if !ffprobe_available() {
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("colours.mp4");
    let colours =
        [[255_u8, 0, 0], [0, 255, 0], [0, 0, 255], [30, 140, 200], [250, 250, 10], [0, 0, 0], [255, 255, 255]];
    let mut writer = Mp4Writer::create(&path, 32, 32, 10.0, &[]).unwrap();
    for colour in colours {
        writer.write_frame(&colour.repeat(32 * 32)).unwrap();
    }
    writer.finish().unwrap();
    let decoded = ffmpeg_decode(&path);
    for (frame, colour) in decoded.chunks_exact(32 * 32 * 3).zip(colours) {
        for pixel in frame.chunks_exact(3) {
            for (got, expected) in pixel.iter().zip(colour) {
                assert!(got.abs_diff(expected) <= 3, "{colour:?} decoded as {pixel:?}");
            }
        }
    }
}

#[test]
fn odd_sizes_are_cropped_to_even_and_fractional_rates_are_kept() {
    if !ffprobe_available() {
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("odd.mp4");
    let mut writer = Mp4Writer::create(&path, 35, 21, 29.97, &[]).unwrap();
    for frame in 0..5 {
        writer.write_frame(&pattern(35, 21, frame)).unwrap();
    }
    assert!(writer.write_frame(&[0; 10]).is_err(), "a frame of the wrong size is refused");
    writer.finish().unwrap();
    let probe = ffprobe(&path);
    let stream = &probe["streams"][0];
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(34), Some(20)));
    assert_eq!(stream["r_frame_rate"], "2997/100");
    assert_eq!(stream["nb_read_frames"], "5");
    assert!(probe["format"].get("tags").is_none_or(|tags| tags.get("prompt").is_none()));
}

#[test]
fn png_text_chunks_round_trip() {
    let rgb = pattern(20, 10, 0);
    let mut bytes = Vec::new();
    write_png(&mut bytes, &rgb, 20, 10, &metadata()).unwrap();
    let embedded = extract(&bytes).unwrap();
    assert_eq!(embedded.prompt.as_deref(), Some(metadata()[0].1.as_str()), "non-Latin-1 text goes to iTXt");
    assert_eq!(embedded.workflow.as_deref(), Some(metadata()[1].1.as_str()));
    let mut chunk_types: Vec<&[u8]> = bytes.windows(4).filter(|w| *w == b"tEXt" || *w == b"iTXt").collect();
    chunk_types.sort_unstable();
    assert_eq!(chunk_types, [b"iTXt".as_slice(), b"tEXt".as_slice()], "one chunk each");
    let loaded = load_image(&bytes).unwrap();
    let back: Vec<u8> = loaded.frames[0].chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(back, rgb);
}

// ---------------------------------------------------------------------------------------------------
// Nodes

fn image_value(width: usize, height: usize, frames: usize) -> Arc<Image> {
    let mut values = Vec::new();
    for frame in 0..frames {
        values.extend(pattern(width, height, frame).iter().map(|&v| f32::from(v) / 255.0));
    }
    Arc::new(Image::new(Tensor::from_vec(values, (frames, height, width, 3), &Device::Cpu).unwrap()))
}

fn write_rgba_png(path: &Path, width: u32, height: u32, alpha: impl Fn(u32, u32) -> u8) {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend([(x * 20) as u8, (y * 30) as u8, 77, alpha(x, y)]);
        }
    }
    image::save_buffer(path, &pixels, width, height, image::ExtendedColorType::Rgba8).unwrap();
}

#[test]
fn the_nodes_match_comfyui_schemas() {
    let folders = folders();
    std::fs::write(folders.env.input_dir.join("ltxv_image_to_video_input_image.jpg"), b"").unwrap();
    std::fs::write(folders.env.input_dir.join("notes.txt"), b"").unwrap();
    // CreateVideo and SaveVideo follow ComfyUI's current schemas, newer than this mirror: see
    // `video_audio::the_video_node_schemas_match_comfyui`.
    let ours: Vec<NodeSchema> =
        ["LoadImage", "LTXVPreprocess"].iter().map(|class| node(class).schema(&folders.env)).collect();
    for mirror in
        comfy_schemas::ltxv_schemas().into_iter().filter(|m| ours.iter().any(|o| o.class_type == m.class_type))
    {
        let schema = ours.iter().find(|o| o.class_type == mirror.class_type).unwrap();
        assert_eq!(schema.display_name, mirror.display_name, "{}", mirror.class_type);
        assert_eq!(schema.output_node, mirror.output_node, "{}", mirror.class_type);
        assert_eq!(schema.outputs.len(), mirror.outputs.len(), "{}", mirror.class_type);
        for (a, b) in schema.outputs.iter().zip(&mirror.outputs) {
            assert_eq!((&a.type_name, &a.name), (&b.type_name, &b.name), "{}", mirror.class_type);
        }
        let strip = |inputs: &[kinograph_engine::InputSpec]| {
            inputs
                .iter()
                .cloned()
                .map(|mut input| {
                    input.tooltip = None;
                    input
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&schema.inputs), strip(&mirror.inputs), "{}", mirror.class_type);
    }
}

#[test]
fn load_image_gives_rgb_and_one_minus_alpha_as_the_mask() {
    let folders = folders();
    write_rgba_png(&folders.env.input_dir.join("cut.png"), 6, 4, |x, y| (x * 40 + y) as u8);
    let context = ExecutionContext::detached("1", "LoadImage", folders.env.clone());
    let output =
        node("LoadImage").execute(&inputs(vec![("image", Value::String("cut.png".into()))]), &context).unwrap();
    let image = output.values[0].downcast::<Image>().unwrap();
    let mask = output.values[1].downcast::<Mask>().unwrap();
    assert_eq!(image.pixels.dims(), [1, 4, 6, 3]);
    assert_eq!(mask.values.dims(), [1, 4, 6]);
    let pixels = image.pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let masks = mask.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for y in 0..4 {
        for x in 0..6 {
            let at = y * 6 + x;
            assert!((pixels[at * 3] - (x * 20) as f32 / 255.0).abs() < 1e-6);
            assert!((pixels[at * 3 + 1] - (y * 30) as f32 / 255.0).abs() < 1e-6);
            let expected = 1.0 - (x * 40 + y) as f32 / 255.0;
            assert!((masks[at] - expected).abs() < 1e-6, "mask at ({x}, {y}): {} vs {expected}", masks[at]);
        }
    }
}

#[test]
fn load_image_without_alpha_gives_a_blank_mask_and_checks_its_file() {
    let folders = folders();
    let path = folders.env.input_dir.join("plain.jpg");
    image::save_buffer(&path, &pattern(16, 8, 0), 16, 8, image::ExtendedColorType::Rgb8).unwrap();
    let loader = node("LoadImage");
    let schema = loader.schema(&folders.env);
    assert_eq!(
        schema.input_spec("image").unwrap().kind,
        kinograph_engine::InputSpec::combo("image", ["plain.jpg"]).image_upload().node_validated().kind,
        "the combo lists the input folder's images"
    );
    let context = ExecutionContext::detached("1", "LoadImage", folders.env.clone());
    let chosen = inputs(vec![("image", Value::String("plain.jpg [input]".into()))]);
    let output = loader.execute(&chosen, &context).unwrap();
    assert_eq!(output.values[0].downcast::<Image>().unwrap().pixels.dims(), [1, 8, 16, 3]);
    let mask = output.values[1].downcast::<Mask>().unwrap();
    assert_eq!(mask.values.dims(), [1, 64, 64]);
    assert_eq!(mask.values.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);

    assert!(loader.validate(&chosen, &folders.env).is_empty());
    let first = loader.fingerprint(&chosen, &folders.env).unwrap();
    image::save_buffer(&path, &pattern(16, 8, 3), 16, 8, image::ExtendedColorType::Rgb8).unwrap();
    assert_ne!(loader.fingerprint(&chosen, &folders.env).unwrap(), first, "a changed file changes the fingerprint");

    let missing = inputs(vec![("image", Value::String("gone.png".into()))]);
    let errors = loader.validate(&missing, &folders.env);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("gone.png") && errors[0].1.contains("does not exist"), "{}", errors[0].1);
    let escaping = inputs(vec![("image", Value::String("../secret.png".into()))]);
    assert!(loader.validate(&escaping, &folders.env)[0].1.contains("inside the folder"));
    assert!(loader.execute(&missing, &context).is_err());
}

fn run_save_video(env: &Environment, prefix: &str, frames: usize) -> Result<Json, kinograph_engine::NodeError> {
    let context = ExecutionContext::detached("9", "SaveVideo", env.clone());
    let video = Video { frames: Image::clone(&image_value(32, 24, frames)), fps: 8.0, audio: None };
    let values = inputs(vec![
        ("video", Value::Object(Arc::new(video))),
        ("filename_prefix", Value::String(prefix.into())),
        ("format", Value::String("auto".into())),
        ("codec", Value::String("h264".into())),
    ]);
    node("SaveVideo").execute(&values, &context).map(|output| output.ui.unwrap())
}

#[test]
fn save_video_numbers_files_and_never_overwrites() {
    let folders = folders();
    let first = run_save_video(&folders.env, "video/ComfyUI", 3).unwrap();
    assert_eq!(
        first,
        json!({"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}], "animated": [true]})
    );
    let folder = folders.env.output_dir.join("video");
    std::fs::write(folder.join("ComfyUI_00004_.png"), b"keep me").unwrap();
    let second = run_save_video(&folders.env, "video/ComfyUI", 2).unwrap();
    assert_eq!(second["images"][0]["filename"], "ComfyUI_00005_.mp4");
    assert_eq!(std::fs::read(folder.join("ComfyUI_00004_.png")).unwrap(), b"keep me");
    let mut names: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["ComfyUI_00001_.mp4", "ComfyUI_00004_.png", "ComfyUI_00005_.mp4"], "no partial files remain");
    if ffprobe_available() {
        assert_eq!(ffprobe(&folder.join("ComfyUI_00001_.mp4"))["streams"][0]["nb_read_frames"], "3");
        assert_eq!(ffprobe(&folder.join("ComfyUI_00005_.mp4"))["streams"][0]["nb_read_frames"], "2");
    }
}

#[test]
fn save_video_into_an_unusable_folder_fails_clearly_and_leaves_nothing() {
    let folders = folders();
    std::fs::write(folders.env.output_dir.with_file_name("blocker"), b"a file, not a folder").unwrap();
    let env =
        Environment { output_dir: folders.env.output_dir.with_file_name("blocker").join("out"), ..folders.env.clone() };
    let error = run_save_video(&env, "video/ComfyUI", 2).unwrap_err().to_string();
    assert!(error.contains("cannot create output folder") && error.contains("blocker"), "{error}");
    assert!(run_save_video(&folders.env, "../escape", 2).unwrap_err().to_string().contains("filename_prefix"));
    assert!(!folders.env.output_dir.with_file_name("escape_00001_.mp4").exists());
}

#[test]
fn create_video_carries_audio_and_refuses_what_is_not_audio() {
    let context = ExecutionContext::detached("2", "CreateVideo", Environment::default());
    let mut values = inputs(vec![("images", Value::Object(image_value(8, 8, 2))), ("fps", Value::Float(12.0))]);
    let output = node("CreateVideo").execute(&values, &context).unwrap();
    let video = output.values[0].downcast::<Video>().unwrap();
    assert_eq!((video.frames.pixels.dims(), video.fps), ([2, 8, 8, 3].as_slice(), 12.0));
    assert!(video.audio.is_none());
    let waveform =
        candle_core::Tensor::zeros((1, 2, 4800), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    values.insert("audio", Value::Object(Arc::new(kinograph_nodes::values::Audio::new(waveform, 24_000))));
    let output = node("CreateVideo").execute(&values, &context).unwrap();
    let video = output.values[0].downcast::<Video>().unwrap();
    let audio = video.audio.as_ref().expect("the sound track travels with the video");
    assert_eq!((audio.sample_rate, audio.duration().unwrap()), (24_000, 0.2));
    values.insert("audio", Value::Json(Arc::new(json!({"waveform": []}))));
    let error = node("CreateVideo").execute(&values, &context).unwrap_err().to_string();
    assert!(error.contains("audio"), "{error}");
}

#[test]
fn a_workflow_run_saves_a_video_carrying_its_prompt_and_workflow() {
    let folders = folders();
    write_rgba_png(&folders.env.input_dir.join("start.png"), 40, 30, |_, _| 255);
    let prompt = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "start.png"}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 25.0}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/run", "format": "mp4", "codec": "auto"}},
        "4": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 6.0, "lossless": false, "quality": 80, "method": "default"}},
    });
    let workflow = json!({"nodes": [{"id": 1, "type": "LoadImage"}], "links": []});
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), folders.env.clone());
    let api = kinograph_engine::workflow::ApiPrompt::from_json(prompt.clone(), "test").unwrap();
    let graph = executor.validate(&api).expect("the prompt validates");
    let options = RunOptions { extra_pnginfo: json!({"workflow": workflow}), ..RunOptions::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let outcome = runtime.block_on(executor.run(Arc::new(graph), options));
    assert_eq!(outcome.status, RunStatus::Success, "{:?}", outcome.failure);
    let path: PathBuf = folders.env.output_dir.join("video/run_00001_.mp4");
    let embedded = extract(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<Json>(embedded.workflow.as_deref().unwrap()).unwrap(), workflow);
    let saved_prompt: Json = serde_json::from_str(embedded.prompt.as_deref().unwrap()).unwrap();
    assert_eq!(saved_prompt["3"]["class_type"], "SaveVideo");
    // The WebP carries the workflow in its EXIF as `workflow:<JSON>`, as ComfyUI writes it.
    let webp = std::fs::read(folders.env.output_dir.join("anim_00001_.webp")).unwrap();
    let mut decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(webp)).unwrap();
    let exif = image::ImageDecoder::exif_metadata(&mut decoder).unwrap().expect("an EXIF chunk");
    let exif_text = String::from_utf8_lossy(&exif);
    assert!(exif_text.contains(&format!("workflow:{workflow}")), "{exif_text}");
    assert!(exif_text.contains("prompt:{"));
    if ffprobe_available() {
        let probe = ffprobe(&path);
        assert_eq!(probe["streams"][0]["nb_read_frames"], "1");
        assert_eq!(probe["streams"][0]["r_frame_rate"], "25/1");
        let tagged: Json = serde_json::from_str(probe["format"]["tags"]["workflow"].as_str().unwrap()).unwrap();
        assert_eq!(tagged, workflow);
    }
}

#[test]
fn save_image_writes_pngs_with_the_workflow_and_preview_goes_to_temp() {
    let folders = folders();
    let context = ExecutionContext::detached("5", "SaveImage", folders.env.clone());
    let images = image_value(12, 10, 2);
    let values = inputs(vec![
        ("images", Value::Object(images.clone())),
        ("filename_prefix", Value::String("stills/shot".into())),
    ]);
    let ui = node("SaveImage").execute(&values, &context).unwrap().ui.unwrap();
    assert_eq!(
        ui,
        json!({"images": [
            {"filename": "shot_00001_.png", "subfolder": "stills", "type": "output"},
            {"filename": "shot_00002_.png", "subfolder": "stills", "type": "output"},
        ]})
    );
    let second = load_image(&std::fs::read(folders.env.output_dir.join("stills/shot_00002_.png")).unwrap()).unwrap();
    let expected = images.frame_rgb8(1).unwrap();
    let got: Vec<u8> = second.frames[0].chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(got, expected);

    let preview = node("PreviewImage").execute(&inputs(vec![("images", Value::Object(images))]), &context).unwrap();
    let entry = &preview.ui.unwrap()["images"][0];
    assert_eq!(entry["type"], "temp");
    let temp = kinograph_nodes::nodes::image::temp_dir(&folders.env);
    assert!(temp.join(entry["filename"].as_str().unwrap()).is_file());
    assert_ne!(temp, folders.env.output_dir);
}

#[test]
fn save_animated_webp_writes_every_frame() {
    let folders = folders();
    let context = ExecutionContext::detached("6", "SaveAnimatedWEBP", folders.env.clone());
    let values = inputs(vec![
        ("images", Value::Object(image_value(20, 16, 3))),
        ("filename_prefix", Value::String("ComfyUI".into())),
        ("fps", Value::Float(6.0)),
        ("lossless", Value::Bool(true)),
        ("quality", Value::Int(80)),
        ("method", Value::String("fastest".into())),
    ]);
    let schema = node("SaveAnimatedWEBP").schema(&folders.env);
    let lossless = schema.input_spec("lossless").unwrap();
    assert_eq!(lossless.kind, kinograph_engine::InputSpec::boolean("lossless", true).kind, "ComfyUI's default");
    let ui = node("SaveAnimatedWEBP").execute(&values, &context).unwrap().ui.unwrap();
    assert_eq!(ui["animated"], json!([true]));
    let path = folders.env.output_dir.join("ComfyUI_00001_.webp");
    let loaded = load_image(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!((loaded.width, loaded.height, loaded.frames.len()), (20, 16, 3));
    let first: Vec<u8> = loaded.frames[0].chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(first, image_value(20, 16, 1).frame_rgb8(0).unwrap(), "lossless frames are exact");
}

#[test]
fn ltxv_preprocess_keeps_the_shape_and_changes_pixels_by_a_bounded_amount() {
    let context = ExecutionContext::detached("7", "LTXVPreprocess", Environment::default());
    let run = |image: Arc<Image>, compression: i128| {
        let values = inputs(vec![("image", Value::Object(image)), ("img_compression", Value::Int(compression))]);
        node("LTXVPreprocess").execute(&values, &context).unwrap().values[0].downcast::<Image>().unwrap()
    };
    let image = image_value(64, 48, 2);
    let source = image.pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut errors = Vec::new();
    for compression in [10, 25, 40] {
        let output = run(image.clone(), compression);
        assert_eq!(output.pixels.dims(), [2, 48, 64, 3]);
        let pixels = output.pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let error =
            source.iter().zip(&pixels).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>() / source.len() as f64;
        println!("img_compression {compression}: mean absolute change {error:.4}");
        errors.push(error);
    }
    assert!(errors[0] > 0.0 && errors[0] < 0.02, "{errors:?}");
    assert!(errors[1] < 0.04 && errors[2] < 0.08, "{errors:?}");
    assert!(errors[0] < errors[1] && errors[1] < errors[2], "more compression changes more: {errors:?}");

    let odd = run(image_value(33, 17, 1), 35);
    assert_eq!(odd.pixels.dims(), [1, 16, 32, 3], "cropped to even sizes");
    let untouched = run(image.clone(), 0);
    assert!(Arc::ptr_eq(&untouched, &image), "0 passes the image through");
}
