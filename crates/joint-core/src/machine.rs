//! The per-instance protocol as a sans-IO state machine.
//!
//! A [`Machine`] is made from the function's sub-graph, the envelope that invoked it and a
//! [`Config`]. [`Machine::start`] returns the first [`Action`]; the driver performs it and hands
//! the result back with [`Machine::on`], which returns the next action, until [`Action::Done`].
//! The machine performs no I/O, reads no clock and draws no random numbers, so every protocol
//! path is testable by feeding it answers.
//!
//! Round trips per instance (see ADR 0003): a Sequence step costs one consistent read (eager policy
//! only), one create-if-absent of the output item and one update that records the invoked
//! successors in the same item: 2W+1R eager, 2W lazy, against the paper's 3W+2R. A fan-in branch
//! adds one atomic join that returns the join state (paper: +2W+2R) and records nothing unless it
//! invokes. A Map records its invocations in groups ([`Config::group_size`] per write).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::{
    BlobRef, ENVELOPE_VERSION, Envelope, EnvelopeError, Failure, Input, ItemRecord, JoinMember,
    OutputRecord, Payload, RunRecord,
};
use crate::expr::Scope;
use crate::naming::{self, Frame, Window};
use crate::subgraph::{CheckpointPolicy, InvokeMode, NextEntry, RetryPolicy, Shape, SubGraph};

/// Inline limit used for a cloud the config does not name (bytes).
pub const DEFAULT_INLINE_LIMIT: u64 = 256 * 1024;
/// Bytes reserved for the envelope around an inline payload when deciding to spill.
pub const ENVELOPE_OVERHEAD: u64 = 2048;

/// Settings of one execution.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cloud this instance executes on (a failover replica runs elsewhere than `SubGraph::faas`).
    pub executing_cloud: String,
    /// Async invoke payload limit per cloud in bytes (already merged with sub-graph overrides).
    pub inline_limits: BTreeMap<String, u64>,
    /// Largest value the function's coordination store keeps in one item.
    pub item_limit: u64,
    /// Branch outputs up to this many bytes travel inside the join; larger ones by reference
    /// (the runtime lowers it to fit the join store's member limit).
    pub join_inline_limit: u64,
    /// Successors invoked, then recorded with one write, per group.
    pub group_size: usize,
    /// Batches a ByBatch arrival walks past before giving up.
    pub max_batch_walk: u64,
    /// When this execution started (Unix milliseconds), stored with the committed output so
    /// `joint resume` can tell a stalled run from a busy one. The driver reads the clock.
    pub now_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            executing_cloud: String::new(),
            inline_limits: BTreeMap::new(),
            item_limit: 350 * 1024,
            join_inline_limit: 1024,
            group_size: 64,
            max_batch_walk: 100_000,
            now_ms: None,
        }
    }
}

impl Config {
    fn inline_limit(&self, cloud: &str) -> u64 {
        self.inline_limits
            .get(cloud)
            .copied()
            .unwrap_or(DEFAULT_INLINE_LIMIT)
    }
}

/// A reference the driver must read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ref {
    /// A blob (its bytes are returned).
    Blob(BlobRef),
    /// A committed instance item in a cloud's coordination store (its value bytes are returned).
    Item {
        /// Cloud.
        cloud: String,
        /// Instance id.
        key: String,
    },
}

/// What a coordination item holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredItem {
    /// The encoded [`OutputRecord`].
    pub value: Vec<u8>,
    /// Names of successors already invoked.
    pub invoked: BTreeSet<String>,
}

/// What an atomic join returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinState {
    /// Whether this call added the member (false: it was there already, or the join is full).
    pub added: bool,
    /// Whether this call is the one that completed the join: of all calls on one join, exactly
    /// one reports `completed` once `complete_at` members are in (a redelivered duplicate of
    /// that call may report it again; no other call may).
    pub completed: bool,
    /// Members after the call (at least; a store may count members added since).
    pub count: u32,
    /// Member → value. Complete when `count >= complete_at` and the call `completed` the join
    /// or did not add its member; otherwise it may be empty (stores may always fill it).
    pub members: BTreeMap<String, Vec<u8>>,
}

/// A user function's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnError {
    /// Stable type.
    pub kind: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for FnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for FnError {}

/// One successor invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Target function.
    pub function: String,
    /// Its cloud.
    pub cloud: String,
    /// Replica clouds, in order.
    pub failover: Vec<String>,
    /// Name recorded in the invoked set once the invocation succeeded.
    pub record_as: String,
    /// The event.
    pub envelope: Envelope,
}

/// The next thing the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Consistent read of the instance's item. Answer: [`Answer::Checkpoint`].
    ReadCheckpoint {
        /// Cloud whose coordination store holds it.
        cloud: String,
        /// Key.
        key: String,
    },
    /// Read these references (concurrently). Answer: [`Answer::Fetched`], same order.
    Fetch {
        /// What to read.
        refs: Vec<Ref>,
    },
    /// Run the user function. Answer: [`Answer::Ran`].
    Run {
        /// Its input.
        input: Value,
        /// Retries the driver applies.
        retry: RetryPolicy,
    },
    /// Create-only put of a blob (an existing identical blob is fine). Answer: [`Answer::Spilled`].
    Spill {
        /// Where.
        blob: BlobRef,
        /// Content.
        bytes: Vec<u8>,
    },
    /// Create-if-absent of the instance item. Answer: [`Answer::Committed`].
    Commit {
        /// Cloud.
        cloud: String,
        /// Key.
        key: String,
        /// Encoded [`OutputRecord`].
        record: Vec<u8>,
    },
    /// Atomically add a member to a join and return its state. Answer: [`Answer::Joined`].
    Join {
        /// Cloud.
        cloud: String,
        /// Join key.
        key: String,
        /// Member name.
        member: String,
        /// Member value.
        value: Vec<u8>,
        /// Members the join accepts at most.
        capacity: u32,
        /// Count at which the join is complete: the call that completes it reports `completed`.
        complete_at: u32,
    },
    /// Invoke successors asynchronously (concurrently; failover per call). Answer: [`Answer::Invoked`].
    Invoke {
        /// The calls.
        calls: Vec<Call>,
    },
    /// Add names to the instance item's invoked set. Answer: [`Answer::Recorded`].
    Record {
        /// Cloud.
        cloud: String,
        /// Key.
        key: String,
        /// Names.
        names: Vec<String>,
    },
    /// Create-if-absent of the run record. Answer: [`Answer::Finished`].
    Finish {
        /// Cloud (the run's home).
        cloud: String,
        /// Key (`_runs/{id}`).
        key: String,
        /// Encoded [`RunRecord`].
        record: Vec<u8>,
        /// Whether the run succeeded.
        ok: bool,
    },
    /// Delete the run's prefix on these clouds (the driver may defer it). Answer: [`Answer::GcDone`].
    Gc {
        /// `{workflow_id}/`.
        prefix: String,
        /// Clouds.
        clouds: Vec<String>,
    },
    /// The instance is finished.
    Done(Outcome),
}

impl Action {
    /// Stable name of the action kind (`read_checkpoint`, `run`, `commit`, `join`, `invoke`, …),
    /// used for crash points, events and timelines.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::ReadCheckpoint { .. } => "read_checkpoint",
            Action::Fetch { .. } => "fetch",
            Action::Run { .. } => "run",
            Action::Spill { .. } => "spill",
            Action::Commit { .. } => "commit",
            Action::Join { .. } => "join",
            Action::Invoke { .. } => "invoke",
            Action::Record { .. } => "record",
            Action::Finish { .. } => "finish",
            Action::Gc { .. } => "gc",
            Action::Done(_) => "done",
        }
    }
}

/// The result of a driver action.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The item, if it exists.
    Checkpoint(Option<StoredItem>),
    /// Bytes per reference (in request order).
    Fetched(Vec<Vec<u8>>),
    /// The user function's result (after the driver's retries).
    Ran(Result<Value, FnError>),
    /// The blob exists now.
    Spilled,
    /// `None`: this commit created the item; `Some`: another commit won, here is its item.
    Committed(Option<StoredItem>),
    /// The join state.
    Joined(JoinState),
    /// Per call: the cloud that accepted it, or why every cloud refused.
    Invoked(Vec<Result<String, CallFailure>>),
    /// The names are recorded.
    Recorded,
    /// The run record exists now.
    Finished,
    /// GC done or scheduled.
    GcDone,
}

/// Why an invocation failed on every cloud it was tried on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// The last cloud's error kind (`Unavailable`, `Throttled`, `PayloadTooLarge`, …).
    pub kind: String,
    /// What happened, with the clouds tried.
    pub message: String,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Instance id.
    pub instance: String,
    /// The user function ran in this execution.
    pub ran_function: bool,
    /// The output came from an earlier or concurrent execution.
    pub adopted: bool,
    /// Successor invocations made by this execution.
    pub invoked: usize,
    /// Set when this instance wrote the run record: `Ok(())` or the failure.
    pub finished_run: Option<Result<(), Failure>>,
    /// Set when the instance could not finish its work (an invocation failed on every cloud);
    /// the driver must report an error so the platform delivers the event again.
    pub incomplete: Option<CallFailure>,
}

/// A protocol violation: the event, the sub-graph or an answer cannot be interpreted. None can
/// be fixed by delivering the event again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The event is for another function than this sub-graph's.
    #[error("protocol error: {0}")]
    WrongFunction(String),
    /// The envelope itself is invalid.
    #[error("protocol error: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The sub-graph cannot be executed (it mixes modes, a mode lacks its settings).
    #[error("protocol error: {0}")]
    InvalidSubgraph(String),
    /// The event's branch stack does not fit the join it reaches.
    #[error("protocol error: {0}")]
    BadBranch(String),
    /// The driver answered something the machine did not ask for.
    #[error("protocol error: {0}")]
    UnexpectedAnswer(String),
    /// The driver's answer does not match the action (wrong counts).
    #[error("protocol error: {0}")]
    BadAnswer(String),
    /// A stored record (an input, an output, a join member) does not decode.
    #[error("protocol error: {0}")]
    Corrupt(String),
}

#[derive(Debug)]
enum State {
    Init,
    AwaitCheckpoint,
    AwaitInput {
        cur: Input,
        refs: Vec<Ref>,
        rounds: u32,
    },
    AwaitRun,
    AwaitSpill {
        record: OutputRecord,
    },
    AwaitCommit,
    AwaitOwnValue,
    AwaitInvoke {
        group: Vec<Call>,
        rest: Vec<Call>,
        after: After,
    },
    AwaitRecord {
        rest: Vec<Call>,
        after: After,
        failed: Option<CallFailure>,
    },
    AwaitJoin {
        kind: JoinKind,
    },
    AwaitGatherSpill {
        call: Box<Call>,
        after: After,
    },
    AwaitFinish {
        ok: bool,
        failure: Option<Failure>,
    },
    AwaitGc,
    Finished,
}

#[derive(Debug, Clone)]
enum After {
    Done,
    Join(JoinKind),
    FinishOk { batched_into: Option<String> },
}

#[derive(Debug, Clone)]
enum JoinKind {
    FanIn { threshold: u32 },
    Batch { n: u64, size: u32 },
}

/// The per-instance state machine.
#[derive(Debug)]
pub struct Machine<'a> {
    sub: &'a SubGraph,
    env: Envelope,
    cfg: Config,
    id: String,
    shape: Shape,
    state: State,
    value: Option<Value>,
    record: Option<OutputRecord>,
    invoked: BTreeSet<String>,
    outcome: Outcome,
    /// Member value for joins, prepared when the output is known.
    member_out: Option<Input>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn select(v: Value, index: Option<u32>) -> Result<Value, String> {
    match index {
        None => Ok(v),
        Some(i) => match v {
            Value::Array(mut items) => {
                let n = items.len();
                if (i as usize) < n {
                    Ok(items.swap_remove(i as usize))
                } else {
                    Err(format!("element {i} is out of range of a list of {n}"))
                }
            }
            other => Err(format!(
                "cannot take element {i} of a {}",
                type_name(&other)
            )),
        },
    }
}

/// JSON type name for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn collect_refs(i: &Input, out: &mut Vec<Ref>) {
    match i {
        Input::Inline(_) => {}
        Input::Blob { blob, .. } | Input::Indirect(blob) => out.push(Ref::Blob(blob.clone())),
        Input::Item { cloud, key, .. } => out.push(Ref::Item {
            cloud: cloud.clone(),
            key: key.clone(),
        }),
        Input::Gather(items) => items.iter().for_each(|x| collect_refs(x, out)),
    }
}

fn substitute(i: Input, got: &BTreeMap<Ref, Vec<u8>>) -> Result<Input, String> {
    Ok(match i {
        Input::Inline(v) => Input::Inline(v),
        Input::Blob { blob, select: sel } => {
            let bytes = got
                .get(&Ref::Blob(blob.clone()))
                .ok_or("blob not fetched")?;
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("blob '{}' is not JSON: {e}", blob.key))?;
            Input::Inline(select(v, sel).map_err(|e| format!("blob '{}': {e}", blob.key))?)
        }
        Input::Indirect(blob) => {
            let bytes = got
                .get(&Ref::Blob(blob.clone()))
                .ok_or("blob not fetched")?;
            serde_json::from_slice(bytes)
                .map_err(|e| format!("blob '{}' does not hold an input: {e}", blob.key))?
        }
        Input::Item {
            cloud,
            key,
            select: sel,
        } => {
            let r = Ref::Item {
                cloud: cloud.clone(),
                key: key.clone(),
            };
            let bytes = got.get(&r).ok_or("item not fetched")?;
            let rec = ItemRecord::decode(bytes)
                .map_err(|e| format!("item '{key}' in {cloud} is not an output record: {e}"))?;
            match rec.out {
                OutputRecord::Ok(Payload::Inline(v)) => {
                    Input::Inline(select(v, sel).map_err(|e| format!("output of '{key}': {e}"))?)
                }
                OutputRecord::Ok(Payload::Blob(blob)) => Input::Blob { blob, select: sel },
                OutputRecord::Err(f) => {
                    return Err(format!("input '{key}' is a failed output: {f}"));
                }
            }
        }
        Input::Gather(items) => Input::Gather(
            items
                .into_iter()
                .map(|x| substitute(x, got))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn into_value(i: Input) -> Value {
    match i {
        Input::Inline(v) => v,
        Input::Gather(items) => Value::Array(items.into_iter().map(into_value).collect()),
        // Unreachable after full resolution; keep the reference visible rather than panic.
        other => serde_json::to_value(other).unwrap_or_default(),
    }
}

struct GuardScope<'s> {
    counters: Vec<&'s str>,
    output: &'s Value,
    cloud: &'s str,
    step: u32,
    branch: Value,
    vars: &'s BTreeMap<String, i64>,
}

impl Scope for GuardScope<'_> {
    fn lookup(&self, root: &str) -> Option<Value> {
        match root {
            "output" => Some(self.output.clone()),
            "FaaS" | "cloud" => Some(Value::String(self.cloud.to_string())),
            "step" => Some(Value::from(self.step)),
            "branch" => Some(self.branch.clone()),
            v => match self.vars.get(v) {
                Some(x) => Some(Value::from(*x)),
                // A cycle's counter starts at 0 before its first increment.
                None if self.counters.contains(&v) => Some(Value::from(0)),
                None => None,
            },
        }
    }
}

impl<'a> Machine<'a> {
    /// Make a machine; fails when the envelope is not for this sub-graph.
    pub fn new(sub: &'a SubGraph, env: Envelope, cfg: Config) -> Result<Self, ProtocolError> {
        if env.function != sub.name {
            return Err(ProtocolError::WrongFunction(format!(
                "the event is for function '{}' but this is '{}'",
                env.function, sub.name
            )));
        }
        env.check()?;
        let shape = sub.shape().map_err(ProtocolError::InvalidSubgraph)?;
        let id = env.instance_id();
        Ok(Machine {
            sub,
            outcome: Outcome {
                instance: id.clone(),
                ..Outcome::default()
            },
            env,
            cfg,
            id,
            shape,
            state: State::Init,
            value: None,
            record: None,
            invoked: BTreeSet::new(),
            member_out: None,
        })
    }

    /// Tell the machine the driver's clock (Unix milliseconds) before handing it an answer: it
    /// stamps the records it writes next (the run record's `finished_ms`). The machine never
    /// reads a clock itself.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.cfg.now_ms = Some(now_ms);
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// The first action.
    pub fn start(&mut self) -> Action {
        match self.sub.checkpoint {
            CheckpointPolicy::Eager => {
                self.state = State::AwaitCheckpoint;
                Action::ReadCheckpoint {
                    cloud: self.sub.faas.clone(),
                    key: self.id.clone(),
                }
            }
            CheckpointPolicy::Lazy => self.begin_input(),
        }
    }

    /// Feed the answer to the last action; get the next one.
    pub fn on(&mut self, answer: Answer) -> Result<Action, ProtocolError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let bad = |state: &State, answer: &Answer| {
            ProtocolError::UnexpectedAnswer(format!(
                "unexpected answer {} in state {state:?}",
                answer_name(answer)
            ))
        };
        match (state, answer) {
            (State::AwaitCheckpoint, Answer::Checkpoint(None)) => Ok(self.begin_input()),
            (State::AwaitCheckpoint, Answer::Checkpoint(Some(item))) => self.adopt(item),
            (State::AwaitInput { cur, refs, rounds }, Answer::Fetched(bytes)) => {
                if bytes.len() != refs.len() {
                    return Err(ProtocolError::BadAnswer(format!(
                        "asked for {} references, got {}",
                        refs.len(),
                        bytes.len()
                    )));
                }
                let got: BTreeMap<Ref, Vec<u8>> = refs.into_iter().zip(bytes).collect();
                let next = substitute(cur, &got)
                    .map_err(|e| ProtocolError::Corrupt(format!("input of '{}': {e}", self.id)))?;
                Ok(self.continue_input(next, rounds + 1))
            }
            (State::AwaitRun, Answer::Ran(Ok(v))) => {
                self.outcome.ran_function = true;
                Ok(self.produced(v))
            }
            (State::AwaitRun, Answer::Ran(Err(e))) => {
                self.outcome.ran_function = true;
                let f = self.failure(&e.kind, &e.message);
                Ok(self.commit(OutputRecord::Err(f)))
            }
            (State::AwaitSpill { record }, Answer::Spilled) => Ok(self.commit(record)),
            (State::AwaitCommit, Answer::Committed(None)) => self.output_known(),
            (State::AwaitCommit, Answer::Committed(Some(item))) => {
                // Another execution won: forward its output, not ours.
                self.value = None;
                self.member_out = None;
                self.adopt(item)
            }
            (State::AwaitOwnValue, Answer::Fetched(bytes)) => {
                let b = bytes.into_iter().next().unwrap_or_default();
                let v: Value = serde_json::from_slice(&b).map_err(|e| {
                    ProtocolError::Corrupt(format!("output blob of '{}' is not JSON: {e}", self.id))
                })?;
                self.value = Some(v);
                self.plan()
            }
            (State::AwaitInvoke { group, rest, after }, Answer::Invoked(results)) => {
                if results.len() != group.len() {
                    return Err(ProtocolError::BadAnswer(format!(
                        "invoked {} calls, got {} results",
                        group.len(),
                        results.len()
                    )));
                }
                let mut names = Vec::new();
                let mut failed = None;
                for (c, r) in group.iter().zip(results) {
                    match r {
                        Ok(_) => names.push(c.record_as.clone()),
                        Err(e) => {
                            failed.get_or_insert(CallFailure {
                                message: format!("invoking '{}' on {}: {e}", c.function, c.cloud),
                                kind: e.kind,
                            });
                        }
                    }
                }
                self.outcome.invoked += names.len();
                if names.is_empty() {
                    return Ok(self.after_group(rest, after, failed));
                }
                for n in &names {
                    self.invoked.insert(n.clone());
                }
                self.state = State::AwaitRecord {
                    rest,
                    after,
                    failed,
                };
                Ok(Action::Record {
                    cloud: self.sub.faas.clone(),
                    key: self.id.clone(),
                    names,
                })
            }
            (
                State::AwaitRecord {
                    rest,
                    after,
                    failed,
                },
                Answer::Recorded,
            ) => Ok(self.after_group(rest, after, failed)),
            (State::AwaitJoin { kind }, Answer::Joined(js)) => self.joined(kind, js),
            (State::AwaitGatherSpill { call, after }, Answer::Spilled) => {
                Ok(self.invoke_next(vec![*call], after))
            }
            (State::AwaitFinish { ok, failure }, Answer::Finished) => {
                self.outcome.finished_run = Some(match failure {
                    None => Ok(()),
                    Some(f) => Err(f),
                });
                if ok {
                    self.state = State::AwaitGc;
                    Ok(Action::Gc {
                        prefix: naming::run_prefix(&self.env.workflow_id),
                        clouds: self.gc_clouds(),
                    })
                } else {
                    Ok(self.done())
                }
            }
            (State::AwaitGc, Answer::GcDone) => Ok(self.done()),
            (state, answer) => Err(bad(&state, &answer)),
        }
    }

    fn gc_clouds(&self) -> Vec<String> {
        if self.sub.clouds.is_empty() {
            vec![self.sub.faas.clone()]
        } else {
            self.sub.clouds.clone()
        }
    }

    fn done(&mut self) -> Action {
        self.state = State::Finished;
        Action::Done(std::mem::take(&mut self.outcome))
    }

    fn failure(&self, kind: &str, message: &str) -> Failure {
        Failure {
            function: self.sub.name.clone(),
            instance: self.id.clone(),
            kind: kind.to_string(),
            message: message.to_string(),
        }
    }

    fn begin_input(&mut self) -> Action {
        let input = self.env.input.clone();
        self.continue_input(input, 0)
    }

    fn continue_input(&mut self, cur: Input, rounds: u32) -> Action {
        let mut refs = Vec::new();
        collect_refs(&cur, &mut refs);
        refs.sort();
        refs.dedup();
        if refs.is_empty() {
            self.state = State::AwaitRun;
            return Action::Run {
                input: into_value(cur),
                retry: self.sub.retry,
            };
        }
        if rounds >= 4 {
            // References that keep pointing at references: refuse rather than loop.
            let f = self.failure(
                "BadInput",
                "input references are nested more than 4 levels deep",
            );
            return self.commit(OutputRecord::Err(f));
        }
        self.state = State::AwaitInput {
            cur,
            refs: refs.clone(),
            rounds,
        };
        Action::Fetch { refs }
    }

    /// Re-drive an instance whose output is committed (`item`), instead of [`Machine::start`]:
    /// its successors are planned from the committed output as on a redelivery, and the
    /// successors named in `reinvoke` are invoked again even though its invoked set lists them
    /// (their events were lost). The input is never read, so the envelope may carry none.
    pub fn resume(
        &mut self,
        item: StoredItem,
        reinvoke: &BTreeSet<String>,
    ) -> Result<Action, ProtocolError> {
        self.adopt_except(item, reinvoke)
    }

    fn adopt(&mut self, item: StoredItem) -> Result<Action, ProtocolError> {
        self.adopt_except(item, &BTreeSet::new())
    }

    fn adopt_except(
        &mut self,
        item: StoredItem,
        reinvoke: &BTreeSet<String>,
    ) -> Result<Action, ProtocolError> {
        let rec = ItemRecord::decode(&item.value).map_err(|e| {
            ProtocolError::Corrupt(format!(
                "checkpoint of '{}' is not an output record: {e}",
                self.id
            ))
        })?;
        self.outcome.adopted = true;
        if let OutputRecord::Ok(Payload::Inline(v)) = &rec.out {
            self.value = Some(v.clone());
        }
        self.record = Some(rec.out);
        self.invoked = item
            .invoked
            .iter()
            .map(|e| naming::split_invocation_entry(e).0)
            .filter(|n| !reinvoke.contains(*n))
            .map(str::to_string)
            .collect();
        self.output_known()
    }

    /// Targets the output goes to inline (for the spill decision), given the output value.
    fn inline_targets(&self, v: &Value) -> Vec<&'a NextEntry> {
        match self.shape {
            Shape::Sequence | Shape::Parallel => self.sub.next.iter().collect(),
            Shape::Choice => self.choose(v).ok().flatten().into_iter().collect(),
            _ => vec![],
        }
    }

    fn majority_cloud(&self, targets: &[&NextEntry]) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in targets {
            *counts.entry(t.faas.as_str()).or_default() += 1;
        }
        let own = self.sub.faas.as_str();
        let own_n = counts.get(own).copied().unwrap_or(0);
        let mut best = (own, own_n);
        for (c, n) in counts {
            if n > best.1 {
                best = (c, n);
            }
        }
        best.0.to_string()
    }

    /// The user function produced `v`: decide inline vs spill, then commit.
    fn produced(&mut self, v: Value) -> Action {
        let bytes = enc(&v);
        let size = bytes.len() as u64;
        let sub = self.sub;
        // The item also keeps the envelope (without input) next to the output.
        let head = ItemRecord::new(
            OutputRecord::Ok(Payload::Inline(Value::Null)),
            &self.env,
            None,
        );
        let item_limit = self
            .cfg
            .item_limit
            .saturating_sub(head.encode().len() as u64 + 32);
        let (spill, cloud, key_for) = match self.shape {
            Shape::End => (size > item_limit, self.env.home.clone(), KeyFor::Result),
            // A Choice whose guards all fail outside any fork ends the run with this output:
            // spill it where the run's result lives, outside the run prefix that GC deletes.
            Shape::Choice if self.env.branch.is_empty() && matches!(self.choose(&v), Ok(None)) => (
                sub.transfer_by_ds || size > item_limit,
                self.env.home.clone(),
                KeyFor::Result,
            ),
            Shape::Sequence | Shape::Parallel | Shape::Choice => {
                let targets = self.inline_targets(&v);
                let min = targets
                    .iter()
                    .map(|t| self.cfg.inline_limit(&t.faas))
                    .min()
                    .unwrap_or(u64::MAX);
                (
                    sub.transfer_by_ds
                        || size > item_limit
                        || size.saturating_add(ENVELOPE_OVERHEAD) > min,
                    self.majority_cloud(&targets),
                    KeyFor::Run,
                )
            }
            Shape::Map | Shape::FanIn | Shape::ByRedundant => (
                sub.transfer_by_ds || size > item_limit,
                sub.next[0].faas.clone(),
                KeyFor::Run,
            ),
            Shape::ByBatch => (
                sub.transfer_by_ds || size > item_limit || size > self.cfg.join_inline_limit,
                sub.next[0].faas.clone(),
                KeyFor::Batch,
            ),
        };
        self.value = Some(v.clone());
        if !spill {
            return self.commit(OutputRecord::Ok(Payload::Inline(v)));
        }
        let sha = sha256_hex(&bytes);
        let key = match key_for {
            KeyFor::Run => naming::spill_key(&self.id, &sha),
            KeyFor::Result => naming::result_blob_key(&self.env.workflow_id, &sha),
            KeyFor::Batch => format!(
                "_batch/{}/{}/{}.out.{}",
                self.env.workflow,
                sub.next[0].name,
                self.env.workflow_id,
                &sha[..16]
            ),
        };
        let blob = BlobRef {
            cloud,
            key,
            size,
            sha256: sha,
        };
        let record = OutputRecord::Ok(Payload::Blob(blob.clone()));
        self.state = State::AwaitSpill { record };
        Action::Spill { blob, bytes }
    }

    fn commit(&mut self, record: OutputRecord) -> Action {
        let bytes = ItemRecord::new(record.clone(), &self.env, self.cfg.now_ms).encode();
        self.record = Some(record);
        self.state = State::AwaitCommit;
        Action::Commit {
            cloud: self.sub.faas.clone(),
            key: self.id.clone(),
            record: bytes,
        }
    }

    /// The committed output is known (ours or adopted).
    fn output_known(&mut self) -> Result<Action, ProtocolError> {
        let rec = self
            .record
            .clone()
            .ok_or_else(|| ProtocolError::Corrupt("no output record".into()))?;
        match rec {
            OutputRecord::Err(f) => Ok(self.finish(OutputRecord::Err(f.clone()), Some(f), None)),
            OutputRecord::Ok(Payload::Blob(blob)) => {
                let needs_value = matches!(self.shape, Shape::Choice | Shape::Map);
                if needs_value && self.value.is_none() {
                    self.state = State::AwaitOwnValue;
                    return Ok(Action::Fetch {
                        refs: vec![Ref::Blob(blob)],
                    });
                }
                self.plan()
            }
            OutputRecord::Ok(Payload::Inline(_)) => self.plan(),
        }
    }

    fn payload(&self) -> Payload {
        match &self.record {
            Some(OutputRecord::Ok(p)) => p.clone(),
            _ => Payload::Inline(Value::Null),
        }
    }

    /// A reference successors can read the whole output through.
    fn output_ref(&self) -> Input {
        match self.payload() {
            Payload::Blob(blob) => Input::Blob { blob, select: None },
            Payload::Inline(_) => Input::Item {
                cloud: self.sub.faas.clone(),
                key: self.id.clone(),
                select: None,
            },
        }
    }

    /// Input for a successor on `cloud`: inline when it fits, else by reference.
    fn input_for(&self, cloud: &str, element: Option<u32>) -> Input {
        let limit = self.cfg.inline_limit(cloud);
        if let Payload::Inline(v) = self.payload() {
            let v = match element {
                None => Some(v),
                Some(i) => select(v, Some(i)).ok(),
            };
            if let Some(v) = v {
                let size = enc(&v).len() as u64;
                if size.saturating_add(ENVELOPE_OVERHEAD) <= limit {
                    return Input::Inline(v);
                }
            }
        }
        let r = self.output_ref();
        match element {
            None => r,
            Some(i) => r.select(i),
        }
    }

    fn successor_env(
        &self,
        function: &str,
        step: u32,
        branch: Vec<Frame>,
        vars: BTreeMap<String, i64>,
        input: Input,
    ) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            workflow: self.env.workflow.clone(),
            workflow_id: self.env.workflow_id.clone(),
            function: function.to_string(),
            step,
            branch,
            vars,
            input,
            home: self.env.home.clone(),
            def_hash: self.env.def_hash.clone(),
            trace: self.env.trace.clone(),
            tag: None,
        }
    }

    fn choose(&self, v: &Value) -> Result<Option<&'a NextEntry>, Failure> {
        let scope = GuardScope {
            counters: self
                .sub
                .next
                .iter()
                .filter_map(NextEntry::counter)
                .collect(),
            output: v,
            cloud: &self.cfg.executing_cloud,
            step: self.env.step,
            branch: self
                .env
                .branch
                .last()
                .map(|f| serde_json::json!({"index": f.index, "size": f.size}))
                .unwrap_or(Value::Null),
            vars: &self.env.vars,
        };
        for e in &self.sub.next {
            let Some(g) = &e.choice else { continue };
            let ok = g.eval_bool(&scope).map_err(|err| {
                self.failure(
                    "ChoiceError",
                    &format!(
                        "guard '{g}' of edge '{}' -> '{}': {err}",
                        self.sub.name, e.name
                    ),
                )
            })?;
            if ok {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Vars for a successor after the edge's ModifyEvent; enforces cycle bounds.
    fn vars_after(&self, e: &NextEntry) -> Result<BTreeMap<String, i64>, Failure> {
        let mut vars = self.env.vars.clone();
        if let (Some(max), Some(counter)) = (e.max_iterations, e.counter()) {
            let cur = vars.get(counter).copied().unwrap_or(0);
            if cur >= i64::from(max) {
                return Err(self.failure(
                    "MaxIterationsExceeded",
                    &format!(
                        "cycle '{}' -> '{}' reached max_iterations {max} ({counter} = {cur}) and its guard is still true",
                        self.sub.name, e.name
                    ),
                ));
            }
        }
        for m in &e.modify_event {
            m.apply(&mut vars)
                .map_err(|msg| self.failure("ModifyEventError", &msg))?;
        }
        Ok(vars)
    }

    fn call(
        &self,
        e: &NextEntry,
        step: u32,
        branch: Vec<Frame>,
        vars: BTreeMap<String, i64>,
        input: Input,
    ) -> Call {
        let record_as = naming::instance_name(&e.name, step, &branch);
        Call {
            function: e.name.clone(),
            cloud: e.faas.clone(),
            failover: e.failover.clone(),
            record_as,
            envelope: self.successor_env(&e.name, step, branch, vars, input),
        }
    }

    /// Plan the successor work once the output (and its value where needed) is known.
    fn plan(&mut self) -> Result<Action, ProtocolError> {
        let step = self.env.step + 1;
        match self.shape {
            Shape::End => Ok(self.end_of_thread()),
            Shape::Sequence | Shape::Parallel | Shape::Choice => {
                let entries: Vec<&NextEntry> = if self.shape == Shape::Choice {
                    let v = self.value.clone().unwrap_or(Value::Null);
                    match self.choose(&v) {
                        Ok(Some(e)) => vec![e],
                        Ok(None) => return Ok(self.end_of_thread()),
                        Err(f) => return Ok(self.fail_run(f)),
                    }
                } else {
                    self.sub.next.iter().collect()
                };
                let n = entries.len() as u32;
                let mut calls = Vec::new();
                for (i, e) in entries.into_iter().enumerate() {
                    let mut branch = self.env.branch.clone();
                    if self.shape == Shape::Parallel {
                        branch.push(Frame {
                            index: i as u32,
                            size: n,
                            fork_step: self.env.step,
                            window: None,
                        });
                    }
                    let vars = match self.vars_after(e) {
                        Ok(v) => v,
                        Err(f) => return Ok(self.fail_run(f)),
                    };
                    let input = self.input_for(&e.faas, None);
                    calls.push(self.call(e, step, branch, vars, input));
                }
                Ok(self.invoke_next(calls, After::Done))
            }
            Shape::Map => {
                let e = &self.sub.next[0];
                let v = self.value.clone().unwrap_or(Value::Null);
                let Value::Array(items) = &v else {
                    let f = self.failure(
                        "MapOverNonList",
                        &format!(
                            "Map edge '{}' -> '{}' needs a list, but '{}' returned a {}",
                            self.sub.name,
                            e.name,
                            self.sub.name,
                            type_name(&v)
                        ),
                    );
                    return Ok(self.fail_run(f));
                };
                let n = items.len() as u32;
                if n == 0 {
                    let f = self.failure(
                        "MapOverEmptyList",
                        &format!(
                            "Map edge '{}' -> '{}' got an empty list; a Map needs at least one element",
                            self.sub.name, e.name
                        ),
                    );
                    return Ok(self.fail_run(f));
                }
                let InvokeMode::Map { max_concurrency } = e.invoke_mode else {
                    return Err(ProtocolError::InvalidSubgraph(
                        "map shape without map mode".into(),
                    ));
                };
                let width = max_concurrency.unwrap_or(n).clamp(1, n);
                let window = (width < n).then(|| Window {
                    concurrency: width,
                    function: e.name.clone(),
                    cloud: e.faas.clone(),
                    failover: e.failover.clone(),
                    source: self.output_ref(),
                });
                let vars = match self.vars_after(e) {
                    Ok(v) => v,
                    Err(f) => return Ok(self.fail_run(f)),
                };
                let mut calls = Vec::with_capacity(width as usize);
                for i in 0..width {
                    let mut branch = self.env.branch.clone();
                    branch.push(Frame {
                        index: i,
                        size: n,
                        fork_step: self.env.step,
                        window: window.clone(),
                    });
                    let input = self.input_for(&e.faas, Some(i));
                    calls.push(self.call(e, step, branch, vars.clone(), input));
                }
                Ok(self.invoke_next(calls, After::Done))
            }
            Shape::FanIn | Shape::ByRedundant => {
                let e = &self.sub.next[0];
                let Some(top) = self.env.branch.last().cloned() else {
                    let f = self.failure(
                        "FanInOutsideFork",
                        &format!(
                            "{} edge '{}' -> '{}' reached outside any fork (the event carries no branch level)",
                            e.invoke_mode.name(),
                            self.sub.name,
                            e.name
                        ),
                    );
                    return Ok(self.fail_run(f));
                };
                let threshold = match e.invoke_mode {
                    InvokeMode::ByRedundant { completion, .. } => completion.clamp(1, top.size),
                    _ => top.size,
                };
                self.member_out = Some(self.member_input());
                // A bounded Map: this branch starts the sibling `concurrency` places on.
                let mut calls = Vec::new();
                if let Some(w) = &top.window {
                    let next = top.index + w.concurrency;
                    if next < top.size {
                        let mut branch = self.env.branch.clone();
                        if let Some(last) = branch.last_mut() {
                            last.index = next;
                        }
                        let sibling_step = top.fork_step + 1;
                        let input = w.source.select(next);
                        let record_as = naming::instance_name(&w.function, sibling_step, &branch);
                        // The sibling starts with the loop variables of the fork.
                        let env = self.successor_env(
                            &w.function,
                            sibling_step,
                            branch,
                            self.env.vars.clone(),
                            input,
                        );
                        calls.push(Call {
                            function: w.function.clone(),
                            cloud: w.cloud.clone(),
                            failover: w.failover.clone(),
                            record_as,
                            envelope: env,
                        });
                    }
                }
                Ok(self.invoke_next(calls, After::Join(JoinKind::FanIn { threshold })))
            }
            Shape::ByBatch => {
                let InvokeMode::ByBatch { batch_size, .. } = self.sub.next[0].invoke_mode else {
                    return Err(ProtocolError::InvalidSubgraph(
                        "batch shape without batch mode".into(),
                    ));
                };
                self.member_out = Some(match self.payload() {
                    Payload::Inline(v) => Input::Inline(v),
                    Payload::Blob(blob) => Input::Blob { blob, select: None },
                });
                Ok(self.join_action(JoinKind::Batch {
                    n: 0,
                    size: batch_size.max(1),
                }))
            }
        }
    }

    /// What this branch contributes to a join.
    fn member_input(&self) -> Input {
        match self.payload() {
            Payload::Inline(v) if (enc(&v).len() as u64) <= self.cfg.join_inline_limit => {
                Input::Inline(v)
            }
            _ => self.output_ref(),
        }
    }

    fn join_action(&mut self, kind: JoinKind) -> Action {
        let e = &self.sub.next[0];
        let out = self
            .member_out
            .clone()
            .unwrap_or(Input::Inline(Value::Null));
        let (key, member, capacity, complete_at) = match &kind {
            JoinKind::FanIn { threshold } => {
                let top = self.env.branch.last().cloned();
                let (index, size, fork_step) = top
                    .map(|t| (t.index, t.size, t.fork_step))
                    .unwrap_or((0, 1, 0));
                let parent = &self.env.branch[..self.env.branch.len().saturating_sub(1)];
                (
                    naming::join_key(&self.env.workflow_id, &e.name, fork_step, parent),
                    index.to_string(),
                    size,
                    *threshold,
                )
            }
            JoinKind::Batch { n, size } => (
                naming::batch_key(&self.env.workflow, &e.name, *n),
                self.env.workflow_id.clone(),
                *size,
                *size,
            ),
        };
        let value = enc(&JoinMember {
            step: self.env.step,
            out,
        });
        self.state = State::AwaitJoin { kind };
        Action::Join {
            cloud: e.faas.clone(),
            key,
            member,
            value,
            capacity,
            complete_at,
        }
    }

    fn joined(&mut self, kind: JoinKind, js: JoinState) -> Result<Action, ProtocolError> {
        let e = &self.sub.next[0];
        match kind {
            JoinKind::FanIn { threshold } => {
                let complete = js.count >= threshold;
                // Not complete yet, or a later member of a complete join (k of n): nothing to do,
                // and the store need not have returned the members.
                if !complete || (js.added && !js.completed) {
                    return Ok(self.done());
                }
                let mut members: Vec<(u32, JoinMember)> = Vec::new();
                for (k, v) in &js.members {
                    let idx: u32 = k.parse().map_err(|_| {
                        ProtocolError::Corrupt(format!("join member '{k}' is not a branch index"))
                    })?;
                    let m: JoinMember = serde_json::from_slice(v).map_err(|err| {
                        ProtocolError::Corrupt(format!(
                            "join member '{k}' is not a member record: {err}"
                        ))
                    })?;
                    members.push((idx, m));
                }
                if (members.len() as u32) < threshold {
                    return Err(ProtocolError::BadAnswer(format!(
                        "join reports {} members but returned {}",
                        js.count,
                        members.len()
                    )));
                }
                members.sort_by_key(|(i, _)| *i);
                members.truncate(threshold as usize);
                let top = self.env.branch.last().map(|f| f.fork_step).unwrap_or(0);
                let step = if threshold < top_size(&self.env.branch) {
                    // k of n: which branches finished first varies, so the step must not
                    // depend on them (ADR 0002).
                    top + 1
                } else {
                    members
                        .iter()
                        .map(|(_, m)| m.step)
                        .max()
                        .unwrap_or(self.env.step)
                        + 1
                };
                let parent = naming::pop_and_merge(std::slice::from_ref(&self.env.branch))
                    .map_err(ProtocolError::BadBranch)?;
                let record_as = naming::instance_name(&e.name, step, &parent);
                // This call completed the join; or its member was in already (a redelivery, or a
                // completer whose answer was lost) and the invocation is not recorded yet.
                let mine = js.added && js.completed;
                let redelivered = !js.added && !self.invoked.contains(&record_as);
                if !(mine || redelivered) {
                    return Ok(self.done());
                }
                let vars = match self.vars_after(e) {
                    Ok(v) => v,
                    Err(f) => return Ok(self.fail_run(f)),
                };
                let gather = Input::Gather(members.into_iter().map(|(_, m)| m.out).collect());
                self.invoke_gathered(e, step, parent, vars, gather, record_as, After::Done)
            }
            JoinKind::Batch { n, size } => {
                let me = self.env.workflow_id.clone();
                let member_here = js.members.contains_key(&me);
                if !js.added && !member_here && js.count >= size {
                    if n + 1 >= self.cfg.max_batch_walk {
                        let f = self.failure(
                            "BatchWalkExceeded",
                            &format!(
                                "walked {n} full batches of '{}' without a free place",
                                e.name
                            ),
                        );
                        return Ok(self.fail_run(f));
                    }
                    return Ok(self.join_action(JoinKind::Batch { n: n + 1, size }));
                }
                let batch_run = naming::batch_run_id(&self.env.workflow, &e.name, n);
                let record_as = format!("batch:{}:{n}", e.name);
                let complete = js.count >= size;
                let mine = js.added && js.completed;
                let redelivered = !js.added && complete && !self.invoked.contains(&record_as);
                let after = After::FinishOk {
                    batched_into: Some(batch_run.clone()),
                };
                if !(mine || redelivered) {
                    return Ok(self.after_group(vec![], after, None));
                }
                let mut outs = Vec::new();
                for (k, v) in &js.members {
                    let m: JoinMember = serde_json::from_slice(v).map_err(|err| {
                        ProtocolError::Corrupt(format!(
                            "batch member '{k}' is not a member record: {err}"
                        ))
                    })?;
                    outs.push(m.out);
                }
                let mut env =
                    self.successor_env(&e.name, 0, vec![], BTreeMap::new(), Input::Gather(outs));
                env.workflow_id = batch_run;
                env.home = e.faas.clone();
                let input = env.input.clone();
                let call = Call {
                    function: e.name.clone(),
                    cloud: e.faas.clone(),
                    failover: e.failover.clone(),
                    record_as: record_as.clone(),
                    envelope: env,
                };
                self.gathered_call(call, input, after)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke_gathered(
        &mut self,
        e: &NextEntry,
        step: u32,
        branch: Vec<Frame>,
        vars: BTreeMap<String, i64>,
        gather: Input,
        record_as: String,
        after: After,
    ) -> Result<Action, ProtocolError> {
        let mut call = self.call(e, step, branch, vars, gather.clone());
        call.record_as = record_as;
        self.gathered_call(call, gather, after)
    }

    /// Invoke with a gathered input, spilling the list of references when the event would be
    /// too large for the target.
    fn gathered_call(
        &mut self,
        mut call: Call,
        gather: Input,
        after: After,
    ) -> Result<Action, ProtocolError> {
        let size = call.envelope.encode().len() as u64;
        if size <= self.cfg.inline_limit(&call.cloud) {
            return Ok(self.invoke_next(vec![call], after));
        }
        let bytes = enc(&gather);
        let sha = sha256_hex(&bytes);
        let blob = BlobRef {
            cloud: call.cloud.clone(),
            key: format!(
                "{}/{}.gather.{}",
                call.envelope.workflow_id,
                call.record_as,
                &sha[..16]
            ),
            size: bytes.len() as u64,
            sha256: sha,
        };
        call.envelope.input = Input::Indirect(blob.clone());
        self.state = State::AwaitGatherSpill {
            call: Box::new(call),
            after,
        };
        Ok(Action::Spill { blob, bytes })
    }

    fn invoke_next(&mut self, calls: Vec<Call>, after: After) -> Action {
        let mut calls: Vec<Call> = calls
            .into_iter()
            .filter(|c| !self.invoked.contains(&c.record_as))
            .collect();
        if calls.is_empty() {
            return self.after_group(vec![], after, None);
        }
        let n = self.cfg.group_size.max(1).min(calls.len());
        let rest = calls.split_off(n);
        self.state = State::AwaitInvoke {
            group: calls.clone(),
            rest,
            after,
        };
        Action::Invoke { calls }
    }

    fn after_group(
        &mut self,
        rest: Vec<Call>,
        after: After,
        failed: Option<CallFailure>,
    ) -> Action {
        if let Some(msg) = failed {
            // Stop here: the platform redelivers and the invoked set skips what succeeded.
            self.outcome.incomplete = Some(msg);
            return self.done();
        }
        if !rest.is_empty() {
            return self.invoke_next(rest, after);
        }
        match after {
            After::Done => self.done(),
            After::Join(kind) => self.join_action(kind),
            After::FinishOk { batched_into } => {
                let rec = OutputRecord::Ok(self.payload());
                self.finish(rec, None, batched_into)
            }
        }
    }

    /// A thread of control ends here (no successor taken).
    fn end_of_thread(&mut self) -> Action {
        if !self.env.branch.is_empty() {
            let f = self.failure(
                "EndInsideFork",
                &format!(
                    "function '{}' ended its thread inside a fork ({}); every branch must reach a fan_in",
                    self.sub.name,
                    self.env.instance_name()
                ),
            );
            return self.fail_run(f);
        }
        let rec = OutputRecord::Ok(self.payload());
        self.finish(rec, None, None)
    }

    fn fail_run(&mut self, f: Failure) -> Action {
        self.finish(OutputRecord::Err(f.clone()), Some(f), None)
    }

    fn finish(
        &mut self,
        result: OutputRecord,
        failure: Option<Failure>,
        batched_into: Option<String>,
    ) -> Action {
        let ok = failure.is_none();
        let rec = RunRecord {
            workflow: self.env.workflow.clone(),
            workflow_id: self.env.workflow_id.clone(),
            result,
            finished_by: self.id.clone(),
            batched_into,
            finished_ms: self.cfg.now_ms,
        };
        self.state = State::AwaitFinish { ok, failure };
        Action::Finish {
            cloud: self.env.home.clone(),
            key: naming::run_key(&self.env.workflow_id),
            record: enc(&rec),
            ok,
        }
    }
}

fn top_size(stack: &[Frame]) -> u32 {
    stack.last().map(|f| f.size).unwrap_or(1)
}

enum KeyFor {
    Run,
    Result,
    Batch,
}

fn answer_name(a: &Answer) -> &'static str {
    match a {
        Answer::Checkpoint(_) => "Checkpoint",
        Answer::Fetched(_) => "Fetched",
        Answer::Ran(_) => "Ran",
        Answer::Spilled => "Spilled",
        Answer::Committed(_) => "Committed",
        Answer::Joined(_) => "Joined",
        Answer::Invoked(_) => "Invoked",
        Answer::Recorded => "Recorded",
        Answer::Finished => "Finished",
        Answer::GcDone => "GcDone",
    }
}
