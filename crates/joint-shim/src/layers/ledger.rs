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
use crate::traits::{CoordStore, Created};

/// Shared counts of `Created::New` answers per key (cheap to clone; one ledger may watch many
/// stores).
#[derive(Debug, Clone, Default)]
pub struct CommitLedger {
    news: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl CommitLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
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
            *self.ledger.lock().entry(key.to_string()).or_default() += 1;
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
        capacity: u32,
        complete_at: u32,
    ) -> Result<JoinState> {
        self.inner
            .join(key, member, value, capacity, complete_at)
            .await
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
            let mut news = self.ledger.lock();
            if let Some(n) = news.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    news.remove(key);
                }
            }
        }
        Ok(deleted)
    }
}
