//! `joint bench`: benchmarks that print tables.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use joint_core::subgraph::{InvokeMode, NextEntry, SubGraph};
use joint_core::workflow::Workflow;
use joint_shim_local::runner::{RunOptions, run_local};

use crate::harness::cpu_ms;

/// Benchmark arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: `chain`, `scale`, `paper`, `sfn`, `failover`, `faults` or `languages`.
    #[arg(default_value = "chain")]
    pub which: String,
    /// `failover`: length of the experiment in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// `failover`: a new run every this many ms.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// `failover`: what serves clouds b and c — `local`, `aws` (Lambda through an in-process
    /// `joint serve`, DynamoDB and S3 on moto) or `aliyun` (FC, OSS and Tablestore through an
    /// in-process `joint serve`); `B,C` gives each its own, e.g. `aws,aliyun`.
    #[arg(long, default_value = "local")]
    pub backend: String,
    /// Map width of the `scale` benchmark.
    #[arg(long, default_value_t = 10_000)]
    pub width: u32,
    /// Emulated network profile for `paper` (JSON; default: examples/latency/paper.json's values).
    #[arg(long)]
    pub latency: Option<std::path::PathBuf>,
    /// Price file for `paper` (default: the built-in data/prices.json).
    #[arg(long)]
    pub prices: Option<std::path::PathBuf>,
    /// `paper`: only these workflows (comma-separated: iot, mc, video, qa).
    #[arg(long)]
    pub only: Option<String>,
    /// `paper`: smaller sizes, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// Functions in the chain.
    #[arg(long, default_value_t = 100)]
    pub length: u32,
    /// Runs to average over (`faults`: runs in all; default 5, or 210 for `faults`).
    #[arg(long)]
    pub runs: Option<u32>,
    /// `faults`: seed of the fault schedules.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `faults`: coordination stores to run on — `sqlite` (default), `dynamodb` (ministack),
    /// `tablestore` (an in-process joint serve), comma-separated, or `all`.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// `faults`: runs on each emulated store (default: a tenth of --runs, at least 1).
    #[arg(long)]
    pub cloud_runs: Option<u32>,
    /// `faults`: runs in which the process is killed at random protocol points and restarted
    /// (child processes of this binary, on SQLite).
    #[arg(long, default_value_t = 10)]
    pub kills: u32,
    /// `faults`: the ministack URL for `--store dynamodb` (default: $JOINT_TEST_MINISTACK_URL,
    /// then $JOINT_MINISTACK_URL).
    #[arg(long)]
    pub dynamodb: Option<String>,
    /// `faults`: runs at once.
    #[arg(long, default_value_t = 24)]
    pub concurrency: usize,
    /// `faults`: internal — run one killed run's child process (JSON spec).
    #[arg(long, hide = true)]
    pub child: Option<String>,
    /// Checkpoint policy: eager or lazy.
    #[arg(long, default_value = "eager")]
    pub checkpoint: String,
    /// `sfn`: the workflow (default examples/parallel.yaml).
    #[arg(long)]
    pub workflow: Option<std::path::PathBuf>,
    /// `sfn`: the input (JSON; default: the example's documented input).
    #[arg(long)]
    pub input: Option<String>,
    /// `sfn`: the ministack URL (default: $JOINT_MINISTACK_URL); `failover --backend aws`: the
    /// moto server URL (default: $JOINT_MOTO_URL, then $JOINT_TEST_MOTO_URL).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// `sfn`: the Lambda binary (default: target/{release,debug}/examples/joint-lambda).
    #[arg(long)]
    pub bootstrap: Option<std::path::PathBuf>,
    /// `sfn`: how often to poll for a result, in ms (the same for both systems).
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
}

fn chain(length: u32, lazy: bool) -> Workflow {
    let mut functions = BTreeMap::new();
    for i in 0..length {
        let name = format!("f{i:03}");
        let cloud = if i % 2 == 0 { "local-a" } else { "local-b" };
        let next = (i + 1 < length).then(|| NextEntry {
            name: format!("f{:03}", i + 1),
            faas: if i % 2 == 0 { "local-b" } else { "local-a" }.into(),
            invoke_mode: InvokeMode::Sequence,
            choice: None,
            failover: vec![],
            modify_event: vec![],
            max_iterations: None,
        });
        let mut sub: SubGraph = serde_json::from_value(serde_json::json!({
            "Name": name, "FaaS": cloud, "Handler": "noop", "Start": i == 0,
            "Checkpoint": if lazy { "lazy" } else { "eager" },
        }))
        .unwrap_or_else(|_| unreachable_sub());
        sub.next = next.into_iter().collect();
        functions.insert(name, sub);
    }
    Workflow::assemble("chain".into(), "f000".into(), functions)
}

fn unreachable_sub() -> SubGraph {
    // The literal above always parses; keep a total function anyway.
    serde_json::from_str(r#"{"Name":"x"}"#).expect("static sub-graph")
}

/// Run a benchmark and print its table.
pub async fn bench(a: BenchArgs) -> ExitCode {
    match a.which.as_str() {
        "chain" => {}
        "scale" => return scale(a.width).await,
        "languages" => return crate::langbench::languages(a.runs.unwrap_or(20)).await,
        "failover" => {
            let latency = match &a.latency {
                None => serde_json::from_str(include_str!("../../../examples/latency/paper.json")),
                Some(p) => std::fs::read_to_string(p)
                    .map_err(serde_json::Error::io)
                    .and_then(|t| serde_json::from_str(&t)),
            };
            let backends = match crate::failoverbench::parse_backends(&a.backend) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            return match latency {
                Ok(latency) => {
                    crate::failoverbench::failover(crate::failoverbench::FailoverArgs {
                        seconds: a.seconds,
                        interval_ms: a.interval_ms,
                        latency,
                        backends,
                        endpoint: a.endpoint.clone(),
                    })
                    .await
                }
                Err(e) => {
                    match &a.latency {
                        Some(p) => eprintln!("error: --latency {}: {e}", p.display()),
                        None => eprintln!("error: latency profile: {e}"),
                    }
                    ExitCode::from(2)
                }
            };
        }
        "paper" => return crate::paperbench::paper(&a).await,
        "faults" => {
            if let Some(spec) = &a.child {
                return crate::faultbench::child(spec).await;
            }
            let stores = match crate::faultbench::parse_stores(&a.store) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runs = u64::from(a.runs.unwrap_or(210));
            return crate::faultbench::faults(crate::faultbench::FaultArgs {
                runs,
                cloud_runs: a
                    .cloud_runs
                    .map(u64::from)
                    .unwrap_or_else(|| (runs / 10).max(1)),
                seed: a.seed,
                stores,
                kills: u64::from(a.kills),
                dynamodb: a.dynamodb.clone(),
                concurrency: a.concurrency.max(1),
            })
            .await;
        }
        "sfn" => return crate::sfnbench::sfn(&a).await,
        other => {
            eprintln!(
                "error: unknown benchmark '{other}' (known: chain, scale, paper, sfn, failover, faults)"
            );
            return ExitCode::from(2);
        }
    }
    let lazy = match a.checkpoint.as_str() {
        "eager" => false,
        "lazy" => true,
        other => {
            eprintln!("error: --checkpoint must be eager or lazy, not '{other}'");
            return ExitCode::from(2);
        }
    };
    let runs = a.runs.unwrap_or(5).max(1);
    let w = Arc::new(chain(a.length.max(1), lazy));
    let hops = a.length.max(1) as f64;
    println!(
        "chain of {} no-op functions alternating local-a/local-b, {} checkpoints, {} runs (in-memory SQLite, no injected latency)",
        a.length, a.checkpoint, runs
    );
    println!(
        "{:>4} {:>12} {:>14} {:>14} {:>8} {:>8} {:>8} {:>8}",
        "run", "wall ms", "wall ms/hop", "cpu ms/hop", "R/hop", "W/hop", "inv/hop", "blob/hop"
    );
    let mut walls = Vec::new();
    let mut last = None;
    for i in 0..runs {
        let c0 = cpu_ms();
        let t0 = Instant::now();
        let r = match run_local(w.clone(), crate::base_handlers(), RunOptions::default()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let wall = t0.elapsed().as_secs_f64() * 1000.0;
        let cpu = cpu_ms() - c0;
        walls.push(r.makespan_ms / hops);
        last = Some(r.ops);
        println!(
            "{:>4} {:>12.1} {:>14.3} {:>14.3} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            i + 1,
            wall,
            r.makespan_ms / hops,
            cpu / hops,
            r.ops.reads() as f64 / hops,
            r.ops.writes() as f64 / hops,
            r.ops.invokes() as f64 / hops,
            (r.ops.blob_put + r.ops.blob_get) as f64 / hops
        );
    }
    walls.sort_by(|a, b| a.total_cmp(b));
    if let Some(o) = last {
        println!(
            "datastore operations per hop by type: get {:.2} · create {:.2} (incl. the run record) · add_invoked {:.2} · join {:.2} · blob put {:.2} · blob get {:.2}",
            o.coord_get as f64 / hops,
            o.coord_create as f64 / hops,
            o.coord_add_invoked as f64 / hops,
            o.coord_join as f64 / hops,
            o.blob_put as f64 / hops,
            o.blob_get as f64 / hops
        );
    }
    println!(
        "median makespan per hop: {:.3} ms (paper, Lambda→FC Sequence step: ≈64 ms runtime overhead, 3W+2R)",
        walls[walls.len() / 2]
    );
    ExitCode::SUCCESS
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A `width`-way Map with a FanIn on local clouds.
async fn scale(width: u32) -> ExitCode {
    let src = "workflow: scale\nfunctions:\n  - {name: split, cloud: local-a, handler: split, next: [{to: work, mode: map}]}\n  - {name: work, cloud: local-b, handler: square, checkpoint: lazy, next: [{to: total, mode: fan_in}]}\n  - {name: total, cloud: local-a, handler: sum}\n";
    let w = match joint_core::compile::load("scale.yaml", src) {
        Ok(w) => Arc::new(w),
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(1);
        }
    };
    let rss0 = peak_rss_mb();
    let c0 = cpu_ms();
    let t0 = Instant::now();
    let r = run_local(
        w,
        crate::base_handlers(),
        RunOptions {
            input: serde_json::json!({ "n": width }),
            ..RunOptions::default()
        },
    )
    .await;
    let wall = t0.elapsed();
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let n = f64::from(width);
    let expected = (n - 1.0) * n * (2.0 * n - 1.0) / 6.0;
    println!(
        "{width}-way Map + FanIn on local clouds (split on local-a, {width} × square on local-b, sum on local-a; in-memory SQLite)"
    );
    println!(
        "status: {} · output {} (expected {expected})",
        r.status,
        r.output.unwrap_or_default()
    );
    println!(
        "makespan {:.0} ms · wall {:.0} ms · CPU {:.0} ms · peak RSS {:.0} MB (before: {:.0} MB)",
        r.makespan_ms,
        wall.as_secs_f64() * 1000.0,
        cpu_ms() - c0,
        peak_rss_mb(),
        rss0
    );
    println!(
        "instances {} · datastore {} reads, {} writes ({} creates, {} invoked-set updates, {} joins) · {} invocations · {} blob puts, {} blob gets",
        r.instances,
        r.ops.reads(),
        r.ops.writes(),
        r.ops.coord_create,
        r.ops.coord_add_invoked,
        r.ops.coord_join,
        r.ops.invokes(),
        r.ops.blob_put,
        r.ops.blob_get
    );
    ExitCode::SUCCESS
}
