//! The `joint` command line: argument parsing and the commands that are not modules of their own.

use crate::{aliyun, aws, bench, deploy, graph, load, progress, resume, serve, timeline};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use joint_shim::layers::{Chaos, LatencyProfile};
use joint_shim::observe::Observer;
use joint_shim_local::LocalCloudsBuilder;
use joint_shim_local::runner::{RunOptions, RunReport, run_local};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "joint",
    version,
    about = "Serverless workflows across clouds, with no central orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a definition (or paper sub-graphs) and report every problem.
    Validate {
        /// Definition file (.yaml/.json), sub-graph JSON, or a directory of sub-graph files.
        definition: PathBuf,
    },
    /// Compile a definition to the paper's per-function sub-graphs.
    Compile {
        /// Definition file.
        definition: PathBuf,
        /// Write one `{Name}.json` per function here instead of printing a JSON array.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Run a workflow on local clouds and wait for its result.
    Run(RunArgs),
    /// Show a run: its result and every committed instance.
    Status {
        /// Run id.
        run_id: String,
        /// State directory of the local clouds.
        #[arg(long, default_value = ".joint")]
        state_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-drive a run whose events were lost, or re-run it from a function (`--from`).
    Resume(resume::ResumeArgs),
    /// Resume every unfinished run whose invocations are past their deadlines (once, or
    /// `--every` N seconds); the same pass a deployed sweeper function makes.
    Sweep(resume::SweepArgs),
    /// Delete a run's working state (and with --all its record).
    Gc {
        /// Run id.
        run_id: String,
        /// State directory of the local clouds.
        #[arg(long, default_value = ".joint")]
        state_dir: PathBuf,
        /// Also delete the run record and result.
        #[arg(long)]
        all: bool,
    },
    /// Benchmarks that print tables.
    Bench(bench::BenchArgs),
    /// Serve local clouds over HTTP with provider-compatible endpoints.
    Serve(serve::ServeArgs),
    /// Alibaba Cloud administration (Tablestore table creation).
    Aliyun(aliyun::AliyunArgs),
    /// AWS administration (DynamoDB table and S3 bucket creation).
    Aws(aws::AwsArgs),
    /// Draw the workflow DAG: functions coloured by cloud, invoke modes on the edges.
    Graph {
        /// Definition file (.yaml/.json), sub-graph JSON, or a directory of sub-graph files.
        definition: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: graph::Format,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Definition file (.yaml/.json), sub-graph JSON, or a directory of sub-graph files.
    definition: PathBuf,
    /// Input: JSON text, or @FILE.
    #[arg(long, default_value = "null")]
    input: String,
    /// Run id (a run id that already finished returns its result without running anything).
    #[arg(long)]
    run_id: Option<String>,
    /// Where the local clouds keep their state.
    #[arg(long, default_value = ".joint")]
    state_dir: PathBuf,
    /// Fault injection: seed=N,crash=P,dup=P,drop=P,throttle=P,lose=P.
    #[arg(long)]
    chaos: Option<String>,
    /// Emulated latency profile (JSON file with store_ms and invoke_ms).
    #[arg(long)]
    latency: Option<PathBuf>,
    /// Keep the run's working state (no GC) for inspection with `joint status`.
    #[arg(long)]
    keep: bool,
    /// Deployment config naming the backend of each cloud (clouds it omits are local).
    #[arg(long)]
    clouds: Option<PathBuf>,
    /// Give up waiting for the result after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
    /// When the run stalls (no event in flight, no result), report it instead of resuming it;
    /// `joint resume` can re-drive it later.
    #[arg(long)]
    no_resume: bool,
    /// What the state directory's commits survive: `disk` (a power loss; the default) or
    /// `process` (a crash of the process only; faster on slow disks).
    #[arg(long, default_value = "disk")]
    durability: joint_shim_local::Durability,
    /// Draw the run as a Gantt chart (SVG) into this file.
    #[arg(long, value_name = "PATH")]
    timeline: Option<PathBuf>,
}

/// Run `joint` with the built-in example handlers (what the `joint` binary does).
pub fn main() -> ExitCode {
    crate::App::new().main()
}

/// Run `joint` with `handlers` as the Rust handlers of every command: a binary of your own that
/// calls this gets `run`, `resume`, `sweep`, `status`, `serve`, `validate`, `bench`… with your
/// functions (see docs/embedding.md). [`crate::App`] adds backends too.
pub fn main_with(handlers: joint_shim::Handlers) -> ExitCode {
    crate::App::new().handlers(handlers).main()
}

pub(crate) fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOINT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Validate { definition } => validate(&definition),
            Cmd::Compile { definition, out } => compile(&definition, out.as_deref()),
            Cmd::Run(args) => run(args).await,
            Cmd::Status {
                run_id,
                state_dir,
                json,
            } => status(&run_id, &state_dir, json).await,
            Cmd::Gc {
                run_id,
                state_dir,
                all,
            } => gc(&run_id, &state_dir, all).await,
            Cmd::Resume(args) => resume::resume(args).await,
            Cmd::Sweep(args) => resume::sweep(args).await,
            Cmd::Bench(args) => bench::bench(args).await,
            Cmd::Serve(args) => serve::run(args).await,
            Cmd::Aliyun(args) => aliyun::run(args).await,
            Cmd::Aws(args) => aws::run(args).await,
            Cmd::Graph {
                definition,
                format,
                out,
            } => graph::command(&definition, format, out.as_deref()),
        }
    })
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Functions whose `handler:` names no handler this binary has, as error lines.
fn unknown_handlers(w: &joint_core::workflow::Workflow, known: &[String]) -> Vec<String> {
    w.functions
        .values()
        .filter(|s| s.command.is_none() && s.worker.is_none())
        .filter_map(|s| {
            let name = s.handler.as_deref().unwrap_or(&s.name);
            if known.iter().any(|k| k == name) {
                return None;
            }
            let close = known
                .iter()
                .filter(|k| edit_distance(k, name) <= 2)
                .map(|k| format!(" (did you mean '{k}'?)"))
                .next()
                .unwrap_or_default();
            Some(format!(
                "error[unknown-handler]: function '{}' uses handler '{name}', which this binary does not have{close}; its handlers: {}",
                s.name,
                known.join(", ")
            ))
        })
        .collect()
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn validate(path: &std::path::Path) -> ExitCode {
    match load::load_workflow(path) {
        Ok(w) => {
            let bad = unknown_handlers(&w, &crate::base_handlers().names());
            if !bad.is_empty() {
                eprintln!("{}:", path.display());
                for b in &bad {
                    eprintln!("{b}");
                }
                return ExitCode::from(1);
            }
            println!(
                "ok: workflow '{}' — {} functions, start '{}', clouds [{}], version {}",
                w.name,
                w.functions.len(),
                w.start,
                w.clouds.join(", "),
                &w.hash[..12]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn compile(path: &std::path::Path, out: Option<&std::path::Path>) -> ExitCode {
    let w = match load::load_workflow(path) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match out {
        None => {
            println!(
                "{}",
                serde_json::to_string_pretty(&w.to_json()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(format!("cannot create {}: {e}", dir.display()));
            }
            for (name, sub) in &w.functions {
                let p = dir.join(format!("{name}.json"));
                let text = serde_json::to_string_pretty(sub).unwrap_or_default();
                if let Err(e) = std::fs::write(&p, text + "\n") {
                    return fail(format!("cannot write {}: {e}", p.display()));
                }
            }
            println!(
                "wrote {} sub-graphs to {}",
                w.functions.len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
    }
}

fn parse_input(s: &str) -> Result<Value, String> {
    let text = if let Some(f) = s.strip_prefix('@') {
        std::fs::read_to_string(f).map_err(|e| format!("--input @{f}: cannot read: {e}"))?
    } else {
        s.to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "--input is not JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

async fn run(a: RunArgs) -> ExitCode {
    let workflow = match load::load_workflow(&a.definition) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let input = match parse_input(&a.input) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let chaos: Chaos = match a.chaos.as_deref().map(str::parse).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let latency: LatencyProfile = match &a.latency {
        None => LatencyProfile::default(),
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => return fail(format!("--latency {}: {e}", p.display())),
        },
    };
    let remote = match deploy::remote_clouds(a.clouds.as_deref()).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let runtime = match joint_shim::RuntimeConfig::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    deploy::remember_definition(&a.state_dir, &workflow.hash, &a.definition);
    let show_progress = !a.json && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| Arc::new(progress::Progress::new(&workflow.name)));
    let opts = RunOptions {
        run_id: a.run_id,
        input,
        state_dir: Some(a.state_dir),
        chaos,
        latency,
        keep: a.keep,
        runtime: Some(runtime),
        remote,
        timeout: Some(std::time::Duration::from_secs(a.timeout)),
        observer: progress.clone().map(|p| p as Arc<dyn Observer>),
        no_resume: a.no_resume,
        durability: a.durability,
        ..RunOptions::default()
    };
    let recorder = a
        .timeline
        .as_ref()
        .map(|_| joint_shim::observe::Recorder::new());
    let opts = match &recorder {
        None => opts,
        Some(rec) => {
            let mut all: Vec<Arc<dyn Observer>> = vec![Arc::new(rec.clone())];
            all.extend(opts.observer.clone());
            RunOptions {
                observer: Some(Arc::new(joint_shim::observe::Fanout(all))),
                ..opts
            }
        }
    };
    let asked_id = opts.run_id.clone();
    let handlers = load::handlers_for(&a.definition);
    let result = run_local(workflow.clone(), handlers, opts).await;
    if let Some(p) = &progress {
        p.finish();
    }
    if let (Some(path), Some(rec)) = (&a.timeline, &recorder) {
        let run_id = result.as_ref().ok().map(|r| r.run_id.clone());
        if let Err(e) = timeline::write(path, &rec.events(), run_id.as_deref()) {
            return fail(e);
        }
    }
    match result {
        Ok(r) => print_report(&workflow.name, &r, a.json),
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"run_id": asked_id, "status": "error", "error": e.to_string()})
                );
            }
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn print_report(workflow: &str, r: &RunReport, json: bool) -> ExitCode {
    let code = if r.status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        let v = serde_json::json!({
            "run_id": r.run_id,
            "status": r.status,
            "output": r.output,
            "error": r.error.as_ref().map(|f| f.to_string()),
            "makespan_ms": (r.makespan_ms * 1000.0).round() / 1000.0,
            "instances": r.instances,
            "reused": r.reused,
            "resumes": r.resumes,
            "redriven": r.redriven,
            "ops": {
                "reads": r.ops.reads(),
                "writes": r.ops.writes(),
                "invokes": r.ops.invokes(),
                "blob_puts": r.ops.blob_put,
                "blob_gets": r.ops.blob_get,
                "detail": r.ops,
            },
            "queue": r.queue,
        });
        println!("{v}");
        return code;
    }
    if r.reused {
        println!(
            "run {} of '{workflow}' had already finished; nothing ran again.",
            r.run_id
        );
    }
    match (&r.output, &r.error) {
        (Some(out), _) => {
            println!("run {} of '{workflow}' succeeded", r.run_id);
            println!(
                "output: {}",
                serde_json::to_string_pretty(out).unwrap_or_default()
            );
        }
        (None, Some(f)) => {
            println!("run {} of '{workflow}' FAILED", r.run_id);
            println!("error: {f}");
        }
        (None, None) => println!("run {} of '{workflow}': no result", r.run_id),
    }
    if !r.reused {
        println!(
            "makespan: {:.1} ms · instances: {} · datastore: {} reads, {} writes · invocations: {} · blobs: {} puts, {} gets",
            r.makespan_ms,
            r.instances,
            r.ops.reads(),
            r.ops.writes(),
            r.ops.invokes(),
            r.ops.blob_put,
            r.ops.blob_get
        );
        let q = &r.queue;
        if q.retries + q.dropped + q.duplicated + q.dead + q.lost > 0 {
            println!(
                "queue: {} deliveries · {} retries · {} lost attempts redelivered · {} duplicates · {} dead letters · {} events lost",
                q.deliveries, q.retries, q.dropped, q.duplicated, q.dead, q.lost
            );
        }
        if r.resumes > 0 {
            println!(
                "resumed {} times after stalling; {} instances invoked again",
                r.resumes, r.redriven
            );
        }
    }
    code
}

/// The local clouds found in a state directory; `read_only` opens them without writing (a
/// state directory of another user, or on a read-only filesystem).
pub(crate) fn open_state(
    state_dir: &std::path::Path,
    read_only: bool,
) -> Result<joint_shim_local::LocalClouds, String> {
    let names: Vec<String> = std::fs::read_dir(state_dir)
        .map_err(|e| format!("cannot read state directory {}: {e}", state_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("coord.db").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    if names.is_empty() {
        return Err(format!(
            "no local clouds in {} (run a workflow first, or pass --state-dir)",
            state_dir.display()
        ));
    }
    LocalCloudsBuilder::new()
        .state_dir(state_dir)
        .clouds(names)
        .read_only(read_only)
        .build()
        .map_err(|e| e.to_string())
}

async fn status(run_id: &str, state_dir: &std::path::Path, json: bool) -> ExitCode {
    let clouds = match open_state(state_dir, true) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let st = match joint_shim::runtime::run_status(&clouds.clouds, run_id).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if st.record.is_none() && st.instances.is_empty() {
        eprintln!("error: no run '{run_id}' in {}", state_dir.display());
        return ExitCode::from(1);
    }
    let result = match &st.record {
        Some(rec) => Some(
            joint_shim::runtime::resolve_output(&clouds.clouds, rec)
                .await
                .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    let state = match &result {
        None => "running (or stalled)",
        Some(Ok(Ok(_))) => "succeeded",
        Some(Ok(Err(_))) => "failed",
        Some(Err(_)) => "unknown",
    };
    if json {
        let v = serde_json::json!({
            "run_id": run_id,
            "status": state,
            "output": match &result { Some(Ok(Ok(v))) => v.clone(), _ => Value::Null },
            "error": match &result { Some(Ok(Err(f))) => Value::String(f.to_string()), Some(Err(e)) => Value::String(e.clone()), _ => Value::Null },
            "finished_by": st.record.as_ref().map(|r| r.finished_by.clone()),
            "instances": st.instances,
        });
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    println!("run {run_id}: {state}");
    match &result {
        Some(Ok(Ok(v))) => println!("output: {v}"),
        Some(Ok(Err(f))) => println!("error: {f}"),
        Some(Err(e)) => println!("error reading the result: {e}"),
        None => {}
    }
    if let Some(rec) = &st.record {
        println!("finished by: {}", rec.finished_by);
    }
    let overdue: Vec<&String> = st.instances.iter().flat_map(|i| &i.overdue).collect();
    if !overdue.is_empty() && st.record.is_none() {
        println!(
            "lost events: {} invoked but without output after their deadline ({}); `joint resume {run_id}` re-drives them",
            overdue.len(),
            overdue
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if st.instances.is_empty() {
        println!("working state: collected (GC ran)");
    } else {
        println!("instances ({}):", st.instances.len());
        for i in &st.instances {
            let name = i
                .instance
                .split_once('/')
                .map(|x| x.1)
                .unwrap_or(&i.instance);
            println!(
                "  {:<40} {:<10} {:<7} invoked: {}",
                name,
                i.cloud,
                i.status,
                if i.invoked.is_empty() {
                    "-".to_string()
                } else {
                    i.invoked.join(", ")
                }
            );
        }
    }
    ExitCode::SUCCESS
}

async fn gc(run_id: &str, state_dir: &std::path::Path, all: bool) -> ExitCode {
    let clouds = match open_state(state_dir, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match joint_shim::runtime::gc_run(&clouds.clouds, run_id, all).await {
        Ok(n) => {
            println!("deleted {n} items and blobs of run {run_id}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
