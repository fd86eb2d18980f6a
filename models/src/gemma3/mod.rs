//! Gemma 3 (Google), the text encoder of LTX-2: transformers' `Gemma3TextModel` returning every hidden
//! state, the weights kept in their stored dtype and the layers resident or streamed from the mapped
//! file.
//!
//! | file | reference |
//! |---|---|
//! | [`config`] | `Gemma3TextConfig`: sizes, sliding/full layer pattern, local and global RoPE |
//! | [`model`] | `Gemma3TextModel`, `Gemma3DecoderLayer`, `Gemma3Attention`, `Gemma3MLP`, `Gemma3RMSNorm` |
//! | [`mod@generate`] | ComfyUI's `BaseGenerate.generate`: prefill, then a token at a time over a key/value cache |
//! | [`logits`] | ComfyUI's `sample_token`/`processed_probs`: penalties, temperature, top-k, min-p, top-p, the draw |
//! | [`vision`] | `SiglipVisionModel` and `Gemma3MultiModalProjector` (ComfyUI's `CLIPVision`, `Gemma3MultiModalProjector`) |
//! | [`image`] | ComfyUI's resize, crop and normalisation of an IMAGE batch for the vision tower |
//! | [`prompt`] | a prompt's token embeddings with image embeddings in place of its placeholders (`process_tokens`) |
//! | [`tokenizer`] | the SentencePiece BPE tokenizer (from `tokenizer.model`, ComfyUI's `spiece_model`, or `tokenizer.json`) |
//! | [`sentencepiece`] | sentencepiece's `ModelProto`, normaliser, BPE and Unigram encoding, decoding |
//! | [`load`] | ComfyUI files, transformers folders, prefixes and configs |
//! | [`mod@gguf`] | llama.cpp GGUFs (arch `gemma3`): names, the converter's norm shift, config and tokenizer from the metadata |
//! | [`lora`] | LoRA updates of the projections, the embedding table and the norms (ComfyUI's `LoraLoader` on LTX-2's CLIP), a tiny LoRA writer |
//! | [`mod@bench`] | one 12B layer with random weights, for timing |

pub mod bench;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod image;
pub mod load;
pub mod logits;
pub mod lora;
pub mod model;
pub mod prompt;
pub mod sentencepiece;
pub mod tokenizer;
pub mod vision;

pub use config::{Gemma3Config, LayerType, RopeParameters};
pub use generate::{Gemma3Decoder, GenerateOptions, Generation, Stop, generate, generate_from_embeddings};
pub use gguf::{gguf_config, is_gemma3_gguf};
pub use load::{GemmaLoadOptions, find_prefix, read_config};
pub use logits::SamplingOptions;
pub use model::{Gemma3Cache, Gemma3Layer, Gemma3TextModel};
pub use prompt::{IMAGE_PLACEHOLDER_ID, ImageAttention, PromptEmbeddings};
pub use tokenizer::{GemmaTokenizer, TokenizerError};
pub use vision::{Gemma3Vision, Gemma3VisionConfig};
