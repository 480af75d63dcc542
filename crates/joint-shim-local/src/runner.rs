//! Run a workflow to completion on local clouds: what `joint run` does, as a library call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use joint_core::envelope::Failure;
use joint_core::workflow::Workflow;
use joint_shim::layers::{Chaos, LatencyProfile, OpSnapshot};
use joint_shim::observe::{Fanout, ObsEvent, Observer};
use joint_shim::runtime::{ResumeOptions, ResumeOutcome, ResumeReport};
use joint_shim::{Deliver, Error, ErrorKind, GcPolicy, Handlers, Result, Runtime, RuntimeConfig};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::{DeadLetter, LocalClouds, LocalCloudsBuilder, LocalFaasConfig, QueueStats};

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Run id; a fresh UUID when `None`. A run id that already finished returns its result.
    pub run_id: Option<String>,
    /// Input of the start function.
    pub input: Value,
    /// Keep state here (else in memory and a temporary blob folder).
    pub state_dir: Option<PathBuf>,
    /// Fault injection.
    pub chaos: Chaos,
    /// Emulated latency.
    pub latency: LatencyProfile,
    /// FaaS queue settings (deliveries are raised automatically under chaos).
    pub faas: Option<LocalFaasConfig>,
    /// Runtime settings (GC and chaos are set by the runner).
    pub runtime: Option<RuntimeConfig>,
    /// Extra observer (progress bars, timelines).
    pub observer: Option<Arc<dyn Observer>>,
    /// Keep the run's working state after it ends (no GC).
    pub keep: bool,
    /// What happens to the run's working state when it ends; by default the runner collects it
    /// once its queues are quiet ([`GcPolicy::WhenQuiet`]), or leaves it to the stores'
    /// retention with `keep` or remote clouds. Tests set [`GcPolicy::Retain`] to run what
    /// deployed functions do.
    pub gc: Option<GcPolicy>,
    /// Count the local coordination stores' creates in this ledger.
    pub ledger: Option<joint_shim::layers::CommitLedger>,
    /// What the state directory's commits survive (default: a power loss).
    pub durability: crate::Durability,
    /// Give up waiting after this long (default 10 minutes).
    pub timeout: Option<Duration>,
    /// Clouds served by other backends (AWS, Aliyun, `joint serve`); every other cloud of the
    /// workflow is local.
    pub remote: Vec<joint_shim::Cloud>,
    /// Report a stall instead of re-driving lost events. By default, when no event is in flight
    /// and the run has no result, the runner does what the sweeper does in the cloud: it resumes
    /// the run (`joint resume --force`), up to [`MAX_RESUMES`] times.
    pub no_resume: bool,
    /// Keep these clouds' coordination state in the given stores instead of SQLite
    /// ([`LocalCloudsBuilder::coord_store`]); their FaaS stays local, so the runner still sees
    /// every queue.
    pub coord_stores: BTreeMap<String, Arc<dyn joint_shim::CoordStore>>,
    /// Called once with the deployment before the run starts (benchmarks reach the clouds'
    /// outage switches and the runtime's breakers through it).
    pub on_deploy: Option<OnDeploy>,
    /// Use `faas.max_deliveries` as given even under chaos (by default crashes, drops and
    /// throttling raise it to 100): a platform's retry schedule, e.g. Lambda's three deliveries.
    pub exact_deliveries: bool,
}

/// A hook given the deployment before the run starts ([`RunOptions::on_deploy`]).
pub type OnDeploy = Arc<dyn Fn(&LocalDeployment) + Send + Sync>;

/// Resumes the local runner makes for one run before it reports a stall.
pub const MAX_RESUMES: u32 = 100;

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// The output, when it succeeded.
    pub output: Option<Value>,
    /// The failure, when it failed.
    pub error: Option<Failure>,
    /// Start to run record, in milliseconds.
    pub makespan_ms: f64,
    /// Instances that committed in this execution of the run.
    pub instances: u64,
    /// Datastore and invocation operations.
    pub ops: OpSnapshot,
    /// Queue statistics.
    pub queue: QueueStatsReport,
    /// True when the run id had already finished and nothing ran.
    pub reused: bool,
    /// Times the run stalled and was resumed.
    pub resumes: u32,
    /// Instances invoked again by those resumes.
    pub redriven: u64,
}

/// Queue statistics, serializable.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueueStatsReport {
    /// Events accepted.
    pub accepted: u64,
    /// Executions.
    pub deliveries: u64,
    /// Redeliveries after failures.
    pub retries: u64,
    /// Lost attempts (redelivered).
    pub dropped: u64,
    /// Duplicate deliveries.
    pub duplicated: u64,
    /// Of those, copies racing the first delivery.
    pub concurrent: u64,
    /// Of those, copies arriving `late_delay` after the first.
    pub late: u64,
    /// Dead letters.
    pub dead: u64,
    /// Events lost for good (recovered by resumes).
    pub lost: u64,
    /// Invocations refused with injected throttling (retried).
    pub throttled: u64,
    /// Events taken over from a process that died (the durable queue).
    pub recovered: u64,
}

impl From<QueueStats> for QueueStatsReport {
    fn from(q: QueueStats) -> Self {
        QueueStatsReport {
            accepted: q.accepted,
            deliveries: q.deliveries,
            retries: q.retries,
            dropped: q.dropped,
            duplicated: q.duplicated,
            concurrent: q.concurrent,
            late: q.late,
            dead: q.dead,
            lost: q.lost,
            throttled: q.throttled,
            recovered: q.recovered,
        }
    }
}

#[derive(Default)]
struct Watch {
    finished: Notify,
    done: Mutex<bool>,
    committed: Mutex<BTreeSet<String>>,
}

struct WatchObserver(Arc<Watch>, String);

impl Observer for WatchObserver {
    fn event(&self, e: &ObsEvent) {
        match e {
            ObsEvent::InstanceEnd {
                run,
                instance,
                error: None,
                ..
            } if *run == self.1 => {
                self.0
                    .committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(instance.clone());
            }
            ObsEvent::RunFinished { run, .. } if *run == self.1 => {
                *self.0.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
                self.0.finished.notify_waiters();
            }
            _ => {}
        }
    }
}

/// Local clouds and a runtime wired together for one workflow.
pub struct LocalDeployment {
    /// The clouds.
    pub clouds: LocalClouds,
    /// The runtime.
    pub runtime: Runtime,
}

/// Build local clouds for every cloud of `workflow` and a runtime attached to them.
pub fn deploy(
    workflow: Arc<Workflow>,
    handlers: Handlers,
    opts: &RunOptions,
    observer: Option<Arc<dyn Observer>>,
) -> Result<LocalDeployment> {
    let mut faas = opts.faas.clone().unwrap_or_default();
    if !opts.exact_deliveries
        && (opts.chaos.crash > 0.0 || opts.chaos.drop > 0.0 || opts.chaos.throttle > 0.0)
    {
        faas.max_deliveries = faas.max_deliveries.max(100);
    }
    let remote: BTreeSet<&str> = opts.remote.iter().map(|c| c.name.as_str()).collect();
    let mut b = LocalCloudsBuilder::new()
        .clouds(
            workflow
                .clouds
                .iter()
                .filter(|c| !remote.contains(c.as_str()))
                .cloned(),
        )
        .faas_config(faas)
        .latency(opts.latency.clone())
        .chaos(opts.chaos);
    if let Some(d) = &opts.state_dir {
        b = b.state_dir(d.clone());
    }
    if let Some(l) = &opts.ledger {
        b = b.ledger(l.clone());
    }
    b = b.durability(opts.durability);
    for (cloud, store) in &opts.coord_stores {
        b = b.coord_store(cloud, store.clone());
    }
    let clouds = b.build()?;
    let mut cfg = opts.runtime.clone().unwrap_or_default();
    cfg.chaos = opts.chaos;
    cfg.latency = opts.latency.clone();
    // The runner sees every local queue, so it may collect a run once they are quiet; with
    // remote clouds it cannot see their queues, and the stores' retention collects instead.
    cfg.gc = gc_policy(opts);
    if opts.chaos.throttle > 0.0 {
        cfg.invoke.retry.max_retries = cfg.invoke.retry.max_retries.max(20);
        cfg.invoke.breaker.failure_threshold = u32::MAX;
    }
    let mut all = clouds.clouds.clone();
    for c in &opts.remote {
        all.insert(c.clone());
    }
    let runtime = Runtime::new(workflow, all, handlers, cfg, observer)?;
    clouds.attach(Arc::new(runtime.clone()) as Arc<dyn Deliver>);
    Ok(LocalDeployment { clouds, runtime })
}

/// The GC policy of a run: as given; else the runner, which sees every local queue, collects a
/// run once they are quiet, and with remote clouds (whose queues it cannot see) or `keep` the
/// stores' retention collects instead.
fn gc_policy(opts: &RunOptions) -> GcPolicy {
    match opts.gc {
        Some(g) => g,
        None if opts.keep || !opts.remote.is_empty() => GcPolicy::Retain,
        None => GcPolicy::WhenQuiet,
    }
}

/// Run `workflow` once on local clouds and wait for its result.
pub async fn run_local(
    workflow: Arc<Workflow>,
    handlers: Handlers,
    opts: RunOptions,
) -> Result<RunReport> {
    let run_id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (dep, watch) = prepare(workflow, handlers, &opts, &run_id)?;
    let r = run_prepared(&dep, &watch, &opts, run_id).await;
    // Let go of the runtime: the deployment can be freed (ADR 0005's queues hold the rest).
    dep.clouds.detach();
    r
}

async fn run_prepared(
    dep: &LocalDeployment,
    watch: &Watch,
    opts: &RunOptions,
    run_id: String,
) -> Result<RunReport> {
    let rt = &dep.runtime;
    // A run id names one run: the same workflow version and input get the existing result,
    // anything else is refused before anything runs.
    rt.claim_run_id(&run_id, &opts.input).await?;
    if let Some(rec) = rt.run_record(&run_id).await? {
        if rec.workflow != rt.workflow().name {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "runner",
                "run",
                &run_id,
                format!(
                    "run id '{run_id}' is already taken by a run of workflow '{}'; choose another run id",
                    rec.workflow
                ),
            ));
        }
        let out = rt.resolve_output(&rec).await?;
        return Ok(report(
            run_id,
            out,
            0.0,
            0,
            OpSnapshot::default(),
            QueueStats::default(),
            true,
        ));
    }
    let before = dep.clouds.counts.snapshot();
    let t0 = Instant::now();
    rt.send_start(&run_id, opts.input.clone()).await?;
    wait(dep, watch, opts, run_id, t0, before).await
}

/// Resume run `run_id` from the state of the local clouds (and any remote ones) — what
/// `joint resume` does — and, when something was re-driven, wait for the run's result.
pub async fn resume_local(
    workflow: Arc<Workflow>,
    handlers: Handlers,
    run_id: &str,
    resume: &ResumeOptions,
    opts: RunOptions,
) -> Result<(ResumeReport, Option<RunReport>)> {
    let (dep, watch) = prepare(workflow, handlers, &opts, run_id)?;
    let r = resume_prepared(&dep, &watch, &opts, run_id, resume).await;
    dep.clouds.detach();
    r
}

async fn resume_prepared(
    dep: &LocalDeployment,
    watch: &Watch,
    opts: &RunOptions,
    run_id: &str,
    resume: &ResumeOptions,
) -> Result<(ResumeReport, Option<RunReport>)> {
    let before = dep.clouds.counts.snapshot();
    let t0 = Instant::now();
    let r = dep.runtime.resume(run_id, resume).await?;
    if r.outcome != ResumeOutcome::Resumed {
        return Ok((r, None));
    }
    let done = wait(dep, watch, opts, run_id.to_string(), t0, before).await?;
    Ok((r, Some(done)))
}

fn prepare(
    workflow: Arc<Workflow>,
    handlers: Handlers,
    opts: &RunOptions,
    run_id: &str,
) -> Result<(LocalDeployment, Arc<Watch>)> {
    if !joint_core::naming::valid_id(run_id) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "runner",
            "run",
            run_id,
            "a run id must be 1-128 characters of A-Z a-z 0-9 - _ . (not starting with '.')",
        ));
    }
    let watch = Arc::new(Watch::default());
    let mut observers: Vec<Arc<dyn Observer>> =
        vec![Arc::new(WatchObserver(watch.clone(), run_id.to_string()))];
    if let Some(o) = &opts.observer {
        observers.push(o.clone());
    }
    let dep = deploy(
        workflow,
        handlers,
        opts,
        Some(Arc::new(Fanout(observers)) as Arc<dyn Observer>),
    )?;
    if let Some(f) = &opts.on_deploy {
        f(&dep);
    }
    Ok((dep, watch))
}

/// Wait until run `run_id` has its record, resuming it when it stalls; then report.
async fn wait(
    dep: &LocalDeployment,
    watch: &Watch,
    opts: &RunOptions,
    run_id: String,
    t0: Instant,
    before: OpSnapshot,
) -> Result<RunReport> {
    let rt = &dep.runtime;
    let limit = opts.timeout.unwrap_or(Duration::from_secs(600));
    let deadline = tokio::time::Instant::from_std(t0 + limit);
    let (mut resumes, mut redriven) = (0u32, 0u64);
    let finished = tokio::time::timeout_at(
        deadline,
        until_finished(dep, watch, opts, &run_id, &mut resumes, &mut redriven),
    )
    .await;
    match finished {
        Ok(r) => r?,
        Err(_) => {
            let pending = pending_instances(rt, &run_id).await;
            return Err(Error::new(
                ErrorKind::Timeout,
                "runner",
                "run",
                &run_id,
                format!(
                    "the run did not finish within {:.1} s{pending}; `joint status {run_id}` shows where it is and `joint resume {run_id}` continues it",
                    limit.as_secs_f64()
                ),
            ));
        }
    }
    let makespan = t0.elapsed();
    // Let duplicates and stragglers drain before collecting the run's state; when they do not
    // drain before the deadline, leave the state to the stores' retention.
    let drained = tokio::time::timeout_at(deadline, dep.clouds.idle())
        .await
        .is_ok();
    let ops = dep.clouds.counts.snapshot().since(&before);
    // Collect only when no process's queue holds an event of the run any more.
    if drained && dep.clouds.pending_for_run(&run_id).await? == 0 {
        rt.run_deferred_gc().await?;
        // The ending instance queues the run's collection after writing its record; if that
        // execution died in between and its event was not delivered again (dropped after the
        // platform's deliveries or event age, or the process was killed), nothing was queued.
        // The run has its record and nothing of it is in flight: collect it here.
        if gc_policy(opts) == GcPolicy::WhenQuiet {
            joint_shim::runtime::gc_run(&dep.clouds.clouds, &run_id, false).await?;
        }
    }
    let rec = rt.run_record(&run_id).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            "runner",
            "run",
            &run_id,
            "the run record disappeared",
        )
    })?;
    let out = rt.resolve_output(&rec).await?;
    let instances = watch
        .committed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len() as u64;
    let mut r = report(
        run_id,
        out,
        makespan.as_secs_f64() * 1000.0,
        instances,
        ops,
        dep.clouds.queue_stats(),
        false,
    );
    r.resumes = resumes;
    r.redriven = redriven;
    Ok(r)
}

/// Wait until run `run_id` has its record; resume it when it stalls on lost events; fail when
/// it cannot go on (an event of the run was dead-lettered, or it stalled with resumes off).
async fn until_finished(
    dep: &LocalDeployment,
    watch: &Watch,
    opts: &RunOptions,
    run_id: &str,
    resumes: &mut u32,
    redriven: &mut u64,
) -> Result<()> {
    let rt = &dep.runtime;
    loop {
        let notified = watch.finished.notified();
        if *watch.done.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(());
        }
        // With remote clouds, work may be going on elsewhere (the last function may run in
        // another process and write the run record on the home cloud): poll for the record;
        // only it or the timeout ends the wait.
        if !opts.remote.is_empty() && rt.run_record(run_id).await?.is_some() {
            return Ok(());
        }
        // Stalled: nothing in flight here, and no other process's queue holds an event of the
        // run (with a state directory several processes may work on one run).
        let stalled = opts.remote.is_empty()
            && dep.clouds.faas.values().all(|f| f.inflight() == 0)
            && dep.clouds.pending_for_run(run_id).await? == 0;
        if stalled {
            // Everything drained without a run record: find out why.
            if rt.run_record(run_id).await?.is_some() {
                return Ok(());
            }
            // An event of this run exhausted its deliveries: resuming would fail the same way.
            let dead = dep.clouds.dead_letters_of(run_id).await?;
            if !dead.is_empty() {
                return Err(Error::new(
                    ErrorKind::Other,
                    "runner",
                    "run",
                    run_id,
                    format!("the run cannot go on: {}", dead_letter_summary(&dead)),
                ));
            }
            // Nothing is in flight, so every missing output is lost: resume now.
            if !opts.no_resume && *resumes < MAX_RESUMES {
                let r = rt.resume_stalled(run_id, &opts.input).await?;
                let progressed = match r.outcome {
                    ResumeOutcome::NotStarted | ResumeOutcome::Finished { .. } => true,
                    _ => !r.redriven.is_empty(),
                };
                if progressed {
                    *resumes += 1;
                    *redriven += r.redriven.len() as u64;
                    tracing::info!(run = %run_id, redriven = ?r.redriven, "run stalled; resumed");
                    continue;
                }
            }
            return Err(Error::new(
                ErrorKind::Other,
                "runner",
                "run",
                run_id,
                format!(
                    "the run stalled: no event is in flight and the run has no result (an event was lost; `joint resume {run_id} --force` re-drives it)"
                ),
            ));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
    }
}

/// Dead letters grouped by function, cloud and error: one line each, with how many events.
fn dead_letter_summary(dead: &[(String, DeadLetter)]) -> String {
    let mut groups: BTreeMap<(&str, &str, &str), (u32, u32)> = BTreeMap::new();
    for (cloud, d) in dead {
        let g = groups
            .entry((d.function.as_str(), cloud.as_str(), d.error.as_str()))
            .or_default();
        g.0 += 1;
        g.1 = g.1.max(d.deliveries);
    }
    groups
        .into_iter()
        .map(|((function, cloud, error), (events, deliveries))| {
            let n = if events > 1 {
                format!("{events} events of ")
            } else {
                String::new()
            };
            format!("{n}'{function}' on {cloud} gave up after {deliveries} deliveries: {error}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `: A_1, B_2 invoked without output` for a timeout message (empty when unknown).
async fn pending_instances(rt: &Runtime, run_id: &str) -> String {
    let Ok(st) = rt.status(run_id).await else {
        return String::new();
    };
    let present: BTreeSet<&str> = st.instances.iter().map(|i| i.instance.as_str()).collect();
    let mut pending = BTreeSet::new();
    for i in &st.instances {
        for name in &i.invoked {
            if joint_core::naming::parse_instance_name(name).is_some()
                && !present.contains(format!("{run_id}/{name}").as_str())
            {
                pending.insert(name.clone());
            }
        }
    }
    if st.instances.is_empty() {
        return "; nothing of it committed (did its start function run?)".into();
    }
    if pending.is_empty() {
        return String::new();
    }
    let list: Vec<&str> = pending.iter().map(String::as_str).take(10).collect();
    let more = pending.len().saturating_sub(10);
    format!(
        "; invoked but not committed: {}{}",
        list.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn report(
    run_id: String,
    out: std::result::Result<Value, Failure>,
    makespan_ms: f64,
    instances: u64,
    ops: OpSnapshot,
    queue: QueueStats,
    reused: bool,
) -> RunReport {
    let (status, output, error) = match out {
        Ok(v) => ("succeeded", Some(v), None),
        Err(f) => ("failed", None, Some(f)),
    };
    RunReport {
        run_id,
        status,
        output,
        error,
        makespan_ms,
        instances,
        ops,
        queue: queue.into(),
        reused,
        resumes: 0,
        redriven: 0,
    }
}
