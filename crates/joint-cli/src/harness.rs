//! Measuring joint and the centralized baselines on the same workflow, network and prices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cost::{self, Cost, Prices, Usage};
use joint_core::workflow::Workflow;
use joint_examples::baseline::{Architecture, BaselineConfig, run_baseline};
use joint_shim::Handlers;
use joint_shim::layers::{LatencyProfile, OpSnapshot};
use joint_shim::observe::{ObsEvent, Observer};
use joint_shim_local::runner::{RunOptions, run_local};
use serde_json::Value;

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// joint (decentralized).
    Joint,
    /// Step Functions / CloudFlow-like.
    Managed,
    /// xAFCL-like.
    Engine,
}

impl System {
    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            System::Joint => "joint",
            System::Managed => "managed-orch",
            System::Engine => "xcloud-engine",
        }
    }
}

/// Repeated runs of one system.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Makespans in ms.
    pub makespans: Vec<f64>,
    /// Mean usage per run (for the cost model).
    pub usage: Usage,
    /// Operations of the last run.
    pub ops: OpSnapshot,
    /// Invocations per run.
    pub invocations: u64,
    /// State transitions (managed) or step records (engine) per run.
    pub transitions: u64,
    /// Bytes between clouds per run.
    pub cross_bytes: u64,
    /// Instances per run.
    pub instances: u64,
    /// Process CPU per instance (ms), joint only.
    pub cpu_per_instance_ms: f64,
    /// Output of the last run.
    pub output: Value,
}

impl Measured {
    /// Percentile `q` (0..=1) of the makespans.
    pub fn pct(&self, q: f64) -> f64 {
        let mut v = self.makespans.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)]
    }

    /// Cost per 10^6 runs.
    pub fn cost(&self, p: &Prices) -> Cost {
        cost::per_million(&self.usage, p)
    }
}

#[derive(Default)]
struct Usage1 {
    gb: BTreeMap<String, f64>,
    req: BTreeMap<String, u64>,
    cross: u64,
}

struct UsageObserver {
    memory: BTreeMap<String, u32>,
    u: Mutex<Usage1>,
}

impl Observer for UsageObserver {
    fn event(&self, e: &ObsEvent) {
        let mut u = self.u.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            ObsEvent::InstanceEnd {
                function,
                cloud,
                elapsed,
                ..
            } => {
                let mb = self.memory.get(function).copied().unwrap_or(128);
                *u.gb.entry(cloud.clone()).or_default() +=
                    elapsed.as_secs_f64() * f64::from(mb) / 1024.0;
                *u.req.entry(cloud.clone()).or_default() += 1;
            }
            ObsEvent::Invoked {
                from, to, bytes, ..
            }
            | ObsEvent::Fetched {
                from, to, bytes, ..
            } if from != to => u.cross += bytes,
            _ => {}
        }
    }
}

/// CPU time of every live thread of this process in milliseconds (Linux schedstat, ns
/// resolution); 0 elsewhere.
pub fn cpu_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e6
}

/// Run joint `runs` times on local clouds with the emulated network.
pub async fn measure_joint(
    w: &Arc<Workflow>,
    handlers: &Handlers,
    input: &Value,
    latency: &LatencyProfile,
    runs: u32,
) -> Result<Measured, String> {
    let memory: BTreeMap<String, u32> = w
        .functions
        .values()
        .map(|s| (s.name.clone(), s.memory_mb))
        .collect();
    let mut m = Measured::default();
    let mut cpu = 0.0;
    for _ in 0..runs.max(1) {
        let obs = Arc::new(UsageObserver {
            memory: memory.clone(),
            u: Mutex::new(Usage1::default()),
        });
        let opts = RunOptions {
            input: input.clone(),
            latency: latency.clone(),
            observer: Some(obs.clone() as Arc<dyn Observer>),
            ..RunOptions::default()
        };
        let c0 = cpu_ms();
        let r = run_local(w.clone(), handlers.clone(), opts)
            .await
            .map_err(|e| e.to_string())?;
        cpu += cpu_ms() - c0;
        if r.status != "succeeded" {
            return Err(format!(
                "joint run failed: {}",
                r.error.map(|f| f.to_string()).unwrap_or_default()
            ));
        }
        m.makespans.push(r.makespan_ms);
        m.ops = r.ops;
        m.instances = r.instances;
        m.invocations = r.ops.invokes();
        m.output = r.output.unwrap_or(Value::Null);
        let u = obs.u.lock().unwrap_or_else(|p| p.into_inner());
        m.cross_bytes = u.cross;
        m.usage = Usage {
            gb_seconds: u.gb.clone(),
            requests: u.req.clone(),
            datastore_writes: r.ops.writes(),
            datastore_reads: r.ops.reads(),
            object_requests: r.ops.blob_put + r.ops.blob_get,
            egress_bytes: egress(w, u.cross),
            ..Usage::default()
        };
    }
    m.cpu_per_instance_ms = cpu / runs.max(1) as f64 / m.instances.max(1) as f64;
    Ok(m)
}

/// Attribute cross-cloud bytes to the start function's cloud (simple, documented).
fn egress(w: &Workflow, bytes: u64) -> BTreeMap<String, u64> {
    let home = w.sub(&w.start).map(|s| s.faas.clone()).unwrap_or_default();
    BTreeMap::from([(home, bytes)])
}

/// Run a baseline `runs` times.
pub async fn measure_baseline(
    w: &Arc<Workflow>,
    handlers: &Handlers,
    input: &Value,
    latency: &LatencyProfile,
    arch: Architecture,
    runs: u32,
) -> Result<Measured, String> {
    let home = w.sub(&w.start).map(|s| s.faas.clone()).unwrap_or_default();
    let persist_ms = match arch {
        Architecture::ManagedOrchestrator => latency.transition_ms,
        Architecture::CrossCloudEngine => latency.engine_db_ms,
    };
    let cfg = BaselineConfig {
        arch,
        home: home.clone(),
        latency: latency.clone(),
        persist_ms,
    };
    let mut m = Measured::default();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let r = run_baseline(w.clone(), handlers.clone(), cfg.clone(), input.clone()).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        m.makespans.push(ms);
        m.invocations = r.invocations;
        m.transitions = r.transitions;
        m.cross_bytes = r.cross_cloud_bytes;
        m.instances = r.invocations;
        m.output = r.output;
        let secs = ms / 1000.0;
        m.usage = Usage {
            gb_seconds: r.gb_seconds,
            requests: r.requests,
            state_transitions: if arch == Architecture::ManagedOrchestrator {
                r.transitions
            } else {
                0
            },
            orchestrator_vm_seconds: if arch == Architecture::CrossCloudEngine {
                secs
            } else {
                0.0
            },
            database_vm_seconds: if arch == Architecture::CrossCloudEngine {
                secs
            } else {
                0.0
            },
            egress_bytes: BTreeMap::from([(home.clone(), r.cross_cloud_bytes)]),
            ..Usage::default()
        };
    }
    Ok(m)
}
