//! The sound of an output shown under its save node, and the clock its frames and sound share.
//!
//! - [`load_sound`] finds and decodes a file's sound track: the AAC track of an MP4 from `SaveVideo`,
//!   or a FLAC or WAV from `SaveAudio`/`PreviewAudio` (the node library's own decoders).
//! - [`Transport`] is play, pause, restart, seek and mute on the window's clock: the frame shown and
//!   the sound's position are both read from it, so they start, stop and loop together.
//! - [`SharedSound`] is what the audio device's callback reads: the samples, a position that the
//!   window keeps on the transport's time, and [`SharedSound::fill`], which turns them into the
//!   device's rate and channels. None of it needs a device, so all of it is tested headless.

use kinograph_nodes::media::audio_decode::decode_audio_file;
use kinograph_nodes::media::mp4_audio::read_mp4_sound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How far (seconds) the sound may drift from the frames' clock before it is put back in place.
/// Device buffers advance the position in steps of a few tens of milliseconds, so a smaller tolerance
/// would seek all the time; play, pause, restart and seek place it exactly in any case.
pub const SYNC_TOLERANCE: f64 = 0.1;

/// An output file's sound, decoded: one vector of samples per channel, all the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSound {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl OutputSound {
    /// Samples per channel.
    pub fn samples(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// How long it plays, in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Whether `path` names a sound-only file (what `SaveAudio` and `PreviewAudio` write, and the other
/// formats the node library decodes).
pub fn is_sound_file(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    matches!(extension.as_str(), "flac" | "wav" | "mp3" | "ogg" | "m4a" | "aac")
}

/// The sound track of the file at `path`, decoded: `Ok(None)` when it has none (an MP4 without an AAC
/// track, an image). Errors name the file and what was wrong.
pub fn load_sound(path: &Path) -> Result<Option<OutputSound>, String> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let sound = match extension.as_str() {
        "mp4" | "m4v" | "mov" => match read_mp4_sound(path).map_err(|error| error.to_string())? {
            Some(sound) => OutputSound { sample_rate: sound.sample_rate, channels: sound.channels },
            None => return Ok(None),
        },
        _ if is_sound_file(path) => {
            let decoded = decode_audio_file(path).map_err(|error| format!("{}: {error}", path.display()))?;
            OutputSound { sample_rate: decoded.sample_rate, channels: decoded.channels }
        }
        _ => return Ok(None),
    };
    if sound.samples() == 0 || sound.sample_rate == 0 {
        return Ok(None);
    }
    Ok(Some(sound))
}

/// The first sample at or after the start of frame `frame` of a video playing at `fps`, for sound at
/// `sample_rate`: where the sound is put when that frame is shown.
pub fn sample_of_frame(frame: usize, fps: f64, sample_rate: u32) -> u64 {
    if fps <= 0.0 {
        return 0;
    }
    // The small margin keeps exact products (frame 24 at 24 fps = 48000 at 48 kHz) from rounding up.
    (frame as f64 * f64::from(sample_rate) / fps - 1e-6).ceil().max(0.0) as u64
}

/// The frame of a video playing at `fps` that is shown while sample `sample` plays.
pub fn frame_of_sample(sample: u64, fps: f64, sample_rate: u32) -> usize {
    if sample_rate == 0 {
        return 0;
    }
    (sample as f64 * fps / f64::from(sample_rate) + 1e-9).floor().max(0.0) as usize
}

/// Play, pause, restart, seek and mute of one shown output, on the window's clock (seconds). The
/// frames and the sound loop over [`Transport::length`]: the video's length when it has frames, else
/// the sound's.
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    /// Frames per second of the frames shown (0 for a still image or a sound alone).
    fps: f64,
    frames: usize,
    length: f64,
    playing: bool,
    muted: bool,
    /// Seconds into the loop at clock time `since`.
    position: f64,
    since: f64,
    /// Counts the jumps (play, pause, restart, seek): the sound is put in place after each.
    jumps: u64,
}

impl Transport {
    /// A transport that starts playing at clock time `now`: `frames` frames at `fps`, and a sound of
    /// `sound_seconds` where there is one.
    pub fn new(frames: usize, fps: f64, sound_seconds: Option<f64>, now: f64) -> Self {
        let length = if frames > 1 && fps > 0.0 { frames as f64 / fps } else { sound_seconds.unwrap_or(0.0).max(0.0) };
        Transport { fps, frames, length, playing: length > 0.0, muted: false, position: 0.0, since: now, jumps: 0 }
    }

    /// Seconds one loop lasts (0 for a still image).
    pub fn length(&self) -> f64 {
        self.length
    }

    /// Whether time runs (a still image never plays).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// How many play, pause, restart and seek jumps there have been.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    /// Seconds into the loop at clock time `now`.
    pub fn time_at(&self, now: f64) -> f64 {
        if self.length <= 0.0 {
            return 0.0;
        }
        let elapsed = if self.playing { (now - self.since).max(0.0) } else { 0.0 };
        (self.position + elapsed).rem_euclid(self.length)
    }

    /// The frame to show at clock time `now`.
    pub fn frame_at(&self, now: f64) -> usize {
        if self.frames < 2 || self.fps <= 0.0 {
            return 0;
        }
        ((self.time_at(now) * self.fps) as usize).min(self.frames - 1)
    }

    /// Where the sound should be at clock time `now`, in samples at `sample_rate`.
    pub fn sample_at(&self, now: f64, sample_rate: u32) -> f64 {
        self.time_at(now) * f64::from(sample_rate)
    }

    /// Stops time at `now`, keeping the frame shown.
    pub fn pause(&mut self, now: f64) {
        if self.playing {
            self.position = self.time_at(now);
            self.since = now;
            self.playing = false;
            self.jumps += 1;
        }
    }

    /// Lets time run again from where it stopped.
    pub fn play(&mut self, now: f64) {
        if !self.playing && self.length > 0.0 {
            self.since = now;
            self.playing = true;
            self.jumps += 1;
        }
    }

    /// Pauses when playing, plays when paused.
    pub fn toggle_play(&mut self, now: f64) {
        if self.playing { self.pause(now) } else { self.play(now) }
    }

    /// Back to the first frame and the sound's start, playing.
    pub fn restart(&mut self, now: f64) {
        self.position = 0.0;
        self.since = now;
        self.playing = self.length > 0.0;
        self.jumps += 1;
    }

    /// Shows frame `frame` (clamped to the last), with the sound from that frame's start; playing or
    /// paused as before.
    pub fn seek_frame(&mut self, frame: usize, now: f64) {
        if self.frames < 2 || self.fps <= 0.0 {
            return;
        }
        self.seek_seconds(frame.min(self.frames - 1) as f64 / self.fps, now);
    }

    /// Moves to `seconds` into the loop (clamped to it); playing or paused as before.
    pub fn seek_seconds(&mut self, seconds: f64, now: f64) {
        if self.length <= 0.0 {
            return;
        }
        self.position = seconds.clamp(0.0, self.length).rem_euclid(self.length);
        self.since = now;
        self.jumps += 1;
    }

    /// Silences the sound or brings it back; the frames play on either way.
    pub fn toggle_mute(&mut self) {
        self.muted = !self.muted;
    }

    /// Seconds from `now` until the frame shown next changes (or, for a sound alone, a tenth of a
    /// second, for the time shown): when to draw again. `None` while nothing moves.
    pub fn next_change(&self, now: f64) -> Option<f64> {
        if !self.playing {
            return None;
        }
        if self.frames < 2 || self.fps <= 0.0 {
            return Some(0.1);
        }
        let time = self.time_at(now) * self.fps;
        Some(((time.floor() + 1.0 - time) / self.fps).max(0.001))
    }
}

/// A sound as the audio device's callback reads it, and where it is: kept by the window on the
/// transport's time ([`SharedSound::follow`]), advanced by the callback ([`SharedSound::fill`]).
#[derive(Debug)]
pub struct SharedSound {
    sound: Arc<OutputSound>,
    /// The loop's length in samples: the video's, so that the sound starts again with its frames.
    loop_samples: f64,
    /// In samples, fractional (the device's rate may differ); `f64` bits.
    position: AtomicU64,
    playing: AtomicBool,
    muted: AtomicBool,
    /// Seconds from a callback's samples to the speaker (the device's buffer), as the device last said;
    /// `f64` bits.
    latency: AtomicU64,
}

impl SharedSound {
    /// `sound`, looping every `loop_seconds` (its own length when 0), paused at its start.
    pub fn new(sound: Arc<OutputSound>, loop_seconds: f64) -> Self {
        let own = sound.samples() as f64;
        let loop_samples = if loop_seconds > 0.0 { loop_seconds * f64::from(sound.sample_rate) } else { own };
        SharedSound {
            sound,
            loop_samples: loop_samples.max(1.0),
            position: AtomicU64::new(0.0_f64.to_bits()),
            playing: AtomicBool::new(false),
            muted: AtomicBool::new(false),
            latency: AtomicU64::new(0.0_f64.to_bits()),
        }
    }

    pub fn sound(&self) -> &OutputSound {
        &self.sound
    }

    /// Where the callback has got to, in samples: ahead of what is heard by the device's latency.
    pub fn position(&self) -> f64 {
        f64::from_bits(self.position.load(Ordering::Acquire))
    }

    /// Records how long the device takes from a callback to the speaker (clamped to a second).
    pub fn set_latency(&self, seconds: f64) {
        self.latency.store(seconds.clamp(0.0, 1.0).to_bits(), Ordering::Release);
    }

    /// The device's latency, in samples of the sound.
    fn latency_samples(&self) -> f64 {
        f64::from_bits(self.latency.load(Ordering::Acquire)) * f64::from(self.sound.sample_rate)
    }

    /// The sample being heard now, in samples: the callback's position less the device's latency.
    pub fn heard_position(&self) -> f64 {
        (self.position() - self.latency_samples()).rem_euclid(self.loop_samples)
    }

    pub fn is_playing(&self) -> bool {
        self.playing.load(Ordering::Acquire)
    }

    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Acquire)
    }

    /// Puts the sound where `transport` is at `now`: playing, muted and position, so that the sample
    /// heard is the one of the frame shown (the callback runs ahead by the device's latency). The
    /// position is set when `jumped` (a play, pause, restart or seek since the last call) or when it
    /// has drifted more than [`SYNC_TOLERANCE`]; returns whether it was set.
    pub fn follow(&self, transport: &Transport, now: f64, jumped: bool) -> bool {
        self.playing.store(transport.is_playing(), Ordering::Release);
        self.muted.store(transport.is_muted(), Ordering::Release);
        let rate = f64::from(self.sound.sample_rate);
        let wanted = transport.sample_at(now, self.sound.sample_rate).min(self.loop_samples);
        let drift = (self.heard_position() - wanted).abs();
        // Drift across the loop's end is no drift: the two have wrapped at different moments.
        let drift = drift.min(self.loop_samples - drift);
        if jumped || drift > SYNC_TOLERANCE * rate {
            let ahead = if transport.is_playing() { self.latency_samples() } else { 0.0 };
            let position = (wanted + ahead).rem_euclid(self.loop_samples);
            self.position.store(position.to_bits(), Ordering::Release);
            return true;
        }
        false
    }

    /// Writes the next `out.len() / channels` frames for a device with `channels` interleaved channels
    /// at `device_rate`, and moves the position on by as much of the sound (silence while paused;
    /// silence that still moves on while muted, so that unmuting comes back in place). Mono goes to
    /// every channel; a device with one channel gets the channels' mean; channels the sound lacks are
    /// silent. The rate is converted by linear interpolation; past the sound's end (a video a little
    /// longer than its sound) it is silent until the loop starts again.
    pub fn fill(&self, out: &mut [f32], channels: usize, device_rate: u32) {
        out.fill(0.0);
        if channels == 0 || device_rate == 0 || !self.is_playing() {
            return;
        }
        let start_bits = self.position.load(Ordering::Acquire);
        let mut position = f64::from_bits(start_bits);
        let step = f64::from(self.sound.sample_rate) / f64::from(device_rate);
        let muted = self.is_muted();
        let source = &self.sound.channels;
        let at = |channel: &[f32], position: f64| -> f32 {
            let index = position.floor();
            let fraction = (position - index) as f32;
            let index = index as usize;
            let first = channel.get(index).copied().unwrap_or(0.0);
            let second = channel.get(index + 1).copied().unwrap_or(0.0);
            first + (second - first) * fraction
        };
        for frame in out.chunks_exact_mut(channels) {
            if !muted {
                if source.len() == 1 {
                    frame.fill(at(&source[0], position));
                } else if channels == 1 {
                    let sum: f32 = source.iter().map(|channel| at(channel, position)).sum();
                    frame[0] = sum / source.len() as f32;
                } else {
                    for (value, channel) in frame.iter_mut().zip(source) {
                        *value = at(channel, position);
                    }
                }
            }
            position += step;
            if position >= self.loop_samples {
                position -= self.loop_samples;
            }
        }
        for value in out.iter_mut() {
            *value = value.clamp(-1.0, 1.0);
        }
        // A seek from the window while this ran wins over where this got to.
        let _ = self.position.compare_exchange(start_bits, position.to_bits(), Ordering::AcqRel, Ordering::Acquire);
    }
}
