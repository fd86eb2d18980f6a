//! The LTX-2 audio path against diffusers 0.42.1 on the tiny fixtures of
//! `tools/fixtures/make_ltx2_audio_fixtures.py` (`tests/data/ltx2/audio/`): the audio VAE (encoder mean,
//! decoder, latent normalisation), the log-mel front end (against the official `AudioProcessor`'s
//! algorithm), the 2.0 vocoder and the 2.3 vocoder with bandwidth extension, saved under the official
//! single-file names and re-saved here under the bare and diffusers names. f32 max absolute errors.

use crate::compare::assert_close;
use candle_core::{DType, Device, Tensor};
use kinograph_models::ltx2::audio::antialias::{hann_sinc_filter, kaiser_sinc_filter};
use kinograph_models::ltx2::audio::{
    AudioVae, AudioVaeConfig, FinalActivation, MelConfig, MelSpectrogram, VaeParts, Vocoder, VocoderConfig,
    detect_vae_layout, detect_vocoder_layout, read_vae_config, read_vocoder_config, resample,
};
use kinograph_models::weights::{WeightError, WeightSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ltx2/audio").join(path)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data(&format!("ref/{name}.safetensors")), &Device::Cpu).unwrap()
}

/// Re-saves `file` with each tensor renamed by `rename` (dropped when it returns `None`), with or without
/// the original `config` metadata.
fn resave(file: &str, keep_metadata: bool, rename: impl Fn(&str) -> Option<String>) -> (tempfile::TempDir, PathBuf) {
    let tensors = candle_core::safetensors::load(data(file), &Device::Cpu).unwrap();
    let renamed: Vec<(String, Tensor)> =
        tensors.into_iter().filter_map(|(name, tensor)| rename(&name).map(|n| (n, tensor))).collect();
    let metadata = keep_metadata.then(|| {
        let source = WeightSource::open(&[data(file)]).unwrap();
        HashMap::from([("config".to_string(), source.metadata("config").unwrap().to_string())])
    });
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("model.safetensors");
    safetensors::serialize_to_file(renamed.iter().map(|(n, t)| (n.as_str(), t)), metadata, &path).unwrap();
    (folder, path)
}

fn vae_20() -> AudioVae {
    AudioVae::load_file(&data("audio_20.safetensors"), &Device::Cpu, VaeParts::Both).unwrap()
}

#[test]
fn audio_vae_matches_diffusers() {
    let r = reference("audio_vae");
    let vae = vae_20();
    assert_eq!(vae.config().base_channels, 8);
    for case in ["a", "b"] {
        let mean = vae.encode(&r[&format!("mel_{case}")]).unwrap();
        assert_close(&format!("audio VAE encode {case}"), &mean, &r[&format!("mean_{case}")], 1e-4);
        let mel = vae.decode(&r[&format!("latent_{case}")]).unwrap();
        assert_close(&format!("audio VAE decode {case}"), &mel, &r[&format!("decoded_{case}")], 1e-4);
    }
    assert_close("audio latent normalize", &vae.normalize(&r["latent_a"]).unwrap(), &r["normalized_a"], 1e-5);
    assert_close("audio latent denormalize", &vae.denormalize(&r["latent_a"]).unwrap(), &r["denormalized_a"], 1e-5);
    let round_trip = vae.denormalize(&vae.normalize(&r["latent_a"]).unwrap()).unwrap();
    assert_close("audio latent round trip", &round_trip, &r["latent_a"], 1e-5);
}

#[test]
fn audio_vae_loads_from_bare_and_diffusers_names_and_from_shapes() {
    let r = reference("audio_vae");
    let source = WeightSource::open(&[data("audio_20.safetensors")]).unwrap();
    let layout = detect_vae_layout(&source).unwrap();
    assert_eq!((layout.prefix.as_str(), layout.diffusers), ("audio_vae", false));
    let from_metadata = read_vae_config(&source, &layout).unwrap();
    let expected = AudioVaeConfig { base_channels: 8, ..AudioVaeConfig::ltx2() };
    assert_eq!(from_metadata, expected);

    // ComfyUI/Kijai's separate audio VAE file: official names without the prefix (no metadata here).
    let (_bare_dir, bare) =
        resave("audio_20.safetensors", false, |name| name.strip_prefix("audio_vae.").map(str::to_string));
    // diffusers' `audio_vae` weights: the statistics renamed.
    let (_diffusers_dir, diffusers) = resave("audio_20.safetensors", false, |name| {
        let name = name.strip_prefix("audio_vae.")?;
        Some(
            name.replace("per_channel_statistics.mean-of-means", "latents_mean")
                .replace("per_channel_statistics.std-of-means", "latents_std"),
        )
    });
    for (path, is_diffusers) in [(&bare, false), (&diffusers, true)] {
        let source = Arc::new(WeightSource::open(&[path]).unwrap());
        let layout = detect_vae_layout(&source).unwrap();
        assert_eq!((layout.prefix.as_str(), layout.diffusers), ("", is_diffusers));
        assert_eq!(read_vae_config(&source, &layout).unwrap(), expected, "config from the shapes");
        let decoder = AudioVae::load(&source, &Device::Cpu, VaeParts::Decoder).unwrap();
        let mel = decoder.decode(&r["latent_b"]).unwrap();
        assert_close(&format!("audio VAE decode (diffusers names: {is_diffusers})"), &mel, &r["decoded_b"], 1e-4);
        assert_close("normalize", &decoder.normalize(&r["latent_a"]).unwrap(), &r["normalized_a"], 1e-5);
        assert!(decoder.encode(&r["mel_a"]).is_err(), "the encoder was not loaded");
        let encoder = AudioVae::load(&source, &Device::Cpu, VaeParts::Encoder).unwrap();
        assert_close("audio VAE encode", &encoder.encode(&r["mel_b"]).unwrap(), &r["mean_b"], 1e-4);
    }
}

#[test]
fn mel_front_end_matches_the_official_processor() {
    let r = reference("mel");
    let front_end = MelSpectrogram::new(MelConfig::ltx2()).unwrap();
    for case in ["stereo_44k", "mono_24k", "stereo_16k"] {
        let waveform = &r[&format!("waveform_{case}")];
        let rate = r[&format!("rate_{case}")].to_vec1::<i64>().unwrap()[0] as u32;
        let resampled = resample(waveform, rate, 16_000).unwrap();
        assert_close(&format!("resample {case}"), &resampled, &r[&format!("resampled_{case}")], 1e-5);
        let mel = front_end.log_mel(waveform, rate).unwrap();
        assert_close(&format!("log-mel {case}"), &mel, &r[&format!("mel_{case}")], 1e-4);
    }
    let too_short = Tensor::zeros((1, 1, 1000), DType::F32, &Device::Cpu).unwrap();
    let error = front_end.log_mel(&too_short, 44_100).unwrap_err().to_string();
    assert!(error.contains("too short"), "{error}");

    // A mono waveform is encoded as stereo (both channels the same), as ComfyUI does.
    let vae = vae_20();
    let mono = &r["waveform_mono_24k"];
    let latent = vae.encode_waveform(mono, 24_000).unwrap();
    let mel = front_end.log_mel(&Tensor::cat(&[mono, mono], 1).unwrap(), 24_000).unwrap();
    assert_eq!(latent.dims(), &[1, 8, 6, 16]);
    assert_close("encode_waveform", &latent, &vae.encode(&mel).unwrap(), 0.0);
}

#[test]
fn vocoder_20_matches_diffusers() {
    let r = reference("vocoder_20");
    let vocoder = Vocoder::load_file(&data("audio_20.safetensors"), &Device::Cpu).unwrap();
    assert!(matches!(vocoder, Vocoder::Hifigan(_)));
    assert_eq!(vocoder.sample_rate(), 24_000);
    assert_eq!(vocoder.output_samples(37), 8880);
    for case in ["a", "b"] {
        let waveform = vocoder.forward(&r[&format!("mel_{case}")]).unwrap();
        assert_close(&format!("vocoder 2.0 {case}"), &waveform, &r[&format!("waveform_{case}")], 1e-4);
    }
}

#[test]
fn vocoder_23_with_bandwidth_extension_matches_diffusers() {
    let r = reference("vocoder_23");
    let vocoder = Vocoder::load_file(&data("audio_23.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(vocoder.sample_rate(), 48_000);
    assert_eq!(vocoder.output_samples(37), 17_760);
    let Vocoder::WithBwe(bwe) = &vocoder else { panic!("expected the 2.3 vocoder") };
    assert_eq!(bwe.config().vocoder.final_activation, FinalActivation::Identity, "the fixture's metadata says so");
    for case in ["a", "b"] {
        let mel = &r[&format!("mel_{case}")];
        assert_close(
            &format!("vocoder 2.3 {case} (16 kHz)"),
            &bwe.low_rate(mel).unwrap(),
            &r[&format!("low_rate_{case}")],
            1e-4,
        );
        let waveform = vocoder.forward(mel).unwrap();
        assert_close(&format!("vocoder 2.3 {case} (48 kHz)"), &waveform, &r[&format!("waveform_{case}")], 1e-4);
    }
    let kaiser = Tensor::new(kaiser_sinc_filter(0.25, 0.3, 12), &Device::Cpu).unwrap();
    assert_close("Kaiser-sinc filter", &kaiser, &r["kaiser_filter"], 1e-6);
    let hann = Tensor::new(hann_sinc_filter(3), &Device::Cpu).unwrap();
    assert_close("Hann-sinc filter", &hann, &r["hann_filter"], 1e-6);
}

/// The diffusers name of an official vocoder tensor (`scripts/convert_ltx2_to_diffusers.py`).
fn diffusers_vocoder_name(name: &str) -> String {
    let renamed: Vec<&str> = name
        .split('.')
        .map(|part| match part {
            "ups" => "upsamplers",
            "resblocks" => "resnets",
            "conv_pre" => "conv_in",
            "conv_post" => "conv_out",
            "act_post" => "act_out",
            other => other,
        })
        .collect();
    renamed.join(".").replace(".downsample.lowpass.", ".downsample.")
}

#[test]
fn vocoders_load_from_diffusers_and_bare_names_without_metadata() {
    for (file, release) in [("audio_20.safetensors", "20"), ("audio_23.safetensors", "23")] {
        let r = reference(&format!("vocoder_{release}"));
        let source = WeightSource::open(&[data(file)]).unwrap();
        let with_metadata = read_vocoder_config(&source, &detect_vocoder_layout(&source).unwrap()).unwrap();
        let (_d, diffusers) = resave(file, false, |name| name.strip_prefix("vocoder.").map(diffusers_vocoder_name));
        let (_b, bare) = resave(file, false, |name| name.strip_prefix("vocoder.").map(str::to_string));
        for (path, is_diffusers) in [(&diffusers, true), (&bare, false)] {
            let source = Arc::new(WeightSource::open(&[path]).unwrap());
            let layout = detect_vocoder_layout(&source).unwrap();
            assert_eq!((layout.prefix.as_str(), layout.diffusers, layout.bwe), ("", is_diffusers, release == "23"));
            let config = read_vocoder_config(&source, &layout).unwrap();
            match (&config, &with_metadata) {
                (VocoderConfig::Hifigan(shapes), VocoderConfig::Hifigan(metadata)) => assert_eq!(shapes, metadata),
                (VocoderConfig::WithBwe(shapes), VocoderConfig::WithBwe(metadata)) => {
                    assert_eq!(shapes.generator, metadata.generator);
                    assert_eq!(
                        (shapes.n_fft, shapes.hop_length, shapes.mel_bins),
                        (metadata.n_fft, metadata.hop_length, metadata.mel_bins)
                    );
                    // Without metadata the names decide: diffusers leaves the 16 kHz waveform alone, the
                    // official code clamps it.
                    let expected = if is_diffusers { FinalActivation::Identity } else { FinalActivation::Clamp };
                    assert_eq!(shapes.vocoder.final_activation, expected);
                }
                _ => panic!("release detected differently without metadata"),
            }
            let vocoder = Vocoder::load(&source, &Device::Cpu).unwrap();
            let waveform = vocoder.forward(&r["mel_b"]).unwrap();
            assert_close(
                &format!("vocoder {release} (diffusers names: {is_diffusers})"),
                &waveform,
                &r["waveform_b"],
                1e-4,
            );
        }
    }
}

#[test]
fn missing_and_truncated_tensors_are_named() {
    let vocoder_tensor = "vocoder.resblocks.4.convs2.1.weight";
    let vae_tensor = "audio_vae.decoder.up.1.block.2.conv2.conv.bias";
    let (_dir, partial) = resave("audio_20.safetensors", true, |name| {
        (name != vocoder_tensor && name != vae_tensor).then(|| name.to_string())
    });
    let error = Vocoder::load_file(&partial, &Device::Cpu).unwrap_err();
    assert!(matches!(&error, WeightError::Missing { tensor, .. } if tensor == vocoder_tensor), "{error}");
    assert!(error.to_string().contains("expected shape [8, 8, 7]"), "{error}");
    let error = AudioVae::load_file(&partial, &Device::Cpu, VaeParts::Both).unwrap_err();
    assert!(matches!(&error, WeightError::Missing { tensor, .. } if tensor == vae_tensor), "{error}");
    // The encoder alone does not need the decoder's tensors.
    assert!(AudioVae::load_file(&partial, &Device::Cpu, VaeParts::Encoder).is_ok());

    let (_bwe_dir, partial_bwe) =
        resave("audio_23.safetensors", true, |name| (name != "vocoder.mel_stft.mel_basis").then(|| name.to_string()));
    let error = Vocoder::load_file(&partial_bwe, &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("tensor 'vocoder.mel_stft.mel_basis' is missing"), "{error}");

    let bytes = std::fs::read(data("audio_23.safetensors")).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let truncated = folder.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let error = Vocoder::load_file(&truncated, &Device::Cpu).unwrap_err();
    assert!(matches!(error, WeightError::Format { .. }), "{error}");
    assert!(error.to_string().contains("tensor 'vocoder.") && error.to_string().contains("truncated"), "{error}");

    let error = Vocoder::load_file(&data("ref/mel.safetensors"), &Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("no LTX-2 vocoder found"), "{error}");
    let error = AudioVae::load_file(&data("audio_23.safetensors"), &Device::Cpu, VaeParts::Both).unwrap_err();
    assert!(error.to_string().contains("no LTX-2 audio VAE found"), "{error}");
}

/// Full-size decoders with zero weights on 5 s of audio: the released shapes, for timing
/// (`cargo nextest run --release -p kinograph-models -E 'test(/full_size_audio/)' --run-ignored only --no-capture`).
#[test]
#[ignore = "timing of the full-size audio VAE decoder and vocoders (seconds, allocates ~1 GB)"]
fn full_size_audio_decoders_on_five_seconds() {
    use kinograph_models::ltx2::audio::{BweConfig, GeneratorConfig};
    let device = Device::Cpu;
    let time = |what: &str, run: &dyn Fn() -> Tensor| {
        let start = std::time::Instant::now();
        let out = run();
        println!("{what}: {:?} in {:.2} s", out.dims(), start.elapsed().as_secs_f64());
    };
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let vae = AudioVae::new(&AudioVaeConfig::ltx2(), VaeParts::Decoder, &vb.pp("audio_vae")).unwrap();
    // 5 s at 25 latents per second.
    let latent = Tensor::randn(0f32, 1.0, (1, 8, 126, 16), &device).unwrap();
    time("audio VAE decode, 126 latents", &|| vae.decode(&latent).unwrap());
    let mel = Tensor::randn(-4f32, 1.0, (1, 2, 501, 64), &device).unwrap();
    for (name, config) in [
        ("vocoder 2.0 (24 kHz)", VocoderConfig::Hifigan(GeneratorConfig::ltx2())),
        ("vocoder 2.3 with BWE (48 kHz)", VocoderConfig::WithBwe(BweConfig::ltx23())),
    ] {
        let vocoder = Vocoder::new(&config, &vb.pp(name)).unwrap();
        time(&format!("{name}, 501 mel frames"), &|| vocoder.forward(&mel).unwrap());
    }
}
