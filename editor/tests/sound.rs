//! The sound of shown outputs: an MP4 with sound written by the real `SaveVideo` (run from the editor on
//! a small graph: a FLAC tone through `LoadAudio` and `CreateVideo`), a FLAC from `SaveAudio` and a silent
//! video, found and decoded as the window does; the frame ↔ sample mapping; play, pause, restart, seek
//! and mute on the clock the frames and the sound share, down to the samples the device callback gets;
//! and no audio device (these machines have none) reported on the status line, never a failure.

use crate::ui::{harness, step_until};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::media::load_output;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::run::Runner;
use kinograph_editor::model::sound::{
    OutputSound, SYNC_TOLERANCE, SharedSound, Transport, frame_of_sample, load_sound, sample_of_frame,
};
use kinograph_editor::model::sound_output::{DeviceState, SoundOutput, SoundPlayer};
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::{Environment, ModelFolders};
use serde_json::json;
use std::collections::HashMap;
use std::f32::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u32 = 24000;
const FRAMES: usize = 24;

/// 440 Hz on the left, 660 Hz on the right, 1.5 s: longer than the 1 s video, which cuts it.
fn tone() -> [Vec<f32>; 2] {
    let wave = |hz: f32, gain: f32| (0..36000).map(|i| gain * (i as f32 * hz * TAU / RATE as f32).sin()).collect();
    [wave(440.0, 0.5), wave(660.0, 0.3)]
}

/// Folders with the tone as `input/tone.flac`.
fn environment(root: &Path) -> Environment {
    let environment = Environment {
        output_dir: root.join("output"),
        input_dir: root.join("input"),
        models: ModelFolders::new(root.join("models")),
    };
    std::fs::create_dir_all(&environment.input_dir).unwrap();
    let [left, right] = tone();
    let file = std::fs::File::create(environment.input_dir.join("tone.flac")).unwrap();
    kinograph_nodes::media::flac::write_flac(std::io::BufWriter::new(file), &[&left, &right], RATE, &[]).unwrap();
    environment
}

/// An API prompt: the tone and 24 frames at 24 fps made into a video saved with its sound (node 4);
/// with `others`, also the tone saved alone (5) and the frames saved as a silent video (7).
fn write_prompt(root: &Path, others: bool) -> PathBuf {
    let save = |video: &str, prefix: &str| {
        json!({"class_type": "SaveVideo", "inputs": {"video": [video, 0], "filename_prefix": prefix,
            "format": "auto", "format.codec": "auto"}})
    };
    let mut prompt = json!({
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "tone.flac"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": FRAMES, "color": 0x0033_6699}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 24.0, "audio": ["1", 0]}},
        "4": save("3", "video/with_sound"),
    });
    if others {
        prompt["5"] =
            json!({"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/tone"}});
        prompt["6"] = json!({"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 24.0}});
        prompt["7"] = save("6", "video/silent");
    }
    let path = root.join("prompt.json");
    std::fs::write(&path, serde_json::to_string_pretty(&prompt).unwrap()).unwrap();
    path
}

fn editor_on(root: &Path, others: bool) -> Editor {
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment(root)));
    let mut editor = Editor::new(catalog);
    editor.open_any(&write_prompt(root, others)).unwrap();
    editor
}

/// Runs the prompt from the editor's runner; returns each output node's files.
fn run_outputs(root: &Path) -> HashMap<String, Vec<PathBuf>> {
    let mut editor = editor_on(root, true);
    let mut runner = Runner::new(&editor);
    runner.queue(&mut editor, Arc::new(|| {})).unwrap();
    let start = Instant::now();
    while runner.busy() || runner.view.outcome.is_none() {
        runner.poll();
        assert!(start.elapsed() < Duration::from_mins(2), "the run did not finish: {:?}", runner.view);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(runner.view.outcome.as_deref(), Some("The run finished."), "{:?}", runner.view);
    runner.view.outputs.clone()
}

/// Signal-to-noise ratio of `decoded` against `reference`, in dB.
fn snr(reference: &[f32], decoded: &[f32]) -> f64 {
    let noise: f64 = reference.iter().zip(decoded).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let signal: f64 = reference.iter().map(|a| f64::from(*a).powi(2)).sum();
    10.0 * (signal / noise).log10()
}

#[test]
fn the_sound_of_a_saved_video_and_of_a_saved_sound_is_found_and_decoded() {
    let root = tempfile::tempdir().unwrap();
    let outputs = run_outputs(root.path());
    let tone = tone();

    // SaveVideo's MP4: 24 frames, and its AAC track cut to the video's second, in place (no lag).
    let video = &outputs["4"][0];
    assert_eq!(video.extension().unwrap(), "mp4");
    let media = load_output(video, 48, 96).unwrap();
    assert_eq!(media.thumbnails.as_ref().map(|t| t.frames.len()), Some(FRAMES));
    assert_eq!(media.sound_error, None);
    let sound = media.sound.expect("SaveVideo wrote a sound track");
    assert_eq!((sound.sample_rate, sound.channels.len()), (RATE, 2));
    assert!((24000..24000 + 1024).contains(&sound.samples()), "{} samples", sound.samples());
    for (reference, decoded) in tone.iter().zip(&sound.channels) {
        let snr = snr(&reference[..24000], &decoded[..24000]);
        assert!(snr > 25.0, "SNR {snr:.1} dB");
    }

    // SaveAudio's FLAC (reported under "audio", not "images"): sound alone, all 1.5 s, as written.
    let flac = &outputs["5"][0];
    assert_eq!(flac.extension().unwrap(), "flac");
    let media = load_output(flac, 48, 96).unwrap();
    assert!(media.thumbnails.is_none());
    let sound = media.sound.unwrap();
    assert_eq!((sound.sample_rate, sound.samples()), (RATE, 36000));
    assert!(snr(&tone[0], &sound.channels[0]) > 60.0);

    // A video without sound, and a still image, have none; neither is an error.
    let silent = load_output(&outputs["7"][0], 48, 96).unwrap();
    assert_eq!((silent.sound, silent.sound_error), (None, None));
    assert_eq!(silent.thumbnails.unwrap().frames.len(), FRAMES);
    let still = root.path().join("still.png");
    kinograph_nodes::media::png::write_png(std::fs::File::create(&still).unwrap(), &[9; 4 * 4 * 3], 4, 4, &[]).unwrap();
    assert_eq!(load_sound(&still).unwrap(), None);
    // A damaged sound file is reported by name.
    let broken = root.path().join("broken.flac");
    std::fs::write(&broken, b"fLaC and then nothing").unwrap();
    let error = load_output(&broken, 48, 96).unwrap_err();
    assert!(error.contains("broken.flac"), "{error}");
}

#[test]
fn frames_and_samples_map_both_ways() {
    assert_eq!(sample_of_frame(0, 24.0, 48000), 0);
    assert_eq!(sample_of_frame(24, 24.0, 48000), 48000);
    assert_eq!(sample_of_frame(1, 24.0, 44100), 1838, "1837.5 rounds up to the frame's first sample");
    assert_eq!(frame_of_sample(1837, 24.0, 44100), 0);
    assert_eq!(frame_of_sample(1838, 24.0, 44100), 1);
    for fps in [24.0, 25.0, 30.0, 24000.0 / 1001.0, 12.0, 8.0] {
        for rate in [16000, 24000, 44100, 48000] {
            for frame in 0..500 {
                let sample = sample_of_frame(frame, fps, rate);
                assert_eq!(frame_of_sample(sample, fps, rate), frame, "frame {frame} at {fps} fps, {rate} Hz");
                assert_eq!(frame_of_sample(sample.saturating_sub(1), fps, rate), frame.saturating_sub(1));
            }
        }
    }
}

/// One second of 24 frames, with a stereo sound: the sample index on the left, its negative on the
/// right, so that the samples a callback gets say where it read.
fn ramp_sound() -> Arc<OutputSound> {
    let left: Vec<f32> = (0..24000).map(|i| i as f32 / 24000.0).collect();
    let right = left.iter().map(|v| -v).collect();
    Arc::new(OutputSound { sample_rate: RATE, channels: vec![left, right] })
}

#[test]
fn play_pause_restart_seek_and_mute_move_frames_and_sound_together() {
    let sound = ramp_sound();
    let mut transport = Transport::new(FRAMES, 24.0, Some(sound.seconds()), 10.0);
    let shared = SharedSound::new(Arc::clone(&sound), transport.length());
    assert!(transport.is_playing() && !transport.is_muted());
    assert_eq!(transport.length(), 1.0);
    assert!(shared.follow(&transport, 10.0, true));
    assert!(shared.is_playing());

    // Playing: half a second in, frame 12 and sample 12000; a 48 kHz device reads at half steps.
    assert_eq!(transport.frame_at(10.5), 12);
    assert_eq!(transport.sample_at(10.5, RATE), 12000.0);
    let mut out = vec![0.0; 2 * 4];
    shared.fill(&mut out, 2, 48000);
    let step = 1.0 / 24000.0;
    let expected = [0.0, 0.0, 0.5 * step, -0.5 * step, step, -step, 1.5 * step, -1.5 * step];
    for (got, want) in out.iter().zip(expected) {
        assert!((got - want).abs() < 1e-7, "{out:?}");
    }
    assert_eq!(shared.position(), 2.0);

    // Paused: the frame stays, the sound is silent and does not move.
    transport.pause(10.5);
    assert!(!transport.is_playing());
    assert_eq!(transport.frame_at(11.7), 12);
    assert!(shared.follow(&transport, 11.7, true), "a pause puts the sound where the frame is");
    assert_eq!(shared.position(), 12000.0);
    shared.fill(&mut out, 2, 48000);
    assert!(out.iter().all(|v| *v == 0.0));
    assert_eq!(shared.position(), 12000.0);

    // Played again, both go on from there; past the end both loop.
    transport.play(12.0);
    assert_eq!(transport.frame_at(12.25), 18);
    assert_eq!(transport.frame_at(12.5), 0, "a second after frame 12: looped to frame 0");
    shared.follow(&transport, 12.0, true);
    shared.fill(&mut out, 2, 24000);
    assert!((out[0] - 0.5).abs() < 1e-6 && (out[1] + 0.5).abs() < 1e-6, "{out:?}");

    // Restart: the first frame and the first sample.
    transport.restart(13.0);
    assert_eq!((transport.frame_at(13.0), transport.time_at(13.0)), (0, 0.0));
    shared.follow(&transport, 13.0, true);
    assert_eq!(shared.position(), 0.0);

    // Seek (the slider): frame 6 shown, the sound from frame 6's first sample, still playing.
    transport.seek_frame(6, 13.1);
    assert!(transport.is_playing());
    assert_eq!(transport.frame_at(13.1), 6);
    shared.follow(&transport, 13.1, true);
    assert_eq!(shared.position(), sample_of_frame(6, 24.0, RATE) as f64);
    transport.seek_frame(1000, 13.1);
    assert_eq!(transport.frame_at(13.1), FRAMES - 1, "past the end is the last frame");

    // Muted: silence, but the sound keeps its place, so unmuting is in step.
    transport.seek_frame(0, 14.0);
    transport.toggle_mute();
    shared.follow(&transport, 14.0, true);
    assert!(shared.is_muted());
    shared.fill(&mut out, 2, 24000);
    assert!(out.iter().all(|v| *v == 0.0));
    assert_eq!(shared.position(), 4.0);
    transport.toggle_mute();
    shared.follow(&transport, 14.0, false);
    shared.fill(&mut out, 2, 24000);
    assert!((out[0] - 4.0 * step).abs() < 1e-7, "{out:?}");

    // Drift: a little is left alone, more than the tolerance is put back on the frames' clock.
    assert!(!shared.follow(&transport, 14.0 + 0.5 * SYNC_TOLERANCE, false));
    let mut long = vec![0.0; 2 * 6000];
    shared.fill(&mut long, 2, 24000);
    assert!(shared.follow(&transport, 14.0, false), "a quarter second ahead is put back");
    assert_eq!(shared.position(), 0.0);

    // A device 50 ms from callback to speaker: the callback is put that far ahead of the frame shown,
    // so that what is heard is the frame's sound (while paused there is nothing to be ahead of).
    shared.set_latency(0.05);
    transport.seek_frame(12, 15.0);
    assert!(shared.follow(&transport, 15.0, true));
    assert_eq!(shared.position(), 12000.0 + 1200.0);
    assert_eq!(shared.heard_position(), 12000.0);
    assert!(!shared.follow(&transport, 15.0, false), "in step: not moved again");
    transport.pause(15.0);
    shared.follow(&transport, 15.0, true);
    assert_eq!(shared.position(), 12000.0);
    transport.play(15.0);
    shared.set_latency(0.0);

    // The callback loops with the video: the last samples, then the first ones again.
    transport.seek_seconds(1.0 - 2.0 / 24000.0, 20.0);
    shared.follow(&transport, 20.0, true);
    shared.fill(&mut out, 2, 24000);
    let left: Vec<f32> = out.iter().step_by(2).copied().collect();
    assert!((left[0] - 23998.0 * step).abs() < 1e-6 && left[2] == 0.0 && (left[3] - step).abs() < 1e-7, "{left:?}");
}

#[test]
fn mono_goes_to_every_channel_a_mono_device_gets_the_mean_and_a_short_sound_ends_in_silence() {
    let mono = Arc::new(OutputSound { sample_rate: 8000, channels: vec![vec![0.25; 800]] });
    // The video lasts twice as long as this sound: its second half is silent.
    let mut transport = Transport::new(4, 20.0, Some(mono.seconds()), 0.0);
    assert_eq!(transport.length(), 0.2);
    let shared = SharedSound::new(Arc::clone(&mono), transport.length());
    shared.follow(&transport, 0.0, true);
    let mut out = vec![0.0; 3 * 2];
    shared.fill(&mut out, 3, 8000);
    assert!(out.iter().all(|v| *v == 0.25), "{out:?}");
    transport.seek_seconds(0.15, 0.0);
    shared.follow(&transport, 0.0, true);
    shared.fill(&mut out, 3, 8000);
    assert!(out.iter().all(|v| *v == 0.0), "past the sound's end: {out:?}");

    let stereo = Arc::new(OutputSound { sample_rate: 8000, channels: vec![vec![0.5; 10], vec![-0.25; 10]] });
    let transport = Transport::new(0, 0.0, Some(stereo.seconds()), 0.0);
    assert_eq!(transport.frame_at(0.3), 0, "a sound alone has no frames");
    let shared = SharedSound::new(stereo, transport.length());
    shared.follow(&transport, 0.0, true);
    let mut out = vec![0.0; 2];
    shared.fill(&mut out, 1, 8000);
    assert_eq!(out, [0.125, 0.125]);
}

#[test]
fn without_an_audio_device_the_player_says_why_and_nothing_fails() {
    let sound = ramp_sound();
    let transport = Transport::new(FRAMES, 24.0, Some(sound.seconds()), 0.0);

    // No output at all: silent from the start, with the reason.
    let mut player =
        SoundPlayer::start(&SoundOutput::Unavailable("no audio output device".into()), Arc::clone(&sound), 1.0, || {});
    assert_eq!(player.state(), &DeviceState::Silent("no audio output device".into()));
    assert_eq!(player.poll(), Some(&DeviceState::Silent("no audio output device".into())), "told once");
    assert!(player.poll().is_none());
    player.follow(&transport, 0.5);
    assert_eq!(player.shared().position(), 12000.0, "the sound is kept in place all the same");

    // The system's default device: on these machines there is none (or one that cannot open);
    // where there is one, it plays. Either way an answer comes, and nothing panics.
    let mut player = SoundPlayer::start(&SoundOutput::Device, sound, 1.0, || {});
    let start = Instant::now();
    while player.state() == &DeviceState::Opening {
        player.poll();
        assert!(start.elapsed() < Duration::from_secs(30), "the device did not answer");
        std::thread::sleep(Duration::from_millis(10));
    }
    match player.state() {
        DeviceState::Open(device) => println!("audio output device: {device}"),
        DeviceState::Silent(reason) => {
            println!("no sound: {reason}");
            assert!(!reason.is_empty());
        }
        DeviceState::Opening => unreachable!(),
    }
    player.follow(&transport, 0.25);
    drop(player);
}

#[test]
fn the_save_node_shows_play_pause_restart_and_mute_for_a_video_with_sound() {
    let root = tempfile::tempdir().unwrap();
    let mut app = EditorApp::new(editor_on(root.path(), false), RecentFiles::load(None));
    app.set_sound_output(SoundOutput::Unavailable("no audio output device (test)".into()));
    let mut harness = harness(app);
    harness.get_by_label("Queue").click();
    harness.step();
    step_until(&mut harness, "the save node showing its video", |app| app.shown_output("4").is_some());
    let (file, frames) = harness.state().shown_output("4").map(|(f, n)| (f.to_path_buf(), n)).unwrap();
    assert_eq!(frames, FRAMES);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    // Said on the status line (until the run's outcome replaces it) and under the node.
    let said = format!("No sound for {name}: no audio output device (test); the frames play silent.");
    step_until(&mut harness, "the silent sound reported", |app| {
        app.status == said || app.status == "The run finished."
    });
    harness.run_steps(2);
    assert!(harness.query_by_label("Sound not heard: no audio output device (test)").is_some());
    let seconds = harness.state().playback("4").unwrap().sound_seconds.unwrap();
    assert!((1.0..1.05).contains(&seconds), "{seconds}");
    harness.run_steps(2);
    assert!(harness.query_by_label(&format!("Output {name}: video, {FRAMES} frames, sound {seconds:.2} s")).is_some());

    let playing = |harness: &egui_kittest::Harness<'_, EditorApp>| {
        let playback = harness.state().playback("4").unwrap();
        (playback.transport.is_playing(), playback.sound.as_ref().unwrap().shared().is_playing())
    };
    assert_eq!(playing(&harness), (true, true));
    harness.get_by_label("Pause").click_accesskit();
    harness.run_steps(2);
    assert_eq!(playing(&harness), (false, false), "frames and sound pause together");
    let now = |harness: &egui_kittest::Harness<'_, EditorApp>| harness.ctx.input(|i| i.time);
    let paused_at = harness.state().playback("4").unwrap().transport.time_at(now(&harness));
    harness.run_steps(10);
    assert_eq!(harness.state().playback("4").unwrap().transport.time_at(now(&harness)), paused_at);
    harness.get_by_label("Play").click_accesskit();
    harness.run_steps(2);
    assert_eq!(playing(&harness), (true, true));

    // Scrubbed (the slider, moved one frame on from the keyboard) while paused: the frame and the
    // sound's place move together.
    harness.get_by_label("Pause").click_accesskit();
    harness.run_steps(2);
    let frame = harness.state().playback("4").unwrap().transport.frame_at(now(&harness));
    harness.get_by_role(eframe::egui::accesskit::Role::Slider).focus();
    harness.run_steps(1);
    harness.key_press(eframe::egui::Key::ArrowRight);
    harness.run_steps(2);
    let playback = harness.state().playback("4").unwrap();
    let moved = (frame + 1).min(FRAMES - 1);
    assert_eq!(playback.transport.frame_at(now(&harness)), moved);
    let expected = kinograph_editor::model::sound::sample_of_frame(moved, 24.0, RATE) as f64;
    assert!((playback.sound.as_ref().unwrap().shared().position() - expected).abs() < 1e-6);
    assert!(!playback.transport.is_playing(), "a seek leaves it paused");
    harness.get_by_label("Play").click_accesskit();
    harness.run_steps(2);

    harness.get_by_label("Mute").click_accesskit();
    harness.run_steps(2);
    assert!(harness.state().playback("4").unwrap().sound.as_ref().unwrap().shared().is_muted());
    assert!(harness.query_by_label("Unmute").is_some());

    harness.get_by_label("Restart").click_accesskit();
    harness.run_steps(1);
    let playback = harness.state().playback("4").unwrap();
    assert!(playback.transport.time_at(now(&harness)) < 0.1, "back at the start");
    assert!(playback.sound.as_ref().unwrap().shared().position() < 0.1 * f64::from(RATE));
}

#[test]
fn a_saved_sound_plays_under_its_node_without_a_picture() {
    let root = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment(root.path())));
    let prompt = json!({
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "tone.flac"}},
        "5": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/tone"}},
    });
    let path = root.path().join("sound.json");
    std::fs::write(&path, prompt.to_string()).unwrap();
    let mut editor = Editor::new(catalog);
    editor.open_any(&path).unwrap();
    let mut app = EditorApp::new(editor, RecentFiles::load(None));
    app.set_sound_output(SoundOutput::Unavailable("no audio output device (test)".into()));
    let mut harness = harness(app);
    harness.get_by_label("Queue").click();
    harness.step();
    step_until(&mut harness, "the save node showing its sound", |app| app.shown_output("5").is_some());
    harness.run_steps(2);
    let (file, frames) = harness.state().shown_output("5").map(|(f, n)| (f.to_path_buf(), n)).unwrap();
    assert_eq!((file.extension().unwrap().to_str(), frames), (Some("flac"), 0));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(harness.query_by_label(&format!("Output {name}: sound, 1.50 s")).is_some());
    assert_eq!(harness.state().playback("5").unwrap().transport.length(), 1.5, "it loops over its own length");
    harness.get_by_label("Pause").click_accesskit();
    harness.run_steps(2);
    let playback = harness.state().playback("5").unwrap();
    assert!(!playback.transport.is_playing() && !playback.sound.as_ref().unwrap().shared().is_playing());
    assert!(harness.query_by_label("Mute").is_some() && harness.query_by_label("Play").is_some());
}
