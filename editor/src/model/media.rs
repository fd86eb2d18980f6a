//! Output files shown in their save nodes: each frame of a video, animated WebP or image, scaled down to
//! a node's width, and the sound of a video or sound file ([`super::sound`]), read on a thread of its
//! own so that the window never waits on a decoder.
//!
//! Memory is bounded: frames are decoded one at a time and only the small copies kept, at most
//! [`MAX_FRAMES`] of them (a longer video keeps every n-th frame and plays at the rate that keeps its
//! length).

use super::sound::{OutputSound, is_sound_file, load_sound};
use kinograph_nodes::media::mp4_reader::Mp4Reader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

/// The most frames kept of one output.
pub const MAX_FRAMES: usize = 96;

/// The frames of one output file, scaled down.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnails {
    pub width: usize,
    pub height: usize,
    /// RGB bytes, `width × height × 3` each.
    pub frames: Vec<Vec<u8>>,
    /// Frames per second to play them at (still images: 0).
    pub fps: f64,
}

/// What an output file shows and plays: its frames (none for a sound alone) and its sound (none for
/// an image or a silent video).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputMedia {
    pub thumbnails: Option<Thumbnails>,
    pub sound: Option<Arc<OutputSound>>,
    /// Why the file's sound track could not be decoded (its frames are shown all the same).
    pub sound_error: Option<String>,
}

/// Reads `path` as [`load_thumbnails`] does, and its sound track with [`load_sound`]; a sound file
/// (FLAC, WAV, as `SaveAudio` and `PreviewAudio` write) has only its sound.
pub fn load_output(path: &Path, max_width: usize, max_frames: usize) -> Result<OutputMedia, String> {
    if is_sound_file(path) {
        let sound = load_sound(path)?.ok_or_else(|| format!("{}: the file holds no sound", path.display()))?;
        return Ok(OutputMedia { thumbnails: None, sound: Some(Arc::new(sound)), sound_error: None });
    }
    let thumbnails = load_thumbnails(path, max_width, max_frames)?;
    let (sound, sound_error) = match load_sound(path) {
        Ok(sound) => (sound.map(Arc::new), None),
        Err(error) => (None, Some(error)),
    };
    Ok(OutputMedia { thumbnails: Some(thumbnails), sound, sound_error })
}

/// Reads `path` (MP4 with H.264, PNG, WebP still or animated) into frames at most `max_width` pixels
/// wide (never scaled up), keeping at most `max_frames`. Errors name the file and what was wrong.
pub fn load_thumbnails(path: &Path, max_width: usize, max_frames: usize) -> Result<Thumbnails, String> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let max_frames = max_frames.max(1);
    match extension.as_str() {
        "mp4" | "m4v" | "mov" => load_mp4(path, max_width, max_frames),
        "png" | "webp" => load_image(path, max_width, max_frames),
        _ => Err(format!(
            "{}: cannot show a .{extension} file; the editor shows MP4 (H.264), PNG and WebP outputs",
            path.display()
        )),
    }
}

fn load_mp4(path: &Path, max_width: usize, max_frames: usize) -> Result<Thumbnails, String> {
    let mut reader = Mp4Reader::open(path).map_err(|error| error.to_string())?;
    let (width, height) = reader.size();
    let stride = reader.frame_count().div_ceil(max_frames).max(1);
    let fps = reader.fps().unwrap_or(24.0) / stride as f64;
    let (small_width, small_height) = scaled_size(width, height, max_width);
    let mut frames = Vec::new();
    let mut index = 0;
    while let Some(rgb) = reader.next_frame().map_err(|error| error.to_string())? {
        if index % stride == 0 && frames.len() < max_frames {
            frames.push(downscale(&rgb, width, height, small_width, small_height));
        }
        index += 1;
    }
    if frames.is_empty() {
        return Err(format!("{}: the video has no frames", path.display()));
    }
    Ok(Thumbnails { width: small_width, height: small_height, frames, fps })
}

fn load_image(path: &Path, max_width: usize, max_frames: usize) -> Result<Thumbnails, String> {
    use image::AnimationDecoder;
    let fail = |error: image::ImageError| format!("{}: {error}", path.display());
    let open = || std::fs::File::open(path).map_err(|error| format!("{}: cannot open: {error}", path.display()));
    let is_webp = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("webp"));
    if is_webp {
        let reader = std::io::BufReader::new(open()?);
        let decoder = image::codecs::webp::WebPDecoder::new(reader).map_err(fail)?;
        if decoder.has_animation() {
            let mut frames = Vec::new();
            let mut size = (0, 0);
            let mut first_delay = None;
            for frame in decoder.into_frames() {
                let frame = frame.map_err(fail)?;
                first_delay.get_or_insert(frame.delay().numer_denom_ms());
                let rgb = image::DynamicImage::ImageRgba8(frame.into_buffer()).into_rgb8();
                let (width, height) = (rgb.width() as usize, rgb.height() as usize);
                size = scaled_size(width, height, max_width);
                frames.push(downscale(rgb.as_raw(), width, height, size.0, size.1));
            }
            if frames.is_empty() {
                return Err(format!("{}: the animation has no frames", path.display()));
            }
            let stride = frames.len().div_ceil(max_frames).max(1);
            let frames: Vec<_> = frames.into_iter().step_by(stride).collect();
            let fps = first_delay
                .filter(|(numerator, _)| *numerator > 0)
                .map_or(10.0, |(numerator, denominator)| 1000.0 * f64::from(denominator) / f64::from(numerator));
            return Ok(Thumbnails { width: size.0, height: size.1, frames, fps: fps / stride as f64 });
        }
    }
    let picture = image::ImageReader::new(std::io::BufReader::new(open()?))
        .with_guessed_format()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let rgb = picture.decode().map_err(fail)?.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let (small_width, small_height) = scaled_size(width, height, max_width);
    let frames = vec![downscale(rgb.as_raw(), width, height, small_width, small_height)];
    Ok(Thumbnails { width: small_width, height: small_height, frames, fps: 0.0 })
}

/// The size of a `width × height` picture scaled to at most `max_width` wide, keeping its shape.
fn scaled_size(width: usize, height: usize, max_width: usize) -> (usize, usize) {
    if width <= max_width || width == 0 {
        return (width, height);
    }
    let max_width = max_width.max(1);
    (max_width, (height * max_width).div_ceil(width).max(1))
}

/// Scales RGB down by averaging the source pixels that fall in each target pixel.
pub fn downscale(rgb: &[u8], width: usize, height: usize, to_width: usize, to_height: usize) -> Vec<u8> {
    if (width, height) == (to_width, to_height) {
        return rgb.to_vec();
    }
    let mut out = Vec::with_capacity(to_width * to_height * 3);
    for y in 0..to_height {
        let (top, bottom) = (y * height / to_height, ((y + 1) * height).div_ceil(to_height).min(height));
        for x in 0..to_width {
            let (left, right) = (x * width / to_width, ((x + 1) * width).div_ceil(to_width).min(width));
            let mut sum = [0_u32; 3];
            for row in top..bottom {
                for column in left..right {
                    let at = (row * width + column) * 3;
                    for channel in 0..3 {
                        sum[channel] += u32::from(rgb[at + channel]);
                    }
                }
            }
            let count = ((bottom - top) * (right - left)).max(1) as u32;
            out.extend(sum.iter().map(|total| ((total + count / 2) / count) as u8));
        }
    }
    out
}

/// A file read for a node: the node, the file, and what it holds or why it could not be read.
pub type LoadedOutput = (String, PathBuf, Result<OutputMedia, String>);

/// Reads output files into thumbnails and sound on threads of their own.
pub struct OutputLoader {
    sender: Sender<LoadedOutput>,
    receiver: Receiver<LoadedOutput>,
}

impl Default for OutputLoader {
    fn default() -> Self {
        let (sender, receiver) = channel();
        OutputLoader { sender, receiver }
    }
}

impl OutputLoader {
    /// Starts reading `path` for node `node` (as the prompt names it); `wake` is called when it is done.
    pub fn request(&self, node: &str, path: &Path, max_width: usize, wake: impl Fn() + Send + 'static) {
        let sender = self.sender.clone();
        let (owner, file) = (node.to_string(), path.to_path_buf());
        let spawned = std::thread::Builder::new().name("kinograph-output".into()).spawn(move || {
            let loaded = load_output(&file, max_width, MAX_FRAMES);
            let _ = sender.send((owner, file, loaded));
            wake();
        });
        if let Err(error) = spawned {
            let message = format!("{}: could not start a thread to read it: {error}", path.display());
            let _ = self.sender.send((node.to_string(), path.to_path_buf(), Err(message)));
        }
    }

    /// The files read since the last call: node, file, and its frames and sound or why they could not
    /// be read.
    pub fn poll(&self) -> Vec<LoadedOutput> {
        self.receiver.try_iter().collect()
    }
}
