//! The in-memory tier: entries by signature, bounded in bytes, least recently used evicted first.

use super::CacheEntry;
use crate::signature::Signature;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

struct Slot {
    entry: Arc<CacheEntry>,
    last_used: u64,
}

/// A byte-bounded LRU map.
pub struct MemoryCache {
    limit: usize,
    used: usize,
    /// Of `used`, bytes of loaded models.
    models: usize,
    clock: u64,
    slots: HashMap<Signature, Slot>,
    by_age: BTreeMap<u64, Signature>,
}

impl MemoryCache {
    /// A cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryCache { limit, used: 0, models: 0, clock: 0, slots: HashMap::new(), by_age: BTreeMap::new() }
    }

    /// The entry for `signature`, marked as just used.
    pub fn get(&mut self, signature: &Signature) -> Option<Arc<CacheEntry>> {
        self.clock += 1;
        let slot = self.slots.get_mut(signature)?;
        self.by_age.remove(&slot.last_used);
        slot.last_used = self.clock;
        self.by_age.insert(self.clock, *signature);
        Some(slot.entry.clone())
    }

    /// Whether `signature` is present, without touching its age.
    pub fn contains(&self, signature: &Signature) -> bool {
        self.slots.contains_key(signature)
    }

    /// Stores an entry, evicting the least recently used until it fits. An entry larger than the
    /// whole bound is not stored.
    pub fn insert(&mut self, signature: Signature, entry: Arc<CacheEntry>) {
        self.remove(&signature);
        if entry.bytes > self.limit {
            return;
        }
        while self.used + entry.bytes > self.limit {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.used -= slot.entry.bytes;
                self.models -= slot.entry.model_bytes;
            }
        }
        self.clock += 1;
        self.used += entry.bytes;
        self.models += entry.model_bytes;
        self.by_age.insert(self.clock, signature);
        self.slots.insert(signature, Slot { entry, last_used: self.clock });
    }

    /// Drops one entry.
    pub fn remove(&mut self, signature: &Signature) {
        if let Some(slot) = self.slots.remove(signature) {
            self.by_age.remove(&slot.last_used);
            self.used -= slot.entry.bytes;
            self.models -= slot.entry.model_bytes;
        }
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<Arc<CacheEntry>> {
        let (_, oldest) = self.by_age.pop_first()?;
        let slot = self.slots.remove(&oldest)?;
        self.used -= slot.entry.bytes;
        self.models -= slot.entry.model_bytes;
        Some(slot.entry)
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.by_age.clear();
        self.used = 0;
        self.models = 0;
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Of the bytes held, those of loaded models ([`CacheEntry::model_bytes`]).
    pub fn model_bytes(&self) -> usize {
        self.models
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The byte bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize) -> Arc<CacheEntry> {
        Arc::new(CacheEntry { outputs: Vec::new(), ui: None, bytes, model_bytes: 0 })
    }

    fn signature(n: u8) -> Signature {
        Signature([n; 32])
    }

    #[test]
    fn evicts_least_recently_used_to_stay_under_the_bound() {
        let mut cache = MemoryCache::new(100);
        cache.insert(signature(1), entry(40));
        cache.insert(signature(2), entry(40));
        assert!(cache.get(&signature(1)).is_some()); // 2 is now the oldest
        cache.insert(signature(3), entry(40));
        assert!(cache.contains(&signature(1)));
        assert!(!cache.contains(&signature(2)));
        assert!(cache.contains(&signature(3)));
        assert_eq!(cache.used_bytes(), 80);
    }

    #[test]
    fn an_entry_larger_than_the_bound_is_not_kept() {
        let mut cache = MemoryCache::new(10);
        cache.insert(signature(1), entry(5));
        cache.insert(signature(2), entry(11));
        assert!(cache.contains(&signature(1)));
        assert!(!cache.contains(&signature(2)));
    }
}
