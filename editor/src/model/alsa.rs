//! Sound output on Linux through ALSA's `libasound.so.2`, loaded when the first sound plays rather than
//! linked: building needs no ALSA headers, and a machine without ALSA (a server running `kinograph serve`)
//! runs the same binary, where the editor says that sound needs `libasound2`.
//!
//! The stream is the `default` PCM (the sound servers of desktops route it) in interleaved 32-bit
//! float stereo at 48 kHz with ALSA's own resampling; a writer thread fills a period at a time from the
//! shared sound and reports the device's delay as the latency.
#![allow(unsafe_code, reason = "calls into a C library loaded at run time; each call says why it is sound")]

use super::sound::SharedSound;
use libloading::{Library, Symbol};
use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// `SND_PCM_STREAM_PLAYBACK`.
const STREAM_PLAYBACK: c_int = 0;
/// `SND_PCM_FORMAT_FLOAT_LE`.
const FORMAT_FLOAT_LE: c_int = 14;
/// `SND_PCM_ACCESS_RW_INTERLEAVED`.
const ACCESS_RW_INTERLEAVED: c_int = 3;
const CHANNELS: usize = 2;
const RATE: u32 = 48_000;
/// The buffer ALSA keeps ahead of what is heard, in microseconds.
const LATENCY_US: c_uint = 100_000;
/// Frames written at a time.
const PERIOD: usize = 1024;

type Pcm = c_void;
type Open = unsafe extern "C" fn(*mut *mut Pcm, *const c_char, c_int, c_int) -> c_int;
type SetParams = unsafe extern "C" fn(*mut Pcm, c_int, c_int, c_uint, c_uint, c_int, c_uint) -> c_int;
type WriteInterleaved = unsafe extern "C" fn(*mut Pcm, *const c_void, c_ulong) -> c_long;
type Recover = unsafe extern "C" fn(*mut Pcm, c_int, c_int) -> c_int;
type Delay = unsafe extern "C" fn(*mut Pcm, *mut c_long) -> c_int;
type Close = unsafe extern "C" fn(*mut Pcm) -> c_int;
type StrError = unsafe extern "C" fn(c_int) -> *const c_char;

/// The ALSA functions the stream uses.
struct Alsa {
    open: Open,
    set_params: SetParams,
    write: WriteInterleaved,
    recover: Recover,
    delay: Delay,
    close: Close,
    strerror: StrError,
    /// Keeps the functions above loaded.
    _library: Library,
}

/// The function `name` (NUL-terminated) of `library`, as a `T`.
fn symbol<T: Copy>(library: &Library, name: &[u8]) -> Result<T, String> {
    // SAFETY: each name is looked up with the C signature ALSA declares for it (alsa/pcm.h, alsa/error.h).
    let found: Symbol<'_, T> = unsafe { library.get(name) }
        .map_err(|error| format!("libasound.so.2 lacks {}: {error}", String::from_utf8_lossy(name)))?;
    Ok(*found)
}

impl Alsa {
    fn load() -> Result<Alsa, String> {
        // SAFETY: libasound's initialisers have no preconditions; the library stays loaded while `Alsa` lives.
        let library = unsafe { Library::new("libasound.so.2") }
            .map_err(|error| format!("ALSA's libasound.so.2 is not installed ({error}); install libasound2"))?;
        Ok(Alsa {
            open: symbol(&library, b"snd_pcm_open\0")?,
            set_params: symbol(&library, b"snd_pcm_set_params\0")?,
            write: symbol(&library, b"snd_pcm_writei\0")?,
            recover: symbol(&library, b"snd_pcm_recover\0")?,
            delay: symbol(&library, b"snd_pcm_delay\0")?,
            close: symbol(&library, b"snd_pcm_close\0")?,
            strerror: symbol(&library, b"snd_strerror\0")?,
            _library: library,
        })
    }

    fn describe(&self, code: c_int) -> String {
        // SAFETY: snd_strerror returns a static, NUL-terminated message for any code.
        let text = unsafe { (self.strerror)(code) };
        if text.is_null() {
            return format!("error {code}");
        }
        // SAFETY: checked non-null above; the string is static.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

/// An open PCM; closed when dropped.
struct Device {
    alsa: Alsa,
    pcm: *mut Pcm,
}

// SAFETY: the PCM handle is used by one thread at a time (the writer thread owns the `Device`).
unsafe impl Send for Device {}

impl Device {
    fn open() -> Result<Device, String> {
        let alsa = Alsa::load()?;
        let mut pcm: *mut Pcm = std::ptr::null_mut();
        // SAFETY: `pcm` is a valid out-pointer and the name a NUL-terminated string.
        let code = unsafe { (alsa.open)(&raw mut pcm, c"default".as_ptr(), STREAM_PLAYBACK, 0) };
        if code < 0 || pcm.is_null() {
            return Err(format!("the default ALSA output cannot be opened: {}", alsa.describe(code)));
        }
        let device = Device { alsa, pcm };
        let channels = CHANNELS as c_uint;
        // SAFETY: `pcm` is open; the constants are ALSA's enum values.
        let code = unsafe {
            (device.alsa.set_params)(device.pcm, FORMAT_FLOAT_LE, ACCESS_RW_INTERLEAVED, channels, RATE, 1, LATENCY_US)
        };
        if code < 0 {
            return Err(format!(
                "the default ALSA output refused float stereo at {RATE} Hz: {}",
                device.alsa.describe(code)
            ));
        }
        Ok(device)
    }

    /// Writes `frames` interleaved frames, recovering from an underrun once; false when the device is gone.
    fn write(&self, samples: &[f32]) -> bool {
        let frames = (samples.len() / CHANNELS) as c_ulong;
        // SAFETY: `samples` holds `frames` interleaved stereo frames of f32, as the stream was set up.
        let written = unsafe { (self.alsa.write)(self.pcm, samples.as_ptr().cast(), frames) };
        if written >= 0 {
            return true;
        }
        // SAFETY: `pcm` is open; recover takes the negative error code writei returned.
        unsafe { (self.alsa.recover)(self.pcm, written as c_int, 1) >= 0 }
    }

    /// Seconds of sound written but not heard yet.
    fn delay_seconds(&self) -> Option<f64> {
        let mut frames: c_long = 0;
        // SAFETY: `pcm` is open and `frames` a valid out-pointer.
        let code = unsafe { (self.alsa.delay)(self.pcm, &raw mut frames) };
        (code >= 0).then(|| frames.max(0) as f64 / f64::from(RATE))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: `pcm` was opened by `Device::open` and is closed once, here.
        unsafe { (self.alsa.close)(self.pcm) };
    }
}

/// The playing stream: its writer thread stops and the device closes when this is dropped.
pub struct Stream {
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Opens the default output and starts writing `shared` to it; returns the stream and the device's name.
pub fn open_stream(shared: Arc<SharedSound>) -> Result<(Stream, String), String> {
    let device = Device::open()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let writer = std::thread::Builder::new()
        .name("kinograph-alsa".into())
        .spawn(move || {
            let mut period = vec![0.0f32; PERIOD * CHANNELS];
            while !stopping.load(Ordering::Acquire) {
                // Once this period is written, what is heard lags the position by the delay plus the period.
                if let Some(delay) = device.delay_seconds() {
                    shared.set_latency(delay + PERIOD as f64 / f64::from(RATE));
                }
                shared.fill(&mut period, CHANNELS, RATE);
                if !device.write(&period) {
                    break;
                }
            }
        })
        .map_err(|error| format!("could not start the sound thread: {error}"))?;
    Ok((Stream { stop, writer: Some(writer) }, "the default ALSA output".to_string()))
}
