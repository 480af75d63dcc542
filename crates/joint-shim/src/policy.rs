//! Call policies: a timeout per attempt, retries of retryable errors with capped exponential
//! backoff and full jitter, and a retry budget, applied to every call the runtime makes — FaaS
//! invocations (through the invoke stack) and every coordination-store and blob call (through
//! [`Policied`], which the runtime wraps around each cloud's stores).
//!
//! Replaying a store call is safe for joint's protocol (ADR 0012): a create that succeeded but
//! whose answer was lost returns the item as `Existing` (the caller adopts its own output), a
//! join that counted the member reports it as already present (the redelivery path re-invokes,
//! the aggregator deduplicates), invoked-set updates and deletes are idempotent, and a create-only
//! blob put that finds the blob is treated as written.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};

use crate::caps::{BlobCapabilities, StoreCapabilities};
use crate::error::{Error, ErrorKind, Result};
use crate::traits::JoinSize;
use crate::traits::{BlobStore, CoordStore, Created};

/// Retries of retryable errors (throttling, timeouts, unavailability).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff cap of the first retry; doubles each time.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
    /// Full jitter: each wait is uniform in `[0, backoff]`, so callers that failed together do
    /// not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(20),
            max: Duration::from_secs(1),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        if self.jitter {
            exp.mul_f64(uniform())
        } else {
            exp
        }
    }
}

/// A number uniform in [0, 1) from a cheap per-process generator (splitmix64 over a counter and
/// the clock): good enough to spread retries, not for anything secret.
fn uniform() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A retry budget shared by the calls of one cloud: every call deposits `ratio` of a retry, every
/// retry withdraws one, and `min_per_sec` retries a second are always allowed. When a cloud
/// fails wholesale, retries stop multiplying its load (the way tower's and Finagle's budgets do);
/// the calls then fail fast and the platform or the caller redelivers.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    tokens: f64,
    floor: f64,
    last: Instant,
}

impl RetryBudget {
    /// Retries may add `ratio` (e.g. 0.2 = 20 %) to the calls made, and at least `min_per_sec`
    /// retries a second are allowed.
    pub fn new(ratio: f64, min_per_sec: f64) -> RetryBudget {
        RetryBudget {
            ratio: ratio.max(0.0),
            min_per_sec: min_per_sec.max(0.0),
            state: Mutex::new(BudgetState {
                tokens: 0.0,
                floor: min_per_sec.max(0.0),
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The share of calls retries may add.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The retries a second always allowed.
    pub fn min_per_sec(&self) -> f64 {
        self.min_per_sec
    }

    /// A call was made.
    pub fn deposit(&self) {
        let mut s = self.lock();
        s.tokens = (s.tokens + self.ratio).min(1_000_000.0);
    }

    /// Take one retry; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let mut s = self.lock();
        let now = Instant::now();
        let elapsed = now.duration_since(s.last).as_secs_f64();
        s.last = now;
        s.floor = (s.floor + elapsed * self.min_per_sec).min(self.min_per_sec.max(1.0));
        if s.floor >= 1.0 {
            s.floor -= 1.0;
            return true;
        }
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return true;
        }
        false
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(0.2, 10.0)
    }
}

/// The policy of one cloud's store (or invoke) calls.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// Per attempt; an attempt that takes longer fails with `Timeout` (retryable).
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// The shared budget of the cloud's calls (`None`: unlimited).
    pub budget: Option<Arc<RetryBudget>>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            budget: Some(Arc::new(RetryBudget::default())),
        }
    }
}

impl CallPolicy {
    /// Run `call` under the policy: each attempt bounded by the timeout, retryable failures
    /// retried with backoff while retries and budget last. `backend`, `op` and `target` name the
    /// call in a timeout error.
    pub async fn run<T, F, Fut>(
        &self,
        backend: &str,
        op: &'static str,
        target: &str,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        if let Some(b) = &self.budget {
            b.deposit();
        }
        let mut retry = 0;
        loop {
            let r = match tokio::time::timeout(self.timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    backend,
                    op,
                    target,
                    format!("no answer within {:.1} s", self.timeout.as_secs_f64()),
                )),
            };
            match r {
                Err(e)
                    if e.is_retryable()
                        && retry < self.retry.max_retries
                        && self.budget.as_ref().is_none_or(|b| b.withdraw()) =>
                {
                    retry += 1;
                    tracing::debug!(%backend, op, %target, retry, error = %e, "retrying");
                    tokio::time::sleep(self.retry.backoff(retry)).await;
                }
                other => return other,
            }
        }
    }
}

/// A coordination or blob store whose every call runs under a [`CallPolicy`].
#[derive(Debug, Clone)]
pub struct Policied<T> {
    inner: T,
    policy: CallPolicy,
    name: String,
}

impl<T> Policied<T> {
    /// `inner`'s calls under `policy`; `name` names the store in timeout errors.
    pub fn new(inner: T, policy: CallPolicy, name: impl Into<String>) -> Self {
        Policied {
            inner,
            policy,
            name: name.into(),
        }
    }
}

#[async_trait]
impl<T: CoordStore> CoordStore for Policied<T> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.policy
            .run(&self.name, "create", key, || {
                self.inner.create(key, value.clone())
            })
            .await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.policy
            .run(&self.name, "get", key, || self.inner.get(key))
            .await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.policy
            .run(&self.name, "add_invoked", key, || {
                self.inner.add_invoked(key, names)
            })
            .await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        self.policy
            .run(&self.name, "join", key, || {
                self.inner.join(key, member, value.clone(), size)
            })
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        self.policy
            .run(&self.name, "list", prefix, || self.inner.list(prefix))
            .await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.policy
            .run(&self.name, "delete_prefix", prefix, || {
                self.inner.delete_prefix(prefix)
            })
            .await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.policy
            .run(&self.name, "delete", key, || self.inner.delete(key))
            .await
    }
}

#[async_trait]
impl<T: BlobStore> BlobStore for Policied<T> {
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        let mut attempt = 0;
        self.policy
            .run(&self.name, "put_new", key, || {
                attempt += 1;
                let first = attempt == 1;
                let inner = &self.inner;
                let bytes = bytes.clone();
                async move {
                    match inner.put_new(key, bytes).await {
                        // A retried put that finds the blob: an earlier attempt wrote it (every
                        // key joint writes is content-addressed, so the bytes are the same).
                        Err(e) if !first && e.kind() == ErrorKind::AlreadyExists => Ok(()),
                        other => other,
                    }
                }
            })
            .await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.policy
            .run(&self.name, "get", key, || self.inner.get(key))
            .await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.policy
            .run(&self.name, "delete_prefix", prefix, || {
                self.inner.delete_prefix(prefix)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn policy(max_retries: u32, budget: Option<Arc<RetryBudget>>) -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_millis(50),
            retry: RetryPolicy {
                max_retries,
                base: Duration::from_millis(1),
                max: Duration::from_millis(4),
                jitter: true,
            },
            budget,
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(10),
            max: Duration::from_millis(80),
            jitter: false,
        };
        let waits: Vec<u128> = (1..=6).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 80, 80]);
        let j = RetryPolicy { jitter: true, ..p };
        let draws: Vec<Duration> = (0..200).map(|_| j.backoff(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(40)));
        let distinct: BTreeSet<u128> = draws.iter().map(|d| d.as_micros()).collect();
        assert!(distinct.len() > 50, "jitter spreads the waits");
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_others_not() {
        let n = AtomicU32::new(0);
        let r: Result<u32> = policy(3, None)
            .run("t", "get", "k", || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 2 {
                    Err(Error::new(ErrorKind::Unavailable, "t", "get", "k", "down"))
                } else {
                    Ok(i)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
        let n = AtomicU32::new(0);
        let r: Result<()> = policy(3, None)
            .run("t", "get", "k", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::InvalidInput, "t", "get", "k", "bad"))
            })
            .await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(n.load(Ordering::SeqCst), 1, "not retried");
    }

    #[tokio::test]
    async fn a_hanging_call_times_out_and_is_retried() {
        let n = AtomicU32::new(0);
        let r: Result<&str> = policy(1, None)
            .run("t", "get", "k", || async {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                Ok("second")
            })
            .await;
        assert_eq!(r.unwrap(), "second");
        let e = policy(0, None)
            .run("t", "get", "k", std::future::pending::<Result<()>>)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("no answer within"), "{e}");
    }

    #[tokio::test]
    async fn the_budget_stops_retries_of_a_failing_cloud() {
        // No floor: only deposits pay for retries (20 % of the calls).
        let budget = Arc::new(RetryBudget::new(0.2, 0.0));
        let p = policy(5, Some(budget));
        let attempts = AtomicU32::new(0);
        for _ in 0..100 {
            let _: Result<()> = p
                .run("t", "get", "k", || async {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    Err(Error::new(ErrorKind::Unavailable, "t", "get", "k", "down"))
                })
                .await;
        }
        let a = attempts.load(Ordering::SeqCst);
        // 100 calls, retries bounded by the budget (~20), far below 100 × 6.
        assert!((100..=125).contains(&a), "{a} attempts");
    }
}
