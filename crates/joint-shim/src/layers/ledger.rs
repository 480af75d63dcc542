//! A commit ledger: what a coordination store said about every create, so that "exactly one
//! committed output per instance" can be checked from the store's own answers rather than from
//! the runtime's bookkeeping.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};

use crate::caps::StoreCapabilities;
use crate::error::Result;
use crate::traits::JoinSize;
use crate::traits::{CoordStore, Created};

/// Shared counts of `Created::New` answers per key (cheap to clone; one ledger may watch many
/// stores).
#[derive(Debug, Clone, Default)]
pub struct CommitLedger {
    news: Arc<Mutex<BTreeMap<String, u32>>>,
    /// Where every answer is also appended, one line each (`+key` / `-key`), so that a ledger
    /// outlives a process that is killed (the fault bench's process kills).
    journal: Option<Arc<Mutex<std::fs::File>>>,
}

impl CommitLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger that also appends every counted answer to the file `path` as it
    /// happens (written before the store's answer is passed on), so that the counts survive the
    /// process; [`CommitLedger::from_journals`] adds up the files of several processes.
    pub fn with_journal(path: &std::path::Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(CommitLedger {
            news: Arc::default(),
            journal: Some(Arc::new(Mutex::new(f))),
        })
    }

    /// A ledger holding what the journals at `paths` recorded (a missing file recorded nothing).
    pub fn from_journals(paths: &[std::path::PathBuf]) -> std::io::Result<Self> {
        let l = CommitLedger::new();
        for p in paths {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in text.lines() {
                if let Some(key) = line.strip_prefix('+') {
                    l.count_new(key);
                } else if let Some(key) = line.strip_prefix('-') {
                    l.take_back(key);
                }
            }
        }
        Ok(l)
    }

    fn write_journal(&self, line: &str) {
        if let Some(j) = &self.journal {
            use std::io::Write;
            let mut f = j.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
                tracing::warn!(error = %e, "commit ledger: cannot append to the journal");
            }
        }
    }

    fn count_new(&self, key: &str) {
        *self.lock().entry(key.to_string()).or_default() += 1;
    }

    fn take_back(&self, key: &str) {
        let mut news = self.lock();
        if let Some(n) = news.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                news.remove(key);
            }
        }
    }

    /// Wrap `store`: every create it answers `New` is counted.
    pub fn watch<T: CoordStore>(&self, store: T) -> Ledgered<T> {
        Ledgered {
            inner: store,
            ledger: self.clone(),
        }
    }

    /// Keys created more than once (with how often), i.e. double commits.
    pub fn doubles(&self) -> BTreeMap<String, u32> {
        self.lock()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// How often `key` was created.
    pub fn creates(&self, key: &str) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Every key created at least once.
    pub fn keys(&self) -> BTreeSet<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.news.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A store whose creates are counted in a [`CommitLedger`].
#[derive(Debug, Clone)]
pub struct Ledgered<T> {
    inner: T,
    ledger: CommitLedger,
}

#[async_trait]
impl<T: CoordStore> CoordStore for Ledgered<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        let r = self.inner.create(key, value).await?;
        if r == Created::New {
            self.ledger.write_journal(&format!("+{key}"));
            self.ledger.count_new(key);
        }
        Ok(r)
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.inner.get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.inner.add_invoked(key, names).await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        self.inner.join(key, member, value, size).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner.delete_prefix(prefix).await
    }
    /// A deleted key's commit is taken back (`joint resume --from` deletes on purpose what it
    /// runs again): a later `New` for it counts as its one commit again.
    async fn delete(&self, key: &str) -> Result<bool> {
        let deleted = self.inner.delete(key).await?;
        if deleted {
            self.ledger.write_journal(&format!("-{key}"));
            self.ledger.take_back(key);
        }
        Ok(deleted)
    }
}
