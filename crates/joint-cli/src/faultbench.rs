//! `joint bench faults`: the randomized fault run, modelled on the platforms joint is deployed on.
//!
//! Every example workflow runs many times, each run under settings drawn from the seed:
//! - the GC policy: [`GcPolicy::Retain`] (what deployed functions do, ADR 0009) in about 60 % of
//!   the runs, [`GcPolicy::WhenQuiet`] (what `joint run` does on local clouds) in the others;
//! - the queue's faults (`crash`, `dup`, `concurrent`, `late`, `drop`, `throttle`, `lose`), each
//!   on in half the runs at 2–20 %, late copies arriving 0.3–1 s after the first delivery (after
//!   the run ended);
//! - in a third of the runs Lambda's asynchronous retry schedule, scaled 1 s → 1 ms: three
//!   deliveries, retries after 60 and 120 ms (Lambda: about 1 and 2 minutes), events older than a
//!   maximum event age of 60–400 ms (Lambda: 60 s – 6 h) dropped; a run whose events were
//!   dropped is re-driven the way the deployed sweeper does (`Runtime::resume_stalled`);
//! - in runs of `chain` and `demo`, sometimes an outage of cloud `local-b`'s invoke endpoint in
//!   which calls hang until the caller's timeout (scaled 1:50: 10 s → 200 ms; breaker cooldown
//!   2 s → 40 ms): the time from the outage to the first failover and what the breaker did are
//!   reported;
//! - `by_batch` runs as units of four contributing runs filling one batch; in half the units the
//!   batch run's start event is lost and the sweeper (`Runtime::sweep`) must start it;
//! - process kills (`--kills`): the `joint` binary itself runs a workflow as a child process
//!   with `Chaos::kill` set, which SIGKILLs it at a random protocol point; the same state
//!   directory and run id are then run again (up to two kills, then without kills) and must
//!   finish with the fault-free output.
//!
//! Checks, per run: the output equals the fault-free one; no key was created twice, counted from
//! the coordination stores' own answers ([`CommitLedger`] around every store); nothing of the run
//! is left once the stores' retention has passed (Retain) or after the runner's GC (WhenQuiet).
//! The stores: SQLite (the local default), DynamoDB on ministack and Tablestore on an in-process
//! `joint serve`; with the emulated stores the FaaS queues and blob folders stay local, so the
//! bench exercises the stores' semantics with the same fault model. Violations make the command
//! fail and are printed with everything needed to reproduce them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use joint_core::workflow::Workflow;
use joint_shim::caps::DEFAULT_RETENTION;
use joint_shim::invoke::{BreakerConfig, InvokeConfig};
use joint_shim::layers::{Chaos, CommitLedger};
use joint_shim::observe::{Fanout, ObsEvent, Observer};
use joint_shim::{CoordStore, GcPolicy, Runtime, RuntimeConfig, handler_fn};
use joint_shim_local::runner::{RunOptions, deploy, run_local};
use joint_shim_local::{Durability, LocalClouds, LocalCloudsBuilder, LocalFaasConfig};
use joint_store::dynamo::DynamoCoordStore;
use joint_store::tablestore::TablestoreCoordStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The example workflows, the input each runs with, and the cloud a hanging outage may hit.
const CASES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "chain",
        include_str!("../../../examples/chain.yaml"),
        "3",
        Some("local-b"),
    ),
    (
        "parallel",
        include_str!("../../../examples/parallel.yaml"),
        "3",
        None,
    ),
    (
        "choice",
        include_str!("../../../examples/choice.yaml"),
        "50",
        None,
    ),
    (
        "cycle",
        include_str!("../../../examples/cycle.yaml"),
        r#"{"i": 0}"#,
        None,
    ),
    (
        "map",
        include_str!("../../../examples/map.yaml"),
        r#"{"n": 4}"#,
        None,
    ),
    (
        "demo",
        include_str!("../../../examples/demo.yaml"),
        r#"{"n": 8}"#,
        Some("local-b"),
    ),
    (
        "by_redundant",
        include_str!("../../../examples/by_redundant.yaml"),
        "1",
        None,
    ),
];

/// The ByBatch example: units of [`BATCH`] runs with inputs 0..BATCH fill one batch.
const BY_BATCH: &str = include_str!("../../../examples/by_batch.yaml");
const BATCH: u64 = 4;

/// Per-attempt invoke timeout in the bench (the default is 10 s; scaled 1:50).
const INVOKE_TIMEOUT: Duration = Duration::from_millis(200);
/// Breaker cooldown in the bench (the default is 2 s; scaled 1:50).
const BREAKER_COOLDOWN: Duration = Duration::from_millis(40);
/// How long a hanging outage lasts.
const OUTAGE: Duration = Duration::from_millis(1500);
/// Invocation deadline in batch units (the sweeper leaves a hand-off alone until it passed).
const BATCH_DEADLINE: Duration = Duration::from_millis(200);
/// Kills per killed run before it is run once more without kills.
const MAX_KILLS: u32 = 2;

/// Fault kinds, in table order, with what each does.
const KINDS: &[(&str, &str)] = &[
    (
        "crash",
        "execution stopped before/after a protocol action; the platform redelivers",
    ),
    ("dup", "event delivered again after its first execution"),
    (
        "concurrent",
        "2-4 copies of an event delivered at once, racing each other",
    ),
    (
        "late",
        "one more copy 0.3-1 s after the first delivery, after the run ended",
    ),
    (
        "drop",
        "delivery attempt lost; redelivered after the visibility timeout",
    ),
    (
        "throttle",
        "invocation refused with a throttling error; retried",
    ),
    (
        "lose",
        "event accepted, then lost for good; the run is resumed from its stores",
    ),
    (
        "dead",
        "event dead-lettered (Lambda schedule: 3 deliveries, maximum event age); the sweeper re-drives the run",
    ),
    (
        "hang",
        "outage of local-b's invoke endpoint: calls hang until the caller's timeout",
    ),
    (
        "kill",
        "the whole process SIGKILLed at a protocol point; restarted on the same state",
    ),
    (
        "batch-start",
        "a batch run's start event lost; the sweeper starts the batch",
    ),
];

/// Which coordination store the bench runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite under a state directory (the local default).
    Sqlite,
    /// DynamoDB on ministack.
    Dynamodb,
    /// Tablestore on an in-process `joint serve`.
    Tablestore,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Dynamodb => "dynamodb",
            StoreKind::Tablestore => "tablestore",
        }
    }
}

/// Parse `--store`.
pub fn parse_stores(s: &str) -> Result<Vec<StoreKind>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let add: &[StoreKind] = match part {
            "sqlite" | "local" => &[StoreKind::Sqlite],
            "dynamodb" => &[StoreKind::Dynamodb],
            "tablestore" => &[StoreKind::Tablestore],
            "all" => &[
                StoreKind::Sqlite,
                StoreKind::Dynamodb,
                StoreKind::Tablestore,
            ],
            other => {
                return Err(format!(
                    "--store '{s}': unknown store '{other}' (known: sqlite, dynamodb, tablestore, all)"
                ));
            }
        };
        for k in add {
            if !out.contains(k) {
                out.push(*k);
            }
        }
    }
    Ok(out)
}

/// The bench's settings.
pub struct FaultArgs {
    /// Runs on SQLite.
    pub runs: u64,
    /// Runs on each emulated store.
    pub cloud_runs: u64,
    /// Seed of every setting and fault.
    pub seed: u64,
    /// Stores to run on.
    pub stores: Vec<StoreKind>,
    /// Runs with process kills (on SQLite).
    pub kills: u64,
    /// The ministack URL (`--dynamodb`).
    pub dynamodb: Option<String>,
    /// Runs at once.
    pub concurrency: usize,
}

// ----------------------------------------------------------------------------------------------
// Settings of one run

/// Lambda's asynchronous retry schedule, scaled 1 s → 1 ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Lambda {
    max_event_age_ms: u64,
}

/// A hanging outage of one cloud's invoke endpoint, from the run's start for [`OUTAGE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hang {
    cloud: String,
}

/// Everything drawn for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    case: String,
    retain: bool,
    chaos: ChaosSpec,
    late_delay_ms: u64,
    lambda: Option<Lambda>,
    hang: Option<Hang>,
    lose_batch_start: bool,
}

/// [`Chaos`] as plain data (for the child process and for violation reports).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ChaosSpec {
    seed: u64,
    crash: f64,
    dup: f64,
    concurrent: f64,
    late: f64,
    drop: f64,
    throttle: f64,
    lose: f64,
    kill: f64,
}

impl From<ChaosSpec> for Chaos {
    fn from(c: ChaosSpec) -> Chaos {
        Chaos {
            seed: c.seed,
            crash: c.crash,
            dup: c.dup,
            concurrent: c.concurrent,
            late: c.late,
            drop: c.drop,
            throttle: c.throttle,
            lose: c.lose,
            kill: c.kill,
        }
    }
}

impl Settings {
    fn gc(&self) -> GcPolicy {
        if self.retain {
            GcPolicy::Retain
        } else {
            GcPolicy::WhenQuiet
        }
    }

    /// `--chaos`-style text of the faults, the GC policy and the schedule.
    fn describe(&self) -> String {
        let c = &self.chaos;
        let mut s = format!(
            "case {} · gc {} · chaos seed={},crash={:.3},dup={:.3},concurrent={:.3},late={:.3},drop={:.3},throttle={:.3},lose={:.3}",
            self.case,
            if self.retain { "retain" } else { "when-quiet" },
            c.seed,
            c.crash,
            c.dup,
            c.concurrent,
            c.late,
            c.drop,
            c.throttle,
            c.lose
        );
        if c.kill > 0.0 {
            s += &format!(",kill={:.3}", c.kill);
        }
        s += &format!(" · late delay {} ms", self.late_delay_ms);
        match &self.lambda {
            Some(l) => {
                s += &format!(
                    " · lambda schedule (3 deliveries, max event age {} ms)",
                    l.max_event_age_ms
                )
            }
            None => s += " · queue retries until delivered",
        }
        if let Some(h) = &self.hang {
            s += &format!(
                " · hanging outage of {} from the start for {} ms",
                h.cloud,
                OUTAGE.as_millis()
            );
        }
        if self.lose_batch_start {
            s += " · batch start lost";
        }
        s
    }

    /// The local FaaS settings of the run.
    fn faas(&self) -> LocalFaasConfig {
        let base = LocalFaasConfig {
            late_delay: Duration::from_millis(self.late_delay_ms),
            ..LocalFaasConfig::default()
        };
        match self.lambda {
            Some(l) => LocalFaasConfig {
                max_deliveries: 3,
                retry_delay: Duration::from_millis(60),
                max_event_age: Some(Duration::from_millis(l.max_event_age_ms)),
                ..base
            },
            None => LocalFaasConfig {
                max_deliveries: 100,
                ..base
            },
        }
    }

    /// The runtime settings of the run.
    fn runtime(&self, batch: bool) -> RuntimeConfig {
        let mut cfg = RuntimeConfig {
            invoke: InvokeConfig {
                timeout: INVOKE_TIMEOUT,
                breaker: BreakerConfig {
                    cooldown: BREAKER_COOLDOWN,
                    ..BreakerConfig::default()
                },
                ..InvokeConfig::default()
            },
            ..RuntimeConfig::default()
        };
        if batch {
            cfg.invoke_deadline = BATCH_DEADLINE;
        }
        cfg
    }
}

/// A uniform number in [0, 1) for `parts` of run `i` on `store`.
fn draw(seed: u64, store: &str, i: u64, parts: &[&str]) -> f64 {
    let pick = Chaos {
        seed,
        ..Chaos::default()
    };
    let i = i.to_string();
    let mut all = vec![store, i.as_str()];
    all.extend_from_slice(parts);
    pick.draw(&all)
}

/// The settings of run `i` on `store`.
fn settings(seed: u64, store: &str, i: u64, case: &str, hang_cloud: Option<&str>) -> Settings {
    let d = |parts: &[&str]| draw(seed, store, i, parts);
    let p = |kind: &str| {
        if d(&["on", kind]) < 0.5 {
            0.0
        } else {
            0.02 + 0.18 * d(&["p", kind])
        }
    };
    let lambda = (d(&["lambda"]) < 1.0 / 3.0).then(|| Lambda {
        max_event_age_ms: 60 + (340.0 * d(&["age"])) as u64,
    });
    let hang = hang_cloud.filter(|_| d(&["hang"]) < 0.5).map(|c| Hang {
        cloud: c.to_string(),
    });
    let mut chaos = ChaosSpec {
        seed: seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ store.len() as u64,
        crash: p("crash"),
        dup: p("dup"),
        concurrent: p("concurrent"),
        late: p("late"),
        drop: p("drop"),
        throttle: p("throttle"),
        lose: p("lose"),
        kill: 0.0,
    };
    if hang.is_some() {
        // Injected throttling switches the breaker off (the runner raises its threshold), and
        // the outage is about the breaker.
        chaos.throttle = 0.0;
    }
    Settings {
        case: case.to_string(),
        retain: d(&["gc"]) < 0.6,
        chaos,
        late_delay_ms: 300 + (700.0 * d(&["late-delay"])) as u64,
        lambda,
        hang,
        lose_batch_start: d(&["batch-start"]) < 0.5,
    }
}

// ----------------------------------------------------------------------------------------------
// Stores

/// Where the coordination state of the bench's clouds lives.
enum StoreEnv {
    Sqlite,
    Dynamo {
        url: String,
        id: String,
        /// One table per cloud, shared by the runs.
        stores: BTreeMap<String, DynamoCoordStore>,
    },
    Tablestore {
        server: joint_serve::Served,
        id: String,
        stores: BTreeMap<String, TablestoreCoordStore>,
        /// The TTL the tables were created with.
        ttl: Duration,
    },
}

/// Access key the in-process `joint serve` verifies Tablestore signatures with.
const OTS_AK: &str = "joint-bench-faults";
const OTS_SK: &str = "joint-bench-faults-secret";

fn uniq() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), n % 1_000_000_000)
}

/// The ministack URL: `--dynamodb`, then `$JOINT_TEST_MINISTACK_URL`, then `$JOINT_MINISTACK_URL`.
fn ministack_url(flag: Option<&str>) -> Result<String, String> {
    if let Some(u) = flag {
        return Ok(u.to_string());
    }
    for var in ["JOINT_TEST_MINISTACK_URL", "JOINT_MINISTACK_URL"] {
        if let Ok(u) = std::env::var(var)
            && !u.trim().is_empty()
        {
            return Ok(u.trim().to_string());
        }
    }
    Err("--store dynamodb runs DynamoDB on ministack, and none is given: pass --dynamodb URL or set JOINT_TEST_MINISTACK_URL (`bash scripts/services/ministack.sh start DIR` starts one and prints it)".into())
}

async fn dynamo_table(url: &str, cloud: &str, table: &str) -> Result<DynamoCoordStore, String> {
    let store = joint_store::dynamo::DynamoStoreBuilder::new()
        .with_config("region", "us-east-1")
        .with_config("endpoint_url", url)
        .with_config("access_key_id", "test")
        .with_config("secret_access_key", "test")
        .with_table(table)
        .with_cloud(cloud)
        .build()
        .await
        .map_err(|e| format!("DynamoDB store for cloud {cloud}: {e}"))?;
    joint_store::dynamo::create_table(store.client(), table)
        .await
        .map_err(|e| format!("create DynamoDB table {table} on ministack at {url}: {e}"))?;
    Ok(store)
}

async fn ots_table(
    server: &joint_serve::Served,
    cloud: &str,
    table: &str,
    ttl: Duration,
) -> Result<TablestoreCoordStore, String> {
    let url = server.url("ots").map_err(|e| e.to_string())?;
    let store = TablestoreCoordStore::builder()
        .cloud(cloud)
        .credential(joint_shim_aliyun::Credential::new(OTS_AK, OTS_SK))
        .endpoint(url)
        .instance("joint")
        .table(table)
        .build()
        .map_err(|e| format!("Tablestore store for cloud {cloud}: {e}"))?
        .with_retention(Some(ttl));
    let secs = i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX);
    joint_store::tablestore::create_table(store.client(), table, secs)
        .await
        .map_err(|e| format!("create Tablestore table {table} at {url}: {e}"))?;
    Ok(store)
}

impl StoreEnv {
    async fn new(kind: StoreKind, a: &FaultArgs, clouds: &[String]) -> Result<StoreEnv, String> {
        let id = uniq();
        match kind {
            StoreKind::Sqlite => Ok(StoreEnv::Sqlite),
            StoreKind::Dynamodb => {
                let url = ministack_url(a.dynamodb.as_deref())?;
                let mut stores = BTreeMap::new();
                for c in clouds {
                    let table = format!("joint-faults-{id}-{c}");
                    stores.insert(c.clone(), dynamo_table(&url, c, &table).await?);
                }
                Ok(StoreEnv::Dynamo { url, id, stores })
            }
            StoreKind::Tablestore => {
                let served = LocalCloudsBuilder::new()
                    .build()
                    .map_err(|e| format!("joint serve's clouds: {e}"))?;
                let state = Arc::new(joint_serve::ServeState {
                    runtime: None,
                    clouds: served,
                    settings: BTreeMap::from([
                        ("aliyun.access_key_id".to_string(), OTS_AK.to_string()),
                        ("aliyun.access_key_secret".to_string(), OTS_SK.to_string()),
                    ]),
                });
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let server = joint_serve::spawn(state, vec![("ots".into(), any)])
                    .await
                    .map_err(|e| format!("joint serve (Tablestore endpoint): {e}"))?;
                let ttl = DEFAULT_RETENTION;
                let mut stores = BTreeMap::new();
                for c in clouds {
                    let table = format!("faults_{}_{}", id.replace('-', "_"), c.replace('-', "_"));
                    stores.insert(c.clone(), ots_table(&server, c, &table, ttl).await?);
                }
                Ok(StoreEnv::Tablestore {
                    server,
                    id,
                    stores,
                    ttl,
                })
            }
        }
    }

    /// One line saying what holds the coordination state.
    fn line(&self) -> String {
        match self {
            StoreEnv::Sqlite => "SQLite files under a fresh state directory per run (Durability::Process: synchronous=NORMAL; the runs model platforms, not power loss)".into(),
            StoreEnv::Dynamo { url, stores, .. } => format!(
                "DynamoDB on ministack at {url}: one table per cloud ({}), shared by the runs (a batch unit gets its own); expiry by the `expires` TTL attribute, {} days",
                stores.keys().cloned().collect::<Vec<_>>().join(", "),
                DEFAULT_RETENTION.as_secs() / 86_400
            ),
            StoreEnv::Tablestore { server, stores, ttl, .. } => format!(
                "Tablestore on an in-process joint serve at {}: one table per cloud ({}), table TTL {} days",
                server.url("ots").unwrap_or("?"),
                stores.keys().cloned().collect::<Vec<_>>().join(", "),
                ttl.as_secs() / 86_400
            ),
        }
    }

    /// The coordination stores of `clouds` (none on SQLite), in fresh tables when `fresh` names
    /// them; with what [`left_over`] needs to look at them.
    async fn stores(&self, clouds: &[String], fresh: Option<&str>) -> Result<Stores, String> {
        let mut out = Stores::default();
        for c in clouds {
            let (store, view): (Arc<dyn CoordStore>, Remote) = match self {
                StoreEnv::Sqlite => continue,
                StoreEnv::Dynamo { url, id, stores } => {
                    let d = match fresh {
                        None => stores[c].clone(),
                        Some(tag) => {
                            dynamo_table(url, c, &format!("joint-faults-{id}-{tag}-{c}")).await?
                        }
                    };
                    let view = Remote::Dynamo(DynamoView {
                        client: d.client().clone(),
                        table: d.table().to_string(),
                    });
                    (Arc::new(d), view)
                }
                StoreEnv::Tablestore {
                    server,
                    id,
                    stores,
                    ttl,
                } => {
                    let t = match fresh {
                        None => stores[c].clone(),
                        Some(tag) => {
                            let table = format!(
                                "faults_{}_{tag}_{}",
                                id.replace('-', "_"),
                                c.replace('-', "_")
                            );
                            ots_table(server, c, &table, *ttl).await?
                        }
                    };
                    let view = Remote::Tablestore {
                        declared: t.capabilities().retention,
                        ttl: *ttl,
                    };
                    (Arc::new(t), view)
                }
            };
            out.coord.insert(c.clone(), store);
            out.views.insert(c.clone(), view);
        }
        Ok(out)
    }
}

/// Coordination stores for a run's clouds, and how to look into them.
#[derive(Default)]
struct Stores {
    coord: BTreeMap<String, Arc<dyn CoordStore>>,
    views: BTreeMap<String, Remote>,
}

/// The DynamoDB store behind a (possibly layered) coordination store, for reading `expires`.
struct DynamoView {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// What of runs `runs` is left: after the retention passed (`retain`: everything, the run
/// records included) or now (the working state under the runs' prefixes). `ended` is when the
/// last event of the runs was delivered. Local stores are purged as of `ended` + retention + 1 s;
/// DynamoDB items count when their `expires` is later than that or missing; Tablestore rows count
/// when the table's TTL does not cover them (the store declares no retention, or another one
/// than the table's). Deletes what it finds, so that the next look starts clean.
async fn left_over(
    clouds: &LocalClouds,
    remote: &BTreeMap<String, Remote>,
    runs: &[String],
    retain: bool,
    ended: SystemTime,
) -> Result<(u64, Vec<String>), String> {
    let horizon = ended + DEFAULT_RETENTION + Duration::from_secs(1);
    if retain {
        clouds
            .purge_expired_at(horizon)
            .await
            .map_err(|e| format!("purge: {e}"))?;
    }
    let horizon_s = horizon
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = 0u64;
    let mut what = Vec::new();
    for run in runs {
        let mut prefixes = vec![joint_core::naming::run_prefix(run)];
        if retain {
            prefixes.push(joint_core::naming::run_record_prefix(run));
        }
        for c in clouds.clouds.iter() {
            for p in &prefixes {
                let before = n;
                n += c
                    .blob
                    .delete_prefix(p)
                    .await
                    .map_err(|e| format!("blobs of {run} on {}: {e}", c.name))?;
                match remote.get(&c.name) {
                    None => {
                        n += c
                            .coord
                            .delete_prefix(p)
                            .await
                            .map_err(|e| format!("items of {run} on {}: {e}", c.name))?
                    }
                    Some(Remote::Dynamo(v)) => {
                        n += dynamo_left(v, p, retain.then_some(horizon_s))
                            .await
                            .map_err(|e| format!("items of {run} in {}: {e}", v.table))?;
                        // Then clean up (what TTL would do).
                        c.coord
                            .delete_prefix(p)
                            .await
                            .map_err(|e| format!("items of {run} on {}: {e}", c.name))?;
                    }
                    Some(Remote::Tablestore { declared, ttl }) => {
                        let rows = c
                            .coord
                            .delete_prefix(p)
                            .await
                            .map_err(|e| format!("rows of {run} on {}: {e}", c.name))?;
                        let expires = *declared == Some(*ttl);
                        if !retain || !expires {
                            n += rows;
                        }
                    }
                }
                if n > before {
                    what.push(format!("{} under {p} on {}", n - before, c.name));
                }
            }
        }
    }
    Ok((n, what))
}

/// What an emulated store is, for [`left_over`].
enum Remote {
    Dynamo(DynamoView),
    Tablestore {
        declared: Option<Duration>,
        ttl: Duration,
    },
}

/// Items under `prefix` (one partition) that would still be there at `horizon` (epoch seconds;
/// `None`: every item counts).
async fn dynamo_left(v: &DynamoView, prefix: &str, horizon: Option<u64>) -> Result<u64, String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let partition = joint_store::dynamo::partition_of(prefix.trim_end_matches('/')).to_string();
    let mut n = 0;
    let mut start = None;
    loop {
        let r = v
            .client
            .query()
            .table_name(&v.table)
            .consistent_read(true)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", AttributeValue::S(partition.clone()))
            .expression_attribute_values(":s", AttributeValue::S(prefix.to_string()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| format!("Query: {e:?}"))?;
        for item in r.items() {
            let expires = item
                .get("expires")
                .and_then(|a| a.as_n().ok())
                .and_then(|s| s.parse::<u64>().ok());
            match (horizon, expires) {
                (None, _) | (Some(_), None) => n += 1,
                (Some(h), Some(e)) if e > h => n += 1,
                _ => {}
            }
        }
        match r.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(n)
}

// ----------------------------------------------------------------------------------------------
// One run

/// What one run (or batch unit, or killed run) found.
#[derive(Default)]
struct Outcome {
    runs: u64,
    completed: u64,
    retain: u64,
    lambda: u64,
    lost: Vec<String>,
    wrong: Vec<String>,
    doubles: Vec<String>,
    orphans: u64,
    orphan_runs: Vec<String>,
    injected: BTreeMap<&'static str, u64>,
    resumes: u64,
    sweeps: u64,
    hang: Option<HangResult>,
}

#[derive(Debug, Clone, Copy, Default)]
struct HangResult {
    /// Invoke steps that ran into the hanging endpoint.
    hung_steps: u64,
    /// Outage start to the first failover away from the cloud.
    failover_ms: Option<f64>,
    /// The longest invoke step that ran into the hanging endpoint (call to replica accepted).
    hung_step_ms: Option<f64>,
    opened: u64,
    refused: u64,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.runs += o.runs;
        self.completed += o.completed;
        self.retain += o.retain;
        self.lambda += o.lambda;
        self.lost.extend(o.lost);
        self.wrong.extend(o.wrong);
        self.doubles.extend(o.doubles);
        self.orphans += o.orphans;
        self.orphan_runs.extend(o.orphan_runs);
        for (k, v) in o.injected {
            *self.injected.entry(k).or_default() += v;
        }
        self.resumes += o.resumes;
        self.sweeps += o.sweeps;
    }

    fn count(&mut self, kind: &'static str, n: u64) {
        *self.injected.entry(kind).or_default() += n;
    }

    fn queue(&mut self, q: joint_shim_local::QueueStats) {
        self.count("crash", 0);
        self.count(
            "dup",
            q.duplicated
                .saturating_sub(q.concurrent)
                .saturating_sub(q.late),
        );
        self.count("concurrent", q.concurrent);
        self.count("late", q.late);
        self.count("drop", q.dropped);
        self.count("throttle", q.throttled);
        self.count("lose", q.lost);
        self.count("dead", q.dead);
    }

    fn problems(&self) -> usize {
        self.lost.len() + self.wrong.len() + self.doubles.len() + self.orphan_runs.len()
    }
}

/// Crashes, the first failover away from the hanging cloud, and the invoke steps that took at
/// least one invoke timeout (only calls into the hanging endpoint do).
#[derive(Default)]
struct Watch {
    crashes: AtomicU64,
    hang_cloud: Option<String>,
    first_failover: Mutex<Option<Instant>>,
    hung_steps: Mutex<Vec<f64>>,
}

impl Observer for Watch {
    fn event(&self, e: &ObsEvent) {
        match e {
            ObsEvent::Crash { .. } => {
                self.crashes.fetch_add(1, Ordering::Relaxed);
            }
            ObsEvent::Failover { from, .. } if Some(from) == self.hang_cloud.as_ref() => {
                let mut f = self
                    .first_failover
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                f.get_or_insert_with(Instant::now);
            }
            ObsEvent::Action {
                kind: "invoke",
                elapsed,
                ..
            } if self.hang_cloud.is_some() && *elapsed >= INVOKE_TIMEOUT => {
                self.hung_steps
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(elapsed.as_secs_f64() * 1000.0);
            }
            _ => {}
        }
    }
}

/// A compiled example and its fault-free output.
struct Case {
    name: &'static str,
    workflow: Arc<Workflow>,
    input: Value,
    clean: Value,
    hang_cloud: Option<&'static str>,
}

/// What the deployment of a run left for the bench to look at.
type Captured = Arc<Mutex<Option<(LocalClouds, Runtime)>>>;

/// Run case `case` once with settings `s` as run `id`.
async fn run_one(env: &StoreEnv, case: &Case, s: &Settings, id: &str) -> Outcome {
    let mut o = Outcome {
        runs: 1,
        retain: u64::from(s.retain),
        lambda: u64::from(s.lambda.is_some()),
        ..Outcome::default()
    };
    let what = s.describe();
    let fail = |o: &mut Outcome, e: String| o.lost.push(format!("{id} ({what}): {e}"));
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            fail(&mut o, format!("temporary directory: {e}"));
            return o;
        }
    };
    let stores = match env.stores(&case.workflow.clouds, None).await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut o, e);
            return o;
        }
    };
    let ledger = CommitLedger::new();
    let watch = Arc::new(Watch {
        hang_cloud: s.hang.as_ref().map(|h| h.cloud.clone()),
        ..Watch::default()
    });
    let captured: Captured = Arc::default();
    let outage_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let on_deploy = {
        let captured = captured.clone();
        let hang = s.hang.clone();
        let outage_at = outage_at.clone();
        Arc::new(move |dep: &joint_shim_local::runner::LocalDeployment| {
            *captured.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((dep.clouds.clone(), dep.runtime.clone()));
            if let Some(h) = &hang
                && let Some(sw) = dep.clouds.faas_switch(&h.cloud).cloned()
            {
                // Down from before the run starts, for OUTAGE.
                sw.set_hanging(true);
                sw.set_down(true);
                *outage_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                tokio::spawn(async move {
                    tokio::time::sleep(OUTAGE).await;
                    sw.set_down(false);
                });
            }
        }) as joint_shim_local::runner::OnDeploy
    };
    let opts = RunOptions {
        run_id: Some(id.to_string()),
        input: case.input.clone(),
        state_dir: Some(dir.path().to_path_buf()),
        chaos: s.chaos.into(),
        faas: Some(s.faas()),
        exact_deliveries: s.lambda.is_some(),
        runtime: Some(s.runtime(false)),
        observer: Some(watch.clone() as Arc<dyn Observer>),
        gc: Some(s.gc()),
        ledger: Some(ledger.clone()),
        timeout: Some(Duration::from_secs(120)),
        coord_stores: stores.coord.clone(),
        durability: Durability::Process,
        on_deploy: Some(on_deploy),
        ..RunOptions::default()
    };
    let result = run_local(case.workflow.clone(), crate::base_handlers(), opts).await;
    let Some((clouds, rt)) = captured.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        fail(
            &mut o,
            format!("the run was never deployed: {:?}", result.err()),
        );
        return o;
    };
    let output = match result {
        Ok(r) => {
            o.resumes += u64::from(r.resumes);
            Ok(r.output)
        }
        // Lambda drops events (three deliveries, the maximum event age): in the cloud the
        // sweeper re-drives such a run from its stores; here the bench does what it does.
        Err(e) if s.lambda.is_some() => {
            // The runner let go of its runtime; the sweeper's resumes need it delivering again.
            clouds.attach(Arc::new(rt.clone()) as Arc<dyn joint_shim::Deliver>);
            let r = sweep_run(&clouds, &rt, id, &case.input, s, &mut o)
                .await
                .map_err(|e2| format!("{e}; then as the sweeper: {e2}"));
            clouds.detach();
            r
        }
        Err(e) => Err(e.to_string()),
    };
    let ended = SystemTime::now();
    o.queue(clouds.queue_stats());
    o.count("crash", watch.crashes.load(Ordering::Relaxed));
    if let Some(h) = &s.hang {
        o.count("hang", 1);
        let start = *outage_at.lock().unwrap_or_else(|p| p.into_inner());
        let first = *watch
            .first_failover
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let steps = watch
            .hung_steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stats = rt
            .invoker()
            .breaker(&h.cloud)
            .map(|b| b.stats())
            .unwrap_or_default();
        o.hang = Some(HangResult {
            failover_ms: match (start, first) {
                (Some(s), Some(f)) if f >= s => Some((f - s).as_secs_f64() * 1000.0),
                _ => None,
            },
            opened: stats.opened,
            refused: stats.refused,
            hung_steps: steps.len() as u64,
            hung_step_ms: steps.iter().copied().reduce(f64::max),
        });
    }
    match output {
        Err(e) => fail(&mut o, e),
        Ok(out) => {
            o.completed += 1;
            if out.as_ref() != Some(&case.clean) {
                o.wrong
                    .push(format!("{id} ({what}): {out:?} instead of {}", case.clean));
            }
        }
    }
    for (key, n) in ledger.doubles() {
        o.doubles
            .push(format!("{id} ({what}): {key} created {n} times"));
    }
    match left_over(&clouds, &stores.views, &[id.to_string()], s.retain, ended).await {
        Ok((0, _)) => {}
        Ok((n, left)) => {
            o.orphans += n;
            o.orphan_runs.push(format!(
                "{id} ({what}): {n} items left {} ({})",
                if s.retain {
                    "after the retention"
                } else {
                    "after the runner's GC"
                },
                left.join(", ")
            ));
        }
        Err(e) => fail(&mut o, format!("counting what is left: {e}")),
    }
    o
}

/// What the deployed sweeper does for a run without a result: resume it from its stores until
/// it has one. Returns the output.
async fn sweep_run(
    clouds: &LocalClouds,
    rt: &Runtime,
    id: &str,
    input: &Value,
    s: &Settings,
    o: &mut Outcome,
) -> Result<Option<Value>, String> {
    for _ in 0..50 {
        clouds.idle().await;
        if let Some(rec) = rt.run_record(id).await.map_err(|e| e.to_string())? {
            // What the runner does once a run has its record and its queues are quiet.
            if !s.retain
                && clouds
                    .pending_for_run(id)
                    .await
                    .map_err(|e| e.to_string())?
                    == 0
            {
                rt.run_deferred_gc().await.map_err(|e| e.to_string())?;
                joint_shim::runtime::gc_run(&clouds.clouds, id, false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(rt
                .resolve_output(&rec)
                .await
                .map_err(|e| e.to_string())?
                .ok());
        }
        rt.resume_stalled(id, input)
            .await
            .map_err(|e| e.to_string())?;
        o.sweeps += 1;
    }
    Err("no result after 50 sweeper resumes".into())
}

/// A batch unit: [`BATCH`] runs fill one batch; with `lose_batch_start` the batch run's start
/// event is lost and the sweeper must start the batch.
async fn batch_unit(
    env: &StoreEnv,
    w: &Arc<Workflow>,
    clean: &Value,
    s: &Settings,
    unit: &str,
) -> Outcome {
    let mut o = Outcome {
        runs: BATCH + 1,
        retain: u64::from(s.retain) * (BATCH + 1),
        lambda: u64::from(s.lambda.is_some()) * (BATCH + 1),
        ..Outcome::default()
    };
    let what = s.describe();
    let r = batch_unit_inner(env, w, clean, s, unit, &mut o).await;
    if let Err(e) = r {
        o.lost.push(format!("{unit} ({what}): {e}"));
    }
    o
}

async fn batch_unit_inner(
    env: &StoreEnv,
    w: &Arc<Workflow>,
    clean: &Value,
    s: &Settings,
    unit: &str,
    o: &mut Outcome,
) -> Result<(), String> {
    let what = s.describe();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let tag = unit.replace(['-', '.'], "_");
    let stores = env.stores(&w.clouds, Some(&tag)).await?;
    let ledger = CommitLedger::new();
    let watch = Arc::new(Watch::default());
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        chaos: s.chaos.into(),
        faas: Some(s.faas()),
        exact_deliveries: s.lambda.is_some(),
        runtime: Some(s.runtime(true)),
        gc: Some(s.gc()),
        ledger: Some(ledger.clone()),
        coord_stores: stores.coord.clone(),
        durability: Durability::Process,
        ..RunOptions::default()
    };
    let dep = deploy(
        w.clone(),
        crate::base_handlers(),
        &opts,
        Some(Arc::new(Fanout(vec![watch.clone() as Arc<dyn Observer>])) as Arc<dyn Observer>),
    )
    .map_err(|e| format!("deploy: {e}"))?;
    let rt = &dep.runtime;
    // The batch's start event: accepted by the platform and dropped.
    let swallowed = Arc::new(AtomicU64::new(0));
    if s.lose_batch_start {
        for f in dep.clouds.faas.values() {
            let n = swallowed.clone();
            f.add_raw(
                "total",
                handler_fn(move |_, _| {
                    n.fetch_add(1, Ordering::Relaxed);
                    async move { Ok(Value::Null) }
                }),
            );
        }
    }
    let ids: Vec<String> = (0..BATCH).map(|k| format!("{unit}-{k}")).collect();
    for (k, id) in ids.iter().enumerate() {
        rt.start(id, Value::from(k))
            .await
            .map_err(|e| format!("start {id}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut swallowing = s.lose_batch_start;
    let batch_run = loop {
        if Instant::now() > deadline {
            return Err("no batch result within 120 s".into());
        }
        dep.clouds.idle().await;
        let mut missing = Vec::new();
        let mut batch = None;
        for (k, id) in ids.iter().enumerate() {
            match rt.run_record(id).await.map_err(|e| e.to_string())? {
                None => missing.push((k, id)),
                Some(rec) => match rec.batched_into {
                    Some(b) => batch = Some(b),
                    None => {
                        return Err(format!(
                            "{id} finished without handing its output to a batch"
                        ));
                    }
                },
            }
        }
        if !missing.is_empty() {
            // Nothing is in flight: the runs lost events; the sweeper resumes them.
            for (k, id) in missing {
                rt.resume_stalled(id, &Value::from(k))
                    .await
                    .map_err(|e| format!("resume {id}: {e}"))?;
                o.resumes += 1;
            }
            continue;
        }
        if swallowing {
            for f in dep.clouds.faas.values() {
                f.remove_raw("total");
            }
            swallowing = false;
        }
        let Some(batch) = batch else {
            return Err("no run names its batch".into());
        };
        if rt
            .run_record(&batch)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            break batch;
        }
        // The hand-off counts as in progress until its deadline; then the sweeper starts it.
        tokio::time::sleep(BATCH_DEADLINE + Duration::from_millis(20)).await;
        rt.sweep().await.map_err(|e| format!("sweep: {e}"))?;
        o.sweeps += 1;
    };
    dep.clouds.idle().await;
    o.count(
        "batch-start",
        u64::from(swallowed.load(Ordering::Relaxed) > 0),
    );
    let rec = rt
        .run_record(&batch_run)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the batch record disappeared")?;
    let out = rt.resolve_output(&rec).await.map_err(|e| e.to_string())?;
    o.completed += BATCH + 1;
    if out.as_ref().ok() != Some(clean) {
        o.wrong.push(format!(
            "{unit} ({what}): batch {batch_run} output {out:?} instead of {clean}"
        ));
    }
    if !s.retain {
        // What the runner does for each run once the queues are quiet.
        let mut quiet = true;
        for r in ids.iter().chain(std::iter::once(&batch_run)) {
            quiet &= dep
                .clouds
                .pending_for_run(r)
                .await
                .map_err(|e| e.to_string())?
                == 0;
        }
        if quiet {
            rt.run_deferred_gc().await.map_err(|e| e.to_string())?;
            for r in ids.iter().chain(std::iter::once(&batch_run)) {
                joint_shim::runtime::gc_run(&dep.clouds.clouds, r, false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let ended = SystemTime::now();
    o.queue(dep.clouds.queue_stats());
    o.count("crash", watch.crashes.load(Ordering::Relaxed));
    for (key, n) in ledger.doubles() {
        o.doubles
            .push(format!("{unit} ({what}): {key} created {n} times"));
    }
    let mut runs = ids.clone();
    runs.push(batch_run);
    dep.clouds.detach();
    let (n, left) = left_over(&dep.clouds, &stores.views, &runs, s.retain, ended)
        .await
        .map_err(|e| format!("counting what is left: {e}"))?;
    if n > 0 {
        o.orphans += n;
        o.orphan_runs.push(format!(
            "{unit} ({what}): {n} items left {} ({})",
            if s.retain {
                "after the retention"
            } else {
                "after the runner's GC"
            },
            left.join(", ")
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Process kills

/// What the child process runs (`joint bench faults --child JSON`).
#[derive(Debug, Serialize, Deserialize)]
struct ChildSpec {
    settings: Settings,
    state_dir: PathBuf,
    run_id: String,
    journal: PathBuf,
}

/// The child: run the case on the state directory, counting creates in the journal; print the
/// output as one JSON line.
pub async fn child(spec: &str) -> ExitCode {
    let spec: ChildSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --child: {e}");
            return ExitCode::from(2);
        }
    };
    let Some((name, text, input, _)) = CASES.iter().find(|c| c.0 == spec.settings.case) else {
        eprintln!("error: --child: no case '{}'", spec.settings.case);
        return ExitCode::from(2);
    };
    let (w, input) = match (
        joint_core::compile::load(&format!("{name}.yaml"), text),
        serde_json::from_str::<Value>(input),
    ) {
        (Ok(w), Ok(i)) => (Arc::new(w), i),
        _ => {
            eprintln!("error: --child: case '{name}' does not load");
            return ExitCode::from(2);
        }
    };
    let ledger = match CommitLedger::with_journal(&spec.journal) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: journal {}: {e}", spec.journal.display());
            return ExitCode::from(2);
        }
    };
    let s = &spec.settings;
    let opts = RunOptions {
        run_id: Some(spec.run_id.clone()),
        input,
        state_dir: Some(spec.state_dir.clone()),
        chaos: s.chaos.into(),
        faas: Some(s.faas()),
        runtime: Some(s.runtime(false)),
        gc: Some(s.gc()),
        ledger: Some(ledger),
        timeout: Some(Duration::from_secs(120)),
        durability: Durability::Process,
        ..RunOptions::default()
    };
    match run_local(w, crate::base_handlers(), opts).await {
        Ok(r) => {
            println!("{}", serde_json::json!({ "output": r.output }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A run killed at random protocol points: the child runs it with `kill` set, then again on
/// the same state (up to [`MAX_KILLS`] kills, then without), and the end must be the clean one.
async fn kill_run(exe: &Path, case: &Case, mut s: Settings, kill: f64, id: &str) -> Outcome {
    let mut o = Outcome {
        runs: 1,
        retain: u64::from(s.retain),
        ..Outcome::default()
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            o.lost.push(format!("{id}: temporary directory: {e}"));
            return o;
        }
    };
    let base_seed = s.chaos.seed;
    let mut journals = Vec::new();
    let mut output = None;
    let mut failure = None;
    for attempt in 0..=MAX_KILLS {
        s.chaos.kill = if attempt < MAX_KILLS { kill } else { 0.0 };
        s.chaos.seed = base_seed.wrapping_add(u64::from(attempt));
        let journal = dir.path().join(format!("ledger-{attempt}.log"));
        journals.push(journal.clone());
        let spec = ChildSpec {
            settings: s.clone(),
            state_dir: dir.path().join("state"),
            run_id: id.to_string(),
            journal,
        };
        let spec = match serde_json::to_string(&spec) {
            Ok(t) => t,
            Err(e) => {
                failure = Some(format!("child spec: {e}"));
                break;
            }
        };
        let out = tokio::process::Command::new(exe)
            .args(["bench", "faults", "--child", &spec])
            .env("JOINT_LOG", "off")
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                failure = Some(format!("cannot start {}: {e}", exe.display()));
                break;
            }
        };
        if killed(&out.status) {
            o.count("kill", 1);
            continue;
        }
        if !out.status.success() {
            failure = Some(format!(
                "attempt {attempt}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            break;
        }
        let line = String::from_utf8_lossy(&out.stdout);
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) => output = Some(v.get("output").cloned().unwrap_or(Value::Null)),
            Err(e) => failure = Some(format!("attempt {attempt}: output '{line}': {e}")),
        }
        break;
    }
    s.chaos.seed = base_seed;
    s.chaos.kill = kill;
    let what = s.describe();
    match (output, failure) {
        (Some(out), _) => {
            o.completed += 1;
            if out != case.clean {
                o.wrong
                    .push(format!("{id} ({what}): {out} instead of {}", case.clean));
            }
        }
        (None, f) => o.lost.push(format!(
            "{id} ({what}): {}",
            f.unwrap_or_else(|| "killed every time".into())
        )),
    }
    match CommitLedger::from_journals(&journals) {
        Ok(l) => {
            for (key, n) in l.doubles() {
                o.doubles
                    .push(format!("{id} ({what}): {key} created {n} times"));
            }
        }
        Err(e) => o
            .lost
            .push(format!("{id} ({what}): reading the journals: {e}")),
    }
    // A process killed after the run ended never ran its deferred GC: what is left is the
    // retention's, so killed runs are looked at after the retention whatever their policy.
    let clouds = LocalCloudsBuilder::new()
        .state_dir(dir.path().join("state"))
        .clouds(case.workflow.clouds.iter().cloned())
        .durability(Durability::Process)
        .build();
    match clouds {
        Err(e) => o
            .lost
            .push(format!("{id} ({what}): reopening the state: {e}")),
        Ok(c) => match left_over(
            &c,
            &BTreeMap::new(),
            &[id.to_string()],
            true,
            SystemTime::now(),
        )
        .await
        {
            Ok((0, _)) => {}
            Ok((n, left)) => {
                o.orphans += n;
                o.orphan_runs.push(format!(
                    "{id} ({what}): {n} items left after the retention ({})",
                    left.join(", ")
                ));
            }
            Err(e) => o
                .lost
                .push(format!("{id} ({what}): counting what is left: {e}")),
        },
    }
    o
}

#[cfg(unix)]
fn killed(s: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    s.signal() == Some(libc_sigkill())
}

#[cfg(not(unix))]
fn killed(s: &std::process::ExitStatus) -> bool {
    // `abort` elsewhere.
    !s.success() && s.code().is_none()
}

#[cfg(unix)]
const fn libc_sigkill() -> i32 {
    9
}

// ----------------------------------------------------------------------------------------------
// The bench

fn load_cases() -> Result<(Vec<Case>, Arc<Workflow>), String> {
    let mut cases = Vec::new();
    for (name, text, input, hang) in CASES {
        let w =
            joint_core::compile::load(&format!("{name}.yaml"), text).map_err(|d| d.to_string())?;
        let input: Value =
            serde_json::from_str(input).map_err(|e| format!("input of {name}: {e}"))?;
        cases.push(Case {
            name,
            workflow: Arc::new(w),
            input,
            clean: Value::Null,
            hang_cloud: *hang,
        });
    }
    let batch = joint_core::compile::load("by_batch.yaml", BY_BATCH).map_err(|d| d.to_string())?;
    Ok((cases, Arc::new(batch)))
}

/// The fault-free outputs (in-memory SQLite, no faults, no outage).
async fn clean_outputs(cases: &mut [Case], batch: &Arc<Workflow>) -> Result<Value, String> {
    for c in cases.iter_mut() {
        let r = run_local(
            c.workflow.clone(),
            crate::base_handlers(),
            RunOptions {
                input: c.input.clone(),
                ..RunOptions::default()
            },
        )
        .await
        .map_err(|e| format!("{} without faults: {e}", c.name))?;
        c.clean = r
            .output
            .ok_or_else(|| format!("{} fails without faults: {:?}", c.name, r.error))?;
    }
    batch_output(batch).await
}

/// The batch output of a fault-free unit.
async fn batch_output(w: &Arc<Workflow>) -> Result<Value, String> {
    let dep = deploy(
        w.clone(),
        crate::base_handlers(),
        &RunOptions::default(),
        None,
    )
    .map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..BATCH).map(|k| format!("clean-{k}")).collect();
    for (k, id) in ids.iter().enumerate() {
        dep.runtime
            .start(id, Value::from(k))
            .await
            .map_err(|e| e.to_string())?;
    }
    dep.clouds.idle().await;
    let rec = dep
        .runtime
        .run_record(&ids[0])
        .await
        .map_err(|e| e.to_string())?
        .ok_or("by_batch: a contributing run has no record")?;
    let batch = rec
        .batched_into
        .ok_or("by_batch: the run handed nothing to a batch")?;
    let rec = dep
        .runtime
        .run_record(&batch)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("by_batch: the batch did not run")?;
    dep.runtime
        .resolve_output(&rec)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|f| format!("by_batch: the batch failed: {f:?}"))
}

/// Totals of one store.
#[derive(Default)]
struct Totals {
    o: Outcome,
    hangs: Vec<HangResult>,
    seconds: f64,
}

/// What a job of the bench is.
#[derive(Clone, Copy)]
enum Job {
    Run(usize),
    Batch,
    Kill(usize),
}

/// Run the bench on each store and print the table.
pub async fn faults(a: FaultArgs) -> ExitCode {
    let (mut cases, batch) = match load_cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let clean_batch = match clean_outputs(&mut cases, &batch).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find the joint binary for the process kills: {e}");
            return ExitCode::from(2);
        }
    };
    let mut clouds: Vec<String> = cases
        .iter()
        .flat_map(|c| c.workflow.clouds.iter().cloned())
        .collect();
    clouds.sort();
    clouds.dedup();
    let cases = Arc::new(cases);
    let mut results: Vec<(StoreKind, String, Totals)> = Vec::new();
    for &kind in &a.stores {
        let env = match StoreEnv::new(kind, &a, &clouds).await {
            Ok(e) => Arc::new(e),
            Err(e) => {
                eprintln!("error: {}: {e}", kind.name());
                return ExitCode::from(2);
            }
        };
        let runs = if kind == StoreKind::Sqlite {
            a.runs
        } else {
            a.cloud_runs
        };
        // Jobs: every (ncases+1)-th is a batch unit, which counts BATCH + 1 runs.
        let slots = cases.len() as u64 + 1;
        let mut jobs = Vec::new();
        let mut counted = 0u64;
        let mut i = 0u64;
        while counted < runs {
            let slot = i % slots;
            if slot == cases.len() as u64 {
                jobs.push((i, Job::Batch));
                counted += BATCH + 1;
            } else {
                jobs.push((i, Job::Run(slot as usize)));
                counted += 1;
            }
            i += 1;
        }
        if kind == StoreKind::Sqlite {
            for k in 0..a.kills {
                jobs.push((1_000_000 + k, Job::Kill((k as usize) % cases.len())));
            }
        }
        let t = run_jobs(
            kind,
            env.clone(),
            cases.clone(),
            batch.clone(),
            clean_batch.clone(),
            jobs,
            &a,
            exe.clone(),
        )
        .await;
        let line = env.line();
        for (name, tot) in t {
            results.push((kind, format!("{name}|{line}"), tot));
        }
        drop(env);
    }
    print_report(&a, &cases, &results)
}

#[allow(clippy::too_many_arguments)]
async fn run_jobs(
    kind: StoreKind,
    env: Arc<StoreEnv>,
    cases: Arc<Vec<Case>>,
    batch: Arc<Workflow>,
    clean_batch: Value,
    jobs: Vec<(u64, Job)>,
    a: &FaultArgs,
    exe: PathBuf,
) -> Vec<(&'static str, Totals)> {
    let store = kind.name();
    let total = jobs.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let seed = a.seed;
    let tag = uniq();
    for (i, job) in jobs {
        let (env, cases, batch, clean_batch, sem, exe) = (
            env.clone(),
            cases.clone(),
            batch.clone(),
            clean_batch.clone(),
            sem.clone(),
            exe.clone(),
        );
        let tag = tag.clone();
        set.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return (job, Outcome::default());
            };
            let o = match job {
                Job::Run(c) => {
                    let case = &cases[c];
                    let s = settings(seed, store, i, case.name, case.hang_cloud);
                    run_one(&env, case, &s, &format!("f{tag}-{store}-{i:06}")).await
                }
                Job::Batch => {
                    let s = settings(seed, store, i, "by_batch", None);
                    batch_unit(
                        &env,
                        &batch,
                        &clean_batch,
                        &s,
                        &format!("b{tag}-{store}-{i:06}"),
                    )
                    .await
                }
                Job::Kill(c) => {
                    let case = &cases[c];
                    let mut s = settings(seed, store, i, case.name, None);
                    // The child runs in a process of its own: no sweeper there.
                    s.lambda = None;
                    let kill = 0.02 + 0.2 * draw(seed, store, i, &["kill"]);
                    kill_run(&exe, case, s, kill, &format!("k{tag}-{i:06}")).await
                }
            };
            (job, o)
        });
    }
    let mut main = Totals::default();
    let mut kills = Totals::default();
    let mut done = 0usize;
    let mut last = Instant::now();
    while let Some(r) = set.join_next().await {
        done += 1;
        let (job, o) = match r {
            Ok(x) => x,
            Err(e) => {
                let mut o = Outcome {
                    runs: 1,
                    ..Outcome::default()
                };
                o.lost.push(format!("a run's task failed: {e}"));
                (Job::Run(0), o)
            }
        };
        let t = if matches!(job, Job::Kill(_)) {
            &mut kills
        } else {
            &mut main
        };
        if let Some(h) = o.hang {
            t.hangs.push(h);
        }
        for p in o
            .lost
            .iter()
            .chain(&o.wrong)
            .chain(&o.doubles)
            .chain(&o.orphan_runs)
        {
            eprintln!("violation ({store}, seed {seed}): {p}");
        }
        t.o.add(o);
        if last.elapsed() > Duration::from_secs(10) || done == total {
            last = Instant::now();
            eprintln!(
                "{store}: {done}/{total} jobs, {} runs, {} violations, {:.0} s",
                main.o.runs + kills.o.runs,
                main.o.problems() + kills.o.problems(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    main.seconds = secs;
    kills.seconds = secs;
    let mut out = vec![("", main)];
    if kills.o.runs > 0 {
        out.push(("process kills", kills));
    }
    out
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * q).round() as usize]
}

fn print_report(
    a: &FaultArgs,
    cases: &[Case],
    results: &[(StoreKind, String, Totals)],
) -> ExitCode {
    println!(
        "randomized fault run, seed {}: {} example workflows ({}, and by_batch in units of {BATCH} runs filling one batch); {} runs at a time",
        a.seed,
        cases.len() + 1,
        cases.iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
        a.concurrency
    );
    println!(
        "per run, drawn from the seed: GC policy retain (the deployed default) in ~60 % of the runs, when-quiet in the others; each queue fault on in half the runs at 2-20 %, late copies 0.3-1 s after the first delivery; in ~1/3 of the runs Lambda's retry schedule scaled 1 s -> 1 ms (3 deliveries, retries after 60 and 120 ms, maximum event age 60-400 ms, dropped events re-driven as the sweeper does), otherwise a queue that retries until delivered"
    );
    println!(
        "hanging outages: in half the runs of chain and demo, local-b's invoke endpoint (its stores stay up) hangs from before the start for {} ms; invoke timeout {} ms (default 10 s, scaled 1:50), 2 retries, breaker: 5 outage errors open it, cooldown {} ms (default 2 s)",
        OUTAGE.as_millis(),
        INVOKE_TIMEOUT.as_millis(),
        BREAKER_COOLDOWN.as_millis()
    );
    println!(
        "process kills: the joint binary runs the workflow as a child process with kill=2-22 % per protocol point (SIGKILL); it is run again on the same state directory and run id (up to {MAX_KILLS} kills, then without) and must end with the fault-free output"
    );
    println!(
        "double commits are counted from the stores' answers (a CommitLedger around every coordination store; a journal file per process for the kills); orphans: retain runs (and every killed run) after the stores' retention ({} days) has passed, when-quiet runs after the runner's GC",
        DEFAULT_RETENTION.as_secs() / 86_400
    );
    println!(
        "with the emulated stores only the coordination state moves there: the FaaS queues (durable, one per cloud) and the blob folders stay local"
    );
    println!();
    for (kind, label, _) in results {
        let (name, line) = label.split_once('|').unwrap_or(("", label));
        if name.is_empty() {
            println!("{}: {line}", kind.name());
        }
    }
    println!();
    print!("| store | runs | completed |");
    for (k, _) in KINDS {
        print!(" {k} |");
    }
    println!(
        " lost runs | wrong outputs | double commits | orphans after retention/GC | resumes | sweeper passes | runs retain / lambda | seconds |"
    );
    print!("|---|---:|---:|");
    for _ in KINDS {
        print!("---:|");
    }
    println!("---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut problems = 0;
    for (kind, label, t) in results {
        let (name, _) = label.split_once('|').unwrap_or(("", label));
        let o = &t.o;
        let store = if name.is_empty() {
            kind.name().to_string()
        } else {
            format!("{} ({name})", kind.name())
        };
        print!("| {store} | {} | {} |", o.runs, o.completed);
        for (k, _) in KINDS {
            print!(" {} |", o.injected.get(k).unwrap_or(&0));
        }
        println!(
            " {} | {} | {} | {} | {} | {} | {} / {} | {:.0} |",
            o.lost.len(),
            o.wrong.len(),
            o.doubles.len(),
            o.orphans,
            o.resumes,
            o.sweeps,
            o.retain,
            o.lambda,
            t.seconds
        );
        problems += o.problems();
    }
    println!();
    println!("| fault | what it does |");
    println!("|---|---|");
    for (k, what) in KINDS {
        println!("| {k} | {what} |");
    }
    println!();
    println!(
        "| store | hanging outages | with a failover | outage -> first failover p50 / p95 / max (ms) | invoke steps into the hang | their duration p50 / p95 / max (ms) | breaker opened (outages) | calls the breaker refused |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (kind, label, t) in results {
        if t.hangs.is_empty() || label.starts_with("process kills") {
            continue;
        }
        let mut fo: Vec<f64> = t.hangs.iter().filter_map(|h| h.failover_ms).collect();
        let opened = t.hangs.iter().filter(|h| h.opened > 0).count();
        let refused: u64 = t.hangs.iter().map(|h| h.refused).sum();
        let max = fo.iter().copied().fold(f64::NAN, f64::max);
        let steps: u64 = t.hangs.iter().map(|h| h.hung_steps).sum();
        let mut longest: Vec<f64> = t.hangs.iter().filter_map(|h| h.hung_step_ms).collect();
        let lmax = longest.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "| {} | {} | {} | {:.0} / {:.0} / {:.0} | {steps} | {:.0} / {:.0} / {:.0} (longest per outage) | {} | {} |",
            kind.name(),
            t.hangs.len(),
            fo.len(),
            pct(&mut fo.clone(), 0.5),
            pct(&mut fo, 0.95),
            max,
            pct(&mut longest.clone(), 0.5),
            pct(&mut longest, 0.95),
            lmax,
            opened,
            refused
        );
    }
    if problems > 0 {
        println!();
        println!("violations ({problems}):");
        for (kind, _, t) in results {
            let o = &t.o;
            for p in o
                .lost
                .iter()
                .chain(&o.wrong)
                .chain(&o.doubles)
                .chain(&o.orphan_runs)
            {
                println!("- {} (seed {}): {p}", kind.name(), a.seed);
            }
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
