//! A switch that makes a whole cloud unreachable: every call into the wrapped backend fails with
//! `Unavailable` while the switch is off — at once (a refused connection), or, in the hanging
//! mode, only after hanging until the caller gives up or the outage ends (a black-holed network,
//! a dead load balancer: what the invoke stack's per-attempt timeout is for).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};

use crate::caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
use crate::error::{Error, ErrorKind, Result};
use crate::traits::JoinSize;
use crate::traits::{BlobStore, CoordStore, Created, Faas};

/// Shared on/off state of one cloud (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct OutageSwitch {
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    up: Arc<tokio::sync::Notify>,
}

impl OutageSwitch {
    /// A switch that is on (reachable).
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the cloud unreachable (`true`) or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if !down {
            self.up.notify_waiters();
        }
    }

    /// How calls fail while the cloud is down: `false` (the default) at once with
    /// `Unavailable`; `true` they hang — until the caller drops them (its timeout) or the outage
    /// ends, and then fail with `Unavailable` as a connection that broke would.
    pub fn set_hanging(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    /// Whether calls on a down cloud hang instead of failing at once.
    pub fn is_hanging(&self) -> bool {
        self.hang.load(Ordering::SeqCst)
    }

    /// Wait until the cloud is reachable again.
    async fn until_up(&self) {
        loop {
            let up = self.up.notified();
            if !self.is_down() {
                return;
            }
            up.await;
        }
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

    async fn check(&self, op: &'static str, target: &str) -> Result<()> {
        if !self.switch.is_down() {
            return Ok(());
        }
        let msg = if self.switch.is_hanging() {
            self.switch.until_up().await;
            "the call hung until the outage ended and then failed (simulated whole-cloud outage, hanging calls)"
        } else {
            "the cloud is unreachable (simulated whole-cloud outage)"
        };
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("outage({})", self.name),
            op,
            target,
            msg,
        ))
    }
}

#[async_trait]
impl<T: Faas> Faas for Switched<T> {
    fn capabilities(&self) -> FaasCapabilities {
        self.inner.capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.check("invoke_async", function).await?;
        self.inner.invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.check("invoke_sync", function).await?;
        self.inner.invoke_sync(function, payload).await
    }
}

#[async_trait]
impl<T: BlobStore> BlobStore for Switched<T> {
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.check("put_new", key).await?;
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.check("get", key).await?;
        self.inner.get(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.check("delete_prefix", prefix).await?;
        self.inner.delete_prefix(prefix).await
    }
}

#[async_trait]
impl<T: CoordStore> CoordStore for Switched<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.check("create", key).await?;
        self.inner.create(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.check("get", key).await?;
        self.inner.get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.check("add_invoked", key).await?;
        self.inner.add_invoked(key, names).await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        self.check("join", key).await?;
        self.inner.join(key, member, value, size).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        self.check("list", prefix).await?;
        self.inner.list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.check("delete_prefix", prefix).await?;
        self.inner.delete_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.check("delete", key).await?;
        self.inner.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A FaaS that accepts everything.
    #[derive(Debug, Clone)]
    struct Accepts;

    #[async_trait]
    impl Faas for Accepts {
        fn capabilities(&self) -> FaasCapabilities {
            FaasCapabilities {
                async_payload_limit: 1024,
                sync_payload_limit: 1024,
                redelivery_window: Duration::ZERO,
            }
        }
        async fn invoke_async(&self, _: &str, _: Bytes) -> Result<()> {
            Ok(())
        }
        async fn invoke_sync(&self, _: &str, _: Bytes) -> Result<Bytes> {
            Ok(Bytes::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_outage_holds_calls_until_the_caller_gives_up_or_it_ends() {
        let sw = OutageSwitch::new();
        let faas = Switched::new(Accepts, sw.clone(), "b");
        sw.set_down(true);
        // Refusing (the default): fails at once.
        let e = faas.invoke_async("f", Bytes::new()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("unreachable"), "{e}");
        // Hanging: no answer while the cloud is down, so the caller's timeout decides.
        sw.set_hanging(true);
        let hung = tokio::time::timeout(
            Duration::from_secs(30),
            faas.invoke_async("f", Bytes::new()),
        )
        .await;
        assert!(
            hung.is_err(),
            "a call on a hanging outage answered: {hung:?}"
        );
        // A call hanging when the outage ends fails (its connection broke); the next succeeds.
        let pending = tokio::spawn({
            let faas = faas.clone();
            async move { faas.invoke_async("f", Bytes::new()).await }
        });
        tokio::task::yield_now().await;
        sw.set_down(false);
        let e = pending.await.expect("task").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("hung until the outage ended"), "{e}");
        faas.invoke_async("f", Bytes::new())
            .await
            .expect("up again");
    }
}
