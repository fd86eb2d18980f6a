//! Chunked decoding and encoding with carried state: the decoder (and the encoder) run as a stream over
//! frames, so that peak memory depends on the chunk length, not on the video length, and the output
//! equals the whole decode (encode).
//!
//! Every temporal interaction in the decoder is a kernel-3 conv with replicated end frames (the depth-to-
//! space upsamplers and all norms act frame by frame). A streaming conv keeps the last two input frames it
//! has seen; given the next chunk it convolves `[kept frames, chunk]` without padding and emits every
//! output frame whose right neighbour has arrived, so each conv lags its input by one frame, and the end
//! of the stream adds the replicated last frame. Residual paths (a resnet's shortcut, an upsampler's
//! depth-to-space residual) queue their input frames until the conv path has produced the matching
//! output frames. The upsamplers' "drop the first frame" applies to the first frames they emit. The
//! timestep embeddings and noise planes are prepared once per decode ([`DecodeInputs`]), so chunks share
//! them, unlike ComfyUI's and diffusers' overlapping temporal tiles, which blend and differ from the
//! whole decode.
//!
//! The lags add up along the decoder (about a dozen latent frames for the released models), so the end
//! of the stream is flushed one stage at a time, each stage's tail passing through the later stages
//! before they flush; otherwise the last step would carry the whole accumulated lag at full resolution.
//! Measured on the real 0.9.5 decoder (random weights, 4×6 latent, one latent frame per chunk): peak
//! memory above the weights was 0.21 / 0.34 / 0.54 GiB for 5 / 9 / 17 latent frames, against 0.47 / 0.92
//! GiB for whole decodes of 5 / 9 frames. The remaining growth, about 25 MiB per latent frame, is only
//! partly the decoded video itself (2 × 2.4 MiB per latent frame, with the final concatenation); the rest
//! is not explained yet (it persists with a fixed glibc mmap threshold).
//!
//! The encoder is causal, so its streaming convs do not lag: each keeps the frames after the last
//! window it used (two frames for stride 1), and residual paths need no queue. The strided downsamplers
//! stay aligned because every chunk after the first 1 + 8m video frames holds a multiple of 8 frames; the
//! space-to-depth downsamplers queue an odd frame out until its partner arrives.

use super::blocks::{DepthToSpaceUpsample, SpaceToDepthDownsample};
use super::conv3d::CausalConv3d;
use super::decoder::{DecodeInputs, Decoder, UpBlock, unpatchify};
use super::encoder::{DownBlock, Encoder, patchify};
use super::resnet::ResnetBlock3D;
use crate::ops::norm::norm_modulate_silu;
use candle_core::{Result, Tensor};

/// Frames along dim 2, or none.
type Frames = Option<Tensor>;

fn join(a: Frames, b: Frames) -> Result<Frames> {
    Ok(match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => Some(Tensor::cat(&[&a, &b], 2)?),
    })
}

fn frames(x: &Frames) -> Result<usize> {
    x.as_ref().map_or(Ok(0), |x| x.dim(2))
}

/// Splits off the first `count` frames of `queue`.
fn take(queue: &mut Frames, count: usize) -> Result<Tensor> {
    let all = queue.take().expect("queued frames");
    let total = all.dim(2)?;
    if count < total {
        *queue = Some(all.narrow(2, count, total - count)?);
    }
    all.narrow(2, 0, count)
}

/// A conv over a stream of frames.
struct StreamConv<'a> {
    conv: &'a CausalConv3d,
    causal: bool,
    kept: Frames,
    started: bool,
}

impl<'a> StreamConv<'a> {
    fn new(conv: &'a CausalConv3d, causal: bool) -> Self {
        Self { conv, causal, kept: None, started: false }
    }

    fn push(&mut self, x: Frames, last: bool) -> Result<Frames> {
        let kernel = self.conv.time_kernel();
        let (left, right) = if self.causal { (kernel - 1, 0) } else { ((kernel - 1) / 2, (kernel - 1) / 2) };
        let mut buffer = self.kept.take();
        if !self.started
            && let Some(x) = &x
        {
            buffer = Some(x.narrow(2, 0, 1)?.repeat((1, 1, left, 1, 1))?);
            self.started = true;
        }
        let mut buffer = join(buffer, x)?;
        if last && right > 0 {
            let Some(all) = &buffer else { return Ok(None) };
            let end = all.narrow(2, all.dim(2)? - 1, 1)?.repeat((1, 1, right, 1, 1))?;
            buffer = join(buffer, Some(end))?;
        }
        let available = frames(&buffer)?;
        if available < kernel {
            self.kept = buffer;
            return Ok(None);
        }
        let all = buffer.expect("frames");
        // With temporal stride s, n outputs consume the first n·s frames; the rest is kept.
        let stride = self.conv.conv().stride()[0];
        let outputs = (available - kernel) / stride + 1;
        let consumed = outputs * stride;
        self.kept = Some(all.narrow(2, consumed, available - consumed)?);
        Ok(Some(self.conv.conv().forward(&all.narrow(2, 0, consumed + kernel - stride)?)?))
    }
}

/// A resnet over a stream.
struct StreamResnet<'a> {
    block: &'a ResnetBlock3D,
    modulation: Option<[Tensor; 4]>,
    noise: Option<&'a (Tensor, Tensor)>,
    conv1: StreamConv<'a>,
    conv2: StreamConv<'a>,
    residual: Frames,
}

impl<'a> StreamResnet<'a> {
    fn new(
        block: &'a ResnetBlock3D,
        causal: bool,
        embedding: Option<&Tensor>,
        noise: Option<&'a (Tensor, Tensor)>,
    ) -> Result<Self> {
        Ok(Self {
            block,
            modulation: block.modulation(embedding)?,
            noise,
            conv1: StreamConv::new(block.conv1(), causal),
            conv2: StreamConv::new(block.conv2(), causal),
            residual: None,
        })
    }

    fn push(&mut self, x: &Frames, last: bool) -> Result<Frames> {
        let pair = |m: &Option<[Tensor; 4]>, shift: usize| m.as_ref().map(|m| (m[shift].clone(), m[shift + 1].clone()));
        let first_pair = pair(&self.modulation, 0);
        let second_pair = pair(&self.modulation, 2);
        let input = match x {
            Some(x) => Some(ResnetBlock3D::norm_act(x, first_pair.as_ref().map(|(a, b)| (a, b)))?),
            None => None,
        };
        if let Some(x) = x {
            self.residual = join(self.residual.take(), Some(self.block.shortcut(x)?))?;
        }
        let mut hidden = self.conv1.push(input, last)?;
        if let (Some(h), Some((first, _))) = (&hidden, self.noise) {
            hidden = Some(h.broadcast_add(first)?);
        }
        let hidden = match &hidden {
            Some(h) => Some(ResnetBlock3D::norm_act(h, second_pair.as_ref().map(|(a, b)| (a, b)))?),
            None => None,
        };
        let Some(mut out) = self.conv2.push(hidden, last)? else { return Ok(None) };
        if let Some((_, second)) = self.noise {
            out = out.broadcast_add(second)?;
        }
        let count = out.dim(2)?;
        Ok(Some((out + take(&mut self.residual, count)?)?))
    }
}

/// A depth-to-space upsampler over a stream.
struct StreamUpsample<'a> {
    block: &'a DepthToSpaceUpsample,
    conv: StreamConv<'a>,
    queue: Frames,
    first: bool,
}

impl StreamUpsample<'_> {
    fn push(&mut self, x: Frames, last: bool) -> Result<Frames> {
        self.queue = join(self.queue.take(), x.clone())?;
        let Some(convolved) = self.conv.push(x, last)? else { return Ok(None) };
        let input = take(&mut self.queue, convolved.dim(2)?)?;
        let out = self.block.finish(&convolved, &input, self.first)?;
        self.first = false;
        Ok(Some(out))
    }
}

enum Stage<'a> {
    Resnet(StreamResnet<'a>),
    Upsample(StreamUpsample<'a>),
}

/// Decodes `latent` feeding `chunk` latent frames at a time.
pub fn decode_chunked(decoder: &Decoder, latent: &Tensor, inputs: &DecodeInputs, chunk: usize) -> Result<Tensor> {
    let causal = decoder.causal;
    let mut conv_in = StreamConv::new(&decoder.conv_in, causal);
    let mut stages = Vec::new();
    for (index, block) in decoder.up_blocks.iter().enumerate() {
        match block {
            UpBlock::Res(block) => {
                for (layer, resnet) in block.res_blocks().iter().enumerate() {
                    let noise = inputs.noise[index].get(layer).and_then(Option::as_ref);
                    stages.push(Stage::Resnet(StreamResnet::new(
                        resnet,
                        causal,
                        inputs.embeddings[index].as_ref(),
                        noise,
                    )?));
                }
            }
            UpBlock::ResChannels(resnet) => stages.push(Stage::Resnet(StreamResnet::new(resnet, causal, None, None)?)),
            UpBlock::Upsample(block) => stages.push(Stage::Upsample(StreamUpsample {
                block,
                conv: StreamConv::new(block.conv(), causal),
                queue: None,
                first: true,
            })),
        }
    }
    let mut conv_out = StreamConv::new(&decoder.conv_out, causal);
    let mut outputs = Vec::new();
    let total = latent.dim(2)?;
    let mut start = 0;
    while start < total {
        let count = chunk.min(total - start);
        let hidden = conv_in.push(Some(latent.narrow(2, start, count)?), false)?;
        run_stages(&mut stages, 0, hidden, &mut conv_out, decoder, inputs, &mut outputs)?;
        start += count;
    }
    // The end of the stream is flushed one stage at a time: each stage's tail (its lag, a frame or two)
    // goes through the later stages before they are flushed in turn, so no step handles more frames
    // than a chunk plus a few, however long the video.
    let tail = conv_in.push(None, true)?;
    run_stages(&mut stages, 0, tail, &mut conv_out, decoder, inputs, &mut outputs)?;
    for index in 0..stages.len() {
        let tail = match &mut stages[index] {
            Stage::Resnet(stage) => stage.push(&None, true)?,
            Stage::Upsample(stage) => stage.push(None, true)?,
        };
        run_stages(&mut stages, index + 1, tail, &mut conv_out, decoder, inputs, &mut outputs)?;
    }
    if let Some(out) = conv_out.push(None, true)? {
        outputs.push(unpatchify(&out, decoder.patch_size)?);
    }
    Tensor::cat(&outputs, 2)
}

/// Pushes `hidden` through `stages[first..]`, the head and `conv_out` (none of them at their end), and
/// collects the frames that come out.
fn run_stages(
    stages: &mut [Stage<'_>],
    first: usize,
    mut hidden: Frames,
    conv_out: &mut StreamConv<'_>,
    decoder: &Decoder,
    inputs: &DecodeInputs,
    outputs: &mut Vec<Tensor>,
) -> Result<()> {
    for stage in &mut stages[first..] {
        if hidden.is_none() {
            return Ok(());
        }
        hidden = match stage {
            Stage::Resnet(stage) => stage.push(&hidden, false)?,
            Stage::Upsample(stage) => stage.push(hidden, false)?,
        };
    }
    let Some(hidden) = hidden else { return Ok(()) };
    if let Some(out) = conv_out.push(Some(Decoder::head(&hidden, inputs)?), false)? {
        outputs.push(unpatchify(&out, decoder.patch_size)?);
    }
    Ok(())
}

/// A space-to-depth downsampler over a causal stream.
struct StreamSpaceToDepth<'a> {
    block: &'a SpaceToDepthDownsample,
    conv: StreamConv<'a>,
    /// Inputs (after the frame-0 repeat) and conv outputs not yet grouped.
    inputs: Frames,
    convolved: Frames,
    started: bool,
}

impl StreamSpaceToDepth<'_> {
    fn push(&mut self, x: Frames, last: bool) -> Result<Frames> {
        let stride = self.block.stride()[0];
        let mut x = x;
        if !self.started
            && stride == 2
            && let Some(first) = &x
        {
            x = Some(Tensor::cat(&[&first.narrow(2, 0, 1)?, first], 2)?);
            self.started = true;
        }
        self.inputs = join(self.inputs.take(), x.clone())?;
        let convolved = self.conv.push(x, last)?;
        self.convolved = join(self.convolved.take(), convolved)?;
        let ready = frames(&self.convolved)? / stride * stride;
        if ready == 0 {
            return Ok(None);
        }
        let input = take(&mut self.inputs, ready)?;
        let convolved = take(&mut self.convolved, ready)?;
        Ok(Some(self.block.finish(&convolved, &input)?))
    }
}

enum EncodeStage<'a> {
    Resnet(StreamResnet<'a>),
    Conv(StreamConv<'a>),
    SpaceToDepth(StreamSpaceToDepth<'a>),
}

/// Encodes `video` (B, 3, 1 + 8k, H, W) feeding 8·`chunk` frames at a time (the first chunk has one more)
/// and returns the raw `conv_out` output, as [`Encoder::forward`] does.
pub fn encode_chunked(encoder: &Encoder, video: &Tensor, chunk: usize) -> Result<Tensor> {
    let mut conv_in = StreamConv::new(&encoder.conv_in, true);
    let mut stages = Vec::new();
    for block in &encoder.down_blocks {
        match block {
            DownBlock::Res(block) => {
                for resnet in block.res_blocks() {
                    stages.push(EncodeStage::Resnet(StreamResnet::new(resnet, true, None, None)?));
                }
            }
            DownBlock::ResChannels(resnet) => {
                stages.push(EncodeStage::Resnet(StreamResnet::new(resnet, true, None, None)?));
            }
            DownBlock::Compress(conv) => stages.push(EncodeStage::Conv(StreamConv::new(conv, true))),
            DownBlock::SpaceToDepth(block) => stages.push(EncodeStage::SpaceToDepth(StreamSpaceToDepth {
                block,
                conv: StreamConv::new(block.conv(), true),
                inputs: None,
                convolved: None,
                started: false,
            })),
        }
    }
    let mut conv_out = StreamConv::new(&encoder.conv_out, true);
    let total = video.dim(2)?;
    let mut outputs = Vec::new();
    let mut start = 0;
    while start < total {
        let count = if start == 0 { 1 + 8 * chunk } else { 8 * chunk }.min(total - start);
        let last = start + count == total;
        let pixels = patchify(&video.narrow(2, start, count)?, encoder.patch_size)?;
        let mut hidden = conv_in.push(Some(pixels), last)?;
        for stage in &mut stages {
            hidden = match stage {
                EncodeStage::Resnet(stage) => stage.push(&hidden, last)?,
                EncodeStage::Conv(stage) => stage.push(hidden, last)?,
                EncodeStage::SpaceToDepth(stage) => stage.push(hidden, last)?,
            };
        }
        let head = match &hidden {
            Some(h) => Some(norm_modulate_silu(h, None)?),
            None => None,
        };
        if let Some(out) = conv_out.push(head, last)? {
            outputs.push(out);
        }
        start += count;
    }
    Tensor::cat(&outputs, 2)
}
