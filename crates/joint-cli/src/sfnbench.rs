//! `joint bench sfn`: the managed-orchestrator baseline for real — the workflow as an Amazon
//! States Language state machine on ministack's Step Functions, whose Task states invoke plain
//! Lambdas (the user handler only), timed side by side with joint's Lambdas driving each other on
//! the same ministack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cost::{self, Prices, Usage};
use crate::sfn::{Emulator, deploy_joint, zip_bootstrap};
use joint_shim_local::runner::{RunOptions, run_local};
use serde_json::{Value, json};

use crate::bench::BenchArgs;

/// ministack 1.5.33's Step Functions sleeps this long in every execution before its first state.
const MINISTACK_START_MS: f64 = 150.0;

const DEFAULT_PRICES: &str = include_str!("../../../data/prices.json");

/// The documented input of the examples (their header comments).
fn default_input(file: &str) -> Option<Value> {
    Some(match file {
        "parallel.yaml" | "chain.yaml" => json!(3),
        "map.yaml" => json!({"n": 4}),
        "choice.yaml" => json!(50),
        "demo.yaml" => json!({"n": 8}),
        "cycle.yaml" => json!({"i": 0}),
        _ => return None,
    })
}

fn bootstrap_path(a: &BenchArgs) -> Option<PathBuf> {
    if let Some(p) = &a.bootstrap {
        return Some(p.clone());
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("examples").join("joint-lambda"))
        .find(|p| p.exists())
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[(((v.len() - 1) as f64) * q).round() as usize]
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Run the benchmark.
pub async fn sfn(a: &BenchArgs) -> ExitCode {
    let wf = a
        .workflow
        .clone()
        .unwrap_or_else(|| PathBuf::from("examples/parallel.yaml"));
    let file = wf
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let src = match std::fs::read_to_string(&wf) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", wf.display())),
    };
    let input: Value = match &a.input {
        Some(t) => match serde_json::from_str(t) {
            Ok(v) => v,
            Err(e) => return fail(format!("--input: {e}")),
        },
        None => match default_input(&file) {
            Some(v) => v,
            None => return fail(format!("--input is needed for {file}")),
        },
    };
    let Some(endpoint) = a
        .endpoint
        .clone()
        .or_else(|| std::env::var("JOINT_MINISTACK_URL").ok())
        .or_else(|| std::env::var("JOINT_TEST_MINISTACK_URL").ok())
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "error: set JOINT_MINISTACK_URL or --endpoint (bash scripts/services/ministack.sh start DIR prints it)"
        );
        return ExitCode::from(2);
    };
    let Some(boot) = bootstrap_path(a) else {
        eprintln!(
            "error: no target/{{release,debug}}/examples/joint-lambda: cargo build --workspace --all-targets (or --bootstrap PATH)"
        );
        return ExitCode::from(2);
    };
    let exe = match std::fs::read(&boot) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", boot.display())),
    };
    let prices = match Prices::from_json(DEFAULT_PRICES) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let w = match joint_core::compile::load(&wf.to_string_lossy(), &src) {
        Ok(w) => w,
        Err(d) => return fail(d),
    };
    let runs = a.runs.unwrap_or(5).max(1) as usize;
    let poll = Duration::from_millis(a.poll_ms.max(1));

    // joint's datastore operations per run: the protocol's count does not depend on the
    // backend, so count it on local clouds with the same definition and input.
    let local = match run_local(
        Arc::new(w.clone()),
        crate::base_handlers(),
        RunOptions {
            input: input.clone(),
            ..RunOptions::default()
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fail(format!("local run: {e}")),
    };

    let zip = zip_bootstrap(&exe);
    let em = Emulator::new(&endpoint).await;
    let id = format!(
        "b{}",
        uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
    );
    println!(
        "Step Functions on ministack vs joint on ministack's Lambdas: {} ({file}), input {input}, {runs} runs each after one warm-up, polling every {} ms",
        w.name,
        poll.as_millis()
    );
    println!("ministack {endpoint}; bootstrap {}", boot.display());
    let arn = match em
        .deploy_state_machine(&w, &format!("{id}-plain-"), &format!("{id}-sm"), &zip)
        .await
    {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let joint = match deploy_joint(
        &em,
        &wf.to_string_lossy(),
        &src,
        &format!("{id}-j"),
        &zip,
        crate::base_handlers(),
    )
    .await
    {
        Ok(j) => j,
        Err(e) => return fail(e),
    };

    let (mut sfn_ms, mut joint_ms) = (Vec::new(), Vec::new());
    let (mut sfn_out, mut joint_out) = (Value::Null, Value::Null);
    let (mut transitions, mut events) = (0u64, 0u64);
    for i in 0..=runs {
        // Interleaved, so both see the same emulator conditions; run 0 is the warm-up.
        let s = match em.run_execution(&arn, &input, poll).await {
            Ok(s) => s,
            Err(e) => return fail(format!("Step Functions: {e}")),
        };
        let (o, ms) = match joint.run(&format!("{id}-r{i}"), input.clone(), poll).await {
            Ok(r) => r,
            Err(e) => return fail(format!("joint: {e}")),
        };
        if i > 0 {
            sfn_ms.push(s.makespan_ms);
            joint_ms.push(ms);
        }
        println!(
            "  run {i}{}: Step Functions {:>7.0} ms · joint {:>7.0} ms",
            if i == 0 { " (warm-up)" } else { "" },
            s.makespan_ms,
            ms
        );
        transitions = s.transitions;
        events = s.events;
        sfn_out = s.output;
        joint_out = o;
    }
    let equal = sfn_out == joint_out;

    // Cost per 10^6 runs. Both invoke the same user functions; function GB-s are not measured
    // (the emulator reports no billed duration) and left out for both.
    let tasks = w.functions.len() as u64;
    let sfn_invocations = local.instances; // one Task per function instance
    let mut su = Usage {
        state_transitions: transitions,
        ..Usage::default()
    };
    su.requests.insert("aws".into(), sfn_invocations);
    let mut ju = Usage {
        datastore_writes: local.ops.writes(),
        datastore_reads: local.ops.reads(),
        object_requests: local.ops.blob_put + local.ops.blob_get,
        ..Usage::default()
    };
    ju.requests.insert("aws".into(), local.ops.invokes());
    let sc = cost::per_million(&su, &prices);
    let jc = cost::per_million(&ju, &prices);

    println!();
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>22} {:>12} {:>14}",
        "system",
        "p50 ms",
        "p95 ms",
        "invocations",
        "transitions / R / W",
        "S3 requests",
        "$ per 10^6"
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>12} {:>22} {:>12} {:>14.2}",
        "Step Functions (ministack)",
        pct(&sfn_ms, 0.5),
        pct(&sfn_ms, 0.95),
        sfn_invocations,
        format!("{transitions} / 0 / 0"),
        0,
        sc.total()
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>12} {:>22} {:>12} {:>14.2}",
        "joint (ministack Lambdas)",
        pct(&joint_ms, 0.5),
        pct(&joint_ms, 0.95),
        local.ops.invokes(),
        format!("0 / {} / {}", local.ops.reads(), local.ops.writes()),
        local.ops.blob_put + local.ops.blob_get,
        jc.total()
    );
    println!(
        "cost by component ($ per 10^6 runs): Step Functions = transitions {:.2} + requests {:.2}; joint = writes {:.2} + reads {:.2} + S3 {:.2} + requests {:.2} (function GB-s excluded for both)",
        sc.state_transitions,
        sc.requests,
        jc.datastore_writes,
        jc.datastore_reads,
        jc.object_requests,
        jc.requests
    );
    println!(
        "speed-up (Step Functions p50 / joint p50): {:.2}× · {} functions, {} instances per run · history events per execution: {events}",
        pct(&sfn_ms, 0.5) / pct(&joint_ms, 0.5).max(1e-9),
        tasks,
        local.instances
    );
    println!(
        "ministack sleeps {MINISTACK_START_MS:.0} ms before it runs an execution (services/stepfunctions.py, _run_execution); Step Functions p50 without it: {:.0} ms ({:.2}× joint's)",
        pct(&sfn_ms, 0.5) - MINISTACK_START_MS,
        (pct(&sfn_ms, 0.5) - MINISTACK_START_MS) / pct(&joint_ms, 0.5).max(1e-9)
    );
    println!("output: Step Functions {sfn_out} · joint {joint_out} · equal: {equal}");
    println!(
        "joint's operation counts are the protocol's (counted on local clouds with the same definition and input); the state transitions come from GetExecutionHistory"
    );
    let tables: Vec<&str> = joint.tables.iter().map(String::as_str).collect();
    println!(
        "deployed: {id}-plain-* and {id}-sm (Step Functions), {id}-j-* (joint; tables {})",
        tables.join(", ")
    );
    if equal {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the outputs differ");
        ExitCode::from(1)
    }
}
