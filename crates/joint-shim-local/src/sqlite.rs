//! [`SqliteCoordStore`]: the coordination store of a local cloud, in one SQLite file.
//!
//! The file is shared by every task of a process and by other processes on the host (the CLI's
//! `joint status` reads it while a run executes). SQLite runs in WAL mode with
//! `synchronous=NORMAL` and a busy timeout; every operation that touches more than one row runs
//! in one `BEGIN IMMEDIATE` transaction, so it is atomic across processes too. Calls run on
//! tokio's blocking pool.
//!
//! Tables:
//! - `items(key, value, created_ms, updated_ms)`: output items (checkpoints).
//! - `invoked(key, name)`: the invoked set of each item.
//! - `join_heads(key, count, updated_ms)` and `joins(key, member, value, seq)`: joins. The head row keeps
//!   the member count, so a join costs O(log n) until it completes and an n-way fan-in is
//!   O(n log n) overall; a member's `seq` is the count its insertion made, so the member with
//!   `seq == complete_at` is the completer (its redeliveries too). The members are read by the
//!   completer and by calls that did not add theirs, not by every later member.
//!
//! Prefix queries are exact (`key >= prefix AND key < successor(prefix)`, no `LIKE`).
//! `delete(key)` removes the item, its invoked rows, and a join head and members of that exact
//! key in one transaction.
//!
//! Retention (ADR 0009): every write stamps `updated_ms`; [`SqliteCoordStore::purge_expired`]
//! deletes items and joins whose last write is older than the store's retention, the way
//! DynamoDB's TTL does. The local clouds purge a state directory when they open it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use joint_shim::{CoordStore, Created, Error, ErrorKind, Result, StoreCapabilities};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use crate::group::{Writer, WriterError};
use joint_shim::JoinSize;

/// Default largest item value: 400 KiB, like DynamoDB, so flows tested locally fit in the cloud.
pub const DEFAULT_ITEM_LIMIT: u64 = 400 * 1024;

/// Default largest join member value: 4 KiB, like the cloud stores, so flows tested locally
/// fit in the cloud (the runtime passes larger branch outputs by reference).
pub const DEFAULT_JOIN_VALUE_LIMIT: u64 = 4 * 1024;

/// How long a statement waits for another connection's lock before failing `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    created_ms INTEGER,
    updated_ms INTEGER
);
CREATE TABLE IF NOT EXISTS invoked (
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS join_heads (
    key TEXT PRIMARY KEY NOT NULL,
    count INTEGER NOT NULL,
    updated_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS joins (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    value BLOB NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, member)
) WITHOUT ROWID;
";

/// A [`CoordStore`] on SQLite: a file shared by processes, or an in-memory database for tests.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteCoordStore {
    inner: Arc<Inner>,
    item_limit: u64,
    retention: Option<Duration>,
    join_value_limit: u64,
}

struct Inner {
    /// Reads (and, for an in-memory database, writes too).
    conn: Mutex<Connection>,
    /// Writes, group-committed by their own thread on their own connection (file databases).
    writer: Option<Writer>,
    /// `None` for an in-memory database.
    path: Option<PathBuf>,
    backend: String,
}

impl fmt::Debug for SqliteCoordStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match &self.inner.path {
            Some(p) => p.display().to_string(),
            None => ":memory:".to_string(),
        };
        f.debug_struct("SqliteCoordStore")
            .field("backend", &self.inner.backend)
            .field("path", &path)
            .field("item_limit", &self.item_limit)
            .field("retention", &self.retention)
            .field("join_value_limit", &self.join_value_limit)
            .finish()
    }
}

impl SqliteCoordStore {
    /// Open (creating if needed) the database at `path` for the local cloud `cloud`, with
    /// commits synced to disk ([`crate::Durability::Disk`]); see [`SqliteCoordStore::open_with`].
    pub fn open(path: impl AsRef<Path>, cloud: &str) -> Result<Self> {
        Self::open_with(path, cloud, crate::Durability::Disk)
    }

    /// Open (creating if needed) the database at `path` for the local cloud `cloud`: creates
    /// the parent directories and the schema, and sets WAL mode, SQLite's `synchronous` for
    /// `durability` and a 5 s busy timeout. Writes are group-committed: one writer thread takes
    /// the operations waiting at that moment into one transaction (each in a savepoint), so one
    /// sync makes a batch durable; every caller is answered after its batch committed. Several
    /// stores, in this or other processes, may open the same file.
    pub fn open_with(
        path: impl AsRef<Path>,
        cloud: &str,
        durability: crate::Durability,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let backend = backend_name(cloud);
        let target = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    &backend,
                    "open",
                    &target,
                    format!("creating directory {}: {e}", parent.display()),
                )
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| map_err(&backend, "open", &target, e))?;
        let mut store = Self::init(conn, Some(path.clone()), backend.clone(), durability)?;
        let wconn = Connection::open(&path).map_err(|e| map_err(&backend, "open", &target, e))?;
        let setup = || -> rusqlite::Result<()> {
            wconn.busy_timeout(BUSY_TIMEOUT)?;
            wconn.pragma_update(None, "synchronous", durability.synchronous())?;
            Ok(())
        };
        setup().map_err(|e| map_err(&backend, "open", &target, e))?;
        let writer = Writer::spawn(wconn, cloud).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                &backend,
                "open",
                &target,
                format!("cannot start the writer thread: {e}"),
            )
        })?;
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.writer = Some(writer);
        }
        Ok(store)
    }

    /// Purge expired entries now, synchronously (what opening a store does before use).
    pub fn purge_expired_blocking(&self) -> Result<u64> {
        let Some(r) = self.retention else {
            return Ok(0);
        };
        let cutoff = now_ms().saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
        let mut guard = lock(&self.inner.conn);
        let run = |conn: &mut Connection| -> rusqlite::Result<u64> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = purge(&tx, cutoff)?;
            tx.commit()?;
            Ok(n)
        };
        run(&mut guard).map_err(|e| map_err(&self.inner.backend, "purge_expired", "", e))
    }

    /// Open an existing database without writing to it (`joint status` on a state directory
    /// that is not writable, or belongs to another user). Every write fails. When SQLite cannot
    /// even create its shared-memory file next to the database (a read-only directory), the file
    /// is read as immutable: what the last writer checkpointed.
    pub fn open_read_only(path: impl AsRef<Path>, cloud: &str) -> Result<Self> {
        use rusqlite::OpenFlags;
        let path = path.as_ref().to_path_buf();
        let backend = backend_name(cloud);
        let target = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let probe =
            |conn: &Connection| conn.query_row("SELECT count(*) FROM items", [], |_| Ok(()));
        let uri = |extra: &str| {
            format!(
                "file:{}?mode=ro{extra}",
                percent_path(&path.display().to_string())
            )
        };
        let conn = match Connection::open_with_flags(uri(""), flags) {
            Ok(c) if probe(&c).is_ok() => c,
            _ => Connection::open_with_flags(uri("&immutable=1"), flags)
                .map_err(|e| map_err(&backend, "open", &target, e))?,
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| map_err(&backend, "open", &target, e))?;
        probe(&conn).map_err(|e| map_err(&backend, "open", &target, e))?;
        Ok(SqliteCoordStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                writer: None,
                path: Some(path),
                backend,
            }),
            item_limit: DEFAULT_ITEM_LIMIT,
            retention: None,
            join_value_limit: DEFAULT_JOIN_VALUE_LIMIT,
        })
    }

    /// A private in-memory database (one connection), for tests.
    pub fn in_memory(cloud: &str) -> Result<Self> {
        let backend = backend_name(cloud);
        let conn =
            Connection::open_in_memory().map_err(|e| map_err(&backend, "open", ":memory:", e))?;
        Self::init(conn, None, backend, crate::Durability::Process)
    }

    fn init(
        conn: Connection,
        path: Option<PathBuf>,
        backend: String,
        durability: crate::Durability,
    ) -> Result<Self> {
        let target = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ":memory:".to_string());
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            if path.is_some() {
                // Returns the resulting mode as a row; an in-memory database stays "memory".
                let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            }
            conn.pragma_update(None, "synchronous", durability.synchronous())?;
            conn.execute_batch(SCHEMA)?;
            migrate(&conn)?;
            Ok(())
        };
        setup().map_err(|e| map_err(&backend, "open", &target, e))?;
        Ok(SqliteCoordStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                writer: None,
                path,
                backend,
            }),
            item_limit: DEFAULT_ITEM_LIMIT,
            retention: Some(joint_shim::caps::DEFAULT_RETENTION),
            join_value_limit: DEFAULT_JOIN_VALUE_LIMIT,
        })
    }

    /// Keep items and joins for `retention` after their last write (`None`: until deleted). The
    /// default is [`joint_shim::caps::DEFAULT_RETENTION`]. Expired entries are deleted by
    /// [`SqliteCoordStore::purge_expired`].
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Delete every item and join whose last write is older than the retention, as of `now_ms`
    /// (Unix milliseconds); returns how many were deleted. Nothing without a retention.
    pub async fn purge_expired_at(&self, now_ms: i64) -> Result<u64> {
        let Some(r) = self.retention else {
            return Ok(0);
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
        self.write("purge_expired", "", move |conn| purge(conn, cutoff))
            .await
    }

    /// [`SqliteCoordStore::purge_expired_at`] now.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.purge_expired_at(now_ms()).await
    }

    /// Set the largest item value in bytes (default [`DEFAULT_ITEM_LIMIT`]); larger values
    /// fail `PayloadTooLarge`.
    pub fn with_item_limit(mut self, limit: u64) -> Self {
        self.item_limit = limit;
        self
    }

    /// Set the largest join member value in bytes (default [`DEFAULT_JOIN_VALUE_LIMIT`]);
    /// larger values fail `PayloadTooLarge`.
    pub fn with_join_value_limit(mut self, limit: u64) -> Self {
        self.join_value_limit = limit;
        self
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    fn check_size(&self, op: &'static str, key: &str, len: usize) -> Result<()> {
        if len as u64 > self.item_limit {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                &self.inner.backend,
                op,
                key,
                format!(
                    "value of {len} bytes is over the item limit of {} bytes",
                    self.item_limit
                ),
            ));
        }
        Ok(())
    }

    /// Run the write `f` in the writer's next group commit (inside its own savepoint), or, for
    /// an in-memory database, in its own transaction; answered once it is committed.
    async fn write<T, F>(&self, op: &'static str, target: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let Some(w) = &self.inner.writer else {
            return self
                .run(op, target, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let out = f(&tx)?;
                    tx.commit()?;
                    Ok(out)
                })
                .await;
        };
        w.call(f).await.map_err(|e| match e {
            WriterError::Sqlite(e) => map_err(&self.inner.backend, op, target, e),
            WriterError::Gone => Error::new(
                ErrorKind::Unavailable,
                &self.inner.backend,
                op,
                target,
                "the store's writer thread stopped",
            ),
        })
    }

    /// Run `f` with the connection on the blocking pool; SQLite errors are mapped for `op` on
    /// `target`.
    async fn run<T, F>(&self, op: &'static str, target: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let target = target.to_string();
        let backend = inner.backend.clone();
        let t2 = target.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.conn);
            f(&mut guard).map_err(|e| map_err(&inner.backend, op, &t2, e))
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                ErrorKind::Other,
                backend,
                op,
                target,
                format!("blocking task failed: {e}"),
            )),
        }
    }
}

/// Escape a path for a `file:` URI (`%`, `?` and `#` would end or change it).
fn percent_path(p: &str) -> String {
    p.replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

fn backend_name(cloud: &str) -> String {
    format!("sqlite({cloud})")
}

/// Lock the connection; a poisoned lock (a panic mid-call) is recovered, rolling back any
/// transaction the panicking call left open.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let g = poisoned.into_inner();
            if !g.is_autocommit() {
                let _ = g.execute_batch("ROLLBACK");
            }
            g
        }
    }
}

fn map_err(backend: &str, op: &'static str, target: &str, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::new(
            ErrorKind::Unavailable,
            backend,
            op,
            target,
            format!("database busy: {e}"),
        )
        .with_provider_code("SQLITE_BUSY"),
        _ => Error::new(ErrorKind::Other, backend, op, target, e.to_string()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The smallest string greater than every string that starts with `prefix`, or `None` if there
/// is none (empty prefix). SQLite's BINARY collation compares UTF-8 bytes, whose order is code
/// point order, so incrementing the last incrementable character gives the exclusive bound.
fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
        // `last` was char::MAX: drop it and increment the character before.
    }
    None
}

/// `(sql condition on column `col`, bound values)` for an exact prefix match.
fn prefix_clause(col: &str, prefix: &str) -> (String, Vec<String>) {
    match prefix_upper(prefix) {
        Some(upper) => (
            format!("{col} >= ?1 AND {col} < ?2"),
            vec![prefix.to_string(), upper],
        ),
        None => (format!("{col} >= ?1"), vec![prefix.to_string()]),
    }
}

/// Add the columns later versions write to a file made by an earlier one; rows written before
/// count as written now, so an upgrade never expires anything early.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, col: &str| -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for n in names {
            if n? == col {
                return Ok(true);
            }
        }
        Ok(false)
    };
    for table in ["items", "join_heads"] {
        if !has(table, "updated_ms")? {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN updated_ms INTEGER"
            ))?;
            conn.execute(
                &format!("UPDATE {table} SET updated_ms = ?1 WHERE updated_ms IS NULL"),
                params![now_ms()],
            )?;
        }
    }
    Ok(())
}

/// Delete items and joins last written before `cutoff` (Unix ms), in one transaction.
fn purge(tx: &Connection, cutoff: i64) -> rusqlite::Result<u64> {
    tx.execute(
        "DELETE FROM invoked WHERE key IN (SELECT key FROM items WHERE updated_ms < ?1)",
        params![cutoff],
    )?;
    let items = tx.execute("DELETE FROM items WHERE updated_ms < ?1", params![cutoff])?;
    tx.execute(
        "DELETE FROM joins WHERE key IN (SELECT key FROM join_heads WHERE updated_ms < ?1)",
        params![cutoff],
    )?;
    let heads = tx.execute(
        "DELETE FROM join_heads WHERE updated_ms < ?1",
        params![cutoff],
    )?;
    Ok((items + heads) as u64)
}

fn read_invoked(tx: &Connection, key: &str) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = tx.prepare_cached("SELECT name FROM invoked WHERE key = ?1")?;
    let rows = stmt.query_map(params![key], |r| r.get::<_, String>(0))?;
    rows.collect()
}

fn read_item(tx: &Connection, key: &str) -> rusqlite::Result<Option<StoredItem>> {
    let value: Option<Vec<u8>> = tx
        .prepare_cached("SELECT value FROM items WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()?;
    match value {
        Some(value) => Ok(Some(StoredItem {
            value,
            invoked: read_invoked(tx, key)?,
        })),
        None => Ok(None),
    }
}

#[async_trait]
impl CoordStore for SqliteCoordStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            item_limit: self.item_limit,
            join_value_limit: self.join_value_limit,
            max_join_width: None,
            atomic_join: true,
            consistent_read: true,
            retention: self.retention,
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.check_size("create", key, value.len())?;
        let k = key.to_string();
        self.write("create", key, move |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO items (key, value, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
                )?
                .execute(params![k, value.as_ref(), now_ms()])?;
            let out = if inserted == 1 {
                Created::New
            } else {
                match read_item(tx, &k)? {
                    Some(item) => Created::Existing(item),
                    // Not reachable inside one transaction; fail rather than lie.
                    None => return Err(rusqlite::Error::QueryReturnedNoRows),
                }
            };
            Ok(out)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        let k = key.to_string();
        self.run("get", key, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let item = read_item(&tx, &k)?;
            tx.commit()?;
            Ok(item)
        })
        .await
    }

    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        let k = key.to_string();
        let names = names.to_vec();
        let out = self
            .write("add_invoked", key, move |tx| {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM items WHERE key = ?1")?
                    .query_row(params![k], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    return Ok(None);
                }
                {
                    let mut ins = tx.prepare_cached(
                        "INSERT OR IGNORE INTO invoked (key, name) VALUES (?1, ?2)",
                    )?;
                    for n in &names {
                        ins.execute(params![k, n])?;
                    }
                }
                tx.prepare_cached("UPDATE items SET updated_ms = ?2 WHERE key = ?1")?
                    .execute(params![k, now_ms()])?;
                let set = read_invoked(tx, &k)?;
                Ok(Some(set))
            })
            .await?;
        out.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                &self.inner.backend,
                "add_invoked",
                key,
                "no item at this key",
            )
        })
    }

    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        let JoinSize {
            capacity,
            complete_at,
        } = size;
        if value.len() as u64 > self.join_value_limit {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                &self.inner.backend,
                "join",
                key,
                format!(
                    "member '{member}': value of {} bytes is over the join member limit of {} bytes",
                    value.len(),
                    self.join_value_limit
                ),
            ));
        }
        let k = key.to_string();
        let m = member.to_string();
        self.write("join", key, move |tx| {
            let count: i64 = tx
                .prepare_cached("SELECT count FROM join_heads WHERE key = ?1")?
                .query_row(params![k], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            // A member's `seq` is the count its insertion made: the member whose `seq` is
            // `complete_at` completed the join.
            let present: Option<i64> = tx
                .prepare_cached("SELECT seq FROM joins WHERE key = ?1 AND member = ?2")?
                .query_row(params![k, m], |r| r.get(0))
                .optional()?;
            let added = present.is_none() && count < i64::from(capacity);
            let (count, seq) = if added {
                let next = count + 1;
                tx.prepare_cached(
                    "INSERT INTO joins (key, member, value, seq) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![k, m, value.as_ref(), next])?;
                tx.prepare_cached(
                    "INSERT INTO join_heads (key, count, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET count = excluded.count, updated_ms = excluded.updated_ms",
                )?
                .execute(params![k, next, now_ms()])?;
                (next, Some(next))
            } else {
                (count, present)
            };
            let completed = seq == Some(i64::from(complete_at));
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            let mut members = BTreeMap::new();
            // The completer and callers whose member was not added (redeliveries, a full
            // join) get the members; a later member of a complete k-of-n join does not need
            // them, so an n-way join reads its members O(1) times.
            if count >= complete_at && (completed || !added) {
                let mut stmt =
                    tx.prepare_cached("SELECT member, value FROM joins WHERE key = ?1")?;
                let rows = stmt.query_map(params![k], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?;
                for row in rows {
                    let (mem, val) = row?;
                    members.insert(mem, val);
                }
            }
            Ok(JoinState {
                added,
                completed,
                count,
                members,
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        let (cond_items, vals) = prefix_clause("key", prefix);
        self.run("list", prefix, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let mut out: BTreeMap<String, StoredItem> = BTreeMap::new();
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT key, value FROM items WHERE {cond_items} ORDER BY key"
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(vals.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?;
                for row in rows {
                    let (key, value) = row?;
                    out.insert(
                        key,
                        StoredItem {
                            value,
                            invoked: BTreeSet::new(),
                        },
                    );
                }
                let mut stmt =
                    tx.prepare(&format!("SELECT key, name FROM invoked WHERE {cond_items}"))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(vals.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (key, name) = row?;
                    if let Some(item) = out.get_mut(&key) {
                        item.invoked.insert(name);
                    }
                }
            }
            tx.commit()?;
            Ok(out.into_iter().collect())
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let (cond, vals) = prefix_clause("key", prefix);
        self.write("delete_prefix", prefix, move |tx| {
            let p = rusqlite::params_from_iter(vals.iter());
            let items = tx.execute(&format!("DELETE FROM items WHERE {cond}"), p)?;
            let p = rusqlite::params_from_iter(vals.iter());
            tx.execute(&format!("DELETE FROM invoked WHERE {cond}"), p)?;
            let p = rusqlite::params_from_iter(vals.iter());
            let heads = tx.execute(&format!("DELETE FROM join_heads WHERE {cond}"), p)?;
            let p = rusqlite::params_from_iter(vals.iter());
            tx.execute(&format!("DELETE FROM joins WHERE {cond}"), p)?;
            Ok((items + heads) as u64)
        })
        .await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        let k = key.to_string();
        self.write("delete", key, move |tx| {
            let items = tx
                .prepare_cached("DELETE FROM items WHERE key = ?1")?
                .execute(params![k])?;
            tx.prepare_cached("DELETE FROM invoked WHERE key = ?1")?
                .execute(params![k])?;
            let heads = tx
                .prepare_cached("DELETE FROM join_heads WHERE key = ?1")?
                .execute(params![k])?;
            tx.prepare_cached("DELETE FROM joins WHERE key = ?1")?
                .execute(params![k])?;
            Ok(items + heads > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_upper;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper(""), None);
        assert_eq!(prefix_upper("run1/").as_deref(), Some("run10"));
        assert_eq!(prefix_upper("a_").as_deref(), Some("a`"));
        assert_eq!(prefix_upper("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_upper("x\u{10FFFF}").as_deref(), Some("y"));
        assert_eq!(prefix_upper("\u{10FFFF}"), None);
    }
}
