//! A model's repeated blocks (transformer blocks, encoder layers), held as its loader decided: every block in
//! memory, or the first few in memory and the others read from the mapped weight file each time a forward
//! pass reaches them. A model that does not fit its memory budget thus keeps as many blocks as fit and
//! streams the rest, on the CPU and on a GPU alike: a streamed block is read onto the model's device through
//! the same builder, in the same dtype, as a resident one, so the outputs are the same bit for bit.
//!
//! LoRA updates of resident blocks are applied once; those of streamed blocks are kept and applied to each
//! block as it is read (after widening, as ComfyUI-GGUF patches dequantized weights).

use crate::lora::{LayerPatch, patches_under};
use candle_core::Result;
use candle_nn::VarBuilder;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a model holds its repeated blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockHolding {
    /// Every block in memory.
    #[default]
    Resident,
    /// The first `kept` blocks in memory; the others read from the weight file as they are used, the next
    /// one while the current one computes.
    Streamed { kept: usize },
}

impl BlockHolding {
    /// Every block streamed.
    pub const STREAMED: BlockHolding = BlockHolding::Streamed { kept: 0 };

    /// [`Self::STREAMED`] when `stream` is set, else [`Self::Resident`].
    pub fn streamed_if(stream: bool) -> Self {
        if stream { Self::STREAMED } else { Self::Resident }
    }

    /// Whether any block is read from the file as it is used.
    pub fn streams(self) -> bool {
        matches!(self, BlockHolding::Streamed { .. })
    }
}

/// A block of a [`BlockStack`].
pub trait StackBlock: Clone + Send + Sync {
    /// Adds LoRA updates, by their names under the block (`attn1.to_q`); fails on a name the block lacks.
    fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()>;
}

/// The blocks `0..count` of a model, block `i` named `{prefix}{i}.` in the checkpoint: the first
/// [`Self::kept`] in memory, the others (if any) read from `streamed` (`streamed.pp(i)`) when used.
#[derive(Clone)]
pub struct BlockStack<B> {
    prefix: String,
    count: usize,
    resident: Vec<B>,
    streamed: Option<VarBuilder<'static>>,
    /// LoRA updates of the streamed blocks (one map per LoRA, by full name), applied in order as each is read.
    patches: Arc<Vec<BTreeMap<String, LayerPatch>>>,
}

impl<B: StackBlock> BlockStack<B> {
    /// Every block in memory. `prefix` is the blocks' name in the checkpoint with its dot
    /// (`transformer_blocks.`).
    pub fn resident(prefix: &str, blocks: Vec<B>) -> Self {
        BlockStack {
            prefix: prefix.to_string(),
            count: blocks.len(),
            resident: blocks,
            streamed: None,
            patches: Arc::default(),
        }
    }

    /// `count` blocks read by `read` from `vb.pp(i)`, held as `holding` says. With streamed blocks the first
    /// streamed one is read once now, so that a file missing its tensors fails at load; the other blocks'
    /// tensors are the loader's to check ([`crate::weights::WeightSource::check_repeated_blocks`]).
    pub fn load(
        prefix: &str,
        count: usize,
        holding: BlockHolding,
        vb: &VarBuilder<'static>,
        read: impl Fn(&VarBuilder<'static>) -> Result<B>,
    ) -> Result<Self> {
        let kept = match holding {
            BlockHolding::Resident => count,
            BlockHolding::Streamed { kept } => kept.min(count),
        };
        let resident = (0..kept).map(|index| read(&vb.pp(index))).collect::<Result<Vec<_>>>()?;
        let streamed = if kept < count {
            read(&vb.pp(kept))?;
            Some(vb.clone())
        } else {
            None
        };
        Ok(BlockStack { prefix: prefix.to_string(), count, resident, streamed, patches: Arc::default() })
    }

    /// The number of blocks.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many of the first blocks are in memory.
    pub fn kept(&self) -> usize {
        self.resident.len()
    }

    /// Whether any block is read from the file as it is used.
    pub fn streams(&self) -> bool {
        self.streamed.is_some()
    }

    /// How the blocks are held.
    pub fn holding(&self) -> BlockHolding {
        if self.streams() { BlockHolding::Streamed { kept: self.kept() } } else { BlockHolding::Resident }
    }

    /// The blocks in memory, `0..kept`.
    pub fn resident_blocks(&self) -> &[B] {
        &self.resident
    }

    /// The blocks in memory, to change (a model's run-time switches).
    pub fn resident_blocks_mut(&mut self) -> &mut [B] {
        &mut self.resident
    }

    /// The first streamed block as the file holds it (no LoRA updates), read by `read`: what every streamed
    /// block looks like (the loader checked that they all have its tensors and shapes). `None` when every
    /// block is in memory.
    pub fn first_streamed(&self, read: impl Fn(&VarBuilder<'static>) -> Result<B>) -> Result<Option<B>> {
        self.streamed.as_ref().map(|vb| read(&vb.pp(self.kept()))).transpose()
    }

    /// The stack with LoRA updates (by full names; those not under the prefix are ignored): applied now to
    /// the blocks in memory, and to streamed ones as each is read. The caller checks that every name is one
    /// the model has.
    pub fn with_patches(&self, patches: &BTreeMap<String, LayerPatch>) -> Result<Self> {
        let mut patched = self.clone();
        for (index, block) in patched.resident.iter_mut().enumerate() {
            let own = patches_under(patches, &format!("{}{index}.", self.prefix));
            if !own.is_empty() {
                block.apply_patches(&own)?;
            }
        }
        if self.streams() {
            let streamed: BTreeMap<String, LayerPatch> = patches_under(patches, &self.prefix)
                .into_iter()
                .filter(|(name, _)| block_index(name).is_some_and(|index| index >= self.kept()))
                .map(|(name, patch)| (format!("{}{name}", self.prefix), patch))
                .collect();
            if !streamed.is_empty() {
                let mut sets = (*self.patches).clone();
                sets.push(streamed);
                patched.patches = Arc::new(sets);
            }
        }
        Ok(patched)
    }

    /// How many LoRAs update streamed blocks.
    pub fn streamed_patch_sets(&self) -> usize {
        self.patches.len()
    }

    /// Calls `visit` with each block in order: those in memory as they are, the others read by `read` with
    /// their LoRA updates, block i + 1 on another thread while block i computes. `what` names a block in
    /// the error of a reading thread that died.
    pub fn each(
        &self,
        what: &str,
        read: impl Fn(&VarBuilder<'static>) -> Result<B> + Sync,
        mut visit: impl FnMut(usize, &B) -> Result<()>,
    ) -> Result<()> {
        for (index, block) in self.resident.iter().enumerate() {
            visit(index, block)?;
        }
        let Some(vb) = &self.streamed else { return Ok(()) };
        let kept = self.kept();
        let read_patched = |offset: usize| {
            let index = kept + offset;
            let mut block = read(&vb.pp(index))?;
            for set in self.patches.iter() {
                let own = patches_under(set, &format!("{}{index}.", self.prefix));
                if !own.is_empty() {
                    block.apply_patches(&own)?;
                }
            }
            Ok(block)
        };
        crate::weights::each_streamed_block(self.count - kept, what, read_patched, |offset, block| {
            visit(kept + offset, &block)
        })
    }
}

/// The block index at the start of `name` (`3.attn1.to_q` → 3).
fn block_index(name: &str) -> Option<usize> {
    name.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A block that is one value, `weight`, plus the LoRA updates it received.
    #[derive(Clone, Debug, PartialEq)]
    struct Scalar {
        weight: f32,
        updates: Vec<String>,
    }

    impl StackBlock for Scalar {
        fn apply_patches(&mut self, patches: &BTreeMap<String, LayerPatch>) -> Result<()> {
            for name in patches.keys() {
                if name != "w" {
                    candle_core::bail!("no layer '{name}'");
                }
                self.updates.push(name.clone());
            }
            Ok(())
        }
    }

    /// Reads a [`Scalar`] block, counting its reads.
    #[derive(Default)]
    struct Reader {
        reads: Mutex<usize>,
    }

    impl Reader {
        fn read(&self, vb: &VarBuilder<'static>) -> Result<Scalar> {
            *self.reads.lock().unwrap() += 1;
            Ok(Scalar { weight: vb.get(1, "w")?.to_vec1::<f32>()?[0], updates: Vec::new() })
        }

        fn reads(&self) -> usize {
            *self.reads.lock().unwrap()
        }
    }

    /// Blocks `0..count` whose weight `w` is the block's index, read by `reader`.
    fn stack(count: usize, holding: BlockHolding, reader: &Reader) -> BlockStack<Scalar> {
        let tensors: HashMap<String, Tensor> = (0..count)
            .map(|index| (format!("{index}.w"), Tensor::new(&[index as f32], &Device::Cpu).unwrap()))
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        BlockStack::load("blocks.", count, holding, &vb, |vb| reader.read(vb)).unwrap()
    }

    fn visited(stack: &BlockStack<Scalar>, reader: &Reader) -> Vec<Scalar> {
        let mut seen = Vec::new();
        stack
            .each(
                "a block",
                |vb| reader.read(vb),
                |index, block| {
                    assert_eq!(index, seen.len());
                    seen.push(block.clone());
                    Ok(())
                },
            )
            .unwrap();
        seen
    }

    #[test]
    fn every_holding_visits_the_same_blocks_in_order() {
        for holding in [BlockHolding::Resident, BlockHolding::STREAMED, BlockHolding::Streamed { kept: 3 }] {
            let reader = Reader::default();
            let stack = stack(5, holding, &reader);
            let weights: Vec<f32> = visited(&stack, &reader).iter().map(|block| block.weight).collect();
            assert_eq!(weights, [0.0, 1.0, 2.0, 3.0, 4.0], "{holding:?}");
            assert_eq!(stack.holding(), holding);
        }
        // Keeping more than there are is keeping them all.
        let stack = stack(2, BlockHolding::Streamed { kept: 9 }, &Reader::default());
        assert_eq!((stack.kept(), stack.streams()), (2, false));
    }

    #[test]
    fn kept_blocks_are_read_once_and_streamed_ones_on_every_pass() {
        let reader = Reader::default();
        let stack = stack(5, BlockHolding::Streamed { kept: 2 }, &reader);
        // The two kept, and the first streamed one checked.
        assert_eq!(reader.reads(), 3);
        visited(&stack, &reader);
        visited(&stack, &reader);
        assert_eq!(reader.reads(), 3 + 2 * 3);
        assert_eq!(stack.first_streamed(|vb| reader.read(vb)).unwrap().unwrap().weight, 2.0);
    }

    #[test]
    fn lora_updates_reach_kept_and_streamed_blocks_alike() {
        let patch = || LayerPatch { weight: None, bias: None, vector: None };
        let patches: BTreeMap<String, LayerPatch> =
            ["blocks.1.w", "blocks.3.w", "other.w"].into_iter().map(|name| (name.to_string(), patch())).collect();
        for holding in [BlockHolding::Resident, BlockHolding::Streamed { kept: 2 }, BlockHolding::STREAMED] {
            let reader = Reader::default();
            let stack = stack(4, holding, &reader);
            let patched = stack.with_patches(&patches).unwrap().with_patches(&patches).unwrap();
            let updates: Vec<usize> = visited(&patched, &reader).iter().map(|block| block.updates.len()).collect();
            assert_eq!(updates, [0, 2, 0, 2], "{holding:?}");
            assert!(visited(&stack, &reader).iter().all(|block| block.updates.is_empty()), "the base is unchanged");
        }
        // A bad name in a kept block fails at once; in a streamed one, when it is read.
        let bad = BTreeMap::from([("blocks.3.x".to_string(), patch())]);
        let reader = Reader::default();
        let stack = stack(4, BlockHolding::Streamed { kept: 2 }, &reader);
        assert!(stack.with_patches(&BTreeMap::from([("blocks.0.x".to_string(), patch())])).is_err());
        let patched = stack.with_patches(&bad).unwrap();
        let error = patched.each("a block", |vb| reader.read(vb), |_, _| Ok(())).unwrap_err();
        assert!(error.to_string().contains("no layer 'x'"), "{error}");
    }
}
