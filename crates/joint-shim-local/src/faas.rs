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

use crate::queue::{self, Durability, DurableQueue};

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
    /// How long after the first delivery a `late` duplicate (chaos) arrives.
    pub late_delay: Duration,
    /// Events older than this when they are due are dead-lettered instead of delivered
    /// (Lambda's and FC's maximum event age). `None`: kept until delivered. With a durable queue
    /// this bounds how late a recovered event can arrive, so it must stay below the stores'
    /// retention (the runtime checks it, ADR 0009). Default 1 day.
    pub max_event_age: Option<Duration>,
    /// Executions running at once.
    pub concurrency: usize,
    /// Duplicate and drop probabilities (the seed makes them deterministic).
    pub chaos: Chaos,
}

impl LocalFaasConfig {
    /// The longest time after an accepted event in which an in-memory queue may still deliver
    /// it: the queueing delay, every redelivery after a failure, a visibility timeout per lost
    /// attempt and a duplicate's delay. (A durable queue may deliver an event as late as its
    /// maximum event age, when a later process recovers it.) The runtime checks that the stores
    /// keep what they write at least this long (ADR 0009).
    pub fn redelivery_window(&self) -> Duration {
        let n = self.max_deliveries.max(1);
        let retries: u32 = (1..n).sum();
        self.queue_latency
            + self.retry_delay * retries
            + self.visibility_timeout * n
            + self.retry_delay
            + self.late_delay
    }
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
            late_delay: Duration::from_millis(500),
            max_event_age: Some(Duration::from_secs(24 * 3600)),
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
    /// The run the event belongs to, when the payload is an envelope.
    pub run: Option<String>,
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
    /// Duplicate deliveries (after the first finished, at the same time, or late).
    pub duplicated: u64,
    /// Of those, copies delivered at the same time as the first (chaos `concurrent`).
    pub concurrent: u64,
    /// Of those, copies delivered `late_delay` after the first (chaos `late`).
    pub late: u64,
    /// Events dead-lettered.
    pub dead: u64,
    /// Events accepted and then lost for good (chaos `lose`).
    pub lost: u64,
    /// Events taken over from a process that died (a durable queue only).
    pub recovered: u64,
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
    concurrent: AtomicU64,
    late: AtomicU64,
    dead: AtomicU64,
    lost: AtomicU64,
    recovered: AtomicU64,
}

struct Shared {
    cloud: String,
    cfg: LocalFaasConfig,
    /// The runtime events go to. It holds the clouds, which hold this FaaS: [`LocalFaas::detach`]
    /// breaks that cycle so a finished deployment can be freed.
    deliver: Mutex<Option<Arc<dyn Deliver>>>,
    hosted: OnceLock<BTreeSet<String>>,
    raw: Mutex<BTreeMap<String, Arc<dyn Handler>>>,
    down: AtomicBool,
    inflight: AtomicU64,
    idle: Notify,
    permits: Arc<Semaphore>,
    stats: Stats,
    dead: Mutex<Vec<DeadLetter>>,
    /// Times each payload (by digest) was accepted, kept only under chaos: a re-sent event (a
    /// resume re-driving one that was dropped) is a new event, whose faults are drawn anew.
    sent: Mutex<BTreeMap<String, u32>>,
    /// Where accepted events are kept until delivered (`None`: memory only).
    durable: Option<DurableQueue>,
}

/// Whether a delivery is the queue's own (retried on failure) or an extra copy chaos made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Queue,
    Chaos,
}

/// One delivery of an accepted event.
#[derive(Debug, Clone)]
struct Event {
    function: String,
    payload: Bytes,
    /// 1 for the first delivery.
    delivery: u32,
    /// Its row in the durable queue, if any.
    id: Option<i64>,
    /// When the queue accepted it (Unix ms).
    accepted_ms: i64,
    origin: Origin,
    /// Which acceptance of this payload it is (1: the first); part of every chaos decision
    /// after the first, so a re-sent event does not replay the faults of the one it replaces.
    nth: u32,
}

/// What became of a delivery, for the durable queue.
enum Settle<'a> {
    Done,
    Retry(u32),
    Dead(&'a str),
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
    /// A FaaS for `cloud` whose queue lives in memory; it delivers nothing until
    /// [`LocalFaas::attach`].
    pub fn new(cloud: &str, cfg: LocalFaasConfig) -> Self {
        Self::with_queue(cloud, cfg, None)
    }

    /// A FaaS for `cloud` whose accepted events are kept in the SQLite file `queue` until
    /// delivered: they survive this process, and the next process that attaches to the same
    /// file delivers what a dead one left (see the `queue` module docs).
    pub fn durable(
        cloud: &str,
        cfg: LocalFaasConfig,
        queue: &std::path::Path,
        durability: Durability,
    ) -> Result<Self> {
        let q = DurableQueue::open(queue, durability).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("local-faas({cloud})"),
                "open",
                queue.display().to_string(),
                format!("cannot open the durable queue: {e}"),
            )
        })?;
        Ok(Self::with_queue(cloud, cfg, Some(q)))
    }

    fn with_queue(cloud: &str, cfg: LocalFaasConfig, durable: Option<DurableQueue>) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        LocalFaas {
            shared: Arc::new(Shared {
                cloud: cloud.to_string(),
                cfg,
                deliver: Mutex::new(None),
                hosted: OnceLock::new(),
                raw: Mutex::new(BTreeMap::new()),
                down: AtomicBool::new(false),
                inflight: AtomicU64::new(0),
                idle: Notify::new(),
                permits,
                stats: Stats::default(),
                dead: Mutex::new(Vec::new()),
                sent: Mutex::new(BTreeMap::new()),
                durable,
            }),
        }
    }

    /// Whether accepted events are kept on disk.
    pub fn is_durable(&self) -> bool {
        self.shared.durable.is_some()
    }

    /// Events of run `run` in the durable queue, whichever process holds them (0 without one).
    /// Together with [`LocalFaas::inflight`] it tells whether anything of the run may still be
    /// delivered.
    pub async fn pending_for_run(&self, run: &str) -> Result<u64> {
        let Some(q) = &self.shared.durable else {
            return Ok(0);
        };
        q.pending_for_run(run).await.map_err(|e| {
            self.err(
                ErrorKind::Unavailable,
                "pending",
                run,
                format!("reading the durable queue: {e}"),
            )
        })
    }

    /// The dead letters of run `run`: from the durable queue (every process's) when there is
    /// one, else this process's.
    pub async fn dead_letters_of(&self, run: &str) -> Result<Vec<DeadLetter>> {
        let Some(q) = &self.shared.durable else {
            return Ok(self
                .dead_letters()
                .into_iter()
                .filter(|d| d.run.as_deref() == Some(run))
                .collect());
        };
        let rows = q.dead_letters_of(run).await.map_err(|e| {
            self.err(
                ErrorKind::Unavailable,
                "dead_letters",
                run,
                format!("reading the durable queue: {e}"),
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|(function, error, deliveries)| DeadLetter {
                function,
                run: Some(run.to_string()),
                error,
                deliveries,
            })
            .collect())
    }

    /// Take over the events of processes that died (and renew this process's claims); the
    /// queue does it when it is attached and then every few seconds. Returns how many were
    /// taken over.
    pub async fn recover(&self) -> Result<u64> {
        let Some(q) = &self.shared.durable else {
            return Ok(0);
        };
        let (Some(rt), Some(hosted)) = (self.runtime(), self.shared.hosted.get()) else {
            return Ok(0);
        };
        let claimed = q
            .renew_and_reclaim(&rt.version(), hosted)
            .await
            .map_err(|e| {
                self.err(
                    ErrorKind::Unavailable,
                    "recover",
                    "",
                    format!("reading the durable queue: {e}"),
                )
            })?;
        let n = claimed.len() as u64;
        for c in claimed {
            self.shared.stats.recovered.fetch_add(1, Ordering::Relaxed);
            self.shared.inflight.fetch_add(1, Ordering::SeqCst);
            tracing::info!(cloud = %self.shared.cloud, function = %c.function, delivery = c.delivery, "recovered an event of a process that is gone");
            self.schedule(
                Event {
                    function: c.function,
                    payload: Bytes::from(c.payload),
                    delivery: c.delivery,
                    id: Some(c.id),
                    accepted_ms: c.accepted_ms,
                    origin: Origin::Queue,
                    nth: 1,
                },
                Duration::ZERO,
            );
        }
        Ok(n)
    }

    /// The cloud.
    pub fn cloud(&self) -> &str {
        &self.shared.cloud
    }

    /// Deliver events to `runtime`, hosting the functions it places on (or replicates to) this
    /// cloud. While one is attached, further calls have no effect; after
    /// [`LocalFaas::detach`] the same runtime may be attached again.
    pub fn attach(&self, runtime: Arc<dyn Deliver>) {
        let hosted: BTreeSet<String> = runtime.hosted(&self.shared.cloud).into_iter().collect();
        let first = self.shared.hosted.set(hosted).is_ok();
        {
            let mut d = self
                .shared
                .deliver
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if d.is_some() {
                return;
            }
            *d = Some(runtime);
        }
        if first && self.shared.durable.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            // Renew this process's claims and take over dead processes' events, now and
            // every third of a lease, for as long as the FaaS exists.
            let weak = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                loop {
                    let Some(shared) = weak.upgrade() else { return };
                    let me = LocalFaas { shared };
                    if let Err(e) = me.recover().await {
                        tracing::warn!(error = %e, "durable queue");
                    }
                    drop(me);
                    tokio::time::sleep(queue::LEASE / 3).await;
                }
            });
        }
    }

    /// Stop delivering to the attached runtime and let go of it. The runtime holds the clouds
    /// and the clouds hold their FaaS, so without this a finished deployment is never freed
    /// (its SQLite files stay open). Events due later find no runtime: they fail and are
    /// retried as usual (a durable queue keeps them for the next process).
    pub fn detach(&self) {
        self.shared
            .deliver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Store (with a durable queue) and schedule an accepted event.
    async fn accept(&self, function: &str, payload: Bytes) -> Result<()> {
        let id = match &self.shared.durable {
            None => None,
            Some(q) => Some(
                q.push(
                    function,
                    &payload,
                    run_of(&payload).as_deref(),
                    version_of(&payload).as_deref(),
                )
                .await
                .map_err(|e| {
                    self.err(
                        ErrorKind::Unavailable,
                        "invoke_async",
                        function,
                        format!("the durable queue refused the event: {e}"),
                    )
                })?,
            ),
        };
        self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
        let nth = if self.shared.cfg.chaos.is_active() {
            let digest = hex::encode(Sha256::digest(&payload));
            let mut sent = self.shared.sent.lock().unwrap_or_else(|p| p.into_inner());
            let n = sent.entry(digest).or_default();
            *n += 1;
            *n
        } else {
            1
        };
        self.schedule(
            Event {
                function: function.to_string(),
                payload,
                delivery: 1,
                id,
                accepted_ms: queue::now_ms(),
                origin: Origin::Queue,
                nth,
            },
            self.shared.cfg.queue_latency,
        );
        Ok(())
    }

    fn runtime(&self) -> Option<Arc<dyn Deliver>> {
        self.shared
            .deliver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Host a plain function (not part of a workflow): sync invocations return its output.
    pub fn add_raw(&self, name: &str, handler: Arc<dyn Handler>) {
        self.shared
            .raw
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), handler);
    }

    /// Stop hosting a plain function added with [`LocalFaas::add_raw`].
    pub fn remove_raw(&self, name: &str) {
        self.shared
            .raw
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
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
            concurrent: l(&s.concurrent),
            late: l(&s.late),
            dead: l(&s.dead),
            lost: l(&s.lost),
            recovered: l(&s.recovered),
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
            .map_err(|e| self.err(ErrorKind::InvalidInput, "deliver", function, e.to_string()))
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
        // Durable before it is acknowledged, as a platform's 202 is. Accepting runs on a task of
        // its own: a caller that gives up while the event is being stored (the invoke stack's
        // timeout drops the call) must not leave a stored event that is never delivered — like a
        // platform that received the request, the queue delivers it anyway.
        if self.shared.durable.is_some() {
            let me = self.clone();
            let f = function.to_string();
            return tokio::spawn(async move { me.accept(&f, payload).await })
                .await
                .map_err(|e| {
                    self.err(
                        ErrorKind::Unavailable,
                        "invoke_async",
                        function,
                        format!("accepting the event failed: {e}"),
                    )
                })?;
        }
        self.accept(function, payload).await
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
        let Some(rt) = self.runtime() else {
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

    fn schedule(&self, ev: Event, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            me.execute(ev).await;
        });
    }

    /// Chaos `concurrent` and `late`: extra copies of a first delivery, racing it or long after.
    fn extra_copies(&self, ev: &Event, digest: &str) {
        let sh = &self.shared;
        let chaos = sh.cfg.chaos;
        let mut copies = Vec::new();
        if chaos.fires(chaos.concurrent, &["concurrent", &sh.cloud, digest]) {
            let n = 1 + (chaos.draw(&["concurrent-n", &sh.cloud, digest]) * 3.0) as u32;
            copies.extend((0..n.min(3)).map(|_| Duration::ZERO));
            sh.stats
                .concurrent
                .fetch_add(u64::from(n.min(3)), Ordering::Relaxed);
        }
        if chaos.fires(chaos.late, &["late", &sh.cloud, digest]) {
            copies.push(sh.cfg.late_delay);
            sh.stats.late.fetch_add(1, Ordering::Relaxed);
        }
        for delay in copies {
            sh.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            sh.inflight.fetch_add(1, Ordering::SeqCst);
            let copy = Event {
                id: None,
                origin: Origin::Chaos,
                ..ev.clone()
            };
            self.schedule(copy, delay);
        }
    }

    fn finish_one(&self) {
        if self.shared.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }

    /// Record in the durable queue what became of a delivery (nothing without one). A failure
    /// to record is logged: at worst the event is delivered once more after a restart, which
    /// the protocol absorbs.
    async fn settle(&self, ev: &Event, what: Settle<'_>) {
        let (Some(q), Some(id)) = (&self.shared.durable, ev.id) else {
            return;
        };
        let r = match what {
            Settle::Done => q.done(id).await,
            Settle::Retry(delivery) => q.retry(id, delivery).await,
            Settle::Dead(error) => {
                q.dead(
                    id,
                    &ev.function,
                    run_of(&ev.payload).as_deref(),
                    error,
                    ev.delivery,
                )
                .await
            }
        };
        if let Err(e) = r {
            tracing::warn!(cloud = %self.shared.cloud, queue = %q.path().display(), error = %e, "cannot record a delivery in the durable queue");
        }
    }

    async fn execute(&self, mut ev: Event) {
        let sh = &self.shared;
        let digest = hex::encode(Sha256::digest(&ev.payload));
        if ev.origin == Origin::Chaos {
            // A duplicate the platform made: it runs once and its failure is nobody's business
            // (the original is retried as usual).
            if let Ok(_permit) = sh.permits.clone().acquire_owned().await {
                sh.stats.deliveries.fetch_add(1, Ordering::Relaxed);
                if let Some(rt) = self.runtime() {
                    let _ = rt.deliver(&sh.cloud, ev.payload, ev.delivery).await;
                }
            }
            self.finish_one();
            return;
        }
        let chaos = sh.cfg.chaos;
        let d = if ev.nth > 1 {
            format!("{}.{}", ev.delivery, ev.nth)
        } else {
            ev.delivery.to_string()
        };
        if ev.delivery == 1
            && chaos.lose > 0.0
            && chaos.fires(
                chaos.lose,
                &["lose", &sh.cloud, &digest, &ev.nth.to_string()],
            )
        {
            // Accepted, then gone: no execution, no error, no redelivery.
            sh.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(cloud = %sh.cloud, function = %ev.function, "event lost");
            self.settle(&ev, Settle::Done).await;
            self.finish_one();
            return;
        }
        if let Some(age) = sh.cfg.max_event_age
            && queue::now_ms().saturating_sub(ev.accepted_ms)
                > i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
        {
            // Older than the queue keeps events: dropped to the dead letters, as Lambda and FC
            // drop events older than their maximum event age.
            let e = format!(
                "the event is older than the queue's maximum event age ({age:?}) and was dropped"
            );
            self.dead_letter(&ev, e).await;
            return;
        }
        if ev.delivery == 1 {
            let key = if ev.nth > 1 {
                format!("{digest}.{}", ev.nth)
            } else {
                digest.clone()
            };
            self.extra_copies(&ev, &key);
        }
        if chaos.fires(chaos.drop, &["drop", &sh.cloud, &digest, &d]) {
            sh.stats.dropped.fetch_add(1, Ordering::Relaxed);
            ev.delivery += 1;
            self.settle(&ev, Settle::Retry(ev.delivery)).await;
            self.schedule(ev, sh.cfg.visibility_timeout);
            return;
        }
        let result = {
            let Ok(_permit) = sh.permits.clone().acquire_owned().await else {
                self.finish_one();
                return;
            };
            sh.stats.deliveries.fetch_add(1, Ordering::Relaxed);
            if let Some(h) = self.raw(&ev.function) {
                run_raw(&h, &ev.function, &sh.cloud, &ev.payload, ev.delivery)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else if let Some(rt) = self.runtime() {
                match self.addressed(&ev.function, &ev.payload) {
                    Err(e) => Err(e.to_string()),
                    Ok(()) => rt
                        .deliver(&sh.cloud, ev.payload.clone(), ev.delivery)
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
                    let again = Event {
                        id: None,
                        origin: Origin::Chaos,
                        delivery: ev.delivery + 1,
                        ..ev.clone()
                    };
                    self.schedule(again, sh.cfg.retry_delay);
                }
                self.settle(&ev, Settle::Done).await;
                self.finish_one();
            }
            Err(e) if ev.delivery < sh.cfg.max_deliveries => {
                sh.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = sh.cfg.retry_delay * ev.delivery;
                tracing::debug!(cloud = %sh.cloud, error = %e, delivery = ev.delivery, "execution failed; redelivering");
                ev.delivery += 1;
                self.settle(&ev, Settle::Retry(ev.delivery)).await;
                self.schedule(ev, wait);
            }
            Err(e) => self.dead_letter(&ev, e).await,
        }
    }

    async fn dead_letter(&self, ev: &Event, error: String) {
        let sh = &self.shared;
        sh.stats.dead.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cloud = %sh.cloud, function = %ev.function, error = %error, "event dead-lettered");
        self.settle(ev, Settle::Dead(&error)).await;
        sh.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(DeadLetter {
                function: ev.function.clone(),
                run: run_of(&ev.payload),
                error,
                deliveries: ev.delivery,
            });
        self.finish_one();
    }
}

/// The workflow version of an envelope payload (without decoding the rest).
fn version_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        def_hash: String,
    }
    serde_json::from_slice::<Head>(payload)
        .ok()
        .map(|h| h.def_hash)
}

/// The run id of an envelope payload (without decoding the rest).
fn run_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        workflow_id: String,
    }
    serde_json::from_slice::<Head>(payload)
        .ok()
        .map(|h| h.workflow_id)
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
            redelivery_window: match (&self.shared.durable, self.shared.cfg.max_event_age) {
                (Some(_), Some(age)) => age.max(self.shared.cfg.redelivery_window()),
                // A durable queue without a maximum age may deliver a recovered event any time.
                (Some(_), None) => Duration::MAX,
                (None, _) => self.shared.cfg.redelivery_window(),
            },
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
