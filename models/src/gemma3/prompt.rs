//! A Gemma 3 prompt with images, as ComfyUI builds it (`comfy/sd1_clip.py` `SDClipModel.process_tokens`): the
//! text tokens' scaled embeddings, with each image placeholder (`<image_soft_token>`, id 262,144) replaced by
//! that image's embeddings from [`super::vision::Gemma3Vision::encode`] — every frame of a batch, frame after
//! frame, so one placeholder takes `frames × mm_tokens_per_image` positions. The chat holds no
//! `<start_of_image>`/`<end_of_image>` around them, and the image embeddings are not scaled by √hidden.
//!
//! ComfyUI then attends causally over every position; transformers' Gemma 3, given token types, lets the
//! positions of one image see each other in both directions. [`ImageAttention`] picks which.

use super::model::Gemma3TextModel;
use candle_core::{Result, Tensor};
use std::ops::Range;

/// The id ComfyUI's Gemma 3 tokenizer gives `<image_soft_token>`, where an image goes.
pub const IMAGE_PLACEHOLDER_ID: u32 = 262_144;

/// How the prompt's image positions attend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageAttention {
    /// Causally, like every text token: what ComfyUI does.
    #[default]
    Causal,
    /// Each image's positions see each other in both directions: transformers' Gemma 3 with token types.
    Bidirectional,
}

/// A prompt's input embeddings and where its images are.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    /// `[1, T, D]` f32.
    pub embeddings: Tensor,
    /// The positions of each image's embeddings.
    pub images: Vec<Range<usize>>,
    /// How those positions attend.
    pub attention: ImageAttention,
}

impl PromptEmbeddings {
    /// Embeds `ids` and replaces the first `images.len()` occurrences of `placeholder` with `images` (each
    /// `[N, D]` or `[frames, N, D]`, in the model's width), in order. A placeholder without an image stays a
    /// token, as in ComfyUI.
    pub fn new(
        model: &Gemma3TextModel,
        ids: &[u32],
        placeholder: u32,
        images: &[Tensor],
        attention: ImageAttention,
    ) -> Result<Self> {
        let width = model.config().hidden_size;
        let vocab = model.config().vocab_size;
        let device = model.device();
        let mut pieces = Vec::new();
        let mut spans = Vec::new();
        let mut text: Vec<u32> = Vec::new();
        let mut position = 0;
        let mut remaining = images.iter();
        let flush = |text: &mut Vec<u32>, pieces: &mut Vec<Tensor>| -> Result<()> {
            if !text.is_empty() {
                if let Some(&id) = text.iter().find(|&&id| id as usize >= vocab) {
                    candle_core::bail!("token id {id} is outside Gemma's vocabulary of {vocab}");
                }
                let input = Tensor::from_slice(text.as_slice(), (1, text.len()), device)?;
                pieces.push(model.embed(&input)?);
                text.clear();
            }
            Ok(())
        };
        for &id in ids {
            let image = if id == placeholder { remaining.next() } else { None };
            if let Some(image) = image {
                flush(&mut text, &mut pieces)?;
                let image = image.to_dtype(candle_core::DType::F32)?.to_device(device)?;
                let count = image.elem_count() / width.max(1);
                if image.dims().last() != Some(&width) || count == 0 {
                    candle_core::bail!(
                        "image embeddings of shape {:?} do not fit a Gemma model of width {width}",
                        image.dims()
                    );
                }
                pieces.push(image.reshape((1, count, width))?);
                spans.push(position..position + count);
                position += count;
            } else {
                text.push(id);
                position += 1;
            }
        }
        flush(&mut text, &mut pieces)?;
        if remaining.next().is_some() {
            candle_core::bail!(
                "the prompt has {} image placeholder(s) for {} image(s)",
                ids.iter().filter(|&&id| id == placeholder).count(),
                images.len()
            );
        }
        let embeddings = if pieces.is_empty() {
            Tensor::zeros((1, 0, width), candle_core::DType::F32, device)?
        } else {
            Tensor::cat(&pieces, 1)?
        };
        Ok(PromptEmbeddings { embeddings, images: spans, attention })
    }

    /// The blocks that attend bidirectionally: the images' positions, or none when attention is causal.
    pub fn bidirectional_blocks(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.images.iter().filter(|_| self.attention == ImageAttention::Bidirectional).cloned()
    }
}
