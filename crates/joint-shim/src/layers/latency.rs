//! Latency injection: a fixed delay per operation on a cloud, and per cloud pair for
//! invocations (applied by the runtime, which knows the caller's cloud).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use serde::Deserialize;

use crate::caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
use crate::error::Result;
use crate::traits::JoinSize;
use crate::traits::{BlobStore, CoordStore, Created, Faas};

/// Emulated network: delays in milliseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyProfile {
    /// What the profile emulates and where its numbers come from.
    #[serde(default)]
    pub description: Option<String>,
    /// Per datastore operation (coordination and blob), by cloud; `*` for every cloud.
    #[serde(default)]
    pub store_ms: BTreeMap<String, f64>,
    /// Per async invocation from one cloud to another, keyed `from->to`; `*` for any pair,
    /// `same` for calls within one cloud, `cross` for calls between different clouds.
    #[serde(default)]
    pub invoke_ms: BTreeMap<String, f64>,
    /// Baselines: time a managed orchestrator spends persisting one state transition.
    #[serde(default)]
    pub transition_ms: f64,
    /// Baselines: time a cross-cloud engine spends logging one step to its database VM.
    #[serde(default)]
    pub engine_db_ms: f64,
}

impl LatencyProfile {
    /// Delay of one datastore operation on `cloud`.
    pub fn store(&self, cloud: &str) -> Duration {
        let ms = self
            .store_ms
            .get(cloud)
            .or_else(|| self.store_ms.get("*"))
            .copied()
            .unwrap_or(0.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// Delay of one invocation from `from` to `to`.
    pub fn invoke(&self, from: &str, to: &str) -> Duration {
        let pair = format!("{from}->{to}");
        let class = if from == to { "same" } else { "cross" };
        let ms = self
            .invoke_ms
            .get(&pair)
            .or_else(|| self.invoke_ms.get(class))
            .or_else(|| self.invoke_ms.get("*"))
            .copied()
            .unwrap_or(0.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

/// Sleeps `delay` before each call into `T`.
#[derive(Debug, Clone)]
pub struct Delayed<T> {
    inner: T,
    delay: Duration,
}

impl<T> Delayed<T> {
    /// Delay each call by `delay`.
    pub fn new(inner: T, delay: Duration) -> Self {
        Delayed { inner, delay }
    }

    async fn wait(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait]
impl<T: Faas> Faas for Delayed<T> {
    fn capabilities(&self) -> FaasCapabilities {
        self.inner.capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.wait().await;
        self.inner.invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.wait().await;
        self.inner.invoke_sync(function, payload).await
    }
}

#[async_trait]
impl<T: BlobStore> BlobStore for Delayed<T> {
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.wait().await;
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.wait().await;
        self.inner.get(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.wait().await;
        self.inner.delete_prefix(prefix).await
    }
}

#[async_trait]
impl<T: CoordStore> CoordStore for Delayed<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.wait().await;
        self.inner.create(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.wait().await;
        self.inner.get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.wait().await;
        self.inner.add_invoked(key, names).await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        self.wait().await;
        self.inner.join(key, member, value, size).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        self.wait().await;
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.wait().await;
        self.inner.delete_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.wait().await;
        self.inner.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_lookup_order() {
        let p: LatencyProfile = serde_json::from_str(
            r#"{"store_ms":{"*":6,"b":2},"invoke_ms":{"a->b":30,"cross":28,"same":10}}"#,
        )
        .unwrap();
        assert_eq!(p.store("a"), Duration::from_millis(6));
        assert_eq!(p.store("b"), Duration::from_millis(2));
        assert_eq!(p.invoke("a", "b"), Duration::from_millis(30));
        assert_eq!(p.invoke("b", "a"), Duration::from_millis(28));
        assert_eq!(p.invoke("a", "a"), Duration::from_millis(10));
        assert!(serde_json::from_str::<LatencyProfile>(r#"{"store":{}}"#).is_err());
    }
}
