//! The process's memory budget: one account for the models held in memory, the blocks streamed through it
//! and the output cache together, per pool (host memory, and the compute device's memory).
//!
//! - The limit of a pool is the one set explicitly (`kinograph run --ram-budget` / `--vram-budget`), else
//!   for host memory `KINOGRAPH_MEMORY_LIMIT`, else the machine's memory (Linux: `MemTotal`, or the
//!   cgroup's `memory.max` when smaller); the device pool has no limit unless one is set.
//! - Loaded models are registered with their resident bytes and the value that holds them; they count for
//!   as long as that value lives, so a model nobody holds any more stops counting at once.
//! - A working reserve ([`working_reserve`]) is kept free for the activations of the running nodes.
//! - The output cache gives way: its bound is the smaller of its own (`--cache-ram`) and what the budget
//!   leaves after the models held outside it and the reserve; before a model loads, the caches are asked to
//!   evict until the model fits ([`MemoryBudget::room_for`]), and only then does a loader decide to stream
//!   the model's blocks (or refuse it) because it will not fit beside what must stay.

use crate::cache::Cache;
use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

/// Where bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryPool {
    /// Host memory: models run on the CPU, and the output cache.
    Ram,
    /// The compute device's own memory (a GPU's).
    Device,
}

impl MemoryPool {
    fn index(self) -> usize {
        match self {
            MemoryPool::Ram => 0,
            MemoryPool::Device => 1,
        }
    }

    /// How users name it in messages.
    pub fn name(self) -> &'static str {
        match self {
            MemoryPool::Ram => "memory",
            MemoryPool::Device => "device memory",
        }
    }
}

/// Where a pool's limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// Set for this process (`--ram-budget`, `--vram-budget`).
    Budget,
    /// The `KINOGRAPH_MEMORY_LIMIT` environment variable.
    Environment,
    /// The machine's memory, or its cgroup's limit.
    Machine,
}

/// A pool's limit and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    pub source: LimitSource,
}

impl Limit {
    /// How to change it, for error messages.
    pub fn how_to_change(&self, pool: MemoryPool) -> &'static str {
        match (self.source, pool) {
            (LimitSource::Budget, MemoryPool::Ram) => "the --ram-budget given",
            (LimitSource::Budget, MemoryPool::Device) => "the --vram-budget given",
            (LimitSource::Environment, _) => "KINOGRAPH_MEMORY_LIMIT",
            (LimitSource::Machine, _) => "this machine's memory; --ram-budget or KINOGRAPH_MEMORY_LIMIT set another",
        }
    }
}

/// The memory kept free for the activations of running nodes: an eighth of the limit, at most 1 GiB.
pub fn working_reserve(limit: u64) -> u64 {
    (limit / 8).min(1 << 30)
}

/// The limit from an explicit budget, else the environment variable's text (host memory only), else the
/// machine's memory; an unreadable environment value falls through to the machine.
pub fn resolve_limit(explicit: Option<u64>, environment: Option<&str>, machine: Option<u64>) -> Option<Limit> {
    if let Some(bytes) = explicit {
        return Some(Limit { bytes, source: LimitSource::Budget });
    }
    if let Some(bytes) = environment.and_then(|text| crate::size::parse_size(text).ok()) {
        return Some(Limit { bytes: bytes as u64, source: LimitSource::Environment });
    }
    machine.map(|bytes| Limit { bytes, source: LimitSource::Machine })
}

/// This machine's memory: `MemTotal`, or the cgroup's `memory.max` when smaller (Linux; `None` elsewhere).
pub fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    })?;
    let cgroup =
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|text| text.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |limit| limit.min(total)))
}

/// The most memory this process has held (Linux `VmHWM`, the peak resident set), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

struct Resident {
    pool: MemoryPool,
    bytes: u64,
    holder: Weak<dyn Any + Send + Sync>,
}

/// The budget of one process: see the module documentation.
pub struct MemoryBudget {
    explicit: Mutex<[Option<u64>; 2]>,
    /// Whether the limits fall back on `KINOGRAPH_MEMORY_LIMIT` and the machine's memory.
    from_system: bool,
    models: Mutex<Vec<Resident>>,
    caches: Mutex<Vec<Weak<Cache>>>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("ram", &self.limit(MemoryPool::Ram))
            .field("device", &self.limit(MemoryPool::Device))
            .field("resident_ram", &self.resident(MemoryPool::Ram))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryBudget {
    /// The budget every loader and the command line's caches share.
    pub fn global() -> &'static Arc<MemoryBudget> {
        static GLOBAL: OnceLock<Arc<MemoryBudget>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(MemoryBudget::with_system_limits()))
    }

    /// A budget whose limits, where none is set, come from `KINOGRAPH_MEMORY_LIMIT` and the machine.
    pub fn with_system_limits() -> Self {
        MemoryBudget { from_system: true, ..MemoryBudget::unlimited() }
    }

    /// A budget with no limit until one is set with [`Self::set_limit`].
    pub fn unlimited() -> Self {
        MemoryBudget {
            explicit: Mutex::new([None; 2]),
            from_system: false,
            models: Mutex::new(Vec::new()),
            caches: Mutex::new(Vec::new()),
        }
    }

    /// Sets (or with `None`, clears) the explicit limit of `pool`.
    pub fn set_limit(&self, pool: MemoryPool, bytes: Option<u64>) {
        lock(&self.explicit)[pool.index()] = bytes;
    }

    /// The limit of `pool`, if it has one.
    pub fn limit(&self, pool: MemoryPool) -> Option<Limit> {
        let explicit = lock(&self.explicit)[pool.index()];
        if !self.from_system || pool == MemoryPool::Device {
            return resolve_limit(explicit, None, None);
        }
        let environment = std::env::var("KINOGRAPH_MEMORY_LIMIT").ok();
        resolve_limit(explicit, environment.as_deref(), machine_memory())
    }

    /// Counts `bytes` of `pool` for as long as `holder` lives.
    pub fn register<T: Any + Send + Sync>(&self, pool: MemoryPool, bytes: u64, holder: &Arc<T>) {
        let erased: Arc<dyn Any + Send + Sync> = holder.clone();
        let mut models = lock(&self.models);
        models.retain(|model| model.holder.strong_count() > 0);
        models.push(Resident { pool, bytes, holder: Arc::downgrade(&erased) });
    }

    /// Bytes of `pool` held by registered models that are still alive.
    pub fn resident(&self, pool: MemoryPool) -> u64 {
        let mut models = lock(&self.models);
        models.retain(|model| model.holder.strong_count() > 0);
        models.iter().filter(|model| model.pool == pool).map(|model| model.bytes).sum()
    }

    /// Lets `cache` give way to models: it is asked to evict before a model loads, and bounds itself by
    /// what this budget leaves.
    pub fn attach_cache(self: &Arc<Self>, cache: &Arc<Cache>) {
        cache.set_budget(self.clone());
        let mut caches = lock(&self.caches);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
    }

    /// The bound of a cache whose own bound is `own`, which holds `cached_model_bytes` of models (counted
    /// among the resident ones too): `own`, or less when the host-memory limit minus the reserve and the
    /// models held outside the cache leaves less.
    pub fn cache_bound(&self, own: usize, cached_model_bytes: usize) -> usize {
        let Some(limit) = self.limit(MemoryPool::Ram) else { return own };
        let outside = self.resident(MemoryPool::Ram).saturating_sub(cached_model_bytes as u64);
        let left = limit.bytes.saturating_sub(working_reserve(limit.bytes)).saturating_sub(outside);
        own.min(usize::try_from(left).unwrap_or(usize::MAX))
    }

    /// Bytes of host memory the attached caches hold beyond the models they hold.
    fn cached_other_bytes(&self) -> u64 {
        self.live_caches().iter().map(|cache| cache.other_bytes() as u64).sum()
    }

    fn live_caches(&self) -> Vec<Arc<Cache>> {
        let mut caches = lock(&self.caches);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.iter().filter_map(Weak::upgrade).collect()
    }

    /// What is in use in `pool`: the resident models, and for host memory the caches' other entries.
    pub fn in_use(&self, pool: MemoryPool) -> u64 {
        let cached = if pool == MemoryPool::Ram { self.cached_other_bytes() } else { 0 };
        self.resident(pool) + cached
    }

    /// Makes room for a model of `need` bytes in `pool`: the caches evict, least recently used first,
    /// until the model fits beside everything else and the reserve, or they are empty. Returns the bytes
    /// a model may then take (the limit less the reserve and what stays in use), `None` without a limit.
    pub fn room_for(&self, pool: MemoryPool, need: u64) -> Option<u64> {
        let limit = self.limit(pool)?.bytes;
        let usable = limit.saturating_sub(working_reserve(limit));
        let caches = self.live_caches();
        loop {
            let in_use = self.in_use(pool);
            if in_use.saturating_add(need) <= usable {
                return Some(usable - in_use);
            }
            if !caches.iter().any(|cache| cache.evict_oldest()) {
                return Some(usable.saturating_sub(in_use));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheEntry;
    use crate::signature::Signature;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_limit_is_the_budget_else_the_environment_else_the_machine() {
        let budget = resolve_limit(Some(5), Some("7G"), Some(9)).unwrap();
        assert_eq!((budget.bytes, budget.source), (5, LimitSource::Budget));
        let environment = resolve_limit(None, Some("7M"), Some(9)).unwrap();
        assert_eq!((environment.bytes, environment.source), (7 << 20, LimitSource::Environment));
        let machine = resolve_limit(None, Some("lots"), Some(9)).unwrap();
        assert_eq!((machine.bytes, machine.source), (9, LimitSource::Machine));
        assert_eq!(resolve_limit(None, None, None), None);
    }

    #[test]
    fn the_reserve_is_an_eighth_up_to_one_gib() {
        assert_eq!(working_reserve(800 * MIB), 100 * MIB);
        assert_eq!(working_reserve(8 << 30), 1 << 30);
        assert_eq!(working_reserve(64 << 30), 1 << 30);
    }

    #[test]
    fn models_count_while_someone_holds_them() {
        let budget = MemoryBudget::unlimited();
        let model = Arc::new(vec![0_u8; 4]);
        budget.register(MemoryPool::Ram, 300, &model);
        let on_device = Arc::new(1_u32);
        budget.register(MemoryPool::Device, 50, &on_device);
        assert_eq!(budget.resident(MemoryPool::Ram), 300);
        assert_eq!(budget.resident(MemoryPool::Device), 50);
        drop(model);
        assert_eq!(budget.resident(MemoryPool::Ram), 0);
        assert_eq!(budget.resident(MemoryPool::Device), 50);
    }

    #[test]
    fn without_a_limit_there_is_always_room() {
        let budget = MemoryBudget::unlimited();
        assert_eq!(budget.room_for(MemoryPool::Ram, u64::MAX), None);
        assert_eq!(budget.cache_bound(123, 0), 123);
    }

    #[test]
    fn room_is_the_limit_less_the_reserve_and_the_models() {
        let budget = MemoryBudget::unlimited();
        budget.set_limit(MemoryPool::Ram, Some(800 * MIB));
        let model = Arc::new(());
        budget.register(MemoryPool::Ram, 200 * MIB, &model);
        // 800 - 100 reserve - 200 resident.
        assert_eq!(budget.room_for(MemoryPool::Ram, 100 * MIB), Some(500 * MIB));
        assert_eq!(budget.room_for(MemoryPool::Ram, 900 * MIB), Some(500 * MIB));
        // The device pool has its own limit.
        assert_eq!(budget.room_for(MemoryPool::Device, 1), None);
        budget.set_limit(MemoryPool::Device, Some(80 * MIB));
        assert_eq!(budget.room_for(MemoryPool::Device, 1), Some(70 * MIB));
    }

    fn entry(bytes: usize) -> Arc<CacheEntry> {
        Arc::new(CacheEntry { outputs: Vec::new(), ui: None, bytes, model_bytes: 0 })
    }

    #[test]
    fn the_cache_is_bounded_by_what_the_budget_leaves() {
        let budget = Arc::new(MemoryBudget::unlimited());
        budget.set_limit(MemoryPool::Ram, Some(800 * MIB));
        let cache = Arc::new(Cache::new(600 * MIB as usize));
        budget.attach_cache(&cache);
        // Its own bound while nothing else is held (800 - 100 reserve = 700 > 600).
        assert_eq!(cache.bound(), 600 * MIB as usize);
        let model = Arc::new(());
        budget.register(MemoryPool::Ram, 300 * MIB, &model);
        assert_eq!(cache.bound(), 400 * MIB as usize);
        for n in 0..5 {
            cache.insert(Signature([n; 32]), entry(100 * MIB as usize));
        }
        assert_eq!(cache.memory().used_bytes(), 400 * MIB as usize);
        assert!(!cache.memory().contains(&Signature([0; 32])), "the oldest went");
        // The model goes: the cache may grow again.
        drop(model);
        assert_eq!(cache.bound(), 600 * MIB as usize);
    }

    #[test]
    fn the_cache_gives_way_before_a_model_loads() {
        let budget = Arc::new(MemoryBudget::unlimited());
        budget.set_limit(MemoryPool::Ram, Some(800 * MIB));
        let cache = Arc::new(Cache::new(4 << 30));
        budget.attach_cache(&cache);
        for n in 0..6 {
            cache.insert(Signature([n; 32]), entry(100 * MIB as usize));
        }
        assert_eq!(cache.memory().used_bytes(), 600 * MIB as usize);
        // A 350 MiB model: 700 usable, so the cache keeps 300 MiB, the most recent entries.
        assert_eq!(budget.room_for(MemoryPool::Ram, 350 * MIB), Some(400 * MIB));
        assert_eq!(cache.memory().used_bytes(), 300 * MIB as usize);
        assert!(cache.memory().contains(&Signature([5; 32])));
        assert!(!cache.memory().contains(&Signature([2; 32])));
        // Nothing can make a 2 GiB model fit: the cache empties, and the room says how much there is.
        assert_eq!(budget.room_for(MemoryPool::Ram, 2 << 30), Some(700 * MIB));
        assert!(cache.memory().is_empty());
    }

    /// A loaded model, as a node library defines one.
    #[derive(Debug)]
    struct TestModel(u64);

    impl crate::value::NodeValue for TestModel {
        fn type_name(&self) -> &'static str {
            "MODEL"
        }
        fn byte_size(&self) -> usize {
            self.0 as usize
        }
        fn model_bytes(&self) -> usize {
            self.0 as usize
        }
    }

    #[test]
    fn a_cached_model_counts_once_and_goes_when_a_bigger_need_arrives() {
        let budget = Arc::new(MemoryBudget::unlimited());
        budget.set_limit(MemoryPool::Ram, Some(800 * MIB));
        let cache = Arc::new(Cache::new(4 << 30));
        budget.attach_cache(&cache);
        // A loader's output that only the cache holds once the run is over.
        let model = Arc::new(TestModel(500 * MIB));
        budget.register(MemoryPool::Ram, 500 * MIB, &model);
        let weak = Arc::downgrade(&model);
        let value = crate::value::Value::Object(model);
        cache.insert(Signature([1; 32]), Arc::new(CacheEntry::new(vec![value], None)));
        assert!(weak.upgrade().is_some(), "the cache holds the model");
        // It is counted once: resident, not again as cache data.
        assert!(budget.in_use(MemoryPool::Ram) - 500 * MIB < 1024, "only the Value itself beside the model");
        assert_eq!(cache.bound(), 700 * MIB as usize);
        cache.insert(Signature([2; 32]), entry(100 * MIB as usize));
        assert!(budget.in_use(MemoryPool::Ram) - 600 * MIB < 1024);
        // A 400 MiB model arrives: the older entry, the cached model, goes, and the model with it.
        assert_eq!(budget.room_for(MemoryPool::Ram, 400 * MIB), Some(600 * MIB));
        assert!(weak.upgrade().is_none(), "the model was freed");
        assert!(!cache.memory().contains(&Signature([1; 32])));
        assert!(cache.memory().contains(&Signature([2; 32])));
    }
}
