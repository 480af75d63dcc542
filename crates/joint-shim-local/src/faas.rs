//! An in-process FaaS with the semantics of a platform's asynchronous queue: an accepted event
//! is delivered at least once — retried after a failed execution, redelivered after a lost
//! attempt, sometimes delivered twice — with an optional queueing delay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use joint_shim::layers::Chaos;
use joint_shim::{Context, Deliver, Error, ErrorKind, FaasCapabilities, Handler, Result};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};

/// Settings of a local FaaS.
#[derive(Debug, Clone)]
pub struct LocalFaasConfig {
    /// Largest async payload (bytes).
    pub async_payload_limit: u64,
    /// Largest sync payload (bytes).
    pub sync_payload_limit: u64,
    /// Deliveries of one event before it is dead-lettered (Lambda: 3).
    pub max_deliveries: u32,
    /// Wait before redelivering after a failed execution (multiplied by the attempt).
    pub retry_delay: Duration,
    /// Wait before redelivering a lost attempt.
    pub visibility_timeout: Duration,
    /// Delay between acceptance and delivery.
    pub queue_latency: Duration,
    /// Executions running at once.
    pub concurrency: usize,
    /// Duplicate and drop probabilities (the seed makes them deterministic).
    pub chaos: Chaos,
}

/// Default [`LocalFaasConfig::async_payload_limit`]: Lambda's, 1 MB ("For asynchronous
/// invocations, the maximum payload size is 1 MB",
/// <https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html>; it was 256 KB until 2025),
/// the same as the AWS backend's `DEFAULT_ASYNC_LIMIT`.
pub const DEFAULT_ASYNC_PAYLOAD_LIMIT: u64 = 1024 * 1024;
/// Default [`LocalFaasConfig::sync_payload_limit`]: Lambda's, 6 MB (same page).
pub const DEFAULT_SYNC_PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;

impl Default for LocalFaasConfig {
    fn default() -> Self {
        LocalFaasConfig {
            async_payload_limit: DEFAULT_ASYNC_PAYLOAD_LIMIT,
            sync_payload_limit: DEFAULT_SYNC_PAYLOAD_LIMIT,
            max_deliveries: 3,
            retry_delay: Duration::from_millis(20),
            visibility_timeout: Duration::from_millis(50),
            queue_latency: Duration::ZERO,
            concurrency: 256,
            chaos: Chaos::default(),
        }
    }
}

/// An event that exhausted its deliveries.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Function.
    pub function: String,
    /// Last error.
    pub error: String,
    /// Deliveries made.
    pub deliveries: u32,
}

/// Delivery statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events accepted.
    pub accepted: u64,
    /// Executions started.
    pub deliveries: u64,
    /// Redeliveries after a failed execution.
    pub retries: u64,
    /// Attempts lost (then redelivered).
    pub dropped: u64,
    /// Duplicate deliveries.
    pub duplicated: u64,
    /// Events dead-lettered.
    pub dead: u64,
    /// Events accepted and then lost for good (chaos `lose`).
    pub lost: u64,
    /// Invocations refused with an injected throttling error (chaos `throttle`; counted by the
    /// cloud's fault layer, filled in by [`crate::LocalClouds::queue_stats`]).
    pub throttled: u64,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    deliveries: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    dead: AtomicU64,
    lost: AtomicU64,
}

struct Shared {
    cloud: String,
    cfg: LocalFaasConfig,
    deliver: OnceLock<Arc<dyn Deliver>>,
    hosted: OnceLock<BTreeSet<String>>,
    raw: Mutex<BTreeMap<String, Arc<dyn Handler>>>,
    down: AtomicBool,
    inflight: AtomicU64,
    idle: Notify,
    permits: Arc<Semaphore>,
    stats: Stats,
    dead: Mutex<Vec<DeadLetter>>,
    /// Times each payload (by digest) was accepted: a re-sent event is a new event to lose.
    sent: Mutex<BTreeMap<String, u32>>,
}

/// The local FaaS of one cloud. Cheap to clone.
#[derive(Clone)]
pub struct LocalFaas {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalFaas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFaas")
            .field("cloud", &self.shared.cloud)
            .finish()
    }
}

impl LocalFaas {
    /// A FaaS for `cloud`; it delivers nothing until [`LocalFaas::attach`].
    pub fn new(cloud: &str, cfg: LocalFaasConfig) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        LocalFaas {
            shared: Arc::new(Shared {
                cloud: cloud.to_string(),
                cfg,
                deliver: OnceLock::new(),
                hosted: OnceLock::new(),
                raw: Mutex::new(BTreeMap::new()),
                down: AtomicBool::new(false),
                inflight: AtomicU64::new(0),
                idle: Notify::new(),
                permits,
                stats: Stats::default(),
                dead: Mutex::new(Vec::new()),
                sent: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The cloud.
    pub fn cloud(&self) -> &str {
        &self.shared.cloud
    }

    /// Deliver events to `runtime`, hosting the functions it places on (or replicates to) this
    /// cloud. Only the first call has an effect.
    pub fn attach(&self, runtime: Arc<dyn Deliver>) {
        let hosted: BTreeSet<String> = runtime.hosted(&self.shared.cloud).into_iter().collect();
        let _ = self.shared.hosted.set(hosted);
        let _ = self.shared.deliver.set(runtime);
    }

    /// Host a plain function (not part of a workflow): sync invocations return its output.
    pub fn add_raw(&self, name: &str, handler: Arc<dyn Handler>) {
        self.shared
            .raw
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), handler);
    }

    /// Whether `function` is deployed here: a workflow function the attached runtime hosts on
    /// this cloud, or a raw function.
    pub fn serves(&self, function: &str) -> bool {
        self.shared
            .hosted
            .get()
            .is_some_and(|h| h.contains(function))
            || self.raw(function).is_some()
    }

    /// Simulate an outage: every invocation is refused with `Unavailable` until set back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Whether the cloud is down.
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Events accepted and not yet finished (including scheduled redeliveries).
    pub fn inflight(&self) -> u64 {
        self.shared.inflight.load(Ordering::SeqCst)
    }

    /// Wait until no event is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Events that exhausted their deliveries.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared
            .dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Delivery statistics.
    pub fn stats(&self) -> QueueStats {
        let s = &self.shared.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueueStats {
            accepted: l(&s.accepted),
            deliveries: l(&s.deliveries),
            retries: l(&s.retries),
            dropped: l(&s.dropped),
            duplicated: l(&s.duplicated),
            dead: l(&s.dead),
            lost: l(&s.lost),
            // Counted by the cloud's fault layer, outside the queue.
            throttled: 0,
        }
    }

    fn err(
        &self,
        kind: ErrorKind,
        op: &'static str,
        function: &str,
        msg: impl Into<String>,
    ) -> Error {
        Error::new(
            kind,
            format!("local-faas({})", self.shared.cloud),
            op,
            function,
            msg,
        )
    }

    fn raw(&self, function: &str) -> Option<Arc<dyn Handler>> {
        self.shared
            .raw
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(function)
            .cloned()
    }

    fn check(&self, op: &'static str, function: &str, len: usize, limit: u64) -> Result<()> {
        if self.is_down() {
            return Err(self.err(
                ErrorKind::Unavailable,
                op,
                function,
                "the cloud is down (simulated outage)",
            ));
        }
        if len as u64 > limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                op,
                function,
                format!("payload of {len} bytes is over the {limit}-byte limit"),
            ));
        }
        if !self.serves(function) {
            return Err(self.err(
                ErrorKind::FunctionNotFound,
                op,
                function,
                format!(
                    "no function '{function}' is deployed on {}",
                    self.shared.cloud
                ),
            ));
        }
        Ok(())
    }

    /// Refuse an envelope for another function than `function`: the runtime runs the function
    /// an envelope names, so without this an event for `B` sent to `A` would run `B`.
    fn addressed(&self, function: &str, payload: &[u8]) -> Result<()> {
        joint_core::envelope::check_addressed(payload, function)
            .map_err(|e| self.err(ErrorKind::InvalidInput, "deliver", function, e.0))
    }

    /// [`joint_shim::Faas::invoke_async`] with the payload limit of the platform a caller
    /// emulates (`joint serve`'s Lambda and FC endpoints pass Lambda's and FC's) instead of this
    /// FaaS's own.
    pub async fn invoke_async_within(
        &self,
        function: &str,
        payload: Bytes,
        limit: u64,
    ) -> Result<()> {
        self.check("invoke_async", function, payload.len(), limit)?;
        self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
        self.schedule(
            function.to_string(),
            payload,
            1,
            self.shared.cfg.queue_latency,
        );
        Ok(())
    }

    /// [`joint_shim::Faas::invoke_sync`] with the payload limit of the platform a caller
    /// emulates (see [`LocalFaas::invoke_async_within`]).
    pub async fn invoke_sync_within(
        &self,
        function: &str,
        payload: Bytes,
        limit: u64,
    ) -> Result<Bytes> {
        self.check("invoke_sync", function, payload.len(), limit)?;
        if let Some(h) = self.raw(function) {
            return match run_raw(&h, function, &self.shared.cloud, &payload, 1).await {
                Ok(v) => Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())),
                Err(e) => Err(self.err(
                    ErrorKind::FunctionError,
                    "invoke_sync",
                    function,
                    format!("{}: {}", e.kind, e.message),
                )),
            };
        }
        let Some(rt) = self.shared.deliver.get() else {
            return Err(self.err(
                ErrorKind::Unavailable,
                "invoke_sync",
                function,
                "no runtime is attached to this cloud",
            ));
        };
        let delivered = match self.addressed(function, &payload) {
            Ok(()) => rt.deliver(&self.shared.cloud, payload, 1).await,
            Err(e) => Err(e),
        };
        match delivered {
            Ok(o) => Ok(Bytes::from(
                serde_json::to_vec(&serde_json::json!({
                    "instance": o.instance,
                    "ran_function": o.ran_function,
                    "adopted": o.adopted,
                    "invoked": o.invoked,
                }))
                .unwrap_or_default(),
            )),
            Err(e) => Err(self.err(
                ErrorKind::FunctionError,
                "invoke_sync",
                function,
                e.to_string(),
            )),
        }
    }

    fn schedule(&self, function: String, payload: Bytes, delivery: u32, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            me.execute(function, payload, delivery).await;
        });
    }

    fn finish_one(&self) {
        if self.shared.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }

    async fn execute(&self, function: String, payload: Bytes, delivery: u32) {
        let sh = &self.shared;
        let digest = hex::encode(Sha256::digest(&payload));
        let chaos = sh.cfg.chaos;
        let d = delivery.to_string();
        let nth = || {
            let mut sent = sh.sent.lock().unwrap_or_else(|p| p.into_inner());
            let n = sent.entry(digest.clone()).or_default();
            *n += 1;
            n.to_string()
        };
        if delivery == 1
            && chaos.lose > 0.0
            && chaos.fires(chaos.lose, &["lose", &sh.cloud, &digest, &nth()])
        {
            // Accepted, then gone: no execution, no error, no redelivery.
            sh.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(cloud = %sh.cloud, %function, "event lost");
            self.finish_one();
            return;
        }
        if chaos.fires(chaos.drop, &["drop", &sh.cloud, &digest, &d]) {
            sh.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.schedule(function, payload, delivery + 1, sh.cfg.visibility_timeout);
            return;
        }
        let result = {
            let Ok(_permit) = sh.permits.clone().acquire_owned().await else {
                self.finish_one();
                return;
            };
            sh.stats.deliveries.fetch_add(1, Ordering::Relaxed);
            if let Some(h) = self.raw(&function) {
                run_raw(&h, &function, &sh.cloud, &payload, delivery)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else if let Some(rt) = sh.deliver.get() {
                match self.addressed(&function, &payload) {
                    Err(e) => Err(e.to_string()),
                    Ok(()) => rt
                        .deliver(&sh.cloud, payload.clone(), delivery)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                }
            } else {
                Err("no runtime is attached to this cloud".to_string())
            }
        };
        match result {
            Ok(()) => {
                if chaos.fires(chaos.dup, &["dup", &sh.cloud, &digest, &d]) {
                    // The platform delivers the same event again, later.
                    sh.stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    sh.inflight.fetch_add(1, Ordering::SeqCst);
                    self.schedule(function, payload, delivery + 1, sh.cfg.retry_delay);
                }
                self.finish_one();
            }
            Err(e) if delivery < sh.cfg.max_deliveries => {
                sh.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = sh.cfg.retry_delay * delivery;
                self.schedule(function, payload, delivery + 1, wait);
                tracing::debug!(cloud = %sh.cloud, error = %e, delivery, "execution failed; redelivering");
            }
            Err(e) => {
                sh.stats.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cloud = %sh.cloud, %function, error = %e, "event dead-lettered");
                sh.dead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(DeadLetter {
                        function,
                        error: e,
                        deliveries: delivery,
                    });
                self.finish_one();
            }
        }
    }
}

async fn run_raw(
    h: &Arc<dyn Handler>,
    function: &str,
    cloud: &str,
    payload: &[u8],
    delivery: u32,
) -> std::result::Result<serde_json::Value, joint_core::machine::FnError> {
    let input: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| joint_core::machine::FnError {
            kind: "InvalidPayload".into(),
            message: format!("payload is not JSON: {e}"),
        })?;
    let ctx = Context {
        workflow_id: String::new(),
        instance: String::new(),
        function: function.to_string(),
        cloud: cloud.to_string(),
        attempt: delivery,
        vars: BTreeMap::new(),
    };
    h.call(input, &ctx).await
}

#[async_trait]
impl joint_shim::Faas for LocalFaas {
    fn capabilities(&self) -> FaasCapabilities {
        FaasCapabilities {
            async_payload_limit: self.shared.cfg.async_payload_limit,
            sync_payload_limit: self.shared.cfg.sync_payload_limit,
        }
    }

    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        let limit = self.shared.cfg.async_payload_limit;
        self.invoke_async_within(function, payload, limit).await
    }

    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        let limit = self.shared.cfg.sync_payload_limit;
        self.invoke_sync_within(function, payload, limit).await
    }
}
