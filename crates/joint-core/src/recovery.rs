//! Recovery planning, sans-IO: given what the stores hold of one run and the clock, decide what
//! `joint resume`, `joint resume --from` and the sweeper must do (ADR 0008). The driver reads the
//! stores, calls [`plan`], performs the deletions it lists and drives each listed instance again
//! through [`crate::machine::Machine::resume`]; it makes no decision of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::envelope::{Envelope, Input, ItemRecord, OutputRecord, RunRecord};
use crate::machine::StoredItem;
use crate::naming;
use crate::subgraph::Shape;
use crate::workflow::Workflow;

/// One committed instance item of the run, as a store returned it.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// Its key (`{run}/{instance name}`).
    pub key: &'a str,
    /// Its invoked set, entries with deadlines (`{name}@{ms}`).
    pub invoked: &'a BTreeSet<String>,
    /// Its decoded value.
    pub record: &'a ItemRecord,
}

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Treat every missing successor as lost now instead of after its deadline.
    pub force: bool,
    /// Re-run from this function.
    pub from: Option<String>,
    /// How long an instance has to commit after it was invoked or after its predecessor
    /// started (the runtime's invoke deadline), in milliseconds.
    pub grace_ms: u64,
}

/// What to do with the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It has its run record: nothing to re-drive.
    Finished {
        /// Whether it succeeded.
        ok: bool,
    },
    /// Nothing of it is stored: its start event was lost, or the id is wrong.
    NotStarted,
    /// Every recorded invocation is within its deadline.
    InProgress {
        /// Milliseconds until the last deadline passes.
        wait_ms: u64,
    },
    /// Drive committed instances again.
    Redrive(Redrive),
}

/// The work of a re-drive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redrive {
    /// Items to delete first (`--from`), as `(cloud, key)`: replaced outputs and the joins they
    /// joined.
    pub delete: Vec<(String, String)>,
    /// Whether to delete the run record too (`--from` on a finished run).
    pub delete_record: bool,
    /// Keys of the committed items to drive again, each with the successor names it must
    /// invoke again although its invoked set lists them.
    pub drive: BTreeMap<String, BTreeSet<String>>,
    /// Instance ids whose events were lost: invoked on a replica cloud first, since the
    /// primary is the cloud that lost them (`--from` re-runs go to the primary).
    pub lost: BTreeSet<String>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// `--from` names no function of the workflow.
    NoSuchFunction {
        /// The name given.
        function: String,
        /// The workflow's functions.
        known: Vec<String>,
    },
    /// `--from` names the start function, whose input is not stored.
    FromStart {
        /// The start function.
        function: String,
    },
    /// `--from` on a run whose working state is gone.
    Collected {
        /// Whether the run had finished (its state was collected) or was never seen.
        finished: bool,
    },
    /// `--from` names a function the run never reached.
    NotReached {
        /// The function.
        function: String,
    },
    /// An item names no function of the workflow.
    Foreign {
        /// Its key.
        key: String,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::NoSuchFunction { function, known } => write!(
                f,
                "the workflow has no function '{function}' (functions: {})",
                known.join(", ")
            ),
            RecoveryError::FromStart { function } => write!(
                f,
                "'{function}' is the start function: re-running from it is a new run (`joint run` with a new run id)"
            ),
            RecoveryError::Collected { finished: true } => write!(
                f,
                "the run finished and its working state was collected; keep it (`joint run --keep`) to re-run from a function"
            ),
            RecoveryError::Collected { finished: false } => {
                write!(f, "nothing of the run is in the stores")
            }
            RecoveryError::NotReached { function } => write!(
                f,
                "function '{function}' was not reached in this run; there is nothing to re-run from"
            ),
            RecoveryError::Foreign { key } => {
                write!(f, "item '{key}' names no function of the workflow")
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// The instance name of an invoked-set entry that is overdue at `now_ms` — its deadline passed
/// (or `force`) and no item `{run}/{name}` is `present` — or `None`. Batch hand-offs
/// (`batch:…` entries) are never overdue here: [`handoff`] looks at them.
pub fn overdue<'e>(
    run: &str,
    entry: &'e str,
    present: &BTreeSet<String>,
    now_ms: u64,
    force: bool,
) -> Option<&'e str> {
    let (name, deadline) = naming::split_invocation_entry(entry);
    naming::parse_instance_name(name)?;
    let due = force || deadline.is_some_and(|d| d <= now_ms);
    (due && !present.contains(&format!("{run}/{name}"))).then_some(name)
}

/// Plan the recovery of run `run` of `wf` from its run record (if any) and its committed items.
pub fn plan(
    wf: &Workflow,
    run: &str,
    record: Option<&RunRecord>,
    items: &[Committed<'_>],
    now_ms: u64,
    opts: &Options,
) -> Result<Plan, RecoveryError> {
    let mut out = Redrive::default();
    let mut kept: Vec<Committed<'_>> = items.to_vec();
    match &opts.from {
        None => {
            if let Some(rec) = record {
                return Ok(Plan::Finished {
                    ok: matches!(rec.result, OutputRecord::Ok(_)),
                });
            }
            if items.is_empty() {
                return Ok(Plan::NotStarted);
            }
        }
        Some(from) => {
            rewind(wf, run, from, items, record.is_some(), &mut out)?;
            let deleted: BTreeSet<&str> = out.delete.iter().map(|(_, k)| k.as_str()).collect();
            kept.retain(|c| !deleted.contains(c.key));
        }
    }
    let present: BTreeSet<String> = kept.iter().map(|c| c.key.to_string()).collect();
    let mut latest = 0u64;
    for c in &kept {
        latest = latest.max(c.record.at_ms.unwrap_or(0).saturating_add(opts.grace_ms));
        for entry in c.invoked {
            let (_, deadline) = naming::split_invocation_entry(entry);
            if naming::parse_instance_name(naming::split_invocation_entry(entry).0).is_some() {
                latest = latest.max(deadline.unwrap_or(0));
            }
            if let Some(name) = overdue(run, entry, &present, now_ms, opts.force) {
                out.lost.insert(format!("{run}/{name}"));
                out.drive
                    .entry(c.key.to_string())
                    .or_default()
                    .insert(name.to_string());
            }
        }
    }
    if opts.from.is_none() && !opts.force && out.drive.is_empty() && latest > now_ms {
        return Ok(Plan::InProgress {
            wait_ms: latest - now_ms,
        });
    }
    // `--from`: surviving predecessors invoke the replaced instances again; they are not lost.
    if opts.from.is_some() {
        let replaced: BTreeSet<String> = out.drive.values().flatten().cloned().collect();
        out.lost.retain(|id| {
            id.split_once('/')
                .is_none_or(|(_, n)| !replaced.contains(n))
        });
    }
    // Every committed item is driven (adopted items stop at their invoked sets, so a crash after
    // a commit whose redeliveries were dead-lettered is repaired), except fan-in branches whose
    // aggregator has committed: they have nothing left to do.
    let mut by_function: BTreeMap<&str, Vec<&Envelope>> = BTreeMap::new();
    for e in kept.iter().filter_map(|c| c.record.env.as_ref()) {
        by_function.entry(e.function.as_str()).or_default().push(e);
    }
    for c in &kept {
        if !settled_branch(wf, c, &by_function) {
            out.drive.entry(c.key.to_string()).or_default();
        } else {
            out.drive.remove(c.key);
        }
    }
    Ok(Plan::Redrive(out))
}

/// A fan-in branch whose aggregator has committed.
fn settled_branch(
    wf: &Workflow,
    c: &Committed<'_>,
    by_function: &BTreeMap<&str, Vec<&Envelope>>,
) -> bool {
    let Some(env) = &c.record.env else {
        return false;
    };
    let Some(sub) = wf.sub(&env.function) else {
        return false;
    };
    if !matches!(sub.shape(), Ok(Shape::FanIn | Shape::ByRedundant)) {
        return false;
    }
    let (Some(top), Some(next)) = (env.branch.last(), sub.next.first()) else {
        return false;
    };
    let parent = &env.branch[..env.branch.len() - 1];
    by_function.get(next.name.as_str()).is_some_and(|aggs| {
        aggs.iter()
            .any(|a| a.branch == parent && a.step > top.fork_step)
    })
}

/// `--from`: what re-running from `function` deletes and which survivors invoke again.
fn rewind(
    wf: &Workflow,
    run: &str,
    function: &str,
    items: &[Committed<'_>],
    finished: bool,
    out: &mut Redrive,
) -> Result<(), RecoveryError> {
    if wf.sub(function).is_none() {
        return Err(RecoveryError::NoSuchFunction {
            function: function.to_string(),
            known: wf.functions.keys().cloned().collect(),
        });
    }
    if function == wf.start {
        return Err(RecoveryError::FromStart {
            function: function.to_string(),
        });
    }
    if items.is_empty() {
        return Err(RecoveryError::Collected { finished });
    }
    // The earliest step at which `function` ran or was invoked.
    let mut steps: Vec<u32> = Vec::new();
    for c in items {
        if let Some(e) = &c.record.env
            && e.function == function
        {
            steps.push(e.step);
        }
        for entry in c.invoked {
            let (name, _) = naming::split_invocation_entry(entry);
            if let Some((func, step)) = naming::parse_instance_name(name)
                && func == function
            {
                steps.push(step);
            }
        }
    }
    let Some(from_step) = steps.into_iter().min() else {
        return Err(RecoveryError::NotReached {
            function: function.to_string(),
        });
    };
    let after = reachable(wf, function);
    let replaced = |func: &str, step: u32| after.contains(func) && step >= from_step;
    let mut deleted = BTreeSet::new();
    let mut joins = BTreeSet::new();
    for c in items {
        let Some(e) = &c.record.env else { continue };
        if !replaced(&e.function, e.step) {
            continue;
        }
        deleted.insert(c.key.to_string());
        // A replaced fan-in branch joins again: its join starts over (the surviving branches
        // of that join are driven again and re-join too).
        if let Some(sub) = wf.sub(&e.function)
            && matches!(sub.shape(), Ok(Shape::FanIn | Shape::ByRedundant))
            && let (Some(top), Some(next)) = (e.branch.last(), sub.next.first())
        {
            let parent = &e.branch[..e.branch.len() - 1];
            joins.insert((
                next.faas.clone(),
                naming::join_key(run, &next.name, top.fork_step, parent),
            ));
        }
    }
    for c in items.iter().filter(|c| !deleted.contains(c.key)) {
        for entry in c.invoked {
            let (name, _) = naming::split_invocation_entry(entry);
            if let Some((func, step)) = naming::parse_instance_name(name)
                && replaced(func, step)
            {
                out.drive
                    .entry(c.key.to_string())
                    .or_default()
                    .insert(name.to_string());
            }
        }
    }
    for key in &deleted {
        let func = key
            .split_once('/')
            .and_then(|(_, n)| naming::parse_instance_name(n))
            .map(|(f, _)| f)
            .unwrap_or_default();
        let cloud = wf
            .sub(func)
            .map(|s| s.faas.clone())
            .ok_or_else(|| RecoveryError::Foreign { key: key.clone() })?;
        out.delete.push((cloud, key.clone()));
    }
    out.delete.extend(joins);
    out.delete_record = finished;
    Ok(())
}

/// `function` and every function reachable from it along the workflow's edges.
pub fn reachable(wf: &Workflow, function: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![function.to_string()];
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        if let Some(sub) = wf.sub(&f) {
            todo.extend(sub.next.iter().map(|n| n.name.clone()));
        }
    }
    seen
}

/// A finished run that handed its output to a batch, rebuilt so that its last instance can be
/// driven again to start the batch (see [`handoff`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    /// The batch's run id.
    pub batch_run: String,
    /// The contributing instance's function.
    pub function: String,
    /// Its envelope, rebuilt from the record (no input: a committed instance never reads it).
    pub envelope: Envelope,
    /// Its committed item, rebuilt from the record's result.
    pub item: StoredItem,
    /// `(cloud, key)` of the batch run's start instance: the batch started iff it exists (or
    /// the batch run has its record).
    pub start: (String, String),
    /// When the hand-off is overdue (Unix ms): the run's end plus the grace.
    pub due_ms: u64,
}

/// The batch hand-off of a finished run, if it ended by joining a batch (ADR 0006, 0009). A
/// ByBatch edge is never inside a fork (the validator refuses it), so the last instance's branch
/// stack is empty; the batch's start event carries no loop variables.
pub fn handoff(wf: &Workflow, run: &str, rec: &RunRecord, grace_ms: u64) -> Option<Handoff> {
    let batch_run = rec.batched_into.clone()?;
    let OutputRecord::Ok(_) = &rec.result else {
        return None;
    };
    let (_, name) = rec.finished_by.split_once('/')?;
    let (func, step) = naming::parse_instance_name(name)?;
    let sub = wf.sub(func)?;
    if !matches!(sub.shape(), Ok(Shape::ByBatch)) {
        return None;
    }
    let target = sub.next.first()?;
    let home = wf.sub(&wf.start)?.faas.clone();
    let envelope = Envelope {
        v: crate::envelope::ENVELOPE_VERSION,
        workflow: wf.name.clone(),
        workflow_id: run.to_string(),
        function: func.to_string(),
        step,
        branch: vec![],
        vars: BTreeMap::new(),
        input: Input::Inline(serde_json::Value::Null),
        home,
        def_hash: wf.hash.clone(),
        trace: None,
        tag: None,
    };
    if envelope.instance_name() != name {
        return None;
    }
    let item = StoredItem {
        value: ItemRecord::new(rec.result.clone(), &envelope, rec.finished_ms).encode(),
        invoked: BTreeSet::new(),
    };
    Some(Handoff {
        start: (
            target.faas.clone(),
            naming::instance_id(&batch_run, &target.name, 0, &[]),
        ),
        batch_run,
        function: func.to_string(),
        envelope,
        item,
        due_ms: rec.finished_ms.map_or(0, |t| t.saturating_add(grace_ms)),
    })
}
