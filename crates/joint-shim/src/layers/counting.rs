//! Operation counting.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use serde::Serialize;

use crate::caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
use crate::error::Result;
use crate::traits::JoinSize;
use crate::traits::{BlobStore, CoordStore, Created, Faas};

/// Shared counters (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct OpCounts {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    coord_get: AtomicU64,
    coord_create: AtomicU64,
    coord_add_invoked: AtomicU64,
    coord_join: AtomicU64,
    coord_list: AtomicU64,
    coord_delete: AtomicU64,
    coord_delete_key: AtomicU64,
    blob_put: AtomicU64,
    blob_get: AtomicU64,
    blob_delete: AtomicU64,
    invoke_async: AtomicU64,
    invoke_sync: AtomicU64,
    bytes_invoked: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpSnapshot {
    /// Consistent reads of items.
    pub coord_get: u64,
    /// Create-if-absent writes.
    pub coord_create: u64,
    /// Invoked-set updates.
    pub coord_add_invoked: u64,
    /// Atomic joins.
    pub coord_join: u64,
    /// Prefix listings.
    pub coord_list: u64,
    /// Prefix deletions (GC; not part of a run's steps, so not in [`OpSnapshot::writes`]).
    pub coord_delete: u64,
    /// Exact-key deletions (`joint resume --from` clearing the instances it re-runs).
    pub coord_delete_key: u64,
    /// Blob puts.
    pub blob_put: u64,
    /// Blob gets.
    pub blob_get: u64,
    /// Blob prefix deletions.
    pub blob_delete: u64,
    /// Async invocations.
    pub invoke_async: u64,
    /// Sync invocations.
    pub invoke_sync: u64,
    /// Payload bytes sent by invocations.
    pub bytes_invoked: u64,
}

impl OpSnapshot {
    /// Datastore reads (item gets and listings).
    pub fn reads(&self) -> u64 {
        self.coord_get + self.coord_list
    }
    /// Datastore writes (creates, invoked-set updates, joins, exact-key deletes).
    pub fn writes(&self) -> u64 {
        self.coord_create + self.coord_add_invoked + self.coord_join + self.coord_delete_key
    }
    /// Invocations.
    pub fn invokes(&self) -> u64 {
        self.invoke_async + self.invoke_sync
    }
    /// Difference `self - earlier`.
    pub fn since(&self, earlier: &OpSnapshot) -> OpSnapshot {
        OpSnapshot {
            coord_get: self.coord_get - earlier.coord_get,
            coord_create: self.coord_create - earlier.coord_create,
            coord_add_invoked: self.coord_add_invoked - earlier.coord_add_invoked,
            coord_join: self.coord_join - earlier.coord_join,
            coord_list: self.coord_list - earlier.coord_list,
            coord_delete: self.coord_delete - earlier.coord_delete,
            coord_delete_key: self.coord_delete_key - earlier.coord_delete_key,
            blob_put: self.blob_put - earlier.blob_put,
            blob_get: self.blob_get - earlier.blob_get,
            blob_delete: self.blob_delete - earlier.blob_delete,
            invoke_async: self.invoke_async - earlier.invoke_async,
            invoke_sync: self.invoke_sync - earlier.invoke_sync,
            bytes_invoked: self.bytes_invoked - earlier.bytes_invoked,
        }
    }
}

impl OpCounts {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Current values.
    pub fn snapshot(&self) -> OpSnapshot {
        let c = &self.inner;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpSnapshot {
            coord_get: l(&c.coord_get),
            coord_create: l(&c.coord_create),
            coord_add_invoked: l(&c.coord_add_invoked),
            coord_join: l(&c.coord_join),
            coord_list: l(&c.coord_list),
            coord_delete: l(&c.coord_delete),
            coord_delete_key: l(&c.coord_delete_key),
            blob_put: l(&c.blob_put),
            blob_get: l(&c.blob_get),
            blob_delete: l(&c.blob_delete),
            invoke_async: l(&c.invoke_async),
            invoke_sync: l(&c.invoke_sync),
            bytes_invoked: l(&c.bytes_invoked),
        }
    }

    fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts every call into `T` (whether it succeeds or not).
#[derive(Debug, Clone)]
pub struct Counted<T> {
    inner: T,
    counts: OpCounts,
}

impl<T> Counted<T> {
    /// Count calls into `inner` in `counts`.
    pub fn new(inner: T, counts: OpCounts) -> Self {
        Counted { inner, counts }
    }
}

#[async_trait]
impl<T: Faas> Faas for Counted<T> {
    fn capabilities(&self) -> FaasCapabilities {
        self.inner.capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        OpCounts::bump(&self.counts.inner.invoke_async);
        self.counts
            .inner
            .bytes_invoked
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.inner.invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        OpCounts::bump(&self.counts.inner.invoke_sync);
        self.counts
            .inner
            .bytes_invoked
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.inner.invoke_sync(function, payload).await
    }
}

#[async_trait]
impl<T: BlobStore> BlobStore for Counted<T> {
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        OpCounts::bump(&self.counts.inner.blob_put);
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        OpCounts::bump(&self.counts.inner.blob_get);
        self.inner.get(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        OpCounts::bump(&self.counts.inner.blob_delete);
        self.inner.delete_prefix(prefix).await
    }
}

#[async_trait]
impl<T: CoordStore> CoordStore for Counted<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        OpCounts::bump(&self.counts.inner.coord_create);
        self.inner.create(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        OpCounts::bump(&self.counts.inner.coord_get);
        self.inner.get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        OpCounts::bump(&self.counts.inner.coord_add_invoked);
        self.inner.add_invoked(key, names).await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        OpCounts::bump(&self.counts.inner.coord_join);
        self.inner.join(key, member, value, size).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        OpCounts::bump(&self.counts.inner.coord_list);
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        OpCounts::bump(&self.counts.inner.coord_delete);
        self.inner.delete_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        OpCounts::bump(&self.counts.inner.coord_delete_key);
        self.inner.delete(key).await
    }
}
