//! Re-driving lost events: `joint resume`, `joint resume --from`, and the sweeper (ADR 0008).
//!
//! A FaaS queue can accept an event and then lose it; no error ever reaches the invoker. Every
//! invocation record (an entry of the invoking instance's invoked set) carries a deadline, and
//! every committed item keeps the envelope that made it, so a run can be re-driven from its
//! stores alone. [`Runtime::resume`] finds the successors whose output did not appear by their
//! deadline and has their committed predecessors invoke them again — on a replica cloud first,
//! since the primary is the one that lost the event — through the same protocol state machine,
//! so an instance still commits exactly one output. [`Runtime::sweep`] does this for every
//! unfinished run in the stores; it is what a scheduled function runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::stream::{self, StreamExt};
use joint_core::envelope::{Envelope, ItemRecord, RunRecord};
use joint_core::machine::{self, Machine, Outcome, StoredItem};
use joint_core::naming;
use joint_core::recovery;
use joint_core::subgraph::SubGraph;
use serde::Serialize;

use super::{Runtime, now_ms, rt_err};
use crate::error::{ErrorKind, Result};

/// Committed instances driven concurrently by one resume.
const DRIVE_CONCURRENCY: usize = 16;

/// What to re-drive.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Re-drive every missing successor now instead of after its deadline (for a run known to be
    /// stuck). An event that was only late then runs twice; its instance still commits once.
    pub force: bool,
    /// Re-run from this function: delete the committed outputs of its instances and of every
    /// instance after them (and the run record), then invoke its instances again from their
    /// predecessors.
    pub from: Option<String>,
}

/// How a resume ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ResumeOutcome {
    /// The run has its run record: nothing to re-drive.
    Finished {
        /// Whether the run succeeded.
        ok: bool,
    },
    /// Nothing of the run is in the stores: the start event was lost (or the run id is wrong).
    /// Start it again with the same run id; starting is idempotent.
    NotStarted,
    /// Every recorded invocation is still within its deadline.
    InProgress {
        /// Milliseconds until the last deadline passes.
        wait_ms: u64,
    },
    /// Committed instances were driven again.
    Resumed,
}

/// What a resume did.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeReport {
    /// Run id.
    pub run: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: ResumeOutcome,
    /// Committed instances driven again.
    pub driven: usize,
    /// Successor instances invoked again (`name on cloud`).
    pub redriven: Vec<String>,
    /// Items deleted by `--from`.
    pub deleted: Vec<String>,
    /// Instances that could not be driven, and why.
    pub errors: Vec<String>,
}

impl ResumeReport {
    fn new(run: &str, outcome: ResumeOutcome) -> ResumeReport {
        ResumeReport {
            run: run.to_string(),
            outcome,
            driven: 0,
            redriven: Vec::new(),
            deleted: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// What one sweep over the stores did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Unfinished runs of this workflow found in the stores.
    pub runs: usize,
    /// Of those, runs still within their deadlines.
    pub in_progress: usize,
    /// Runs that were re-driven.
    pub resumed: Vec<ResumeReport>,
    /// Runs that could not be looked at, and why.
    pub errors: Vec<String>,
}

/// Whether `event` is the sweeper's scheduled event, `{"joint": "sweep"}`, rather than an
/// envelope. Deployed functions run [`Runtime::sweep`] for it (an EventBridge rule or an FC
/// timer trigger sends it every few minutes).
pub fn is_sweep_event(event: &[u8]) -> bool {
    // Envelopes are larger and never have a `joint` field; skip parsing them.
    event.len() < 256
        && serde_json::from_slice::<serde_json::Value>(event)
            .is_ok_and(|v| v.get("joint").and_then(|j| j.as_str()) == Some("sweep"))
}

/// The workflow name and version (definition hash) run `run` was started with, read from its
/// committed items on `clouds`; `None` when nothing of the run is stored.
pub async fn run_version(
    clouds: &crate::cloud::Clouds,
    run: &str,
) -> Result<Option<(String, String)>> {
    for c in clouds.iter() {
        for (_, item) in c.coord.list(&naming::run_prefix(run)).await? {
            if let Ok(ItemRecord { env: Some(e), .. }) = ItemRecord::decode(&item.value) {
                return Ok(Some((e.workflow, e.def_hash)));
            }
        }
    }
    Ok(None)
}

/// A committed item of the run.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) key: String,
    pub(super) item: StoredItem,
    pub(super) rec: ItemRecord,
}

/// State shared by the executions of one resume.
pub(in crate::runtime) struct Redrive {
    /// Keys of committed items when the resume started.
    present: BTreeSet<String>,
    /// Successors whose events were lost: invoked on a replica first (`--from` re-runs go to
    /// the primary).
    lost: BTreeSet<String>,
    /// Targets invoked by this resume (so two predecessors do not both invoke one successor).
    claimed: Mutex<BTreeSet<String>>,
    /// `name on cloud` of each invocation made.
    invoked: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// Re-drive run `run`: invoke again every successor whose output did not appear by its
    /// deadline (every missing one with [`ResumeOptions::force`]), or re-run from a function.
    /// Safe to call at any time and any number of times: an instance commits at most once.
    pub async fn resume(&self, run: &str, opts: &ResumeOptions) -> Result<ResumeReport> {
        if !naming::valid_id(run) {
            return Err(rt_err(
                ErrorKind::InvalidInput,
                "resume",
                run,
                "a run id must be 1-128 characters of A-Z a-z 0-9 - _ . (not starting with '.')",
            ));
        }
        let record = self.run_record(run).await?;
        let items = self.committed_items(run).await?;
        if opts.from.is_none()
            && let Some(rec) = &record
            && let Some(r) = self.resume_batch_handoff(run, rec, opts.force).await?
        {
            return Ok(r);
        }
        let committed: Vec<recovery::Committed<'_>> = items
            .iter()
            .map(|f| recovery::Committed {
                key: &f.key,
                invoked: &f.item.invoked,
                record: &f.rec,
            })
            .collect();
        let plan_opts = recovery::Options {
            force: opts.force,
            from: opts.from.clone(),
            grace_ms: self.grace_ms(),
        };
        let plan = recovery::plan(
            &self.inner.workflow,
            run,
            record.as_ref(),
            &committed,
            now_ms(),
            &plan_opts,
        )
        .map_err(|e| {
            rt_err(
                ErrorKind::InvalidInput,
                "resume",
                run,
                format!("run '{run}': {e}"),
            )
        })?;
        let todo = match plan {
            recovery::Plan::Finished { ok } => {
                return Ok(ResumeReport::new(run, ResumeOutcome::Finished { ok }));
            }
            recovery::Plan::NotStarted => {
                return Ok(ResumeReport::new(run, ResumeOutcome::NotStarted));
            }
            recovery::Plan::InProgress { wait_ms } => {
                return Ok(ResumeReport::new(
                    run,
                    ResumeOutcome::InProgress { wait_ms },
                ));
            }
            recovery::Plan::Redrive(r) => r,
        };
        let mut report = ResumeReport::new(run, ResumeOutcome::Resumed);
        for (cloud, key) in &todo.delete {
            self.inner.clouds.get(cloud)?.coord.delete(key).await?;
            report.deleted.push(key.clone());
        }
        if todo.delete_record {
            let home = self.home()?.faas.clone();
            self.inner
                .clouds
                .get(&home)?
                .coord
                .delete(&naming::run_key(run))
                .await?;
        }
        report.deleted.sort();
        let deleted: BTreeSet<&str> = todo.delete.iter().map(|(_, k)| k.as_str()).collect();
        let shared = Redrive {
            present: items
                .iter()
                .filter(|f| !deleted.contains(f.key.as_str()))
                .map(|f| f.key.clone())
                .collect(),
            lost: todo.lost,
            claimed: Mutex::new(BTreeSet::new()),
            invoked: Mutex::new(Vec::new()),
        };
        // Futures made up front: a closure inside the stream would not be `Send` for every
        // lifetime, which the `Deliver` trait's sweep needs.
        let futures: Vec<_> = items
            .iter()
            .filter_map(|f| todo.drive.get(&f.key).map(|again| (f, again)))
            .map(|(f, again)| self.redrive_keyed(run, f, again, &shared))
            .collect();
        let results: Vec<(String, Result<Outcome>)> = stream::iter(futures)
            .buffer_unordered(DRIVE_CONCURRENCY)
            .collect()
            .await;
        for (key, r) in results {
            match r {
                Ok(_) => report.driven += 1,
                Err(e) => report.errors.push(format!("{key}: {e}")),
            }
        }
        report.errors.sort();
        report.redriven = std::mem::take(&mut *lock(&shared.invoked));
        report.redriven.sort();
        Ok(report)
    }

    /// The invoke deadline in milliseconds.
    pub(super) fn grace_ms(&self) -> u64 {
        u64::try_from(self.inner.cfg.invoke_deadline.as_millis()).unwrap_or(u64::MAX)
    }

    /// What a host that sees nothing in flight does when run `run` has no result: every missing
    /// output is lost, so resume with `force`; when even the start event was lost
    /// ([`ResumeOutcome::NotStarted`]), start the run again with `input` (idempotent).
    pub async fn resume_stalled(
        &self,
        run: &str,
        input: &serde_json::Value,
    ) -> Result<ResumeReport> {
        let force = ResumeOptions {
            force: true,
            from: None,
        };
        let r = self.resume(run, &force).await?;
        if r.outcome == ResumeOutcome::NotStarted {
            self.start(run, input.clone()).await?;
        }
        Ok(r)
    }

    /// One pass of the sweeper: resume every unfinished run of this workflow found in the
    /// coordination stores of its clouds. Runs still within their deadlines are left alone.
    /// It lists whole stores (a DynamoDB Scan), so schedule it every few minutes, not seconds.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let wf = &self.inner.workflow.name;
        // Run id → whether it is a run of this workflow (decided by its first decodable item).
        let mut runs: BTreeMap<String, bool> = BTreeMap::new();
        // Finished runs that handed their output to a batch, by the batch's run id.
        let mut handoffs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.inner.clouds.iter() {
            for (key, item) in c.coord.list("").await? {
                if let Some(run) = key
                    .strip_prefix("_runs/")
                    .and_then(|k| k.strip_suffix("/record"))
                {
                    if let Ok(rec) = serde_json::from_slice::<RunRecord>(&item.value)
                        && &rec.workflow == wf
                        && let Some(b) = rec.batched_into
                    {
                        handoffs.entry(b).or_default().push(run.to_string());
                    }
                    continue;
                }
                // Run records and batches start with `_`; other workflows may share the table.
                let Some((run, _)) = key.split_once('/').filter(|_| !key.starts_with('_')) else {
                    continue;
                };
                if runs.get(run) == Some(&true) {
                    continue;
                }
                let ours = ItemRecord::decode(&item.value)
                    .is_ok_and(|r| r.env.is_some_and(|e| &e.workflow == wf));
                runs.insert(run.to_string(), ours);
            }
        }
        // A contributing run is looked at once, for its batch, below.
        let contributors: BTreeSet<String> = handoffs.values().flatten().cloned().collect();
        let runs = runs
            .into_iter()
            .filter(|(r, ours)| *ours && !contributors.contains(r))
            .map(|(r, _)| r);
        let mut report = SweepReport::default();
        // One contributing run per batch is enough to start it again.
        for run in handoffs.into_values().filter_map(|g| g.into_iter().next()) {
            match self.resume(&run, &ResumeOptions::default()).await {
                Ok(r) => match r.outcome {
                    ResumeOutcome::Resumed => {
                        report.runs += 1;
                        report.resumed.push(r);
                    }
                    ResumeOutcome::InProgress { .. } => {
                        report.runs += 1;
                        report.in_progress += 1;
                    }
                    _ => {}
                },
                Err(e) => report.errors.push(format!("{run}: {e}")),
            }
        }
        for run in runs {
            match self.resume(&run, &ResumeOptions::default()).await {
                Ok(r) => match r.outcome {
                    ResumeOutcome::Resumed => {
                        report.runs += 1;
                        report.resumed.push(r);
                    }
                    ResumeOutcome::InProgress { .. } => {
                        report.runs += 1;
                        report.in_progress += 1;
                    }
                    ResumeOutcome::Finished { .. } | ResumeOutcome::NotStarted => {}
                },
                Err(e) => report.errors.push(format!("{run}: {e}")),
            }
        }
        Ok(report)
    }

    /// A run that ended by joining a batch whose own run never started — its start event was
    /// lost, or the arrival that filled the batch crashed after the join and was never
    /// redelivered — starts the batch again: the run's last instance is driven once more from
    /// the output in its run record, re-joins its batch (its member is already there, so nothing
    /// changes) and, finding the batch complete, invokes the batch run's start (whose instance
    /// deduplicates). `None` when there is nothing to do: no batch, the batch run exists, or the
    /// hand-off is younger than the invoke deadline and `force` is not set.
    async fn resume_batch_handoff(
        &self,
        run: &str,
        rec: &RunRecord,
        force: bool,
    ) -> Result<Option<ResumeReport>> {
        let wf = &self.inner.workflow;
        let Some(h) = recovery::handoff(wf, run, rec, self.grace_ms()) else {
            return Ok(None);
        };
        if self.batch_started(&h).await? {
            return Ok(None);
        }
        let now = now_ms();
        if !force && h.due_ms > now {
            return Ok(Some(ResumeReport::new(
                run,
                ResumeOutcome::InProgress {
                    wait_ms: h.due_ms - now,
                },
            )));
        }
        let Some(sub) = wf.sub(&h.function) else {
            return Ok(None);
        };
        let cfg = self.machine_config(sub, &sub.faas)?;
        let mut m = Machine::new(sub, h.envelope, cfg)
            .map_err(|e| rt_err(ErrorKind::InvalidInput, "resume", run, e.to_string()))?;
        let first = m
            .resume(h.item, &BTreeSet::new())
            .map_err(|e| rt_err(ErrorKind::InvalidInput, "resume", run, e.to_string()))?;
        let shared = Redrive {
            present: BTreeSet::new(),
            lost: BTreeSet::new(),
            claimed: Mutex::new(BTreeSet::new()),
            invoked: Mutex::new(Vec::new()),
        };
        let mut report = ResumeReport::new(run, ResumeOutcome::Resumed);
        match self
            .drive(&mut m, first, sub, &sub.faas, run, (1, 0), Some(&shared))
            .await
        {
            Ok(_) => report.driven = 1,
            Err(e) => report.errors.push(format!("{}: {e}", rec.finished_by)),
        }
        report.redriven = std::mem::take(&mut *lock(&shared.invoked));
        Ok(Some(report))
    }

    /// Whether the run a batch starts exists: its start instance committed, or it has a record.
    async fn batch_started(&self, h: &recovery::Handoff) -> Result<bool> {
        let (cloud, key) = &h.start;
        if self
            .inner
            .clouds
            .get(cloud)?
            .coord
            .get(key)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self.run_record(&h.batch_run).await?.is_some())
    }

    /// Every committed item of `run` on every cloud, decoded.
    pub(super) async fn committed_items(&self, run: &str) -> Result<Vec<Found>> {
        let wf = &self.inner.workflow;
        let mut out = Vec::new();
        for c in self.inner.clouds.iter() {
            for (key, item) in c.coord.list(&naming::run_prefix(run)).await? {
                let rec = ItemRecord::decode(&item.value).map_err(|e| {
                    rt_err(
                        ErrorKind::InvalidInput,
                        "resume",
                        &key,
                        format!(
                            "the item in {}'s store is not an output record: {e}",
                            c.name
                        ),
                    )
                })?;
                if let Some(env) = &rec.env
                    && env.workflow != wf.name
                {
                    return Err(rt_err(
                        ErrorKind::InvalidInput,
                        "resume",
                        run,
                        format!(
                            "run '{run}' belongs to workflow '{}', not '{}'",
                            env.workflow, wf.name
                        ),
                    ));
                }
                out.push(Found { key, item, rec });
            }
        }
        Ok(out)
    }

    fn sub_of(&self, run: &str, f: &Found) -> Result<(&SubGraph, Envelope)> {
        let wf = &self.inner.workflow;
        let env = f.rec.env.clone().ok_or_else(|| {
            rt_err(
                ErrorKind::InvalidInput,
                "resume",
                &f.key,
                "the item was written by a runtime that did not keep envelopes; it cannot be re-driven",
            )
        })?;
        if env.def_hash != wf.hash {
            return Err(rt_err(
                ErrorKind::InvalidInput,
                "resume",
                run,
                format!(
                    "the run was started by workflow version {} but this deployment runs {}; resume it with the matching definition",
                    super::short(&env.def_hash),
                    super::short(&wf.hash)
                ),
            ));
        }
        let sub = wf.sub(&env.function).ok_or_else(|| {
            rt_err(
                ErrorKind::FunctionNotFound,
                "resume",
                &f.key,
                format!("workflow '{}' has no function '{}'", wf.name, env.function),
            )
        })?;
        Ok((sub, env))
    }

    async fn redrive_keyed(
        &self,
        run: &str,
        f: &Found,
        reinvoke: &BTreeSet<String>,
        shared: &Redrive,
    ) -> (String, Result<Outcome>) {
        (
            f.key.clone(),
            self.redrive_item(run, f, reinvoke, shared).await,
        )
    }

    /// Drive one committed instance again from its stored output.
    async fn redrive_item(
        &self,
        run: &str,
        f: &Found,
        reinvoke: &BTreeSet<String>,
        shared: &Redrive,
    ) -> Result<Outcome> {
        let (sub, env) = self.sub_of(run, f)?;
        let cfg: machine::Config = self.machine_config(sub, &sub.faas)?;
        let mut m = Machine::new(sub, env, cfg)
            .map_err(|e| rt_err(ErrorKind::InvalidInput, "resume", &f.key, e.to_string()))?;
        let first = m
            .resume(f.item.clone(), reinvoke)
            .map_err(|e| rt_err(ErrorKind::InvalidInput, "resume", &f.key, e.to_string()))?;
        self.drive(&mut m, first, sub, &sub.faas, run, (1, 0), Some(shared))
            .await
    }

    /// Invoke a successor during a resume: skip it when its output exists (or another
    /// predecessor of this resume invoked it already), else invoke it on a replica first.
    pub(in crate::runtime) async fn redrive_call(
        &self,
        shared: &Redrive,
        mut call: machine::Call,
        from: &str,
        run: &str,
    ) -> std::result::Result<String, machine::CallFailure> {
        let target = format!("{}/{}", call.envelope.workflow_id, call.record_as);
        if naming::parse_instance_name(&call.record_as).is_some() {
            let exists = shared.present.contains(&target) || {
                let home = self
                    .inner
                    .workflow
                    .sub(&call.function)
                    .map_or(call.cloud.as_str(), |s| s.faas.as_str());
                match self.inner.clouds.get(home) {
                    Ok(c) => matches!(c.coord.get(&target).await, Ok(Some(_))),
                    Err(_) => false,
                }
            };
            if exists || !lock(&shared.claimed).insert(target.clone()) {
                return Ok(call.cloud);
            }
            // The run may have ended (and been collected) while this resume ran: a missing
            // output then means "collected", not "lost".
            if matches!(self.run_record(run).await, Ok(Some(_))) {
                return Ok(call.cloud);
            }
        }
        if shared.lost.contains(&target) && !call.failover.is_empty() {
            let replica = call.failover.remove(0);
            let primary = std::mem::replace(&mut call.cloud, replica);
            call.failover.push(primary);
        }
        let name = call.record_as.clone();
        let r = self.invoke_call(call, from, run).await;
        if let Ok(cloud) = &r {
            lock(&shared.invoked).push(format!("{name} on {cloud}"));
        }
        r
    }
}
