//! A switch that makes a whole cloud unreachable: every call into the wrapped backend fails with
//! `Unavailable` while the switch is off.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};

use crate::caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
use crate::error::{Error, ErrorKind, Result};
use crate::traits::{BlobStore, CoordStore, Created, Faas};

/// Shared on/off state of one cloud (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct OutageSwitch {
    down: Arc<AtomicBool>,
}

impl OutageSwitch {
    /// A switch that is on (reachable).
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the cloud unreachable (`true`) or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether the cloud is unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

/// Wraps a backend behind an [`OutageSwitch`].
#[derive(Debug, Clone)]
pub struct Switched<T> {
    inner: T,
    switch: OutageSwitch,
    name: String,
}

impl<T> Switched<T> {
    /// `inner`, unreachable whenever `switch` is down; `name` appears in errors.
    pub fn new(inner: T, switch: OutageSwitch, name: &str) -> Self {
        Switched {
            inner,
            switch,
            name: name.to_string(),
        }
    }

    fn check(&self, op: &'static str, target: &str) -> Result<()> {
        if self.switch.is_down() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("outage({})", self.name),
                op,
                target,
                "the cloud is unreachable (simulated whole-cloud outage)",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<T: Faas> Faas for Switched<T> {
    fn capabilities(&self) -> FaasCapabilities {
        self.inner.capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.check("invoke_async", function)?;
        self.inner.invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.check("invoke_sync", function)?;
        self.inner.invoke_sync(function, payload).await
    }
}

#[async_trait]
impl<T: BlobStore> BlobStore for Switched<T> {
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.check("put_new", key)?;
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.check("get", key)?;
        self.inner.get(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.check("delete_prefix", prefix)?;
        self.inner.delete_prefix(prefix).await
    }
}

#[async_trait]
impl<T: CoordStore> CoordStore for Switched<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.check("create", key)?;
        self.inner.create(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.check("get", key)?;
        self.inner.get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.check("add_invoked", key)?;
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
        self.check("join", key)?;
        self.inner
            .join(key, member, value, capacity, complete_at)
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        self.check("list", prefix)?;
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.check("delete_prefix", prefix)?;
        self.inner.delete_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }
}
