//! H.264 through openh264 (Cisco's encoder and decoder, compiled from the vendored source): frames go
//! in one at a time as RGB, come out as the NAL units of one access unit.
//!
//! openh264 writes the Constrained Baseline profile only and has no CRF mode. Quality is set instead by
//! a fixed quantiser: the rate controller's QP range is pinned to one value (adaptive quantisation and
//! background detection off, so no block drifts from it), and every frame is coded at that QP.
//!
//! Calibration against libx264 (ffmpeg 5.1, `-crf 23`, preset medium) on ffmpeg's `testsrc2` pattern,
//! 48 frames of 320×240 at 24 fps, both decoded by ffmpeg: x264 gives 34.9 dB PSNR in 67 KB; openh264
//! gives 37.4 dB / 110 KB at QP 26, 36.0 dB / 97 KB at QP 28, 34.8 dB / 85 KB at QP 30. [`DEFAULT_QP`]
//! is 28: at least x264's default quality, in files about 1.4 times larger (Baseline has no B frames
//! and no CABAC).

use super::MediaError;
use super::yuv::{Yuv420, rgb_to_yuv420, yuv420_to_rgb};
use openh264::OpenH264API;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode, UsageType,
    VuiConfig,
};
use openh264::formats::{YUVSlices, YUVSource};

/// The quantiser used for saved videos, at least as good as x264's default CRF 23 (see above).
pub const DEFAULT_QP: u8 = 28;

/// The best quantiser openh264's rate control accepts (it raises anything lower to 12).
pub const MIN_QP: u8 = 12;

/// Key frame interval, as x264's default `keyint=250`.
const KEY_FRAME_INTERVAL: u32 = 250;

/// One encoded frame: its NAL units without start codes.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub nal_units: Vec<Vec<u8>>,
    /// An IDR frame, where decoding can start.
    pub is_key: bool,
}

/// H.264 NAL unit types the muxer treats specially.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;

/// The type of a NAL unit (its first byte's low five bits).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |byte| byte & 0x1f)
}

/// Encodes RGB frames of one even size at a fixed quantiser.
pub struct H264Encoder {
    encoder: Encoder,
    width: usize,
    height: usize,
}

/// The highest target bitrate given to openh264, below its level 5.2 limit of 288 Mb/s.
const MAX_BITRATE: f64 = 240_000_000.0;

impl H264Encoder {
    /// An encoder for `width × height` frames (both even, at most 3840×2160 either way) at `fps`,
    /// coding every frame at quantiser `qp`, clamped to [`MIN_QP`] (best) ..= 51 (smallest).
    pub fn new(width: usize, height: usize, fps: f64, qp: u8) -> Result<Self, MediaError> {
        if width < 2 || height < 2 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(MediaError::Format(format!(
                "H.264 in yuv420p needs an even size of at least 2x2, got {width}x{height}"
            )));
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            return Err(MediaError::Format(format!(
                "openh264 encodes at most 3840x2160 (or 2160x3840); {width}x{height} is larger"
            )));
        }
        let qp = qp.clamp(MIN_QP, 51);
        // With the QP pinned the bitrate cannot be met by raising the QP, only by skipping frames; a
        // target of uncompressed size (24 bits a pixel) is never exceeded, so no frame is skipped. (With
        // skipping disabled instead, openh264 prints a warning on every start.) openh264 refuses targets
        // above its highest level's limit (288 Mb/s), falling back to defaults with an error printed, so
        // large frames are capped below it.
        let bits_per_second = (width as f64 * height as f64 * fps.max(1.0) * 24.0).min(MAX_BITRATE) as u32;
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Quality)
            .qp(QpRange::new(qp, qp))
            .bitrate(BitRate::from_bps(bits_per_second))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(KEY_FRAME_INTERVAL))
            .vui(VuiConfig::bt601())
            .background_detection(false)
            .adaptive_quantization(false);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|error| MediaError::codec("starting the H.264 encoder", error))?;
        Ok(H264Encoder { encoder, width, height })
    }

    /// Frame width and height.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Encodes one RGB frame.
    pub fn encode(&mut self, rgb: &[u8]) -> Result<AccessUnit, MediaError> {
        super::check_rgb(rgb, self.width, self.height)?;
        let yuv = rgb_to_yuv420(rgb, self.width, self.height);
        self.encode_yuv(&yuv)
    }

    /// Encodes one I420 frame.
    pub fn encode_yuv(&mut self, yuv: &Yuv420) -> Result<AccessUnit, MediaError> {
        let chroma_width = yuv.width / 2;
        let source =
            YUVSlices::new((&yuv.y, &yuv.u, &yuv.v), (yuv.width, yuv.height), (yuv.width, chroma_width, chroma_width));
        let stream =
            self.encoder.encode(&source).map_err(|error| MediaError::codec("encoding an H.264 frame", error))?;
        let is_key = matches!(stream.frame_type(), FrameType::IDR);
        let mut nal_units = Vec::new();
        for layer_index in 0..stream.num_layers() {
            let Some(layer) = stream.layer(layer_index) else { continue };
            for nal_index in 0..layer.nal_count() {
                if let Some(nal) = layer.nal_unit(nal_index) {
                    nal_units.push(strip_start_code(nal).to_vec());
                }
            }
        }
        if nal_units.is_empty() {
            return Err(MediaError::codec("encoding an H.264 frame", "the encoder produced no data (frame skipped)"));
        }
        Ok(AccessUnit { nal_units, is_key })
    }
}

/// A NAL unit without its Annex-B start code (`00 00 01` or `00 00 00 01`).
fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

/// Encodes one RGB frame (even size) as an H.264 key frame at quantiser `qp` and decodes it back to RGB:
/// the compression artefacts a video encoder would add, for `LTXVPreprocess`.
pub fn compress_frame(rgb: &[u8], width: usize, height: usize, qp: u8) -> Result<Vec<u8>, MediaError> {
    let mut encoder = H264Encoder::new(width, height, 25.0, qp)?;
    let unit = encoder.encode(rgb)?;
    let mut annex_b = Vec::new();
    for nal in &unit.nal_units {
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(nal);
    }
    let mut decoder = Decoder::new().map_err(|error| MediaError::codec("starting the H.264 decoder", error))?;
    let decoded = decoder.decode(&annex_b).map_err(|error| MediaError::codec("decoding an H.264 frame", error))?;
    if let Some(frame) = decoded {
        return frame_to_rgb(&frame, width, height);
    }
    let mut remaining =
        decoder.flush_remaining().map_err(|error| MediaError::codec("decoding an H.264 frame", error))?;
    let frame = remaining
        .pop()
        .ok_or_else(|| MediaError::codec("decoding an H.264 frame", "the decoder returned no picture"))?;
    frame_to_rgb(&frame, width, height)
}

/// Decodes an H.264 stream one access unit at a time, to RGB.
pub struct H264Decoder {
    decoder: Decoder,
    width: usize,
    height: usize,
}

impl H264Decoder {
    /// A decoder for pictures of `width × height`; others are refused as they come.
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        let decoder = Decoder::new().map_err(|error| MediaError::codec("starting the H.264 decoder", error))?;
        Ok(H264Decoder { decoder, width, height })
    }

    /// Decodes one access unit in Annex B form (start codes before each NAL unit); `None` when the
    /// decoder holds the picture back for now.
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<Vec<u8>>, MediaError> {
        let decoded =
            self.decoder.decode(annex_b).map_err(|error| MediaError::codec("decoding an H.264 frame", error))?;
        decoded.map(|frame| frame_to_rgb(&frame, self.width, self.height)).transpose()
    }

    /// The pictures the decoder still holds, in order.
    pub fn flush(&mut self) -> Result<Vec<Vec<u8>>, MediaError> {
        let remaining =
            self.decoder.flush_remaining().map_err(|error| MediaError::codec("decoding an H.264 frame", error))?;
        remaining.iter().map(|frame| frame_to_rgb(frame, self.width, self.height)).collect()
    }
}

fn frame_to_rgb(frame: &impl YUVSource, width: usize, height: usize) -> Result<Vec<u8>, MediaError> {
    if frame.dimensions() != (width, height) {
        return Err(MediaError::codec(
            "decoding an H.264 frame",
            format!("decoded {:?}, expected {width}x{height}", frame.dimensions()),
        ));
    }
    let (y_stride, u_stride, v_stride) = frame.strides();
    Ok(yuv420_to_rgb([frame.y(), frame.u(), frame.v()], [y_stride, u_stride, v_stride], width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_encoder_cannot_take_are_refused_up_front() {
        assert!(H264Encoder::new(64, 48, 24.0, 28).is_ok());
        for (width, height) in [(0, 0), (63, 48), (64, 47), (4096, 2160), (3840, 2162)] {
            let error = H264Encoder::new(width, height, 24.0, 28).err().expect("refused").to_string();
            assert!(error.contains(&format!("{width}x{height}")), "{error}");
        }
    }

    #[test]
    fn a_compressed_frame_differs_from_the_plain_yuv_round_trip_by_the_quantiser_only() {
        let rgb: Vec<u8> = (0..32 * 16).flat_map(|i| [(i % 32 * 8) as u8, (i / 32 * 16) as u8, 128]).collect();
        // Chroma subsampling alone moves these steep ramps by a few levels; measure the codec beyond it.
        let yuv = rgb_to_yuv420(&rgb, 32, 16);
        let reference = yuv420_to_rgb([&yuv.y, &yuv.u, &yuv.v], [32, 16, 16], 32, 16);
        let mut means = Vec::new();
        for qp in [MIN_QP, 24, 40] {
            let back = compress_frame(&rgb, 32, 16, qp).unwrap();
            assert_eq!(back.len(), rgb.len());
            let mean =
                reference.iter().zip(&back).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / rgb.len() as f64;
            means.push(mean);
        }
        assert!(means[0] < 1.0 && means[1] < 4.0 && means[2] < 8.0, "{means:?}");
        assert!(means[0] < means[1] && means[1] < means[2], "{means:?}");
    }
}
