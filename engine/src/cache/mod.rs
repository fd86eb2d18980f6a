//! The output cache: a byte-bounded memory tier, and an optional disk tier that outlives the process.

mod disk;
mod memory;

pub use disk::{DiskCache, DiskCacheError};
pub use memory::MemoryCache;

use crate::memory::MemoryBudget;
use crate::signature::Signature;
use crate::value::Value;
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// What a node produced: its outputs and its UI result.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub outputs: Vec<Value>,
    pub ui: Option<Json>,
    /// Bytes held by the outputs.
    pub bytes: usize,
    /// Of those, bytes of loaded models (which the memory budget counts as resident).
    pub model_bytes: usize,
}

impl CacheEntry {
    /// An entry, sized from its values.
    pub fn new(outputs: Vec<Value>, ui: Option<Json>) -> Self {
        let bytes =
            outputs.iter().map(Value::byte_size).sum::<usize>() + ui.as_ref().map_or(0, |ui| ui.to_string().len());
        let model_bytes = outputs.iter().map(Value::model_bytes).sum();
        CacheEntry { outputs, ui, bytes, model_bytes }
    }
}

/// Both tiers, shared by every run of one executor.
pub struct Cache {
    memory: Mutex<MemoryCache>,
    disk: Option<DiskCache>,
    /// The memory budget it gives way to, once attached ([`MemoryBudget::attach_cache`]).
    budget: OnceLock<Arc<MemoryBudget>>,
    /// Whether entries holding loaded models are kept ([`Self::without_models`]).
    keep_models: bool,
}

/// The default memory bound: 4 GiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

impl Cache {
    /// A cache holding at most `memory_limit` bytes in memory, and no disk tier.
    pub fn new(memory_limit: usize) -> Self {
        Cache {
            memory: Mutex::new(MemoryCache::new(memory_limit)),
            disk: None,
            budget: OnceLock::new(),
            keep_models: true,
        }
    }

    /// A cache that never keeps an entry holding a loaded model, for a process that runs one workflow: a
    /// model is then freed as soon as no node of the run needs it (the text encoder once the prompts are
    /// encoded), where a cache for later runs would hold it until memory runs short.
    pub fn without_models(mut self) -> Self {
        self.keep_models = false;
        self
    }

    /// Adds a disk tier.
    pub fn with_disk(mut self, disk: DiskCache) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The memory tier.
    pub fn memory(&self) -> MutexGuard<'_, MemoryCache> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The disk tier, if any.
    pub fn disk(&self) -> Option<&DiskCache> {
        self.disk.as_ref()
    }

    /// The memory entry of `signature`.
    pub fn get(&self, signature: &Signature) -> Option<Arc<CacheEntry>> {
        self.memory().get(signature)
    }

    /// Stores in memory, within [`Self::bound`].
    pub fn insert(&self, signature: Signature, entry: Arc<CacheEntry>) {
        if !self.keep_models && entry.model_bytes > 0 {
            return;
        }
        let mut memory = self.memory();
        memory.insert(signature, entry);
        self.shrink_to_bound(&mut memory);
    }

    /// Used by [`MemoryBudget::attach_cache`].
    pub(crate) fn set_budget(&self, budget: Arc<MemoryBudget>) {
        let _ = self.budget.set(budget);
    }

    /// The memory tier's bound now: its own, or less when the memory budget leaves less beside the models
    /// held outside the cache and the working reserve.
    pub fn bound(&self) -> usize {
        let memory = self.memory();
        self.bound_of(&memory)
    }

    fn bound_of(&self, memory: &MemoryCache) -> usize {
        match self.budget.get() {
            Some(budget) => budget.cache_bound(memory.limit(), memory.model_bytes()),
            None => memory.limit(),
        }
    }

    /// Evicts, least recently used first, until the memory tier is within its bound, which changes as it
    /// goes: an evicted model that nobody else holds is freed at once, and the next bound sees it gone.
    fn shrink_to_bound(&self, memory: &mut MemoryCache) {
        while memory.used_bytes() > self.bound_of(memory) {
            if memory.pop_oldest().is_none() {
                break;
            }
        }
    }

    /// Brings the memory tier within its bound (after the run released values: models that only the cache
    /// still holds then count against it).
    pub fn fit_budget(&self) {
        let mut memory = self.memory();
        self.shrink_to_bound(&mut memory);
    }

    /// Evicts the least recently used memory entry; false when there was none.
    pub fn evict_oldest(&self) -> bool {
        let entry = self.memory().pop_oldest();
        entry.is_some()
    }

    /// Bytes the memory tier holds beyond the loaded models it holds.
    pub fn other_bytes(&self) -> usize {
        let memory = self.memory();
        memory.used_bytes().saturating_sub(memory.model_bytes())
    }

    /// Drops every memory entry (ComfyUI's `/free`).
    pub fn clear_memory(&self) {
        self.memory().clear();
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(DEFAULT_MEMORY_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize, model_bytes: usize) -> Arc<CacheEntry> {
        Arc::new(CacheEntry { outputs: Vec::new(), ui: None, bytes, model_bytes })
    }

    #[test]
    fn a_cache_without_models_keeps_everything_else() {
        let cache = Cache::new(1000).without_models();
        cache.insert(Signature([1; 32]), entry(100, 100));
        cache.insert(Signature([2; 32]), entry(100, 0));
        assert!(cache.get(&Signature([1; 32])).is_none(), "a model entry is not kept");
        assert!(cache.get(&Signature([2; 32])).is_some());
        let keeping = Cache::new(1000);
        keeping.insert(Signature([1; 32]), entry(100, 100));
        assert!(keeping.get(&Signature([1; 32])).is_some(), "by default models are cached like other values");
    }
}
