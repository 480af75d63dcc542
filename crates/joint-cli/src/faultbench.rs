//! `joint bench faults`: the randomized fault run. Every example workflow runs under many random
//! fault schedules (crashes at protocol points, duplicate deliveries, lost attempts, throttling,
//! events lost for good) on local clouds with on-disk state; each run is checked against the
//! fault-free output, every instance must have exactly one winning commit, and after GC nothing
//! of the run may be left in any store. Violations make the command fail.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joint_core::workflow::Workflow;
use joint_shim::layers::Chaos;
use joint_shim::observe::{ObsEvent, Observer};
use joint_shim_local::runner::{RunOptions, run_local};
use serde_json::Value;

/// The example workflows and the input each runs with.
const CASES: &[(&str, &str, &str)] = &[
    ("chain", include_str!("../../../examples/chain.yaml"), "3"),
    (
        "parallel",
        include_str!("../../../examples/parallel.yaml"),
        "3",
    ),
    (
        "choice",
        include_str!("../../../examples/choice.yaml"),
        "50",
    ),
    (
        "cycle",
        include_str!("../../../examples/cycle.yaml"),
        r#"{"i": 0}"#,
    ),
    (
        "map",
        include_str!("../../../examples/map.yaml"),
        r#"{"n": 4}"#,
    ),
    (
        "demo",
        include_str!("../../../examples/demo.yaml"),
        r#"{"n": 8}"#,
    ),
    (
        "by_redundant",
        include_str!("../../../examples/by_redundant.yaml"),
        "1",
    ),
];

/// Fault kinds, in table order, with what each does.
const KINDS: &[(&str, &str)] = &[
    (
        "crash",
        "execution stopped before/after a protocol action; the platform redelivers",
    ),
    ("dup", "event delivered a second time"),
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
];

/// Winning commits per instance and injected crashes, for one run.
#[derive(Default)]
struct Watch {
    wins: Mutex<BTreeMap<String, u32>>,
    crashes: Mutex<u64>,
}

impl Observer for Watch {
    fn event(&self, e: &ObsEvent) {
        match e {
            ObsEvent::Committed {
                instance,
                won: true,
                ..
            } => {
                *self
                    .wins
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(instance.clone())
                    .or_default() += 1;
            }
            ObsEvent::Crash { .. } => {
                *self.crashes.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            }
            _ => {}
        }
    }
}

/// A random fault schedule: each kind is on with probability one half, at 2–20 %.
fn schedule(seed: u64, run: u64) -> Chaos {
    let pick = Chaos {
        seed,
        ..Chaos::default()
    };
    let r = run.to_string();
    let p = |kind: &str| {
        if pick.draw(&["on", kind, &r]) < 0.5 {
            0.0
        } else {
            0.02 + 0.18 * pick.draw(&["p", kind, &r])
        }
    };
    Chaos {
        seed: seed ^ run.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        crash: p("crash"),
        dup: p("dup"),
        concurrent: p("concurrent"),
        late: p("late"),
        drop: p("drop"),
        throttle: p("throttle"),
        lose: p("lose"),
    }
}

#[derive(Default)]
struct Totals {
    runs: u64,
    completed: u64,
    lost_runs: Vec<String>,
    wrong: Vec<String>,
    double_commits: Vec<String>,
    orphans: u64,
    injected: BTreeMap<&'static str, u64>,
    resumes: u64,
    redriven: u64,
}

async fn one(
    w: &Arc<Workflow>,
    input: &Value,
    chaos: Chaos,
    run_id: &str,
) -> Result<
    (
        Option<Value>,
        Arc<Watch>,
        joint_shim_local::runner::RunReport,
        u64,
    ),
    String,
> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let watch = Arc::new(Watch::default());
    let opts = RunOptions {
        run_id: Some(run_id.to_string()),
        input: input.clone(),
        state_dir: Some(dir.path().to_path_buf()),
        chaos,
        observer: Some(watch.clone() as Arc<dyn Observer>),
        timeout: Some(Duration::from_secs(120)),
        ..RunOptions::default()
    };
    let report = run_local(w.clone(), crate::base_handlers(), opts)
        .await
        .map_err(|e| e.to_string())?;
    // After GC nothing of the run is left: deleting its prefix again finds nothing.
    let clouds = joint_shim_local::LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(w.clouds.iter().cloned())
        .build()
        .map_err(|e| e.to_string())?;
    let orphans = joint_shim::runtime::gc_run(&clouds.clouds, run_id, false)
        .await
        .map_err(|e| e.to_string())?;
    Ok((report.output.clone(), watch, report, orphans))
}

/// Run `runs` runs (cycling through the examples) with fault schedules drawn from `seed`.
pub async fn faults(runs: u64, seed: u64) -> ExitCode {
    let mut cases = Vec::new();
    for (name, text, input) in CASES {
        let w = match joint_core::compile::load(&format!("{name}.yaml"), text) {
            Ok(w) => Arc::new(w),
            Err(d) => {
                eprintln!("{d}");
                return ExitCode::from(2);
            }
        };
        let input: Value = match serde_json::from_str(input) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: input of {name}: {e}");
                return ExitCode::from(2);
            }
        };
        let clean = match one(&w, &input, Chaos::default(), "clean").await {
            Ok((Some(out), ..)) => out,
            Ok((None, _, r, _)) => {
                eprintln!("error: {name} fails without faults: {:?}", r.error);
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {name} without faults: {e}");
                return ExitCode::from(2);
            }
        };
        cases.push((*name, w, input, clean));
    }
    let mut t = Totals::default();
    for i in 0..runs {
        let (name, w, input, clean) = &cases[(i as usize) % cases.len()];
        let chaos = schedule(seed, i);
        let id = format!("faults-{i:05}");
        t.runs += 1;
        match one(w, input, chaos, &id).await {
            Err(e) => t.lost_runs.push(format!("{id} ({name}, {chaos:?}): {e}")),
            Ok((out, watch, report, orphans)) => {
                t.completed += 1;
                if out.as_ref() != Some(clean) {
                    t.wrong
                        .push(format!("{id} ({name}): {out:?} instead of {clean}"));
                }
                for (instance, n) in watch.wins.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if *n > 1 {
                        t.double_commits
                            .push(format!("{instance} ({n} winning commits)"));
                    }
                }
                t.orphans += orphans;
                let q = report.queue;
                let crashes = *watch.crashes.lock().unwrap_or_else(|p| p.into_inner());
                for (kind, n) in [
                    ("crash", crashes),
                    ("dup", q.duplicated),
                    ("drop", q.dropped),
                    ("throttle", q.throttled),
                    ("lose", q.lost),
                ] {
                    *t.injected.entry(kind).or_default() += n;
                }
                t.resumes += u64::from(report.resumes);
                t.redriven += report.redriven;
            }
        }
    }
    println!(
        "randomized fault run: {runs} runs over {} example workflows ({}), seed {seed}; each fault kind on in half the runs at 2-20 %",
        cases.len(),
        cases.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
    );
    println!();
    println!("| fault | injected | what it does |");
    println!("|---|---:|---|");
    for (kind, what) in KINDS {
        println!(
            "| {kind} | {} | {what} |",
            t.injected.get(kind).unwrap_or(&0)
        );
    }
    println!();
    println!(
        "| runs | completed | lost runs | wrong outputs | double commits | orphan items after GC | resumes (instances re-driven) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} ({}) |",
        t.runs,
        t.completed,
        t.lost_runs.len(),
        t.wrong.len(),
        t.double_commits.len(),
        t.orphans,
        t.resumes,
        t.redriven
    );
    let problems: Vec<&String> = t
        .lost_runs
        .iter()
        .chain(&t.wrong)
        .chain(&t.double_commits)
        .collect();
    for p in &problems {
        eprintln!("violation: {p}");
    }
    if problems.is_empty() && t.orphans == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
