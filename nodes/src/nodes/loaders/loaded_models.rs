//! Loaded models shared between nodes: two loaders naming the same file (a checkpoint loader and a VAE
//! loader, or two workflows in one server) get one copy in memory for as long as either holds it.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

type Key = (&'static str, PathBuf, u64, Option<SystemTime>);

static LOADED: Mutex<Option<HashMap<Key, Weak<dyn Any + Send + Sync>>>> = Mutex::new(None);

/// The model of `kind` loaded from `path`, shared if it is already in memory and the file has not changed
/// since (same length and modification time); otherwise `load` runs and its result is remembered.
pub fn load_shared<T, E>(kind: &'static str, path: &Path, load: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
where
    T: Send + Sync + 'static,
{
    let metadata = std::fs::metadata(path).ok();
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let key: Key = (
        kind,
        canonical,
        metadata.as_ref().map_or(0, std::fs::Metadata::len),
        metadata.and_then(|m| m.modified().ok()),
    );
    if let Some(existing) = lookup(&key).and_then(|any| any.downcast::<T>().ok()) {
        return Ok(existing);
    }
    let loaded = Arc::new(load()?);
    let erased: Arc<dyn Any + Send + Sync> = loaded.clone();
    let mut guard = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    map.retain(|_, weak| weak.strong_count() > 0);
    map.insert(key, Arc::downgrade(&erased));
    Ok(loaded)
}

fn lookup(key: &Key) -> Option<Arc<dyn Any + Send + Sync>> {
    let guard = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    guard.as_ref()?.get(key)?.upgrade()
}
