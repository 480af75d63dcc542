//! `joint resume` and `joint sweep`: re-drive runs whose events were lost (ADR 0008).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use joint_core::workflow::Workflow;
use joint_shim::Handlers;
use joint_shim::runtime::{ResumeOptions, ResumeOutcome, ResumeReport};
use joint_shim_local::runner::{RunOptions, deploy, resume_local};

use crate::{deploy as config, fail, load, open_state, print_report};

/// Where the run lives and how to reach it.
#[derive(clap::Args)]
pub struct Target {
    /// Definition the runs were started with (default: the one `joint run` noted in the state
    /// directory for the run's version).
    #[arg(long)]
    definition: Option<PathBuf>,
    /// State directory of the local clouds.
    #[arg(long, default_value = ".joint")]
    state_dir: PathBuf,
    /// Deployment config naming the backend of each cloud (clouds it omits are local).
    #[arg(long)]
    clouds: Option<PathBuf>,
    /// Seconds an invocation made by this process has before its event counts as lost (default:
    /// `JOINT_INVOKE_DEADLINE_SECS`, else 3600; the runs' records keep the deadlines they got).
    #[arg(long, value_name = "SECS")]
    deadline: Option<u64>,
}

/// `joint resume`.
#[derive(clap::Args)]
pub struct ResumeArgs {
    /// Run id.
    run_id: String,
    #[command(flatten)]
    target: Target,
    /// Re-run from this function: delete the outputs of its instances and of everything after
    /// them, then invoke its instances again.
    #[arg(long, value_name = "FUNCTION")]
    from: Option<String>,
    /// Re-drive every missing successor now instead of after its deadline.
    #[arg(long)]
    force: bool,
    /// Keep the run's working state when it finishes (no GC).
    #[arg(long)]
    keep: bool,
    /// Give up waiting for the result after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
}

/// `joint sweep`.
#[derive(clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    target: Target,
    /// Keep sweeping every this many seconds instead of once.
    #[arg(long, value_name = "SECS")]
    every: Option<u64>,
    /// Print JSON (one object per pass).
    #[arg(long)]
    json: bool,
}

impl Target {
    /// The workflow: `--definition`, or the file noted for `run`'s version; and the handlers
    /// it runs with (relative command paths resolved against that file's directory).
    async fn workflow(&self, run: Option<&str>) -> Result<(Arc<Workflow>, Handlers), String> {
        let path = match (&self.definition, run) {
            (Some(p), _) => p.clone(),
            (None, None) => return Err("pass --definition".into()),
            (None, Some(run)) => {
                let clouds = open_state(&self.state_dir, false)?;
                let version = joint_shim::runtime::run_version(&clouds.clouds, run)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some((_, hash)) = version else {
                    let record = joint_shim::runtime::find_run_record(&clouds.clouds, run, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Some(rec) = record {
                        let ok = matches!(rec.result, joint_core::envelope::OutputRecord::Ok(_));
                        return Err(format!(
                            "run '{run}' already finished ({}) and its working state was collected; nothing to resume",
                            if ok { "succeeded" } else { "failed" }
                        ));
                    }
                    return Err(format!(
                        "no run '{run}' in {} (pass --definition and --clouds if it ran elsewhere)",
                        self.state_dir.display()
                    ));
                };
                config::recall_definition(&self.state_dir, &hash)?
            }
        };
        let w = load::load_workflow(&path)?;
        Ok((Arc::new(w), load::handlers_for(&path)))
    }

    async fn options(&self, keep: bool, timeout: u64) -> Result<RunOptions, String> {
        Ok(RunOptions {
            state_dir: Some(self.state_dir.clone()),
            keep,
            remote: config::remote_clouds(self.clouds.as_deref()).await?,
            runtime: Some({
                let mut cfg = joint_shim::RuntimeConfig::from_env()?;
                if let Some(secs) = self.deadline {
                    cfg.invoke_deadline = Duration::from_secs(secs);
                }
                cfg
            }),
            timeout: Some(Duration::from_secs(timeout)),
            ..RunOptions::default()
        })
    }
}

pub async fn resume(a: ResumeArgs) -> ExitCode {
    let (workflow, handlers) = match a.target.workflow(Some(&a.run_id)).await {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let opts = match a.target.options(a.keep, a.timeout).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let what = ResumeOptions {
        force: a.force,
        from: a.from.clone(),
    };
    let (r, done) = match resume_local(workflow.clone(), handlers, &a.run_id, &what, opts).await {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if a.json {
        let v = serde_json::json!({
            "resume": r,
            "run": done.as_ref().map(|d| serde_json::json!({
                "status": d.status,
                "output": d.output,
                "error": d.error.as_ref().map(|f| f.to_string()),
                "makespan_ms": d.makespan_ms,
            })),
        });
        println!("{v}");
        return match done {
            Some(d) if d.status != "succeeded" => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        };
    }
    print_resume(&r);
    match done {
        Some(d) => print_report(&workflow.name, &d, false),
        None => ExitCode::SUCCESS,
    }
}

fn print_resume(r: &ResumeReport) {
    match &r.outcome {
        ResumeOutcome::Finished { ok } => println!(
            "run {} already finished ({}); nothing to resume",
            r.run,
            if *ok { "succeeded" } else { "failed" }
        ),
        ResumeOutcome::NotStarted => println!(
            "run {} has nothing in the stores: its start event was lost or it never started; start it again with `joint run --run-id {}` (starting is idempotent)",
            r.run, r.run
        ),
        ResumeOutcome::InProgress { wait_ms } => println!(
            "run {} is in progress: its invocations are within their deadlines for {:.0} s more; wait, or pass --force",
            r.run,
            *wait_ms as f64 / 1000.0
        ),
        ResumeOutcome::Resumed => {
            println!(
                "run {}: drove {} committed instances again",
                r.run, r.driven
            );
            if !r.deleted.is_empty() {
                println!("deleted ({}): {}", r.deleted.len(), short(&r.deleted));
            }
            if r.redriven.is_empty() {
                println!("re-invoked: nothing (no successor was missing)");
            } else {
                println!(
                    "re-invoked ({}): {}",
                    r.redriven.len(),
                    r.redriven.join(", ")
                );
            }
        }
    }
    for e in &r.errors {
        eprintln!("warning: {e}");
    }
}

fn short(keys: &[String]) -> String {
    keys.iter()
        .map(|k| k.split_once('/').map_or(k.as_str(), |x| x.1))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn sweep(a: SweepArgs) -> ExitCode {
    let (workflow, handlers) = match a.target.workflow(None).await {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let opts = match a.target.options(true, 0).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // GC as a run ends, like a deployed function; `--keep` is not a sweeper's business.
    let opts = RunOptions {
        keep: false,
        ..opts
    };
    let dep = match deploy(workflow, handlers, &opts, None) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    loop {
        let pass = dep.runtime.sweep().await;
        // Re-driven functions of local clouds run in this process: let them finish.
        dep.clouds.idle().await;
        if let Err(e) = dep.runtime.run_deferred_gc().await {
            eprintln!("warning: gc: {e}");
        }
        match pass {
            Ok(r) if a.json => println!("{}", serde_json::json!(r)),
            Ok(r) => {
                println!(
                    "sweep: {} unfinished runs · {} within their deadlines · {} resumed",
                    r.runs,
                    r.in_progress,
                    r.resumed.len()
                );
                for x in &r.resumed {
                    print_resume(x);
                }
                for e in &r.errors {
                    eprintln!("warning: {e}");
                }
            }
            Err(e) => {
                if a.every.is_none() {
                    return fail(e);
                }
                eprintln!("error: {e}");
            }
        }
        match a.every {
            None => return ExitCode::SUCCESS,
            Some(s) => tokio::time::sleep(Duration::from_secs(s.max(1))).await,
        }
    }
}
