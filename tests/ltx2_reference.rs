//! ComfyUI's LTX-2 workflows on tiny models against a reference that runs ComfyUI's maths in PyTorch around
//! diffusers' and transformers' networks (`tools/fixtures/make_ltx2_pipeline_fixtures.py`, data in
//! `tests/data/ltx2_pipeline/`): the templates' stage 1 for text-to-video and for image-to-video
//! (`LTXVImgToVideoInplace`), guides (`LTXVAddGuide`, `LTXVAddLatentGuide`, `LTXVCropGuides`) and a voice
//! reference (`LTXVReferenceAudio`), same files,
//! seeds and sigmas. Each workflow runs through the executor with the
//! built-in nodes plus a test node that writes the `LTXVAudioVAEDecode` waveform as float32 (a FLAC would
//! round it to 16 bits); the workflows' `SaveLatent` nodes write the video and audio latents as float32.
//! Tolerance: 1e-4 max abs on the sampled video latent, the sampled audio latent and the waveform.

use super::ltxv_reference::max_abs;
use candle_core::{Device, Tensor};
use kinograph_engine::prelude::*;
use kinograph_engine::{ApiPrompt, Executor, ModelFolders, RunOptions, RunStatus};
use kinograph_nodes::nodes::latent::read_latent_file;
use kinograph_nodes::values::Audio;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltx2_pipeline")
}

/// `SaveWaveformTensor` (test only): the waveform of an AUDIO as float32 safetensors, `<prefix>.safetensors`
/// in the output folder, with its sample rate as a one-element tensor.
struct SaveWaveformTensor;

impl Node for SaveWaveformTensor {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("SaveWaveformTensor")
            .category("testing")
            .input(InputSpec::socket("audio", "AUDIO"))
            .input(InputSpec::string("filename_prefix", "waveform"))
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let audio = inputs.object::<Audio>("audio")?;
        let path = context.env().output_dir.join(format!("{}.safetensors", inputs.string("filename_prefix")?));
        let rate = Tensor::new(&[audio.sample_rate as f32], &Device::Cpu).map_err(NodeError::other)?;
        let waveform = audio.waveform.to_device(&Device::Cpu).map_err(NodeError::other)?;
        let tensors = HashMap::from([("waveform".to_string(), waveform), ("sample_rate".to_string(), rate)]);
        std::fs::create_dir_all(&context.env().output_dir).map_err(NodeError::other)?;
        candle_core::safetensors::save(&tensors, &path).map_err(NodeError::other)?;
        Ok(NodeOutput::new(Vec::new()))
    }
}

/// What a workflow run left in `output`: the video latent, the audio latent, the waveform and its rate.
struct RunResult {
    video: Tensor,
    audio: Tensor,
    waveform: Tensor,
    sample_rate: f32,
}

fn run_workflow(name: &str, output: &Path) -> RunResult {
    let mut prompt: Json = serde_json::from_str(&std::fs::read_to_string(data().join(name)).unwrap()).unwrap();
    prompt["90"] =
        json!({"class_type": "SaveWaveformTensor", "inputs": {"audio": ["17", 0], "filename_prefix": "waveform"}});
    let mut registry = kinograph_nodes::registry();
    registry.register(SaveWaveformTensor).unwrap();
    let env = Environment {
        output_dir: output.to_path_buf(),
        input_dir: data().join("input"),
        models: ModelFolders::new(data().join("models")),
    };
    let executor = Executor::new(Arc::new(registry), env);
    let prompt = ApiPrompt::parse(&prompt.to_string(), "test").unwrap();
    let graph = Arc::new(executor.validate(&prompt).unwrap_or_else(|report| panic!("{name}: {report:?}")));
    let outcome = tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, RunOptions::default()));
    assert_eq!(outcome.status, RunStatus::Success, "{name}: {:?}", outcome.failure);
    let saved = candle_core::safetensors::load(output.join("waveform.safetensors"), &Device::Cpu).unwrap();
    RunResult {
        video: read_latent_file(&output.join("ltx2/video_00001_.latent")).unwrap(),
        audio: read_latent_file(&output.join("ltx2/audio_00001_.latent")).unwrap(),
        waveform: saved["waveform"].clone(),
        sample_rate: saved["sample_rate"].to_vec1::<f32>().unwrap()[0],
    }
}

fn check_against_reference(name: &str) {
    let root = tempfile::tempdir().unwrap();
    let result = run_workflow(&format!("{name}.json"), root.path());
    let reference =
        candle_core::safetensors::load(data().join("expected").join(format!("{name}.safetensors")), &Device::Cpu)
            .unwrap();
    let mut errors = Vec::new();
    for (what, ours, theirs) in [
        ("video latent", &result.video, &reference["video_samples"]),
        ("audio latent", &result.audio, &reference["audio_samples"]),
        ("waveform", &result.waveform, &reference["waveform"]),
    ] {
        assert_eq!(ours.dims(), theirs.dims(), "{name}: {what} shape");
        errors.push((what, max_abs(ours, theirs)));
    }
    println!("{name}: max abs errors {errors:?}");
    for (what, error) in &errors {
        assert!(*error <= 1e-4, "{name}: {what} max abs error {error} (all: {errors:?})");
    }
    assert_eq!(result.sample_rate, 24_000.0, "the 2.0 vocoder's rate");
}

#[test]
fn text_to_video_with_sound_matches_comfyui_maths() {
    check_against_reference("ltx2_t2v_tiny");
}

#[test]
fn image_to_video_with_sound_matches_comfyui_maths() {
    check_against_reference("ltx2_i2v_tiny");
}

/// First frame, a half-size reference clip dilated onto the latent's grid (`LTXVAddLatentGuide`) and a last frame
/// with strength 2 and an attention mask, sampled and cropped (`LTXVCropGuides`): the guides' tokens at their own
/// positions, the reference's empty cells left out of the model, the strengths and mask weighting the video
/// self-attention, as current ComfyUI does.
#[test]
fn guides_first_last_frame_and_a_dilated_reference_match_comfyui_maths() {
    check_against_reference("ltx2_guides_tiny");
}

/// `LTXVReferenceAudio` (an ID-LoRA voice reference) on the text-to-video graph: a 16-bit stereo WAV through
/// `LoadAudio`, encoded by the audio VAE into tokens both conditionings carry (timestep 0, before time 0), and
/// identity guidance (scale 2) from one more positive pass without them per step.
#[test]
fn reference_audio_with_identity_guidance_matches_comfyui_maths() {
    check_against_reference("ltx2_reference_audio_tiny");
}
