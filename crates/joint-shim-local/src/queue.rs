//! The durable queue of a local cloud: accepted events in a SQLite file next to the cloud's
//! coordination store (`{state_dir}/{cloud}/queue.db`), so that an event the FaaS accepted
//! survives the process that accepted it — as it survives a Lambda worker.
//!
//! Each row is owned by the process delivering it, under a lease it renews. When a process dies
//! (its pid is gone, or its lease lapsed) another process that opens the state directory takes
//! its events over and delivers them: a crashed `joint run` loses nothing, and nobody has to know
//! to run `joint resume`. An event is deleted once an execution of it finished, moved to the
//! dead letters when it exhausted its deliveries, and dropped when it is older than the queue's
//! maximum event age — as Lambda and FC drop events older than theirs.
//!
//! Writes go through the group-commit writer: with [`Durability::Disk`] one `fsync` makes a whole
//! batch of accepted events durable before any of them is acknowledged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use crate::group::{Writer, WriterError, other_err};

/// How long a process's claim on an event lasts without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// What survives what (the local stores' durability setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is synced to disk before it is acknowledged (SQLite `synchronous=FULL`, blob
    /// files and their directory entries fsynced): commits survive a power loss. Group commit
    /// keeps the throughput. The default for state directories.
    #[default]
    Disk,
    /// Commits survive the process crashing, not the machine losing power (SQLite
    /// `synchronous=NORMAL` in WAL mode, no fsync of blobs): faster on slow disks.
    Process,
}

impl Durability {
    /// SQLite's `synchronous` setting for it.
    pub(crate) fn synchronous(self) -> &'static str {
        match self {
            Durability::Disk => "FULL",
            Durability::Process => "NORMAL",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disk" => Ok(Durability::Disk),
            "process" => Ok(Durability::Process),
            other => Err(format!(
                "unknown durability '{other}' (known: disk — commits survive a power loss; process — they survive a crash of the process)"
            )),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    payload BLOB NOT NULL,
    run TEXT,
    version TEXT,
    delivery INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    owner TEXT NOT NULL,
    lease_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    run TEXT,
    error TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
";

/// An event taken over from a process that is gone.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) function: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) delivery: u32,
    pub(crate) accepted_ms: i64,
}

/// One cloud's durable queue. Cheap to clone.
#[derive(Clone)]
pub(crate) struct DurableQueue {
    writer: Writer,
    path: PathBuf,
    owner: String,
}

impl std::fmt::Debug for DurableQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableQueue")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn lease_end() -> i64 {
    now_ms() + i64::try_from(LEASE.as_millis()).unwrap_or(30_000)
}

/// This process, as an owner of queue rows: `pid:start-time`, so that a reused pid is not
/// mistaken for the process that died.
fn me() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

/// A process's start time in clock ticks since boot (Linux `/proc/{pid}/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: skip past it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that wrote `owner` is still running. Without `/proc` nothing is known
/// and only the lease decides.
fn alive(owner: &str) -> Option<bool> {
    let (pid, started) = owner.split_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    let started: u64 = started.parse().ok()?;
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    Some(start_time(pid) == Some(started))
}

impl DurableQueue {
    /// Open (creating) the queue file at `path`.
    pub(crate) fn open(path: &Path, durability: Durability) -> rusqlite::Result<DurableQueue> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", durability.synchronous())?;
        conn.execute_batch(SCHEMA)?;
        let writer = Writer::spawn(conn, "queue")
            .map_err(|e| other_err(format!("cannot start the queue writer: {e}")))?;
        Ok(DurableQueue {
            writer,
            path: path.to_path_buf(),
            owner: me(),
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn map(e: WriterError) -> rusqlite::Error {
        match e {
            WriterError::Sqlite(e) => e,
            WriterError::Gone => other_err("the queue writer stopped"),
        }
    }

    /// Accept an event: durable (with `Durability::Disk`, on disk) when this returns.
    /// `run` and `version` (the envelope's run id and workflow version) say which runs an event
    /// belongs to and which runtimes may take it over.
    pub(crate) async fn push(
        &self,
        function: &str,
        payload: &[u8],
        run: Option<&str>,
        version: Option<&str>,
    ) -> rusqlite::Result<i64> {
        let (function, payload, run, version, owner) = (
            function.to_string(),
            payload.to_vec(),
            run.map(str::to_string),
            version.map(str::to_string),
            self.owner.clone(),
        );
        self.writer
            .call(move |c| {
                c.prepare_cached(
                    "INSERT INTO events (function, payload, run, version, delivery, accepted_ms, owner, lease_ms)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)",
                )?
                .execute(params![function, payload, run, version, now_ms(), owner, lease_end()])?;
                Ok(c.last_insert_rowid())
            })
            .await
            .map_err(Self::map)
    }

    /// An execution of event `id` finished: it will not be delivered again.
    pub(crate) async fn done(&self, id: i64) -> rusqlite::Result<()> {
        self.writer
            .call(move |c| {
                c.prepare_cached("DELETE FROM events WHERE id = ?1")?
                    .execute(params![id])?;
                Ok(())
            })
            .await
            .map_err(Self::map)
    }

    /// Event `id` failed and is delivered again as delivery number `delivery`.
    pub(crate) async fn retry(&self, id: i64, delivery: u32) -> rusqlite::Result<()> {
        self.writer
            .call(move |c| {
                c.prepare_cached("UPDATE events SET delivery = ?2 WHERE id = ?1")?
                    .execute(params![id, delivery])?;
                Ok(())
            })
            .await
            .map_err(Self::map)
    }

    /// Event `id` exhausted its deliveries (or expired): keep it as a dead letter.
    pub(crate) async fn dead(
        &self,
        id: i64,
        function: &str,
        run: Option<&str>,
        error: &str,
        deliveries: u32,
    ) -> rusqlite::Result<()> {
        let (function, run, error) = (
            function.to_string(),
            run.map(str::to_string),
            error.to_string(),
        );
        self.writer
            .call(move |c| {
                c.prepare_cached("DELETE FROM events WHERE id = ?1")?
                    .execute(params![id])?;
                c.prepare_cached(
                    "INSERT INTO dead_letters (function, run, error, deliveries, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![function, run, error, deliveries, now_ms()])?;
                Ok(())
            })
            .await
            .map_err(Self::map)
    }

    /// Renew this process's leases, and take over the events of processes that are gone (dead
    /// pid or lapsed lease) that this process can run: those of workflow `version` for a
    /// function in `hosted`. Events of other workflows stay for a process that runs them.
    /// Returns the events taken over, to deliver.
    pub(crate) async fn renew_and_reclaim(
        &self,
        version: &str,
        hosted: &BTreeSet<String>,
    ) -> rusqlite::Result<Vec<Claimed>> {
        let me = self.owner.clone();
        let version = version.to_string();
        let hosted = hosted.clone();
        self.writer
            .call(move |c| {
                let until = lease_end();
                c.prepare_cached("UPDATE events SET lease_ms = ?2 WHERE owner = ?1")?
                    .execute(params![me, until])?;
                let owners: Vec<(String, i64)> = {
                    let mut s = c.prepare_cached(
                        "SELECT owner, max(lease_ms) FROM events WHERE owner != ?1 GROUP BY owner",
                    )?;
                    let rows = s.query_map(params![me], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let now = now_ms();
                let mut claimed = Vec::new();
                for (owner, lease) in owners {
                    let gone = match alive(&owner) {
                        Some(alive) => !alive,
                        None => lease < now,
                    };
                    if !gone {
                        continue;
                    }
                    let rows: Vec<Claimed> = {
                        let mut s = c.prepare_cached(
                            "SELECT id, function, payload, delivery, accepted_ms FROM events
                             WHERE owner = ?1 AND version = ?2",
                        )?;
                        let rows = s.query_map(params![owner, version], |r| {
                            Ok(Claimed {
                                id: r.get(0)?,
                                function: r.get(1)?,
                                payload: r.get(2)?,
                                delivery: r.get(3)?,
                                accepted_ms: r.get(4)?,
                            })
                        })?;
                        rows.collect::<rusqlite::Result<_>>()?
                    };
                    for ev in rows.into_iter().filter(|e| hosted.contains(&e.function)) {
                        c.prepare_cached(
                            "UPDATE events SET owner = ?1, lease_ms = ?2 WHERE id = ?3",
                        )?
                        .execute(params![me, until, ev.id])?;
                        claimed.push(ev);
                    }
                }
                Ok(claimed)
            })
            .await
            .map_err(Self::map)
    }

    /// Events of run `run` still in this queue, whichever process holds them.
    pub(crate) async fn pending_for_run(&self, run: &str) -> rusqlite::Result<u64> {
        let run = run.to_string();
        self.writer
            .call(move |c| {
                c.prepare_cached("SELECT count(*) FROM events WHERE run = ?1")?
                    .query_row(params![run], |r| r.get::<_, i64>(0))
                    .map(|n| u64::try_from(n).unwrap_or(0))
            })
            .await
            .map_err(Self::map)
    }

    /// The dead letters of `run`, whichever process wrote them (function, error, deliveries).
    pub(crate) async fn dead_letters_of(
        &self,
        run: &str,
    ) -> rusqlite::Result<Vec<(String, String, u32)>> {
        let run = run.to_string();
        self.writer
            .call(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT function, error, deliveries FROM dead_letters WHERE run = ?1 ORDER BY id",
                )?;
                let rows = s.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await
            .map_err(Self::map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert_eq!(alive(&me()), Some(true));
        assert_eq!(alive("4194304:1"), Some(false));
        assert_eq!(alive("garbage"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_of_a_dead_process_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let q = DurableQueue::open(&dir.path().join("queue.db"), Durability::Disk).unwrap();
        let id = q.push("f", b"{}", Some("r1"), Some("v1")).await.unwrap();
        assert_eq!(q.pending_for_run("r1").await.unwrap(), 1);
        let hosted: BTreeSet<String> = ["f".to_string()].into();
        // Nothing to take over from a living process (this one).
        assert!(q.renew_and_reclaim("v1", &hosted).await.unwrap().is_empty());
        // Pretend the event belongs to a process that died.
        q.writer
            .call(move |c| {
                c.execute("UPDATE events SET owner = '4194304:1' WHERE id = ?1", [id])?;
                Ok(())
            })
            .await
            .unwrap();
        // Another workflow version, or a function this process does not host: left alone.
        assert!(q.renew_and_reclaim("v2", &hosted).await.unwrap().is_empty());
        assert!(
            q.renew_and_reclaim("v1", &BTreeSet::new())
                .await
                .unwrap()
                .is_empty()
        );
        let got = q.renew_and_reclaim("v1", &hosted).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].id, got[0].function.as_str(), got[0].delivery),
            (id, "f", 1)
        );
        q.done(id).await.unwrap();
        assert_eq!(q.pending_for_run("r1").await.unwrap(), 0);
    }
}
