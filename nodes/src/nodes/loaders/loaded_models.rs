//! Loaded models shared between nodes: two loaders naming the same file (a checkpoint loader and a VAE
//! loader, or two workflows in one server) get one copy in memory for as long as either holds it.
//!
//! Models loaded through [`load_counted`] are registered with the process's memory budget
//! ([`MemoryBudget::global`]) for as long as they live, and [`plan_residency`] decides, before a model is
//! read, whether it is held in memory, streamed block by block from its file, or refused.

use kinograph_engine::memory::{MemoryBudget, MemoryPool, working_reserve};
use kinograph_engine::prelude::NodeError;
use kinograph_models::block_stack::BlockHolding;
use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

type Key = (&'static str, PathBuf, u64, Option<SystemTime>);

static LOADED: Mutex<Option<HashMap<Key, Weak<dyn Any + Send + Sync>>>> = Mutex::new(None);

/// The model of `kind` loaded from `path`, shared if it is already in memory and the file has not changed
/// since (same length and modification time); otherwise `load` runs and its result is remembered. The
/// memory budget does not count it: models of any size load through [`load_counted`].
pub fn load_shared<T, E>(kind: &'static str, path: &Path, load: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E>
where
    T: Send + Sync + 'static,
{
    load_counted(kind, path, || load().map(|model| (model, 0)))
}

/// [`load_shared`] for a model whose `load` also says how many bytes it keeps resident on the compute
/// device (0 when it streams): they count against the memory budget for as long as the model lives.
pub fn load_counted<T, E>(
    kind: &'static str,
    path: &Path,
    load: impl FnOnce() -> Result<(T, usize), E>,
) -> Result<Arc<T>, E>
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
    let _turn = LoadTurn::take();
    // Another thread may have loaded it while this one waited.
    if let Some(existing) = lookup(&key).and_then(|any| any.downcast::<T>().ok()) {
        return Ok(existing);
    }
    let (model, bytes) = load()?;
    let loaded = Arc::new(model);
    if bytes > 0 {
        MemoryBudget::global().register(pool_of(&super::compute_device()), bytes as u64, &loaded);
    }
    let erased: Arc<dyn Any + Send + Sync> = loaded.clone();
    let mut guard = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    map.retain(|_, weak| weak.strong_count() > 0);
    map.insert(key, Arc::downgrade(&erased));
    Ok(loaded)
}

/// Models load one at a time: each decides how to be held from what the others already hold, and is
/// counted before the next decides. A load inside another's (on the same thread) is part of that turn.
struct LoadTurn(Option<std::sync::MutexGuard<'static, ()>>);

static LOADING: Mutex<()> = Mutex::new(());

thread_local! {
    static IN_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl LoadTurn {
    fn take() -> Self {
        if IN_TURN.with(std::cell::Cell::get) {
            return LoadTurn(None);
        }
        let guard = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
        IN_TURN.with(|flag| flag.set(true));
        LoadTurn(Some(guard))
    }
}

impl Drop for LoadTurn {
    fn drop(&mut self) {
        if self.0.is_some() {
            IN_TURN.with(|flag| flag.set(false));
        }
    }
}

fn lookup(key: &Key) -> Option<Arc<dyn Any + Send + Sync>> {
    let guard = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    guard.as_ref()?.get(key)?.upgrade()
}

/// The memory pool a model on `device` takes.
pub fn pool_of(device: &candle_core::Device) -> MemoryPool {
    if device.is_cpu() { MemoryPool::Ram } else { MemoryPool::Device }
}

/// How a model is to be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Every weight in memory.
    Resident,
    /// The first `kept_blocks` blocks in memory with the rest of the model; the other blocks read from the
    /// file as they are used.
    Streamed { kept_blocks: usize },
}

impl Residency {
    /// Every block streamed.
    pub const STREAMED: Residency = Residency::Streamed { kept_blocks: 0 };

    /// How the model's loader holds its blocks.
    pub fn holding(self) -> BlockHolding {
        match self {
            Residency::Resident => BlockHolding::Resident,
            Residency::Streamed { kept_blocks } => BlockHolding::Streamed { kept: kept_blocks },
        }
    }
}

/// A model about to load, as [`plan_residency`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct ModelNeed<'a> {
    /// The loader's input that names the file.
    pub input: &'a str,
    pub file: &'a Path,
    /// What it is, for messages ("transformer", "text encoder").
    pub what: &'a str,
    /// Bytes it keeps in memory when resident.
    pub resident: usize,
    /// Its blocks' sizes, if they can stream.
    pub blocks: Option<BlockSizes>,
}

/// The sizes in memory of a model whose blocks can stream from its file, as its loader holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Everything, blocks included: what the model keeps when resident.
    pub total: usize,
    /// The blocks together.
    pub blocks: usize,
    /// The largest block.
    pub largest_block: usize,
}

impl BlockSizes {
    /// What the model keeps between forward passes when all its blocks stream: everything but the blocks.
    pub fn streamed_rest(&self) -> usize {
        self.total.saturating_sub(self.blocks)
    }

    /// What it holds during a forward pass when all its blocks stream: the rest, the block computing and the
    /// next one being read.
    pub fn streamed_peak(&self) -> usize {
        self.streamed_rest() + 2 * self.largest_block
    }

    /// What the model keeps while it lives, held as `residency` says: the bytes counted against the budget.
    /// A streamed model's two blocks in flight exist only during a forward pass, inside the working reserve.
    pub fn kept(&self, residency: Residency) -> usize {
        match residency {
            Residency::Resident => self.total,
            Residency::Streamed { kept_blocks } => {
                (self.streamed_rest() + kept_blocks * self.largest_block).min(self.total)
            }
        }
    }

    /// How many of the first blocks fit in `bytes` beside the rest and two blocks in flight (fewer than all).
    fn blocks_fitting(&self, bytes: u64) -> usize {
        let Some(largest) = std::num::NonZeroUsize::new(self.largest_block) else { return 0 };
        let count = self.blocks / largest;
        let spare = bytes.saturating_sub(self.streamed_peak() as u64);
        usize::try_from(spare / largest.get() as u64).unwrap_or(usize::MAX).min(count.saturating_sub(1))
    }
}

impl<'a> ModelNeed<'a> {
    /// The need of a model whose blocks can stream.
    pub fn streamable(input: &'a str, file: &'a Path, what: &'a str, sizes: &BlockSizes) -> Self {
        ModelNeed { input, file, what, resident: sizes.total, blocks: Some(*sizes) }
    }

    /// The need of a model held whole.
    pub fn whole(input: &'a str, file: &'a Path, what: &'a str, bytes: usize) -> Self {
        ModelNeed { input, file, what, resident: bytes, blocks: None }
    }
}

/// Decides how the model `need` describes is held, on `device`, against the global memory budget: the
/// cache first gives way ([`MemoryBudget::room_for`]); a model that fits beside the models that stay and
/// the working reserve is resident, unless it can stream and would take more than half the limit (which
/// leaves room for the text encoder or the diffusion model beside it); one that does not fit streams if it
/// can; otherwise the error names the file and the sizes.
///
/// A streamed model on a GPU keeps as many of its first blocks resident as fit in its share (the room, and
/// at most half the limit): each kept block is one less copied over the bus on every step. In RAM every block
/// streams: the weight file's pages are the kernel's cache already, and what a model does not keep is room for
/// the models loaded after it.
pub fn plan_residency(need: &ModelNeed<'_>, device: &candle_core::Device) -> Result<Residency, NodeError> {
    plan_with(MemoryBudget::global(), need, pool_of(device))
}

fn plan_with(budget: &MemoryBudget, need: &ModelNeed<'_>, pool: MemoryPool) -> Result<Residency, NodeError> {
    let Some(limit) = budget.limit(pool) else { return Ok(Residency::Resident) };
    let room = budget.room_for(pool, need.resident as u64).unwrap_or(u64::MAX);
    let resident = need.resident as u64;
    match need.blocks {
        Some(_) if resident > room || resident > limit.bytes / 2 => {}
        _ if resident <= room => return Ok(Residency::Resident),
        _ => {}
    }
    if let Some(sizes) = need.blocks
        && (sizes.streamed_peak() as u64) <= room
    {
        let kept_blocks = match pool {
            MemoryPool::Device => sizes.blocks_fitting(room.min(limit.bytes / 2)),
            MemoryPool::Ram => 0,
        };
        let kept = match kept_blocks {
            0 => String::new(),
            1 => ", the first block kept in memory".to_string(),
            count => format!(", the first {count} blocks kept in memory"),
        };
        tracing::info!(
            "{}: streaming the {}'s blocks from the file{kept} ({} resident would not fit: {} of room in the {} budget)",
            need.file.display(),
            need.what,
            human(need.resident as u64),
            human(room),
            pool.name()
        );
        return Ok(Residency::Streamed { kept_blocks });
    }
    let needed = need.blocks.map_or(resident, |sizes| sizes.streamed_peak() as u64);
    let how = if need.blocks.is_some() {
        format!("even with its blocks streamed from the file it keeps {} in memory", human(needed))
    } else {
        format!("it needs {} in memory and cannot stream its blocks", human(needed))
    };
    Err(NodeError::input(
        need.input,
        format!(
            "{}: this {} does not fit in the {} budget: {how}, but the limit of {} ({}) leaves {} beside {} of \
             models that stay and a working reserve of {}; raise the budget, or free the models held beside it",
            need.file.display(),
            need.what,
            pool.name(),
            human(limit.bytes),
            limit.how_to_change(pool),
            human(room),
            human(budget.resident(pool)),
            human(working_reserve(limit.bytes)),
        ),
    ))
}

/// Bytes for people: GB, MB or bytes.
fn human(bytes: u64) -> String {
    match bytes {
        1_000_000_000.. => format!("{:.1} GB", bytes as f64 / 1e9),
        1_000_000.. => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1_000_000;

    /// A model of `resident` bytes; with `streamed`, one that holds that much when its blocks stream (two
    /// blocks of 1 MB in flight).
    fn need(resident: usize, streamed: Option<usize>) -> ModelNeed<'static> {
        let blocks = streamed.map(|peak| BlockSizes {
            total: resident,
            blocks: (resident - peak).saturating_add(2 * MB),
            largest_block: MB,
        });
        ModelNeed {
            input: "ckpt_name",
            file: Path::new("/models/big.safetensors"),
            what: "transformer",
            resident,
            blocks,
        }
    }

    fn budget(limit: usize) -> MemoryBudget {
        let budget = MemoryBudget::unlimited();
        budget.set_limit(MemoryPool::Ram, Some(limit as u64));
        budget
    }

    #[test]
    fn without_a_limit_everything_is_resident() {
        let plan = plan_with(&MemoryBudget::unlimited(), &need(usize::MAX, Some(1)), MemoryPool::Ram);
        assert_eq!(plan.unwrap(), Residency::Resident);
    }

    #[test]
    fn a_model_that_fits_is_resident_and_one_that_does_not_streams() {
        // 800 MB limit: 100 MB reserve, 700 MB of room.
        let budget = budget(800 * MB);
        assert_eq!(plan_with(&budget, &need(300 * MB, Some(10 * MB)), MemoryPool::Ram).unwrap(), Residency::Resident);
        assert_eq!(plan_with(&budget, &need(650 * MB, None), MemoryPool::Ram).unwrap(), Residency::Resident);
        // Over half the limit, a model that can stream does, leaving room beside it.
        assert_eq!(plan_with(&budget, &need(450 * MB, Some(10 * MB)), MemoryPool::Ram).unwrap(), Residency::STREAMED);
        // What stays counts.
        let held = Arc::new(());
        budget.register(MemoryPool::Ram, 500 * MB as u64, &held);
        assert_eq!(plan_with(&budget, &need(300 * MB, Some(10 * MB)), MemoryPool::Ram).unwrap(), Residency::STREAMED);
    }

    #[test]
    fn what_cannot_fit_is_refused_naming_the_file_and_the_sizes() {
        let budget = budget(800 * MB);
        let error = plan_with(&budget, &need(750 * MB, None), MemoryPool::Ram).unwrap_err().to_string();
        assert!(error.contains("ckpt_name"), "{error}");
        assert!(error.contains("/models/big.safetensors"), "{error}");
        assert!(error.contains("needs 750.0 MB") && error.contains("cannot stream"), "{error}");
        assert!(error.contains("limit of 800.0 MB (the --ram-budget given) leaves 700.0 MB"), "{error}");
        let error = plan_with(&budget, &need(900 * MB, Some(720 * MB)), MemoryPool::Ram).unwrap_err().to_string();
        assert!(error.contains("with its blocks streamed from the file it keeps 720.0 MB"), "{error}");
        // The device's budget is its own.
        budget.set_limit(MemoryPool::Device, Some(100 * MB as u64));
        let error = plan_with(&budget, &need(200 * MB, None), MemoryPool::Device).unwrap_err().to_string();
        assert!(error.contains("device memory budget") && error.contains("--vram-budget"), "{error}");
    }

    #[test]
    fn a_streamed_model_needs_room_for_two_blocks_and_keeps_the_rest() {
        let sizes = BlockSizes { total: 900 * MB, blocks: 800 * MB, largest_block: 100 * MB };
        assert_eq!(sizes.streamed_rest(), 100 * MB);
        assert_eq!(sizes.streamed_peak(), 300 * MB);
        assert_eq!(sizes.kept(Residency::Resident), 900 * MB);
        assert_eq!(sizes.kept(Residency::STREAMED), 100 * MB);
        assert_eq!(sizes.kept(Residency::Streamed { kept_blocks: 3 }), 400 * MB);
        let need = ModelNeed::streamable("clip_name", Path::new("/models/t5.safetensors"), "text encoder", &sizes);
        assert_eq!((need.resident, need.blocks.map(|b| b.streamed_peak())), (900 * MB, Some(300 * MB)));
        // 400 MB limit: 50 MB reserve, 350 MB of room: the rest and two blocks fit.
        assert_eq!(plan_with(&budget(400 * MB), &need, MemoryPool::Ram).unwrap(), Residency::STREAMED);
        // 320 MB: 40 MB reserve, 280 MB of room: the rest fits, not with two blocks in flight.
        let error = plan_with(&budget(320 * MB), &need, MemoryPool::Ram).unwrap_err().to_string();
        assert!(error.contains("with its blocks streamed from the file it keeps 300.0 MB"), "{error}");
    }

    #[test]
    fn on_a_gpu_a_streamed_model_keeps_the_blocks_that_fit_in_its_share() {
        // 8 blocks of 100 MB and 100 MB beside them.
        let sizes = BlockSizes { total: 900 * MB, blocks: 800 * MB, largest_block: 100 * MB };
        let need = ModelNeed::streamable("unet_name", Path::new("/models/ltx2.gguf"), "transformer", &sizes);
        let device = MemoryBudget::unlimited();
        // 1 GB: 125 MB reserve, 875 MB of room, 500 MB share: the rest, two blocks in flight and two kept.
        device.set_limit(MemoryPool::Device, Some(1000 * MB as u64));
        assert_eq!(plan_with(&device, &need, MemoryPool::Device).unwrap(), Residency::Streamed { kept_blocks: 2 });
        // 2 GB: it fits within half, and is resident.
        device.set_limit(MemoryPool::Device, Some(2000 * MB as u64));
        assert_eq!(plan_with(&device, &need, MemoryPool::Device).unwrap(), Residency::Resident);
        // 1.6 GB: 200 MB reserve, 1.4 GB of room; half is 800 MB: five blocks kept.
        device.set_limit(MemoryPool::Device, Some(1600 * MB as u64));
        assert_eq!(plan_with(&device, &need, MemoryPool::Device).unwrap(), Residency::Streamed { kept_blocks: 5 });
        // What other models hold shrinks the share.
        let held = Arc::new(());
        device.register(MemoryPool::Device, 1000 * MB as u64, &held);
        assert_eq!(plan_with(&device, &need, MemoryPool::Device).unwrap(), Residency::Streamed { kept_blocks: 1 });
        // In RAM the same model streams every block.
        assert_eq!(plan_with(&budget(1000 * MB), &need, MemoryPool::Ram).unwrap(), Residency::STREAMED);
    }
}
