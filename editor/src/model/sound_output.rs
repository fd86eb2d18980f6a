//! Playing a shown output's sound on the default audio output device (ALSA's library loaded at run time on
//! Linux, see `alsa.rs`; cpal's Core Audio and WASAPI elsewhere; the crate's `sound` feature, on by
//! default). The device is opened on a thread of its own, which keeps the stream until the player is
//! dropped, so the window never waits on it. Where there is no device (a headless machine, no sound
//! card, a device that refuses the stream) the player says why and the frames play on silent.

use super::sound::{OutputSound, SharedSound, Transport};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

/// Where shown outputs' sound goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SoundOutput {
    /// The system's default audio output device.
    #[default]
    Device,
    /// Nowhere: every sound is silent, and says so with this reason (tests use it).
    Unavailable(String),
}

/// Whether the sound is heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// The device is being opened.
    Opening,
    /// Playing on the named device.
    Open(String),
    /// Not heard: why.
    Silent(String),
}

/// One output's sound on the audio device, kept in step with its [`Transport`].
pub struct SoundPlayer {
    shared: Arc<SharedSound>,
    state: DeviceState,
    reports: Option<Receiver<Result<String, String>>>,
    /// Dropping it ends the device thread, which closes the stream.
    #[allow(dead_code, reason = "held, never read: dropping it is the signal")]
    stop: Option<Sender<()>>,
    jumps_seen: Option<u64>,
    /// Whether [`SoundPlayer::poll`] has told the final state.
    told: bool,
}

impl SoundPlayer {
    /// Starts opening `output` for `sound`, which loops every `loop_seconds` (the video's length);
    /// `wake` is called when the device has answered, so that the window shows it.
    pub fn start(
        output: &SoundOutput,
        sound: Arc<OutputSound>,
        loop_seconds: f64,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let shared = Arc::new(SharedSound::new(sound, loop_seconds));
        let mut player = SoundPlayer {
            shared: Arc::clone(&shared),
            state: DeviceState::Opening,
            reports: None,
            stop: None,
            jumps_seen: None,
            told: false,
        };
        if let SoundOutput::Unavailable(reason) = output {
            player.state = DeviceState::Silent(reason.clone());
            return player;
        }
        let (report, reports) = channel();
        let (stop, stopped) = channel::<()>();
        let spawned = std::thread::Builder::new().name("kinograph-sound".into()).spawn(move || {
            match open_stream(shared) {
                Ok((stream, device)) => {
                    let _ = report.send(Ok(device));
                    wake();
                    // Holds the stream until the player is dropped (the sender goes away).
                    let _ = stopped.recv();
                    drop(stream);
                }
                Err(reason) => {
                    let _ = report.send(Err(reason));
                    wake();
                }
            }
        });
        match spawned {
            Ok(_) => {
                player.reports = Some(reports);
                player.stop = Some(stop);
            }
            Err(error) => player.state = DeviceState::Silent(format!("could not start the sound thread: {error}")),
        }
        player
    }

    /// Whether the sound is heard, and if not why.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// What the callback reads.
    pub fn shared(&self) -> &SharedSound {
        &self.shared
    }

    /// Takes in the device thread's answer; returns the state once, when it is known (open or
    /// silent), so that the window can say it.
    pub fn poll(&mut self) -> Option<&DeviceState> {
        if let Some(reports) = &self.reports {
            let state = match reports.try_recv() {
                Ok(Ok(device)) => DeviceState::Open(device),
                Ok(Err(reason)) => DeviceState::Silent(reason),
                Err(TryRecvError::Empty) => return None,
                // The thread ended without a word: it panicked inside the audio library.
                Err(TryRecvError::Disconnected) => DeviceState::Silent("the audio output stopped unexpectedly".into()),
            };
            self.reports = None;
            self.state = state;
        }
        if self.told || self.state == DeviceState::Opening {
            return None;
        }
        self.told = true;
        Some(&self.state)
    }

    /// Why the sound is not heard, when it is not.
    pub fn silent_reason(&self) -> Option<&str> {
        match &self.state {
            DeviceState::Silent(reason) => Some(reason),
            _ => None,
        }
    }

    /// Keeps the sound where `transport` is at clock time `now`.
    pub fn follow(&mut self, transport: &Transport, now: f64) {
        let jumped = self.jumps_seen != Some(transport.jumps());
        self.jumps_seen = Some(transport.jumps());
        self.shared.follow(transport, now, jumped);
    }
}

/// A message for the status line about a sound that is not heard.
pub fn silent_message(file_name: &str, reason: &str) -> String {
    format!("No sound for {file_name}: {reason}; the frames play silent.")
}

/// Where the editor was built without its `sound` feature: no device, and why.
#[cfg(not(feature = "sound"))]
fn open_stream(_: Arc<SharedSound>) -> Result<(Box<dyn std::any::Any>, String), String> {
    Err("this kinograph was built without sound (its `sound` feature)".into())
}

/// Opens ALSA's default output and starts a stream that plays `shared`; returns the stream (dropping it
/// stops the sound) and the device's name.
#[cfg(all(feature = "sound", target_os = "linux"))]
fn open_stream(shared: Arc<SharedSound>) -> Result<(Box<dyn std::any::Any>, String), String> {
    let (stream, name) = super::alsa::open_stream(shared)?;
    Ok((Box::new(stream), name))
}

/// Opens the default output device with its default configuration and starts a stream that plays
/// `shared`; returns the stream (which must stay on this thread) and the device's name.
#[cfg(all(feature = "sound", not(target_os = "linux")))]
fn open_stream(shared: Arc<SharedSound>) -> Result<(Box<dyn std::any::Any>, String), String> {
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    let host = cpal::default_host();
    let device = host
        .default_output_device()
        .ok_or_else(|| format!("no audio output device ({} host found none)", host.id().name()))?;
    let name = device.description().map_or_else(|_| "the default audio output".to_string(), |d| d.name().to_string());
    let supported = device
        .default_output_config()
        .map_err(|error| format!("the audio output device {name} cannot be used: {error}"))?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.into();
    let stream = match format {
        cpal::SampleFormat::F32 => build::<f32>(&device, config, shared),
        cpal::SampleFormat::F64 => build::<f64>(&device, config, shared),
        cpal::SampleFormat::I16 => build::<i16>(&device, config, shared),
        cpal::SampleFormat::I32 => build::<i32>(&device, config, shared),
        cpal::SampleFormat::U16 => build::<u16>(&device, config, shared),
        cpal::SampleFormat::U8 => build::<u8>(&device, config, shared),
        cpal::SampleFormat::I8 => build::<i8>(&device, config, shared),
        other => return Err(format!("the audio output device {name} wants {other} samples, which are not supported")),
    }
    .map_err(|error| format!("the audio output device {name} refused the stream: {error}"))?;
    stream.play().map_err(|error| format!("the audio output device {name} did not start: {error}"))?;
    Ok((Box::new(stream), name))
}

#[cfg(all(feature = "sound", not(target_os = "linux")))]
fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    shared: Arc<SharedSound>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    use cpal::traits::DeviceTrait;
    let channels = usize::from(config.channels);
    let rate = config.sample_rate;
    let mut scratch: Vec<f32> = Vec::new();
    device.build_output_stream(
        config,
        move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
            let timestamp = info.timestamp();
            shared.set_latency(timestamp.playback.duration_since(timestamp.callback).as_secs_f64());
            scratch.resize(out.len(), 0.0);
            shared.fill(&mut scratch, channels, rate);
            for (sample, value) in out.iter_mut().zip(&scratch) {
                *sample = T::from_sample(*value);
            }
        },
        // Underruns and device changes: the sound skips; nothing the window can do.
        |_| {},
        None,
    )
}
