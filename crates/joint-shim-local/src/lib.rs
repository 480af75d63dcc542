//! joint-shim-local: the embedded default. Every cloud of a workflow runs on this machine: a
//! SQLite coordination store and a blob folder under a state directory, and an in-process FaaS
//! with the semantics of an asynchronous platform queue.
#![deny(missing_docs)]

pub mod faas;
pub mod fs;
mod group;
mod queue;
pub mod runner;

pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use joint_shim::layers::{
    Chaos, CommitLedger, Counted, Delayed, Faulty, LatencyProfile, OpCounts, OutageSwitch, Switched,
};
use joint_shim::{Cloud, Clouds, Deliver, Result};

pub use faas::{DeadLetter, LocalFaas, LocalFaasConfig, QueueStats};
pub use fs::FsBlobStore;
pub use queue::Durability;
pub use sqlite::SqliteCoordStore;

/// Builds a set of local clouds.
#[derive(Clone, Default)]
pub struct LocalCloudsBuilder {
    state_dir: Option<PathBuf>,
    names: Vec<String>,
    faas: LocalFaasConfig,
    inline_limits: BTreeMap<String, u64>,
    latency: LatencyProfile,
    chaos: Chaos,
    retention: Option<Option<std::time::Duration>>,
    ledger: Option<CommitLedger>,
    read_only: bool,
    durability: Durability,
    coord_stores: BTreeMap<String, Arc<dyn joint_shim::CoordStore>>,
}

impl std::fmt::Debug for LocalCloudsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCloudsBuilder")
            .field("state_dir", &self.state_dir)
            .field("names", &self.names)
            .field(
                "coord_stores",
                &self.coord_stores.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl LocalCloudsBuilder {
    /// No clouds yet; state in memory unless [`LocalCloudsBuilder::state_dir`] is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep each cloud's SQLite file and blob folder under `dir/{cloud}/`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Add clouds by name.
    pub fn clouds<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.names.extend(names.into_iter().map(Into::into));
        self.names.sort();
        self.names.dedup();
        self
    }

    /// FaaS settings for every cloud.
    pub fn faas_config(mut self, cfg: LocalFaasConfig) -> Self {
        self.faas = cfg;
        self
    }

    /// Async payload limit of one cloud.
    pub fn inline_limit(mut self, cloud: &str, bytes: u64) -> Self {
        self.inline_limits.insert(cloud.to_string(), bytes);
        self
    }

    /// Emulated latency.
    pub fn latency(mut self, p: LatencyProfile) -> Self {
        self.latency = p;
        self
    }

    /// How long the stores keep what they write (ADR 0009); `None` keeps it until deleted.
    /// Default [`joint_shim::caps::DEFAULT_RETENTION`]. Opening a state directory deletes what
    /// expired.
    pub fn retention(mut self, r: Option<std::time::Duration>) -> Self {
        self.retention = Some(r);
        self
    }

    /// What the stores of a state directory survive (default [`Durability::Disk`]: a power
    /// loss).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Open an existing state directory without writing to it (`joint status`): nothing is
    /// created or purged, and every write fails.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Count every create the coordination stores answer `New` in `ledger` (to check exactly
    /// one commit per instance from the stores' answers).
    pub fn ledger(mut self, ledger: CommitLedger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Keep cloud `cloud`'s coordination state in `store` (a DynamoDB table, a Tablestore table)
    /// instead of its SQLite file; its FaaS, queue and blob folder stay local. The fault bench
    /// runs the protocol on the emulated stores this way. Its retention is the store's own
    /// (nothing local purges it).
    pub fn coord_store(mut self, cloud: &str, store: Arc<dyn joint_shim::CoordStore>) -> Self {
        self.coord_stores.insert(cloud.to_string(), store);
        self
    }

    /// Fault injection: duplicates and drops in the queues, throttling of invocations.
    pub fn chaos(mut self, c: Chaos) -> Self {
        self.chaos = c;
        self
    }

    /// Open the stores and make the clouds.
    pub fn build(self) -> Result<LocalClouds> {
        let counts = OpCounts::new();
        let mut clouds = Clouds::new();
        let mut faas = BTreeMap::new();
        let mut switches = BTreeMap::new();
        let mut faas_switches = BTreeMap::new();
        let mut throttles = Vec::new();
        let mut stores = Vec::new();
        for name in &self.names {
            let retention = self
                .retention
                .unwrap_or(Some(joint_shim::caps::DEFAULT_RETENTION));
            let sqlite = match &self.state_dir {
                _ if self.coord_stores.contains_key(name) => None,
                Some(d) if self.read_only => Some({
                    SqliteCoordStore::open_read_only(d.join(name).join("coord.db"), name)?
                        .with_retention(retention)
                }),
                Some(d) => Some(
                    SqliteCoordStore::open_with(
                        d.join(name).join("coord.db"),
                        name,
                        self.durability,
                    )?
                    .with_retention(retention),
                ),
                None => Some(SqliteCoordStore::in_memory(name)?.with_retention(retention)),
            };
            let blob_root = match &self.state_dir {
                Some(d) => d.join(name).join("blobs"),
                None => std::env::temp_dir().join(format!(
                    "joint-blobs-{}-{}-{name}",
                    std::process::id(),
                    uniq()
                )),
            };
            let blob = FsBlobStore::new(blob_root, name)?
                .with_retention(retention)
                .with_fsync(self.state_dir.is_some() && self.durability == Durability::Disk);
            if self.state_dir.is_some() && !self.read_only {
                if let Some(c) = &sqlite {
                    c.purge_expired_blocking()?;
                }
                blob.purge_expired()?;
            }
            let mut fcfg = self.faas.clone();
            fcfg.chaos = self.chaos;
            if let Some(l) = self.inline_limits.get(name) {
                fcfg.async_payload_limit = *l;
            }
            let local = match &self.state_dir {
                Some(d) if !self.read_only => {
                    LocalFaas::durable(name, fcfg, &d.join(name).join("queue.db"), self.durability)?
                }
                _ => LocalFaas::new(name, fcfg),
            };
            let delay = self.latency.store(name);
            let sw = OutageSwitch::new();
            let faas_sw = OutageSwitch::new();
            stores.push((sqlite.clone(), blob.clone()));
            let faulty = Faulty::new(local.clone(), self.chaos, name);
            let coord: Arc<dyn joint_shim::CoordStore> = match (sqlite, self.coord_stores.get(name))
            {
                (_, Some(c)) => c.clone(),
                (Some(c), None) => Arc::new(c),
                (None, None) => {
                    return Err(joint_shim::Error::new(
                        joint_shim::ErrorKind::Other,
                        "local",
                        "build",
                        name,
                        "internal: the cloud has neither a SQLite store nor a given one",
                    ));
                }
            };
            let coord: Arc<dyn joint_shim::CoordStore> = match &self.ledger {
                Some(l) => Arc::new(l.watch(coord)),
                None => coord,
            };
            throttles.push(faulty.injected());
            clouds.insert(Cloud {
                name: name.clone(),
                faas: Arc::new(Counted::new(
                    Switched::new(
                        Switched::new(faulty, faas_sw.clone(), name),
                        sw.clone(),
                        name,
                    ),
                    counts.clone(),
                )),
                coord: Arc::new(Counted::new(
                    Switched::new(Delayed::new(coord, delay), sw.clone(), name),
                    counts.clone(),
                )),
                blob: Arc::new(Counted::new(
                    Switched::new(Delayed::new(blob, delay), sw.clone(), name),
                    counts.clone(),
                )),
            });
            faas.insert(name.clone(), local);
            switches.insert(name.clone(), sw);
            faas_switches.insert(name.clone(), faas_sw);
        }
        Ok(LocalClouds {
            clouds,
            faas,
            counts,
            switches,
            faas_switches,
            throttles,
            stores,
            state_dir: self.state_dir,
        })
    }
}

fn uniq() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Local clouds, ready to be given to a runtime.
#[derive(Debug, Clone)]
pub struct LocalClouds {
    /// The clouds (counted, delayed and fault-injected as configured).
    pub clouds: Clouds,
    /// Each cloud's FaaS, for attaching, outages and statistics.
    pub faas: BTreeMap<String, LocalFaas>,
    /// Operation counters of every cloud.
    pub counts: OpCounts,
    switches: BTreeMap<String, OutageSwitch>,
    faas_switches: BTreeMap<String, OutageSwitch>,
    throttles: Vec<Arc<std::sync::atomic::AtomicU64>>,
    stores: Vec<(Option<SqliteCoordStore>, FsBlobStore)>,
    state_dir: Option<PathBuf>,
}

impl LocalClouds {
    /// Deliver every cloud's events to `runtime`.
    pub fn attach(&self, runtime: Arc<dyn Deliver>) {
        for f in self.faas.values() {
            f.attach(runtime.clone());
        }
    }

    /// Stop every cloud's deliveries and let go of the runtime ([`LocalFaas::detach`]), so that
    /// a finished deployment (the runtime holds the clouds, the clouds hold the runtime) can be
    /// freed. The runner does it when a run returns.
    pub fn detach(&self) {
        for f in self.faas.values() {
            f.detach();
        }
    }

    /// Make a whole cloud — its FaaS and both stores — unreachable (`true`) or reachable again.
    /// Events already queued on it stay queued and are delivered once it is back.
    pub fn set_cloud_down(&self, cloud: &str, down: bool) -> bool {
        match self.switches.get(cloud) {
            Some(s) => {
                s.set_down(down);
                true
            }
            None => false,
        }
    }

    /// The outage switch in front of cloud `cloud`'s FaaS alone: while it is down, invocations
    /// of that cloud fail (at once, or hanging until the caller's timeout with
    /// [`OutageSwitch::set_hanging`]) and its stores stay reachable — the network to one
    /// platform's invoke endpoint failing, the case failover is for.
    pub fn faas_switch(&self, cloud: &str) -> Option<&OutageSwitch> {
        self.faas_switches.get(cloud)
    }

    /// Wait until no cloud has an event in flight.
    pub async fn idle(&self) {
        loop {
            for f in self.faas.values() {
                f.idle().await;
            }
            if self.faas.values().all(|f| f.inflight() == 0) {
                return;
            }
        }
    }

    /// Events of run `run` that some process's durable queue still holds (0 without state).
    pub async fn pending_for_run(&self, run: &str) -> Result<u64> {
        let mut n = 0;
        for f in self.faas.values() {
            n += f.pending_for_run(run).await?;
        }
        Ok(n)
    }

    /// The dead letters of run `run` on every cloud (every process's, with a state directory).
    pub async fn dead_letters_of(&self, run: &str) -> Result<Vec<(String, DeadLetter)>> {
        let mut out = Vec::new();
        for (c, f) in &self.faas {
            out.extend(
                f.dead_letters_of(run)
                    .await?
                    .into_iter()
                    .map(|d| (c.clone(), d)),
            );
        }
        Ok(out)
    }

    /// Events that exhausted their deliveries, with their cloud.
    pub fn dead_letters(&self) -> Vec<(String, DeadLetter)> {
        self.faas
            .iter()
            .flat_map(|(c, f)| f.dead_letters().into_iter().map(move |d| (c.clone(), d)))
            .collect()
    }

    /// Queue statistics summed over clouds.
    pub fn queue_stats(&self) -> QueueStats {
        let mut s = QueueStats::default();
        for f in self.faas.values() {
            let q = f.stats();
            s.accepted += q.accepted;
            s.deliveries += q.deliveries;
            s.retries += q.retries;
            s.dropped += q.dropped;
            s.duplicated += q.duplicated;
            s.concurrent += q.concurrent;
            s.late += q.late;
            s.dead += q.dead;
            s.lost += q.lost;
            s.recovered += q.recovered;
        }
        for t in &self.throttles {
            s.throttled += t.load(std::sync::atomic::Ordering::Relaxed);
        }
        s
    }

    /// Delete what every local store holds beyond its retention as of `now` (ADR 0009); returns
    /// how many items, joins and blobs went. Opening a state directory does this for the
    /// present; a test passes a later time to see what the stores will have collected by then.
    pub async fn purge_expired_at(&self, now: std::time::SystemTime) -> Result<u64> {
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut n = 0;
        for (coord, blob) in &self.stores {
            if let Some(coord) = coord {
                n += coord.purge_expired_at(ms).await?;
            }
            n += blob.purge_expired_at(now)?;
        }
        Ok(n)
    }

    /// The state directory, if any.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}
