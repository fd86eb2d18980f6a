//! `LTXVDualCFGGuider` and `LTXVReferenceAudio` on the tiny LTX-2 model.

use super::*;

// ---------------------------------------------------------------------------------------------------
// LTXVDualCFGGuider

#[test]
fn ltxv_dual_cfg_guider_schema_is_comfyuis() {
    let scale =
        |default: f64| json!(["FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}]);
    assert_eq!(
        object_info("LTXVDualCFGGuider"),
        json!({
            "input": {"required": {
                "model": ["MODEL"],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "video_cfg": scale(3.0),
                "audio_cfg": scale(7.0),
            }},
            "input_order": {"required": ["model", "positive", "negative", "video_cfg", "audio_cfg"]},
            "output": ["GUIDER"],
            "output_name": ["GUIDER"],
            "category": "model/sampling/guiders",
        })
    );
}

/// What one LTX-2 sampling step to σ = 0 of the demo model gives with a guider: the model's guided
/// clean-latent estimate of both streams, from the same noise each time.
struct OneStep {
    models: DemoModels,
    model: Value,
    positive: Value,
    negative: Value,
    latent: Value,
    audio_vae: Value,
}

impl OneStep {
    fn new() -> Self {
        let models = DemoModels::ltx2();
        let checkpoint = Value::from(kinograph_nodes::demo_ltx2::LTX2_CHECKPOINT);
        let model = models.run("CheckpointLoaderSimple", vec![("ckpt_name", checkpoint.clone())]).remove(0);
        let clip = models
            .run(
                "LTXAVTextEncoderLoader",
                vec![
                    ("text_encoder", Value::from(kinograph_nodes::demo_ltx2::LTX2_TEXT_ENCODER)),
                    ("ckpt_name", checkpoint.clone()),
                    ("device", Value::from("default")),
                ],
            )
            .remove(0);
        let audio_vae = models.run("LTXVAudioVAELoader", vec![("ckpt_name", checkpoint)]).remove(0);
        let audio_vae_value = audio_vae.clone();
        let encode = |text: &str| {
            models.run("CLIPTextEncode", vec![("text", Value::from(text)), ("clip", clip.clone())]).remove(0)
        };
        let (positive, negative) = (encode("a fox in the snow, birds calling"), encode("blurry, silent"));
        let int = |value: i64| Value::Int(value.into());
        let video = models
            .run(
                "EmptyLTXVLatentVideo",
                vec![("width", int(64)), ("height", int(64)), ("length", int(9)), ("batch_size", int(1))],
            )
            .remove(0);
        let audio = models
            .run(
                "LTXVEmptyLatentAudio",
                vec![
                    ("frames_number", int(9)),
                    ("frame_rate", int(24)),
                    ("batch_size", int(1)),
                    ("audio_vae", audio_vae),
                ],
            )
            .remove(0);
        let latent = models.run("LTXVConcatAVLatent", vec![("video_latent", video), ("audio_latent", audio)]).remove(0);
        OneStep { models, model, positive, negative, latent, audio_vae: audio_vae_value }
    }

    fn guider(&self, class: &str, scales: &[(&str, f64)]) -> Value {
        let mut pairs = vec![
            ("model", self.model.clone()),
            ("positive", self.positive.clone()),
            ("negative", self.negative.clone()),
        ];
        pairs.extend(scales.iter().map(|(name, value)| (*name, Value::Float(*value))));
        self.models.run(class, pairs).remove(0)
    }

    /// The sampled `(video, audio)` values.
    fn sample(&self, guider: Value) -> (Vec<f32>, Vec<f32>) {
        let noise = self.models.run("RandomNoise", vec![("noise_seed", Value::Int(3.into()))]).remove(0);
        let sampler = self.models.run("KSamplerSelect", vec![("sampler_name", Value::from("euler"))]).remove(0);
        let sigmas = self.models.run("ManualSigmas", vec![("sigmas", Value::from("1.0, 0.0"))]).remove(0);
        let out = self
            .models
            .run(
                "SamplerCustomAdvanced",
                vec![
                    ("noise", noise),
                    ("guider", guider),
                    ("sampler", sampler),
                    ("sigmas", sigmas),
                    ("latent_image", self.latent.clone()),
                ],
            )
            .remove(0);
        let latent = out.downcast::<kinograph_nodes::values::Latent>().unwrap();
        let flat = |tensor: &Tensor| tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&latent.samples), flat(&latent.audio.as_ref().expect("an audio-video latent").samples))
    }
}

/// On the tiny LTX-2 model, one step to σ = 0 returns the guided estimate: the dual guider's video is
/// `CFGGuider` at `video_cfg`'s and its audio `CFGGuider` at `audio_cfg`'s; equal scales are `CFGGuider`.
#[test]
fn ltxv_dual_cfg_guider_guides_video_and_audio_with_their_own_scales() {
    let step = OneStep::new();
    let (dual_video, dual_audio) =
        step.sample(step.guider("LTXVDualCFGGuider", &[("video_cfg", 3.0), ("audio_cfg", 7.0)]));
    let (cfg3_video, cfg3_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 3.0)]));
    let (cfg7_video, cfg7_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 7.0)]));
    assert!(largest_difference(&dual_video, &cfg3_video) < 1e-4, "video at video_cfg");
    assert!(largest_difference(&dual_audio, &cfg7_audio) < 1e-4, "audio at audio_cfg");
    assert!(
        largest_difference(&cfg3_audio, &cfg7_audio) > 1e-3,
        "the scales must matter for the test to mean anything"
    );
    assert!(largest_difference(&cfg3_video, &cfg7_video) > 1e-3);
    // Equal scales: CFGGuider with that scale (and its cfg = 1 shortcut).
    let (equal_video, equal_audio) =
        step.sample(step.guider("LTXVDualCFGGuider", &[("video_cfg", 1.0), ("audio_cfg", 1.0)]));
    let (one_video, one_audio) = step.sample(step.guider("CFGGuider", &[("cfg", 1.0)]));
    assert_eq!((equal_video, equal_audio), (one_video, one_audio));
}

#[test]
fn ltxv_dual_cfg_guider_rejects_a_non_finite_scale() {
    let step_inputs = |video_cfg: f64| vec![("video_cfg", Value::Float(video_cfg)), ("audio_cfg", Value::Float(7.0))];
    // The scale is checked before the sockets are read.
    let Err(error) = run("LTXVDualCFGGuider", step_inputs(f64::NAN)) else { panic!("NaN must fail") };
    let text = error.to_string();
    assert!(text.contains("'video_cfg'") && text.contains("finite"), "{text}");
}

// ---------------------------------------------------------------------------------------------------
// LTXVReferenceAudio

#[test]
fn ltxv_reference_audio_schema_is_comfyuis() {
    let percent = |default: f64| json!(["FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001}]);
    assert_eq!(
        object_info("LTXVReferenceAudio"),
        json!({
            "input": {"required": {
                "model": ["MODEL"],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "reference_audio": ["AUDIO"],
                "audio_vae": ["VAE"],
                "identity_guidance_scale": ["FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": 0.01}],
                "start_percent": percent(0.0),
                "end_percent": percent(1.0),
            }},
            "input_order": {"required": [
                "model", "positive", "negative", "reference_audio", "audio_vae",
                "identity_guidance_scale", "start_percent", "end_percent"
            ]},
            "output": ["MODEL", "CONDITIONING", "CONDITIONING"],
            "output_name": ["MODEL", "positive", "negative"],
            "category": "model/conditioning/ltxv",
        })
    );
}

/// Half a second of a stereo tone at 16 kHz.
fn reference_clip() -> Value {
    let samples: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let waveform = Tensor::from_vec(samples.repeat(2), (1, 2, 8000), &Device::Cpu).unwrap();
    Value::Object(Arc::new(kinograph_nodes::values::Audio::new(waveform, 16_000)))
}

impl OneStep {
    /// `LTXVReferenceAudio` on this model and conditionings: (model, positive, negative).
    fn with_reference(&self, scale: f64, start_percent: f64) -> (Value, Value, Value) {
        let mut out = self.models.run(
            "LTXVReferenceAudio",
            vec![
                ("model", self.model.clone()),
                ("positive", self.positive.clone()),
                ("negative", self.negative.clone()),
                ("reference_audio", reference_clip()),
                ("audio_vae", self.audio_vae.clone()),
                ("identity_guidance_scale", Value::Float(scale)),
                ("start_percent", Value::Float(start_percent)),
                ("end_percent", Value::Float(1.0)),
            ],
        );
        let negative = out.remove(2);
        let positive = out.remove(1);
        (out.remove(0), positive, negative)
    }

    fn basic(&self, model: &Value, conditioning: &Value) -> Value {
        self.models.run("BasicGuider", vec![("model", model.clone()), ("conditioning", conditioning.clone())]).remove(0)
    }
}

/// The reference clip's tokens reach the model (the prediction changes), and identity guidance adds
/// `scale·(with clip − without clip)` to the prediction: one step to σ = 0 with `BasicGuider` returns
/// `c_ref + 3·(c_ref − c_noref)`; outside the sigma window (`start_percent` 0.5 puts σ = 1 before it) it
/// returns `c_ref`.
#[test]
fn ltxv_reference_audio_adds_the_clip_and_identity_guidance() {
    use kinograph_nodes::values::Conditioning;
    let step = OneStep::new();
    let (model, positive, negative) = step.with_reference(0.0, 0.0);
    for conditioning in [&positive, &negative] {
        let conditioning = conditioning.downcast::<Conditioning>().unwrap();
        let tokens = conditioning.entries[0].ref_audio.as_ref().expect("the clip's tokens are in the conditioning");
        assert_eq!((tokens.dim(0).unwrap(), tokens.dim(2).unwrap()), (1, 8 * 16), "[1, T, C·F] tokens");
    }
    let (ref_video, ref_audio) = step.sample(step.basic(&model, &positive));
    let (plain_video, plain_audio) = step.sample(step.basic(&step.model, &step.positive));
    assert!(largest_difference(&ref_audio, &plain_audio) > 1e-4, "the reference clip changes the prediction");
    let (guided_model, guided_positive, _) = step.with_reference(3.0, 0.0);
    let (video, audio) = step.sample(step.basic(&guided_model, &guided_positive));
    let expected = |with: &[f32], without: &[f32]| -> Vec<f32> {
        with.iter().zip(without).map(|(w, n)| w + 3.0 * (w - n)).collect()
    };
    assert!(largest_difference(&video, &expected(&ref_video, &plain_video)) < 1e-4, "video");
    assert!(largest_difference(&audio, &expected(&ref_audio, &plain_audio)) < 1e-4, "audio");
    let (late_model, late_positive, _) = step.with_reference(3.0, 0.5);
    let (late_video, late_audio) = step.sample(step.basic(&late_model, &late_positive));
    assert_eq!((late_video, late_audio), (ref_video, ref_audio), "σ = 1 is before start_percent 0.5");
}

/// ComfyUI's ID-LoRA positions: the reference's latents 0..N, moved back so the last ends 0.04 s before 0.
/// With causal positions the ends of latents 0..3 are 0, 0.01, 0.05, 0.09 s, so the shift is 0.13 s.
#[test]
fn reference_audio_positions_end_before_the_target() {
    let step = OneStep::new();
    let model = step.model.downcast::<kinograph_nodes::values::DiffusionModel>().unwrap();
    let kinograph_nodes::values::Transformer::Ltx2(transformer) = &model.transformer else { panic!("LTX-2") };
    let positions = transformer.reference_audio_positions(2, 3).unwrap();
    assert_eq!(positions.dims(), [2, 1, 3, 2]);
    let values: Vec<f32> = positions.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let expected = [-0.13f32, -0.12, -0.12, -0.08, -0.08, -0.04];
    assert!(largest_difference(&values, &expected) < 1e-6, "{values:?}");
}

#[test]
fn ltxv_reference_audio_rejects_an_empty_clip_and_a_video_vae() {
    let step = OneStep::new();
    let empty = Value::Object(Arc::new(kinograph_nodes::values::Audio::new(
        Tensor::zeros((1, 1, 0), candle_core::DType::F32, &Device::Cpu).unwrap(),
        16_000,
    )));
    let registry = kinograph_nodes::registry();
    let node = registry.get("LTXVReferenceAudio").unwrap();
    let attempt = |audio: Value, vae: Value| {
        let pairs = vec![
            ("model", step.model.clone()),
            ("positive", step.positive.clone()),
            ("negative", step.negative.clone()),
            ("reference_audio", audio),
            ("audio_vae", vae),
            ("identity_guidance_scale", Value::Float(3.0)),
            ("start_percent", Value::Float(0.0)),
            ("end_percent", Value::Float(1.0)),
        ];
        let context = ExecutionContext::detached("1", "LTXVReferenceAudio", step.models.env.clone());
        match node.execute(&inputs(pairs), &context) {
            Ok(_) => panic!("must fail"),
            Err(error) => error.to_string(),
        }
    };
    let text = attempt(empty, step.audio_vae.clone());
    assert!(text.contains("'reference_audio'") && text.contains("no samples"), "{text}");
    let checkpoint = Value::from(kinograph_nodes::demo_ltx2::LTX2_CHECKPOINT);
    let video_vae = step.models.run("CheckpointLoaderSimple", vec![("ckpt_name", checkpoint)]).remove(2);
    let text = attempt(reference_clip(), video_vae);
    assert!(text.contains("'audio_vae'") && text.contains("LTXVAudioVAELoader"), "{text}");
}
