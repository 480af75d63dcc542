//! `joint bench languages`: the 7-step Python pipeline of examples/workers, as `command:`
//! functions (a process per call) and as one `worker:` process serving every call, on local
//! clouds. Prints per-run makespans; a benchmark, not a test.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use joint_shim_local::Durability;
use joint_shim_local::runner::{RunOptions, run_local};

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run both pipelines `runs` times each (after one warm-up run) and print the table.
pub async fn languages(runs: u32) -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workers");
    let input: serde_json::Value =
        match std::fs::read_to_string(dir.join("inputs").join("order.json"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: examples/workers/inputs/order.json: {e}");
                return ExitCode::from(2);
            }
        };
    println!(
        "7-step Python pipeline (examples/workers), {runs} runs each after one warm-up run, local clouds, release/debug as built"
    );
    println!();
    println!("| functions | durability | first run ms | p50 ms | p95 ms | mean ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for (label, file) in [
        ("command: (a process per call)", "pipeline-commands.yaml"),
        ("worker: (one process)", "pipeline.yaml"),
    ] {
        let path = dir.join(file);
        let workflow = match crate::load::load_workflow(&path) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        for durability in [Durability::Disk, Durability::Process] {
            let state = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: temporary directory: {e}");
                    return ExitCode::from(2);
                }
            };
            // One handler set for every run: its worker process outlives each run.
            let handlers = crate::load::handlers_for(&path);
            let mut times = Vec::new();
            let mut first = f64::NAN;
            for i in 0..=runs {
                let opts = RunOptions {
                    input: input.clone(),
                    state_dir: Some(state.path().to_path_buf()),
                    durability,
                    timeout: Some(Duration::from_secs(120)),
                    ..RunOptions::default()
                };
                match run_local(workflow.clone(), handlers.clone(), opts).await {
                    Ok(r) if r.status == "succeeded" => {
                        if i == 0 {
                            first = r.makespan_ms;
                        } else {
                            times.push(r.makespan_ms);
                        }
                    }
                    Ok(r) => {
                        eprintln!("error: {file} failed: {:?}", r.error);
                        return ExitCode::from(1);
                    }
                    Err(e) => {
                        eprintln!("error: {file}: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            times.sort_by(f64::total_cmp);
            let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
            println!(
                "| {label} | {durability:?} | {first:.1} | {:.1} | {:.1} | {mean:.1} |",
                pct(&times, 0.5),
                pct(&times, 0.95)
            );
        }
    }
    ExitCode::SUCCESS
}
