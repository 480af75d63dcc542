//! joint-shim-local: the embedded default. Every cloud of a workflow runs on this machine: a
//! SQLite coordination store and a blob folder under a state directory, and an in-process FaaS
//! with the semantics of an asynchronous platform queue.
#![deny(missing_docs)]

pub mod faas;
pub mod fs;
pub mod runner;
pub mod serve;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use joint_shim::layers::{
    Chaos, Counted, Delayed, Faulty, LatencyProfile, OpCounts, OutageSwitch, Switched,
};
use joint_shim::{Cloud, Clouds, Deliver, Result};

pub use faas::{DeadLetter, LocalFaas, LocalFaasConfig, QueueStats};
pub use fs::FsBlobStore;
pub use sqlite::SqliteCoordStore;

/// Builds a set of local clouds.
#[derive(Debug, Clone, Default)]
pub struct LocalCloudsBuilder {
    state_dir: Option<PathBuf>,
    names: Vec<String>,
    faas: LocalFaasConfig,
    inline_limits: BTreeMap<String, u64>,
    latency: LatencyProfile,
    chaos: Chaos,
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
        let mut throttles = Vec::new();
        for name in &self.names {
            let coord = match &self.state_dir {
                Some(d) => SqliteCoordStore::open(d.join(name).join("coord.db"), name)?,
                None => SqliteCoordStore::in_memory(name)?,
            };
            let blob_root = match &self.state_dir {
                Some(d) => d.join(name).join("blobs"),
                None => std::env::temp_dir().join(format!(
                    "joint-blobs-{}-{}-{name}",
                    std::process::id(),
                    uniq()
                )),
            };
            let blob = FsBlobStore::new(blob_root, name)?;
            let mut fcfg = self.faas.clone();
            fcfg.chaos = self.chaos;
            if let Some(l) = self.inline_limits.get(name) {
                fcfg.async_payload_limit = *l;
            }
            let local = LocalFaas::new(name, fcfg);
            let delay = self.latency.store(name);
            let sw = OutageSwitch::new();
            let faulty = Faulty::new(local.clone(), self.chaos, name);
            throttles.push(faulty.injected());
            clouds.insert(Cloud {
                name: name.clone(),
                faas: Arc::new(Counted::new(
                    Switched::new(faulty, sw.clone(), name),
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
        }
        Ok(LocalClouds {
            clouds,
            faas,
            counts,
            switches,
            throttles,
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
    throttles: Vec<Arc<std::sync::atomic::AtomicU64>>,
    state_dir: Option<PathBuf>,
}

impl LocalClouds {
    /// Deliver every cloud's events to `runtime`.
    pub fn attach(&self, runtime: Arc<dyn Deliver>) {
        for f in self.faas.values() {
            f.attach(runtime.clone());
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
            s.dead += q.dead;
            s.lost += q.lost;
        }
        for t in &self.throttles {
            s.throttled += t.load(std::sync::atomic::Ordering::Relaxed);
        }
        s
    }

    /// The state directory, if any.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}
