//! AAC-LC: streaming stereo encoding with the Fraunhofer FDK encoder (`fdk-aac`, compiled from its
//! vendored C++ source), and decoding of raw AAC packets with symphonia.
//!
//! The encoder stands in for what ComfyUI's `SaveVideo` gets from `PyAV`'s `aac` stream: AAC-LC in raw
//! access units (for MP4), at the audio's own sample rate, 128 kb/s (`PyAV`'s default for a stereo
//! stream). Mono input is written to both channels; the MP4 track is always stereo.
//!
//! Samples go in as planar floats in −1..1, are rounded to 16 bits (FDK's input format) and encoded in
//! frames of [`FRAME_LENGTH`] samples as they come; only one frame of input is buffered. Each encoded
//! packet stands for 1024 samples, and the first [`AacEncoder::delay`] samples decoded are the
//! encoder's priming, which an MP4 edit list skips.

use super::MediaError;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::Packet;

/// Samples per channel in one AAC-LC frame.
pub const FRAME_LENGTH: usize = 1024;

/// The bit rate `PyAV` gives an `aac` stream it creates (ffmpeg's encoder would pick the same for stereo).
pub const DEFAULT_BIT_RATE: u32 = 128_000;

/// The sample rates AAC has a sampling frequency index for.
pub const SAMPLE_RATES: [u32; 12] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000];

/// A stereo AAC-LC encoder fed with planar float samples.
pub struct AacEncoder {
    encoder: Encoder,
    sample_rate: u32,
    config: Vec<u8>,
    delay: usize,
    /// Interleaved 16-bit stereo samples not yet handed to the encoder (less than one frame).
    pending: Vec<i16>,
    /// Samples per channel given so far.
    samples_in: u64,
    packets_out: u64,
    output: Vec<u8>,
}

impl AacEncoder {
    /// An encoder for stereo at `sample_rate` Hz and `bit_rate` bits per second.
    pub fn new(sample_rate: u32, bit_rate: u32) -> Result<Self, MediaError> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(MediaError::Format(format!(
                "audio at {sample_rate} Hz cannot be stored as AAC; it needs one of {SAMPLE_RATES:?} Hz"
            )));
        }
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bit_rate),
            sample_rate,
            transport: Transport::Raw,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|error| MediaError::codec("starting the AAC encoder", error))?;
        let info = encoder.info().map_err(|error| MediaError::codec("starting the AAC encoder", error))?;
        if info.frameLength as usize != FRAME_LENGTH {
            return Err(MediaError::codec(
                "starting the AAC encoder",
                format!("frames of {} samples instead of {FRAME_LENGTH}", info.frameLength),
            ));
        }
        let config = info.confBuf[..(info.confSize as usize).min(info.confBuf.len())].to_vec();
        Ok(AacEncoder {
            encoder,
            sample_rate,
            config,
            delay: info.nDelay as usize,
            pending: Vec::with_capacity(2 * FRAME_LENGTH),
            samples_in: 0,
            packets_out: 0,
            output: vec![0; (info.maxOutBufBytes as usize).max(8192)],
        })
    }

    /// The sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The `AudioSpecificConfig` (ISO 14496-3) that an MP4's `esds` carries.
    pub fn audio_specific_config(&self) -> &[u8] {
        &self.config
    }

    /// Priming samples per channel: decoded output lags the input by this much.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Samples per channel given so far.
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// How many packets the whole input needs so that every sample given is decoded: the priming plus
    /// the samples, in whole frames.
    pub fn packets_needed(&self) -> u64 {
        (self.delay as u64 + self.samples_in).div_ceil(FRAME_LENGTH as u64)
    }

    /// Encodes `channels` (one or two planar channels of equal length; one is written to both sides),
    /// calling `packet` with each AAC access unit that comes out.
    pub fn encode(
        &mut self,
        channels: &[&[f32]],
        mut packet: impl FnMut(&[u8]) -> Result<(), MediaError>,
    ) -> Result<(), MediaError> {
        let (left, right) = match channels {
            [mono] => (*mono, *mono),
            [left, right] if left.len() == right.len() => (*left, *right),
            [left, right] => {
                return Err(MediaError::Format(format!(
                    "the two channels hold {} and {} samples; they must be the same length",
                    left.len(),
                    right.len()
                )));
            }
            _ => {
                return Err(MediaError::Format(format!(
                    "AAC output takes mono or stereo audio, got {} channels",
                    channels.len()
                )));
            }
        };
        for (l, r) in left.iter().zip(right) {
            self.pending.push(to_i16(*l));
            self.pending.push(to_i16(*r));
            if self.pending.len() == 2 * FRAME_LENGTH {
                self.encode_pending(&mut packet)?;
            }
        }
        self.samples_in += left.len() as u64;
        Ok(())
    }

    /// Encodes what is left, padding with silence until every sample given has come out, and hands
    /// the last packets to `packet`. Returns the number of packets made in all.
    pub fn finish(mut self, mut packet: impl FnMut(&[u8]) -> Result<(), MediaError>) -> Result<u64, MediaError> {
        let needed = self.packets_needed();
        // The encoder holds at most a few frames; a bound keeps a misbehaving one from looping forever.
        let mut rounds = 0;
        while self.packets_out < needed {
            self.pending.resize(2 * FRAME_LENGTH, 0);
            let already = self.packets_out;
            let mut produced = 0;
            encode_frame(&self.encoder, &mut self.pending, &mut self.output, &mut |bytes| {
                produced += 1;
                // Packets past the last one needed hold only the padding.
                if already + produced <= needed { packet(bytes) } else { Ok(()) }
            })?;
            self.packets_out += produced;
            rounds += 1;
            if rounds > 64 + needed {
                return Err(MediaError::codec("flushing the AAC encoder", "it stopped producing packets"));
            }
        }
        self.packets_out = self.packets_out.min(needed);
        Ok(self.packets_out)
    }

    fn encode_pending(&mut self, packet: &mut impl FnMut(&[u8]) -> Result<(), MediaError>) -> Result<(), MediaError> {
        let mut produced = 0;
        encode_frame(&self.encoder, &mut self.pending, &mut self.output, &mut |bytes| {
            produced += 1;
            packet(bytes)
        })?;
        self.packets_out += produced;
        Ok(())
    }
}

/// Hands one frame of interleaved samples (`pending`, emptied) to the encoder and passes on the packet
/// it returns, if any (none while it fills its look-ahead).
fn encode_frame(
    encoder: &Encoder,
    pending: &mut Vec<i16>,
    output: &mut [u8],
    packet: &mut impl FnMut(&[u8]) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut at = 0;
    while at < pending.len() {
        let info = encoder.encode(&pending[at..], output).map_err(|error| MediaError::codec("encoding AAC", error))?;
        if info.output_size > 0 {
            packet(&output[..info.output_size])?;
        }
        if info.input_consumed == 0 && info.output_size == 0 {
            return Err(MediaError::codec("encoding AAC", "the encoder took no input"));
        }
        at += info.input_consumed;
    }
    pending.clear();
    Ok(())
}

/// A float sample as 16-bit PCM, rounding as ffmpeg's float → s16 conversion does (NaN becomes 0).
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Decodes raw AAC access units with symphonia.
pub struct AacDecoder {
    decoder: Box<dyn AudioDecoder>,
    channels: Vec<Vec<f32>>,
    scratch: Vec<Vec<f32>>,
    next_pts: i64,
}

impl AacDecoder {
    /// A decoder for the stream that `audio_specific_config` describes.
    pub fn new(audio_specific_config: &[u8]) -> Result<Self, MediaError> {
        let mut parameters = AudioCodecParameters::new();
        parameters.for_codec(CODEC_ID_AAC).with_extra_data(audio_specific_config.into());
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&parameters, &AudioDecoderOptions::default())
            .map_err(|error| MediaError::codec("starting the AAC decoder", error))?;
        Ok(AacDecoder { decoder, channels: Vec::new(), scratch: Vec::new(), next_pts: 0 })
    }

    /// Decodes one access unit and appends its samples.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<(), MediaError> {
        let packet = Packet::new(0, self.next_pts.into(), (FRAME_LENGTH as u64).into(), access_unit);
        self.next_pts += FRAME_LENGTH as i64;
        let decoded = self.decoder.decode(&packet).map_err(|error| MediaError::codec("decoding AAC", error))?;
        decoded.copy_to_vecs_planar(&mut self.scratch);
        if self.channels.is_empty() {
            self.channels = vec![Vec::new(); self.scratch.len()];
        }
        for (channel, samples) in self.channels.iter_mut().zip(&self.scratch) {
            channel.extend_from_slice(samples);
        }
        Ok(())
    }

    /// Every sample decoded, one vector per channel.
    pub fn into_channels(self) -> Vec<Vec<f32>> {
        self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let rate = 24000;
        let mut encoder = AacEncoder::new(rate, DEFAULT_BIT_RATE).unwrap();
        assert_eq!(encoder.audio_specific_config(), [0x13, 0x10], "AAC-LC, 24 kHz, stereo");
        let tone: Vec<f32> =
            (0..rate).map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / 24000.0).sin()).collect();
        let mut packets = Vec::new();
        // Uneven slices: the encoder buffers them into frames.
        for part in tone.chunks(700) {
            encoder
                .encode(&[part], |bytes| {
                    packets.push(bytes.to_vec());
                    Ok(())
                })
                .unwrap();
        }
        let delay = encoder.delay();
        let count = encoder
            .finish(|bytes| {
                packets.push(bytes.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(count as usize, packets.len());
        assert_eq!(packets.len(), (rate as usize + delay).div_ceil(FRAME_LENGTH));

        let mut decoder = AacDecoder::new(&[0x13, 0x10]).unwrap();
        for packet in &packets {
            decoder.decode(packet).unwrap();
        }
        let channels = decoder.into_channels();
        assert_eq!(channels.len(), 2);
        let decoded = &channels[0][delay..delay + rate as usize];
        let error = decoded.iter().zip(&tone).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
        let signal = tone.iter().map(|a| a * a).sum::<f32>();
        let snr = 10.0 * (signal / error).log10();
        println!("FDK AAC-LC at 24 kHz: {delay} priming samples, SNR {snr:.1} dB");
        assert!(snr > 20.0, "SNR {snr} dB after removing {delay} samples of delay");
    }

    #[test]
    fn unsupported_rates_and_channel_counts_are_refused() {
        assert!(AacEncoder::new(44000, DEFAULT_BIT_RATE).err().unwrap().to_string().contains("44000 Hz"));
        let mut encoder = AacEncoder::new(48000, DEFAULT_BIT_RATE).unwrap();
        let samples = [0.0_f32; 4];
        let error = encoder.encode(&[&samples, &samples, &samples], |_| Ok(())).unwrap_err().to_string();
        assert!(error.contains("3 channels"), "{error}");
        assert!(encoder.encode(&[&samples, &samples[..2]], |_| Ok(())).is_err());
    }
}
