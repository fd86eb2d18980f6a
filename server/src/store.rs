//! The durable queue and history of `kinograph serve`: one `SQLite` database, `queue.sqlite3` in the state
//! folder, so that a restart or a crash loses no queued prompt and no finished entry.
//!
//! Durability: every change is one transaction, committed in WAL mode with `synchronous=FULL` before the
//! call returns. When [`Store::push`] returns, the prompt is on disk; when [`Store::finish`] returns, the
//! history entry is. A prompt lives in exactly one place: pending or running (the `queue` table) or
//! finished (the `history` table), and its id is unique across all three. After a crash, [`Store::open`]
//! and [`Store::recover`] find every pending prompt in the same order, and the prompt that was running is
//! either pending again or recorded as interrupted.
//!
//! The store only ever writes its database: pruning the history never deletes output files.

use kinograph_engine::queue::{HistoryEntry, HistoryStatus, QueueItem};
use rusqlite::{Connection, Params, Row, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value as Json, json};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The database's file name in the state folder.
pub const DATABASE_FILE: &str = "queue.sqlite3";

/// The schema this code reads and writes, kept in `PRAGMA user_version`; a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a call waits for another connection's write lock (another process holding the same file)
/// before it fails, rather than failing at once.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What an interrupted prompt's history entry says happened.
const STOPPED_MESSAGE: &str = "the server stopped while the prompt ran";

// STRICT tables make SQLite refuse a value of the wrong type when it is written, not when it is read.
// `running` is 0 or 1; the index serves both the queue's run order and the running prompts.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS queue (
    prompt_id TEXT PRIMARY KEY,
    number REAL NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS queue_run_order ON queue (running, number, prompt_id);
CREATE TABLE IF NOT EXISTS history (
    sequence INTEGER PRIMARY KEY,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    outputs TEXT NOT NULL,
    status TEXT NOT NULL,
    meta TEXT NOT NULL,
    finished_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS history_finished_at ON history (finished_at);
";

/// The columns a [`QueueItem`] is read from, in the order [`Store::read_item`] expects them.
const ITEM_COLUMNS: &str = "prompt_id, number, prompt, extra_data, outputs_to_execute";

/// The columns a [`HistoryEntry`] is read from, in the order [`Store::read_entry`] expects them.
const ENTRY_COLUMNS: &str =
    "prompt_id, number, prompt, extra_data, outputs_to_execute, outputs, status, meta, finished_at";

/// What can go wrong with the queue database. Every message names the database file or the prompt.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state folder did not exist and could not be created.
    #[error("cannot create the state folder {}: {source}", path.display())]
    CreateFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or set up (not a database, no permission, disk full...).
    #[error("cannot open the queue database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer kinograph with a schema this one does not know.
    #[error(
        "the queue database {} has schema version {found}, newer than this kinograph's {}; run a newer \
         kinograph or move the file away",
        path.display(),
        SCHEMA_VERSION
    )]
    NewerSchema { path: PathBuf, found: i64 },
    /// A query failed.
    #[error("a query on the queue database {} failed: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The prompt id is already pending, running or in the history.
    #[error("prompt id {0} is already queued, running or in the history")]
    DuplicateId(String),
    /// The prompt's number is NaN, which has no place in the run order.
    #[error("prompt {0} has NaN for its number")]
    NotANumber(String),
    /// A row could not be read back (JSON that does not parse, a value of the wrong shape). The server
    /// can remove the prompt by its id.
    #[error("the queue database {} holds an unreadable row for prompt {prompt_id}: {reason}", path.display())]
    CorruptRow { path: PathBuf, prompt_id: String, reason: String },
}

/// How much history is kept. Pruning removes the oldest entries only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// The most entries kept (ComfyUI keeps 10,000).
    pub max_history: usize,
    /// Entries that finished longer ago than this are removed.
    pub max_age: Duration,
}

impl Default for StoreLimits {
    /// 10,000 entries (ComfyUI's bound) and 30 days.
    fn default() -> Self {
        StoreLimits { max_history: 10_000, max_age: Duration::from_hours(30 * 24) }
    }
}

/// What [`Store::recover`] found, for the server's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The ids of the pending prompts in run order, requeued ones included.
    pub pending: Vec<String>,
    /// Prompts that were running and are pending again.
    pub requeued: Vec<String>,
    /// Prompts that were running and are now history entries with an `execution_interrupted` status.
    pub interrupted: Vec<String>,
}

/// The queue and history in one database file; every method is one committed transaction.
///
/// Methods block (on the file and on each other); the server calls them from blocking threads.
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
    limits: RwLock<StoreLimits>,
}

impl Store {
    /// Opens (or creates) `queue.sqlite3` in `state_folder`, creating the folder if it is missing, and
    /// prunes the history to `limits`. Refuses a database written with a newer schema.
    pub fn open(state_folder: &Path, limits: StoreLimits) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_folder)
            .map_err(|source| StoreError::CreateFolder { path: state_folder.to_path_buf(), source })?;
        let path = state_folder.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open { path: path.clone(), source };
        let mut connection = Connection::open(&path).map_err(open_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // Checked before anything is written, so a newer database is left exactly as it was.
        check_version(&connection, &path)?;
        // WAL: a commit appends to the log, and with FULL the log is synced before the commit returns.
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot share memory for WAL; the rollback journal SQLite
            // keeps instead is just as durable with synchronous=FULL, only slower.
            tracing::warn!("the queue database {} uses journal mode {mode}, not WAL", path.display());
        }
        connection.pragma_update(None, "synchronous", "FULL").map_err(open_error)?;

        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_error)?;
        // Again under the write lock: another process may have created or upgraded the file meanwhile.
        if check_version(&transaction, &path)? < SCHEMA_VERSION {
            transaction.execute_batch(SCHEMA).map_err(open_error)?;
            transaction.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(open_error)?;
        }
        transaction.commit().map_err(open_error)?;

        let store = Store { path, connection: Mutex::new(connection), limits: RwLock::new(limits) };
        store.write(|transaction| store.prune(transaction))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The history bounds in force.
    pub fn limits(&self) -> StoreLimits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the history bounds and prunes to them now; returns how many entries were removed.
    pub fn set_limits(&self, limits: StoreLimits) -> Result<usize, StoreError> {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
        self.write(|transaction| self.prune(transaction))
    }

    /// Puts back what a crash left: the running prompts become pending again (`requeue_running`; their
    /// original numbers keep them at the head of the queue) or history entries with status "error" and an
    /// `execution_interrupted` message. Call once after [`Store::open`], before the worker starts.
    pub fn recover(&self, requeue_running: bool) -> Result<Recovery, StoreError> {
        self.write(|transaction| {
            let mut recovery = Recovery::default();
            if requeue_running {
                // Only the ids are read, so a row with bad JSON is requeued rather than blocking the start.
                recovery.requeued = self.select_ids(
                    transaction,
                    "SELECT prompt_id FROM queue WHERE running = 1 ORDER BY number, prompt_id",
                )?;
                transaction.execute("UPDATE queue SET running = 0 WHERE running = 1", []).map_err(self.database())?;
            } else {
                let sql = format!("SELECT {ITEM_COLUMNS} FROM queue WHERE running = 1 ORDER BY number, prompt_id");
                let now = now_millis();
                for item in self.select(transaction, &sql, [], Self::read_item)? {
                    transaction
                        .execute("DELETE FROM queue WHERE prompt_id = ?1", [&item.prompt_id])
                        .map_err(self.database())?;
                    self.insert_entry(transaction, &interrupted_entry(&item, now))?;
                    recovery.interrupted.push(item.prompt_id);
                }
                self.prune(transaction)?;
            }
            recovery.pending = self
                .select_ids(transaction, "SELECT prompt_id FROM queue WHERE running = 0 ORDER BY number, prompt_id")?;
            Ok(recovery)
        })
    }

    /// Reserves the server's next priority number, ComfyUI's way: the counter's value (0, 1, 2...), negated
    /// when the client asked for `front`. The counter is kept in the database, so numbers keep increasing
    /// across restarts.
    pub fn next_number(&self, front: bool) -> Result<f64, StoreError> {
        self.write(|transaction| self.reserve_number(transaction, front))
    }

    /// Queues an item with the number it has (the client's `number`, or one from [`Store::next_number`]).
    /// The item is on disk when this returns.
    pub fn push(&self, item: &QueueItem) -> Result<(), StoreError> {
        self.write(|transaction| self.insert_pending(transaction, item))
    }

    /// Queues an item numbered by the server's counter (see [`Store::next_number`]) in the same
    /// transaction, so a refused item reserves no number; returns the item as queued.
    pub fn push_numbered(&self, mut item: QueueItem, front: bool) -> Result<QueueItem, StoreError> {
        self.write(|transaction| {
            item.number = self.reserve_number(transaction, front)?;
            self.insert_pending(transaction, &item)?;
            Ok(item)
        })
    }

    /// Marks the first pending item in run order running and returns it; `None` when nothing is pending.
    pub fn take_next(&self) -> Result<Option<QueueItem>, StoreError> {
        self.write(|transaction| {
            let sql = format!("SELECT {ITEM_COLUMNS} FROM queue WHERE running = 0 ORDER BY number, prompt_id LIMIT 1");
            let Some(item) = self.select(transaction, &sql, [], Self::read_item)?.pop() else { return Ok(None) };
            transaction
                .execute("UPDATE queue SET running = 1 WHERE prompt_id = ?1", [&item.prompt_id])
                .map_err(self.database())?;
            Ok(Some(item))
        })
    }

    /// The running items in run order (one with the server's single worker).
    pub fn running(&self) -> Result<Vec<QueueItem>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM queue WHERE running = 1 ORDER BY number, prompt_id");
        self.select(&self.lock(), &sql, [], Self::read_item)
    }

    /// The pending items in run order.
    pub fn pending(&self) -> Result<Vec<QueueItem>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM queue WHERE running = 0 ORDER BY number, prompt_id");
        self.select(&self.lock(), &sql, [], Self::read_item)
    }

    /// How many items are pending.
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM queue WHERE running = 0")
    }

    /// Removes the pending items with these ids; a running item is never removed. Returns the ids
    /// removed.
    pub fn delete_pending(&self, prompt_ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.delete_each(prompt_ids, "DELETE FROM queue WHERE prompt_id = ?1 AND running = 0")
    }

    /// Removes every pending item (not the running ones); returns how many.
    pub fn clear_pending(&self) -> Result<usize, StoreError> {
        self.write(|transaction| {
            transaction.execute("DELETE FROM queue WHERE running = 0", []).map_err(self.database())
        })
    }

    /// Records a finished prompt: removes its running row and adds the entry (with its item sanitized)
    /// in one transaction, then prunes the history to the limits. The entry is on disk when this returns.
    /// Refuses an id that is still pending or already in the history.
    pub fn finish(&self, entry: &HistoryEntry) -> Result<(), StoreError> {
        self.write(|transaction| {
            transaction
                .execute("DELETE FROM queue WHERE prompt_id = ?1 AND running = 1", [&entry.item.prompt_id])
                .map_err(self.database())?;
            self.insert_entry(transaction, entry)?;
            self.prune(transaction)?;
            Ok(())
        })
    }

    /// Marks a pending item running, as a remote worker reported it started; whether it was pending.
    pub fn mark_running(&self, prompt_id: &str) -> Result<bool, StoreError> {
        self.write(|transaction| {
            let changed = transaction
                .execute("UPDATE queue SET running = 1 WHERE prompt_id = ?1 AND running = 0", [prompt_id])
                .map_err(self.database())?;
            Ok(changed > 0)
        })
    }

    /// How many items are running (one at most with the server's own worker; one per busy remote
    /// worker).
    pub fn running_count(&self) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM queue WHERE running = 1")
    }

    /// Records an entry a remote worker finished: removes the prompt's row, pending or running (its
    /// `execution_start` may never have arrived, events being live only), and adds the entry, unless the
    /// history holds the id already: a worker that stopped between storing an entry and acknowledging its
    /// prompt sends the entry again, and the first one stands. Whether the entry was added.
    pub fn finish_remote(&self, entry: &HistoryEntry) -> Result<bool, StoreError> {
        self.write(|transaction| {
            let prompt_id = &entry.item.prompt_id;
            let known: bool = transaction
                .query_row("SELECT EXISTS (SELECT 1 FROM history WHERE prompt_id = ?1)", [prompt_id], |row| row.get(0))
                .map_err(self.database())?;
            transaction.execute("DELETE FROM queue WHERE prompt_id = ?1", [prompt_id]).map_err(self.database())?;
            if known {
                return Ok(false);
            }
            self.insert_entry(transaction, entry)?;
            self.prune(transaction)?;
            Ok(true)
        })
    }

    /// The history in the order the entries finished, oldest first, paged as ComfyUI's `/history`: no
    /// `max_items` gives every entry from `offset` (default 0); `max_items` alone gives the last
    /// `max_items`; both give `max_items` entries from `offset`.
    pub fn history(&self, max_items: Option<usize>, offset: Option<usize>) -> Result<Vec<HistoryEntry>, StoreError> {
        let clamp = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        // The last `max_items` are the first `max_items` newest first, read back in reverse; a negative
        // LIMIT is none in SQLite.
        let (newest_first, limit, offset) = match (max_items, offset) {
            (None, offset) => (false, -1, offset.map_or(0, clamp)),
            (Some(max_items), None) => (true, clamp(max_items), 0),
            (Some(max_items), Some(offset)) => (false, clamp(max_items), clamp(offset)),
        };
        let order = if newest_first { "DESC" } else { "ASC" };
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM history ORDER BY sequence {order} LIMIT ?1 OFFSET ?2");
        let mut entries = self.select(&self.lock(), &sql, [limit, offset], Self::read_entry)?;
        if newest_first {
            entries.reverse();
        }
        Ok(entries)
    }

    /// The history entry of one prompt.
    pub fn history_entry(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM history WHERE prompt_id = ?1");
        Ok(self.select(&self.lock(), &sql, [prompt_id], Self::read_entry)?.pop())
    }

    /// How many entries the history holds.
    pub fn history_count(&self) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM history")
    }

    /// Removes the history entries with these ids; returns the ids removed. Output files stay.
    pub fn delete_history(&self, prompt_ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.delete_each(prompt_ids, "DELETE FROM history WHERE prompt_id = ?1")
    }

    /// Removes every history entry; returns how many. Output files stay.
    pub fn clear_history(&self) -> Result<usize, StoreError> {
        self.write(|transaction| transaction.execute("DELETE FROM history", []).map_err(self.database()))
    }

    /// The connection; a panic in another thread while it held the lock left no open transaction (a
    /// dropped transaction rolls back), so a poisoned lock is still a consistent database.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` in one transaction and commits it. IMMEDIATE takes the write lock at the start, so two
    /// processes on one file wait for each other (busy timeout) instead of failing half way.
    fn write<T>(&self, work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.database())?;
        let value = work(&transaction)?;
        transaction.commit().map_err(self.database())?;
        Ok(value)
    }

    fn database(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Database { path: self.path.clone(), source }
    }

    fn count(&self, sql: &str) -> Result<usize, StoreError> {
        let count: i64 = self.lock().query_row(sql, [], |row| row.get(0)).map_err(self.database())?;
        Ok(count as usize)
    }

    fn delete_each(&self, prompt_ids: &[String], sql: &str) -> Result<Vec<String>, StoreError> {
        self.write(|transaction| {
            let mut statement = transaction.prepare_cached(sql).map_err(self.database())?;
            let mut removed = Vec::new();
            for prompt_id in prompt_ids {
                if statement.execute([prompt_id]).map_err(self.database())? > 0 {
                    removed.push(prompt_id.clone());
                }
            }
            Ok(removed)
        })
    }

    fn reserve_number(&self, connection: &Connection, front: bool) -> Result<f64, StoreError> {
        // An upsert, so a missing counter row starts over at 0 instead of failing.
        let counter: i64 = connection
            .query_row(
                "INSERT INTO meta (key, value) VALUES ('next_number', 1)
                 ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value - 1",
                [],
                |row| row.get(0),
            )
            .map_err(self.database())?;
        let number = counter as f64;
        // -0.0 would sort before 0.0 in `run_order` but equal to it in SQLite.
        Ok(if front && counter != 0 { -number } else { number })
    }

    fn refuse_known_id(&self, connection: &Connection, prompt_id: &str) -> Result<(), StoreError> {
        let known: bool = connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM queue WHERE prompt_id = ?1)
                     OR EXISTS (SELECT 1 FROM history WHERE prompt_id = ?1)",
                [prompt_id],
                |row| row.get(0),
            )
            .map_err(self.database())?;
        if known { Err(StoreError::DuplicateId(prompt_id.to_string())) } else { Ok(()) }
    }

    fn insert_pending(&self, connection: &Connection, item: &QueueItem) -> Result<(), StoreError> {
        if item.number.is_nan() {
            return Err(StoreError::NotANumber(item.prompt_id.clone()));
        }
        self.refuse_known_id(connection, &item.prompt_id)?;
        let number = if item.number == 0.0 { 0.0 } else { item.number };
        connection
            .prepare_cached(
                "INSERT INTO queue (prompt_id, number, prompt, extra_data, outputs_to_execute, running)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    item.prompt_id,
                    number,
                    item.prompt.to_string(),
                    item.extra_data.to_string(),
                    json!(item.outputs_to_execute).to_string(),
                ])
            })
            .map_err(self.database())?;
        Ok(())
    }

    fn insert_entry(&self, connection: &Connection, entry: &HistoryEntry) -> Result<(), StoreError> {
        // The server sanitizes already; a secret written to disk cannot be taken back, so again here.
        let item = entry.item.sanitized();
        self.refuse_known_id(connection, &item.prompt_id)?;
        // SQLite would store NaN as NULL; the queue refuses NaN, so only a hand-made entry meets this.
        let number = if item.number.is_nan() { 0.0 } else { item.number };
        connection
            .prepare_cached(
                "INSERT INTO history (prompt_id, number, prompt, extra_data, outputs_to_execute, outputs, status,
                                      meta, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    item.prompt_id,
                    number,
                    item.prompt.to_string(),
                    item.extra_data.to_string(),
                    json!(item.outputs_to_execute).to_string(),
                    Json::Object(entry.outputs.clone()).to_string(),
                    entry.status.to_comfy_json().to_string(),
                    Json::Object(entry.meta.clone()).to_string(),
                    i64::try_from(entry.finished_at).unwrap_or(i64::MAX),
                ])
            })
            .map_err(self.database())?;
        Ok(())
    }

    /// Removes the entries older than the age limit, then the oldest beyond the count limit; returns how
    /// many.
    fn prune(&self, connection: &Connection) -> Result<usize, StoreError> {
        let limits = self.limits();
        let max_age = i64::try_from(limits.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = i64::try_from(now_millis()).unwrap_or(i64::MAX).saturating_sub(max_age);
        let by_age =
            connection.execute("DELETE FROM history WHERE finished_at < ?1", [cutoff]).map_err(self.database())?;
        // The subquery finds the newest entry beyond the bound (none when there are fewer: NULL matches
        // nothing); it and every older one go.
        let by_count = connection
            .execute(
                "DELETE FROM history WHERE sequence <=
                     (SELECT sequence FROM history ORDER BY sequence DESC LIMIT 1 OFFSET ?1)",
                [i64::try_from(limits.max_history).unwrap_or(i64::MAX)],
            )
            .map_err(self.database())?;
        Ok(by_age + by_count)
    }

    fn select_ids(&self, connection: &Connection, sql: &str) -> Result<Vec<String>, StoreError> {
        let mut statement = connection.prepare_cached(sql).map_err(self.database())?;
        let ids = statement.query_map([], |row| row.get(0)).map_err(self.database())?;
        ids.collect::<Result<_, _>>().map_err(self.database())
    }

    /// Runs a query and reads each row with `read`, stopping at the first row it cannot read.
    fn select<T>(
        &self,
        connection: &Connection,
        sql: &str,
        parameters: impl Params,
        read: impl Fn(&Self, &Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = connection.prepare_cached(sql).map_err(self.database())?;
        let mut rows = statement.query(parameters).map_err(self.database())?;
        let mut values = Vec::new();
        while let Some(row) = rows.next().map_err(self.database())? {
            values.push(read(self, row)?);
        }
        Ok(values)
    }

    /// Reads [`ITEM_COLUMNS`]; anything unreadable is a [`StoreError::CorruptRow`] naming the prompt.
    fn read_item(&self, row: &Row<'_>) -> Result<QueueItem, StoreError> {
        let prompt_id: String = row.get(0).map_err(self.database())?;
        Self::read_item_columns(row, &prompt_id).map_err(|reason| self.corrupt(&prompt_id, reason))
    }

    fn read_item_columns(row: &Row<'_>, prompt_id: &str) -> Result<QueueItem, String> {
        let number: f64 = row.get(1).map_err(|error| format!("number: {error}"))?;
        let outputs = json_column(row, 4, "outputs_to_execute")?;
        let outputs_to_execute = outputs
            .as_array()
            .and_then(|outputs| outputs.iter().map(|output| output.as_str().map(str::to_string)).collect())
            .ok_or("outputs_to_execute is not a list of node ids")?;
        Ok(QueueItem {
            number,
            prompt_id: prompt_id.to_string(),
            prompt: json_column(row, 2, "prompt")?,
            extra_data: json_column(row, 3, "extra_data")?,
            outputs_to_execute,
        })
    }

    /// Reads [`ENTRY_COLUMNS`]; anything unreadable is a [`StoreError::CorruptRow`] naming the prompt.
    fn read_entry(&self, row: &Row<'_>) -> Result<HistoryEntry, StoreError> {
        let prompt_id: String = row.get(0).map_err(self.database())?;
        let read = || -> Result<HistoryEntry, String> {
            let item = Self::read_item_columns(row, &prompt_id)?;
            let status = json_column(row, 6, "status")?;
            let finished_at: i64 = row.get(8).map_err(|error| format!("finished_at: {error}"))?;
            Ok(HistoryEntry {
                item,
                outputs: object_column(row, 5, "outputs")?,
                status: HistoryStatus::from_comfy_json(&status)
                    .ok_or("status is not {status_str, completed, messages}")?,
                meta: object_column(row, 7, "meta")?,
                finished_at: u64::try_from(finished_at)
                    .map_err(|_| format!("finished_at is negative: {finished_at}"))?,
            })
        };
        read().map_err(|reason| self.corrupt(&prompt_id, reason))
    }

    fn corrupt(&self, prompt_id: &str, reason: String) -> StoreError {
        StoreError::CorruptRow { path: self.path.clone(), prompt_id: prompt_id.to_string(), reason }
    }
}

/// Reads `user_version` and refuses a schema newer than [`SCHEMA_VERSION`].
fn check_version(connection: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found: version });
    }
    Ok(version)
}

fn json_column(row: &Row<'_>, index: usize, name: &str) -> Result<Json, String> {
    let text: String = row.get(index).map_err(|error| format!("{name}: {error}"))?;
    serde_json::from_str(&text).map_err(|error| format!("{name} is not valid JSON: {error}"))
}

fn object_column(row: &Row<'_>, index: usize, name: &str) -> Result<Map<String, Json>, String> {
    match json_column(row, index, name)? {
        Json::Object(object) => Ok(object),
        _ => Err(format!("{name} is not a JSON object")),
    }
}

/// The entry a prompt leaves when the server stopped while it ran (ComfyUI's interrupted status).
fn interrupted_entry(item: &QueueItem, now: u64) -> HistoryEntry {
    let message = json!({
        "prompt_id": item.prompt_id,
        "node_id": null,
        "node_type": null,
        "executed": [],
        "timestamp": now,
        "exception_message": STOPPED_MESSAGE,
    });
    HistoryEntry {
        item: item.sanitized(),
        outputs: Map::new(),
        status: HistoryStatus {
            status_str: "error".to_string(),
            completed: false,
            messages: vec![("execution_interrupted".to_string(), message)],
        },
        meta: Map::new(),
        finished_at: now,
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    const DAY: Duration = Duration::from_hours(24);

    fn item(id: &str, number: f64) -> QueueItem {
        QueueItem {
            number,
            prompt_id: id.to_string(),
            prompt: json!({"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": id}}}),
            extra_data: json!({"client_id": "c1", "api_key_comfy_org": "secret"}),
            outputs_to_execute: vec!["1".to_string()],
        }
    }

    fn entry(item: QueueItem, finished_at: u64) -> HistoryEntry {
        let outputs: Map<String, Json> =
            [("1".to_string(), json!({"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}))]
                .into_iter()
                .collect();
        HistoryEntry {
            item,
            meta: HistoryEntry::meta_for(&outputs),
            outputs,
            status: HistoryStatus { status_str: "success".to_string(), completed: true, messages: vec![] },
            finished_at,
        }
    }

    fn open(folder: &TempDir) -> Store {
        Store::open(folder.path(), StoreLimits::default()).unwrap()
    }

    fn ids(items: &[QueueItem]) -> Vec<&str> {
        items.iter().map(|item| item.prompt_id.as_str()).collect()
    }

    fn entry_ids(entries: &[HistoryEntry]) -> Vec<&str> {
        entries.iter().map(|entry| entry.item.prompt_id.as_str()).collect()
    }

    /// Runs `a` to `b` through the queue to the history, in that order.
    fn finish_all(store: &Store, prompt_ids: &[&str]) {
        for prompt_id in prompt_ids {
            let item = store.push_numbered(item(prompt_id, 0.0), false).unwrap();
            assert_eq!(store.take_next().unwrap().unwrap(), item);
            store.finish(&entry(item, now_millis())).unwrap();
        }
    }

    #[test]
    fn remote_workers_mark_prompts_running_and_a_second_entry_of_an_id_is_ignored() {
        let folder = tempfile::tempdir().unwrap();
        let store = open(&folder);
        let started = store.push_numbered(item("started", 0.0), false).unwrap();
        let unseen = store.push_numbered(item("unseen", 0.0), false).unwrap();
        assert!(store.mark_running("started").unwrap());
        assert!(!store.mark_running("started").unwrap(), "already running");
        assert_eq!((store.running_count().unwrap(), store.pending_count().unwrap()), (1, 1));

        let now = now_millis();
        assert!(store.finish_remote(&entry(started.clone(), now)).unwrap());
        // Its start was never heard of: a pending prompt is finished all the same.
        assert!(store.finish_remote(&entry(unseen, now + 1)).unwrap());
        assert!(!store.finish_remote(&entry(started, now + 2)).unwrap(), "the first entry stands");
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["started", "unseen"]);
        assert_eq!(store.history_entry("started").unwrap().unwrap().finished_at, now);
        assert_eq!((store.running_count().unwrap(), store.pending_count().unwrap()), (0, 0));
    }

    #[test]
    fn items_run_by_number_then_id_and_front_goes_first() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        assert_eq!(store.push_numbered(item("a", 9.0), false).unwrap().number, 0.0);
        assert_eq!(store.push_numbered(item("b", 9.0), false).unwrap().number, 1.0);
        assert_eq!(store.push_numbered(item("c", 9.0), true).unwrap().number, -2.0);
        store.push(&item("aa", 1.0)).unwrap();
        store.push(&item("z", -0.0)).unwrap();
        assert!(matches!(store.push(&item("nan", f64::NAN)), Err(StoreError::NotANumber(id)) if id == "nan"));
        assert_eq!(ids(&store.pending().unwrap()), ["c", "a", "z", "aa", "b"]);
        assert_eq!(store.pending_count().unwrap(), 5);

        let first = store.take_next().unwrap().unwrap();
        assert_eq!(first, item("c", -2.0));
        assert_eq!(ids(&store.running().unwrap()), ["c"]);
        assert_eq!(ids(&store.pending().unwrap()), ["a", "z", "aa", "b"]);
        store.take_next().unwrap();
        assert_eq!(ids(&store.running().unwrap()), ["c", "a"]);
        assert_eq!(store.pending_count().unwrap(), 3);
    }

    #[test]
    fn numbers_keep_increasing_after_a_reopen() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        assert_eq!(store.next_number(true).unwrap().to_bits(), 0.0f64.to_bits());
        assert_eq!(store.next_number(false).unwrap(), 1.0);
        drop(store);
        let store = open(&folder);
        assert_eq!(store.next_number(false).unwrap(), 2.0);
        assert_eq!(store.next_number(true).unwrap(), -3.0);
        assert_eq!(store.push_numbered(item("a", 0.0), false).unwrap().number, 4.0);
    }

    #[test]
    fn an_id_is_refused_while_pending_running_or_in_the_history() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        let duplicate =
            |result: Result<(), StoreError>| matches!(result, Err(StoreError::DuplicateId(id)) if id == "a");
        store.push_numbered(item("a", 0.0), false).unwrap();
        assert!(duplicate(store.push(&item("a", 5.0))));
        // A refused item reserves no number.
        assert!(duplicate(store.push_numbered(item("a", 0.0), false).map(drop)));
        assert_eq!(store.next_number(false).unwrap(), 1.0);

        let running = store.take_next().unwrap().unwrap();
        assert!(duplicate(store.push(&item("a", 5.0))));
        store.finish(&entry(running.clone(), now_millis())).unwrap();
        assert!(duplicate(store.push(&item("a", 5.0))));
        assert!(duplicate(store.finish(&entry(running, now_millis()))));
        store.push(&item("b", 5.0)).unwrap();
        let message = store.finish(&entry(item("b", 5.0), now_millis())).unwrap_err().to_string();
        assert_eq!(message, "prompt id b is already queued, running or in the history");
        assert_eq!(store.pending_count().unwrap(), 1);
        assert_eq!(store.history_count().unwrap(), 1);
    }

    /// A store in `folder` with prompts a, b and c queued and a running when the process died.
    fn crashed_while_a_ran(folder: &TempDir) -> Store {
        let store = open(folder);
        for id in ["a", "b", "c"] {
            store.push_numbered(item(id, 0.0), false).unwrap();
        }
        assert_eq!(store.take_next().unwrap().unwrap().prompt_id, "a");
        drop(store);
        open(folder)
    }

    #[test]
    fn after_a_crash_the_running_prompt_is_requeued_first() {
        let folder = TempDir::new().unwrap();
        let store = crashed_while_a_ran(&folder);
        let recovery = store.recover(true).unwrap();
        assert_eq!(recovery.pending, ["a", "b", "c"]);
        assert_eq!(recovery.requeued, ["a"]);
        assert!(recovery.interrupted.is_empty());
        assert!(store.running().unwrap().is_empty());
        assert_eq!(store.take_next().unwrap().unwrap(), item("a", 0.0));
        assert_eq!(store.history_count().unwrap(), 0);
    }

    #[test]
    fn after_a_crash_the_running_prompt_is_recorded_as_interrupted() {
        let folder = TempDir::new().unwrap();
        let store = crashed_while_a_ran(&folder);
        let before = now_millis();
        let recovery = store.recover(false).unwrap();
        assert_eq!(
            recovery,
            Recovery { pending: vec!["b".into(), "c".into()], requeued: vec![], interrupted: vec!["a".into()] }
        );
        assert_eq!(ids(&store.pending().unwrap()), ["b", "c"]);
        assert!(store.running().unwrap().is_empty());

        let interrupted = store.history_entry("a").unwrap().unwrap();
        assert_eq!(interrupted.item, item("a", 0.0).sanitized());
        assert!(interrupted.item.extra_data.get("api_key_comfy_org").is_none());
        assert!(interrupted.outputs.is_empty() && interrupted.meta.is_empty());
        assert!(interrupted.finished_at >= before);
        let status = &interrupted.status;
        assert_eq!((status.status_str.as_str(), status.completed), ("error", false));
        let [(event, data)] = status.messages.as_slice() else { panic!("one message: {:?}", status.messages) };
        assert_eq!(event, "execution_interrupted");
        assert_eq!(
            *data,
            json!({
                "prompt_id": "a", "node_id": null, "node_type": null, "executed": [],
                "timestamp": interrupted.finished_at, "exception_message": "the server stopped while the prompt ran",
            })
        );
        // Nothing was running the second time.
        assert_eq!(store.recover(false).unwrap().interrupted.len(), 0);
    }

    #[test]
    fn history_pages_like_comfyui() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        finish_all(&store, &["e0", "e1", "e2", "e3", "e4"]);
        drop(store);

        let store = open(&folder);
        assert_eq!(store.history_count().unwrap(), 5);
        let page = |max_items, offset| {
            let entries = store.history(max_items, offset).unwrap();
            entry_ids(&entries).join(" ")
        };
        assert_eq!(page(None, None), "e0 e1 e2 e3 e4");
        assert_eq!(page(None, Some(2)), "e2 e3 e4");
        assert_eq!(page(None, Some(9)), "");
        assert_eq!(page(Some(2), None), "e3 e4");
        assert_eq!(page(Some(9), None), "e0 e1 e2 e3 e4");
        assert_eq!(page(Some(0), None), "");
        assert_eq!(page(Some(2), Some(1)), "e1 e2");
        assert_eq!(page(Some(2), Some(4)), "e4");
        assert_eq!(page(Some(2), Some(0)), "e0 e1");

        let stored = store.history_entry("e3").unwrap().unwrap();
        assert_eq!(stored.item.prompt_id, "e3");
        assert_eq!(stored.item.number, 3.0);
        assert!(stored.item.extra_data.get("api_key_comfy_org").is_none());
        assert_eq!(stored.item.client_id(), Some("c1"));
        assert_eq!(stored.outputs["1"]["images"][0]["filename"], "a.png");
        assert_eq!(stored.meta["1"]["node_id"], "1");
        assert_eq!(stored.status.status_str, "success");
        assert!(store.history_entry("missing").unwrap().is_none());
    }

    #[test]
    fn history_is_pruned_by_count_and_by_age() {
        let folder = TempDir::new().unwrap();
        let store = Store::open(folder.path(), StoreLimits { max_history: 3, max_age: 30 * DAY }).unwrap();
        finish_all(&store, &["a", "b", "c", "d", "e"]);
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["c", "d", "e"]);

        // Entries older than the age limit go when the next one finishes.
        let now = now_millis();
        let month = (31 * DAY).as_millis() as u64;
        store.clear_history().unwrap();
        store.finish(&entry(item("old", 0.0), now - month)).unwrap();
        store.finish(&entry(item("recent", 0.0), now - 2 * DAY.as_millis() as u64)).unwrap();
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["recent"]);

        // Lowering the limits prunes at once, and so does opening with them.
        finish_all(&store, &["f", "g"]);
        assert_eq!(store.set_limits(StoreLimits { max_history: 3, max_age: DAY }).unwrap(), 1);
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["f", "g"]);
        drop(store);
        let store = Store::open(folder.path(), StoreLimits { max_history: 1, max_age: DAY }).unwrap();
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["g"]);
        assert_eq!(store.limits().max_history, 1);
    }

    #[test]
    fn pending_and_history_are_deleted_and_cleared() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        for id in ["a", "b", "c", "d"] {
            store.push_numbered(item(id, 0.0), false).unwrap();
        }
        store.take_next().unwrap();
        let removed = store.delete_pending(&["a".into(), "b".into(), "b".into(), "missing".into()]).unwrap();
        assert_eq!(removed, ["b"]);
        assert_eq!(ids(&store.running().unwrap()), ["a"]);
        assert_eq!(store.clear_pending().unwrap(), 2);
        assert_eq!(store.pending_count().unwrap(), 0);
        assert_eq!(ids(&store.running().unwrap()), ["a"]);

        store.clear_history().unwrap();
        finish_all(&store, &["e", "f", "g"]);
        assert_eq!(store.delete_history(&["f".into(), "missing".into()]).unwrap(), ["f"]);
        assert_eq!(entry_ids(&store.history(None, None).unwrap()), ["e", "g"]);
        assert_eq!(store.clear_history().unwrap(), 2);
        assert_eq!(store.history_count().unwrap(), 0);
    }

    #[test]
    fn a_row_that_cannot_be_read_is_an_error_naming_the_prompt() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        store.push(&item("bad", 1.0)).unwrap();
        store.push(&item("good", 2.0)).unwrap();
        store.lock().execute("UPDATE queue SET prompt = '{\"1\": ' WHERE prompt_id = 'bad'", []).unwrap();
        let error = store.pending().unwrap_err();
        assert!(matches!(&error, StoreError::CorruptRow { prompt_id, .. } if prompt_id == "bad"));
        let message = error.to_string();
        assert!(message.contains("queue.sqlite3") && message.contains("prompt bad"), "{message}");
        assert!(message.contains("prompt is not valid JSON"), "{message}");
        assert!(store.take_next().is_err());
        // The server can remove it by its id and go on.
        assert_eq!(store.delete_pending(&["bad".into()]).unwrap(), ["bad"]);
        assert_eq!(store.take_next().unwrap().unwrap().prompt_id, "good");

        finish_all(&store, &["done"]);
        store.lock().execute("UPDATE history SET status = '{\"status_str\": 1}'", []).unwrap();
        let message = store.history(None, None).unwrap_err().to_string();
        assert!(message.contains("prompt done") && message.contains("status is not"), "{message}");
        store.lock().execute("UPDATE history SET outputs_to_execute = '[1]'", []).unwrap();
        let message = store.history_entry("done").unwrap_err().to_string();
        assert!(message.contains("outputs_to_execute is not a list"), "{message}");
    }

    #[test]
    fn a_database_with_a_newer_schema_is_refused() {
        let folder = TempDir::new().unwrap();
        let store = open(&folder);
        store.push(&item("a", 1.0)).unwrap();
        store.lock().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(store);
        let Err(error) = Store::open(folder.path(), StoreLimits::default()) else { panic!("a newer schema opened") };
        assert!(matches!(error, StoreError::NewerSchema { found: 2, .. }));
        let message = error.to_string();
        assert!(message.contains("queue.sqlite3") && message.contains("schema version 2"), "{message}");
    }

    #[test]
    fn the_state_folder_is_created_in_wal_mode_and_a_file_that_is_no_database_is_refused() {
        let folder = TempDir::new().unwrap();
        let state = folder.path().join("state").join("nested");
        let store = Store::open(&state, StoreLimits::default()).unwrap();
        assert_eq!(store.path(), state.join(DATABASE_FILE));
        assert!(store.path().is_file());
        let connection = store.lock();
        let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
        let synchronous: i64 = connection.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 2), "WAL with synchronous=FULL");
        drop(connection);

        let other = TempDir::new().unwrap();
        std::fs::write(other.path().join(DATABASE_FILE), "not a database, just some text long enough").unwrap();
        let Err(error) = Store::open(other.path(), StoreLimits::default()) else { panic!("text opened") };
        let message = error.to_string();
        assert!(
            message.starts_with("cannot open the queue database ") && message.contains("queue.sqlite3"),
            "{message}"
        );
    }
}
