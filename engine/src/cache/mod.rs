//! The output cache: a byte-bounded memory tier, and an optional disk tier that outlives the process.

mod disk;
mod memory;

pub use disk::{DiskCache, DiskCacheError};
pub use memory::MemoryCache;

use crate::signature::Signature;
use crate::value::Value;
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a node produced: its outputs and its UI result.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub outputs: Vec<Value>,
    pub ui: Option<Json>,
    /// Bytes held by the outputs.
    pub bytes: usize,
}

impl CacheEntry {
    /// An entry, sized from its values.
    pub fn new(outputs: Vec<Value>, ui: Option<Json>) -> Self {
        let bytes =
            outputs.iter().map(Value::byte_size).sum::<usize>() + ui.as_ref().map_or(0, |ui| ui.to_string().len());
        CacheEntry { outputs, ui, bytes }
    }
}

/// Both tiers, shared by every run of one executor.
pub struct Cache {
    memory: Mutex<MemoryCache>,
    disk: Option<DiskCache>,
}

/// The default memory bound: 4 GiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

impl Cache {
    /// A cache holding at most `memory_limit` bytes in memory, and no disk tier.
    pub fn new(memory_limit: usize) -> Self {
        Cache { memory: Mutex::new(MemoryCache::new(memory_limit)), disk: None }
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

    /// Stores in memory.
    pub fn insert(&self, signature: Signature, entry: Arc<CacheEntry>) {
        self.memory().insert(signature, entry);
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
