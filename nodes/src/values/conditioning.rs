//! CONDITIONING: text embeddings with their options, one entry per encoded prompt.

use super::tensor_bytes;
use candle_core::Tensor;
use kinograph_engine::NodeValue;

/// One conditioning entry: the text encoder's output and the options nodes set on it.
#[derive(Debug, Clone)]
pub struct CondEntry {
    /// `[1, L, D]` text embeddings (for LTX-2, the video stream's context).
    pub context: Tensor,
    /// LTX-2: the audio stream's context `[1, L, D']`.
    pub audio_context: Option<Tensor>,
    /// `[1, L]`, 1 for tokens, 0 for padding; `None` attends to every token.
    pub attention_mask: Option<Tensor>,
    /// Set by `LTXVConditioning`; 25 when absent.
    pub frame_rate: Option<f64>,
    /// Set by `LTXVAddGuide`: the pixel coordinates of the `N` guide tokens appended at the end of the
    /// latent, which the model uses for those tokens' positions: int64 `[B, 3, N, 2]`, for time (in
    /// frames), row and column the interval `[start, end)` each token covers.
    pub keyframe_idxs: Option<Tensor>,
    /// Set by `LTXVAddGuide`: one entry per guide, in the order they were appended, for the weighting of
    /// guide tokens in the model's self-attention.
    pub guide_attention_entries: Option<Vec<GuideAttentionEntry>>,
    /// Set by `LTXVReferenceAudio`: the reference clip's audio latent as tokens `[1, T, C·F]`, which an
    /// LTX-2 model reads before the audio it generates (timestep 0, positions before 0).
    pub ref_audio: Option<Tensor>,
}

impl CondEntry {
    /// An entry with text embeddings and their mask, no options set.
    pub fn new(context: Tensor, attention_mask: Option<Tensor>) -> Self {
        CondEntry {
            context,
            audio_context: None,
            attention_mask,
            frame_rate: None,
            keyframe_idxs: None,
            guide_attention_entries: None,
            ref_audio: None,
        }
    }
}

/// One guide's record for the model's self-attention (ComfyUI's `guide_attention_entries` item).
#[derive(Debug, Clone)]
pub struct GuideAttentionEntry {
    /// The guide's tokens as appended (after dilation), before the model drops the ones whose noise mask
    /// is negative.
    pub pre_filter_count: usize,
    /// The guide's strength: its tokens' attention weight.
    pub strength: f64,
    /// The guide's pixel-space attention mask `[1, 1, F, H, W]`, multiplied into the weights per token.
    pub pixel_mask: Option<Tensor>,
    /// The guide latent's `[frames, height, width]` before dilation.
    pub latent_shape: [usize; 3],
}

/// CONDITIONING: a list of entries (ComfyUI's `[[cond, {options}], ...]`).
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub entries: Vec<CondEntry>,
}

impl Conditioning {
    /// The guide coordinates of the first entry that has them (ComfyUI's `conditioning_get_any_value`).
    pub fn keyframe_idxs(&self) -> Option<&Tensor> {
        self.entries.iter().find_map(|entry| entry.keyframe_idxs.as_ref())
    }

    /// The guide entries of the first entry that has them.
    pub fn guide_attention_entries(&self) -> Option<&[GuideAttentionEntry]> {
        self.entries.iter().find_map(|entry| entry.guide_attention_entries.as_deref())
    }

    /// The same entries with `keyframe_idxs` and `guide_attention_entries` set on each (ComfyUI's
    /// `conditioning_set_values`).
    pub fn with_guides(
        &self,
        keyframe_idxs: Option<&Tensor>,
        guide_attention_entries: Option<&[GuideAttentionEntry]>,
    ) -> Conditioning {
        let entries = self
            .entries
            .iter()
            .map(|e| CondEntry {
                keyframe_idxs: keyframe_idxs.cloned(),
                guide_attention_entries: guide_attention_entries.map(<[GuideAttentionEntry]>::to_vec),
                ..e.clone()
            })
            .collect();
        Conditioning { entries }
    }
}

impl NodeValue for Conditioning {
    fn type_name(&self) -> &'static str {
        "CONDITIONING"
    }
    fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|entry| {
                tensor_bytes(&entry.context)
                    + entry.audio_context.as_ref().map_or(0, tensor_bytes)
                    + entry.attention_mask.as_ref().map_or(0, tensor_bytes)
                    + entry.keyframe_idxs.as_ref().map_or(0, tensor_bytes)
                    + entry
                        .guide_attention_entries
                        .iter()
                        .flatten()
                        .filter_map(|g| g.pixel_mask.as_ref())
                        .map(tensor_bytes)
                        .sum::<usize>()
                    + entry.ref_audio.as_ref().map_or(0, tensor_bytes)
            })
            .sum()
    }
    fn describe(&self) -> String {
        let shapes: Vec<String> = self.entries.iter().map(|e| format!("{:?}", e.context.dims())).collect();
        format!("CONDITIONING [{}]", shapes.join(", "))
    }
}
