//! The Backend-Shim runtime: drives the protocol state machine of `joint-core` against the
//! traits. It is embeddable: [`Runtime::handle`] takes the raw event bytes a FaaS platform
//! delivered and does everything — the Lambda and FC adapters are thin wrappers around it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use joint_core::envelope::{
    BlobRef, DEFAULT_MAX_ENVELOPE, ENVELOPE_VERSION, Envelope, Input, OutputRecord, RunRecord,
    RunStart,
};
use joint_core::machine::{self, Action, Answer, FnError, Machine, Outcome, Ref};
use joint_core::naming;
use joint_core::subgraph::SubGraph;
use joint_core::workflow::Workflow;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cloud::Clouds;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::{Context, Handlers};
use crate::invoke::{InvokeConfig, Invoker};
use crate::layers::{Chaos, LatencyProfile};
use crate::observe::{ObsEvent, Observer};
use crate::traits::Created;
use crate::traits::JoinSize;

mod resume;

pub use resume::{
    ResumeOptions, ResumeOutcome, ResumeReport, SweepReport, is_sweep_event, run_version,
};

/// What happens to a run's working state (its checkpoints, joins and spilled blobs) when the
/// run ends (ADR 0009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GcPolicy {
    /// Nothing is deleted when the run ends: every store deletes what it holds once its retention
    /// has passed since the last write (DynamoDB and Tablestore TTL, S3/OSS lifecycle rules, the
    /// local stores' expiry). The platform may deliver a duplicate of any event of the run long
    /// after the run ended (Lambda up to 6 hours, FC up to 7 days); it must still find the
    /// instance's checkpoint, or it would commit and run the instance again. The only safe
    /// choice for deployed functions, and the default. `joint gc` deletes a run by hand.
    #[default]
    Retain,
    /// The host deletes the run's working state once it knows that no event of the run can
    /// arrive any more: the ending instance queues the deletion and the host calls
    /// [`Runtime::run_deferred_gc`] when its queues hold nothing of the run. Only for hosts that
    /// see every queue of every cloud the run uses (`joint run` on local clouds).
    WhenQuiet,
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Largest event accepted.
    pub max_envelope: usize,
    /// Successors invoked concurrently by one instance.
    pub invoke_concurrency: usize,
    /// Inputs fetched concurrently by one instance.
    pub fetch_concurrency: usize,
    /// Protocol settings (group size, join inline limit …); cloud limits are filled per call.
    pub machine: machine::Config,
    /// Invocation stack.
    pub invoke: InvokeConfig,
    /// GC at the end of a run.
    pub gc: GcPolicy,
    /// Crash injection (the other faults live in the backends).
    pub chaos: Chaos,
    /// Emulated invocation latency per cloud pair.
    pub latency: LatencyProfile,
    /// Deployment keys: when set, every event this runtime sends is signed and every event it
    /// receives must carry a valid signature.
    pub keyring: Option<joint_core::sign::Keyring>,
    /// The policy of every coordination-store and blob call (timeout per attempt, retries with
    /// jittered backoff, a retry budget per cloud), unless `store_policies` names the cloud.
    pub store_policy: crate::policy::CallPolicy,
    /// Per-cloud store policies.
    pub store_policies: BTreeMap<String, crate::policy::CallPolicy>,
    /// How long an invoked successor has to commit its output before `joint resume` and the
    /// sweeper treat its event as lost (the deadline stored with each invocation record).
    /// Set it above the functions' timeout plus the platform's retry window.
    pub invoke_deadline: Duration,
}

impl RuntimeConfig {
    /// Defaults, with what a deployed function's environment sets: `JOINT_KEYS` (deployment
    /// keys, see [`joint_core::sign::Keyring::parse`]) and `JOINT_INVOKE_DEADLINE_SECS`
    /// ([`RuntimeConfig::invoke_deadline`]). A bad value is an error naming the variable.
    pub fn from_env() -> std::result::Result<RuntimeConfig, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut cfg = RuntimeConfig::default();
        if let Some(spec) = var("JOINT_KEYS") {
            cfg.keyring = Some(
                joint_core::sign::Keyring::parse(&spec).map_err(|e| format!("JOINT_KEYS: {e}"))?,
            );
        }
        if let Some(s) = var("JOINT_INVOKE_DEADLINE_SECS") {
            let secs: u64 = s.trim().parse().map_err(|_| {
                format!("JOINT_INVOKE_DEADLINE_SECS: '{s}' is not a whole number of seconds")
            })?;
            cfg.invoke_deadline = Duration::from_secs(secs);
        }
        Ok(cfg)
    }
}

/// Bytes a join member record adds around a branch output (`{"step":…,"out":{"inline":…}}`).
const JOIN_MEMBER_FRAMING: u64 = 256;

/// The longest wait between two attempts of a user function.
pub const MAX_FUNCTION_BACKOFF: Duration = Duration::from_secs(60);

/// Default [`RuntimeConfig::invoke_deadline`]: Lambda's longest timeout plus its async retries.
pub const DEFAULT_INVOKE_DEADLINE: Duration = Duration::from_secs(60 * 60);

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_envelope: DEFAULT_MAX_ENVELOPE,
            invoke_concurrency: 128,
            fetch_concurrency: 32,
            machine: machine::Config::default(),
            invoke: InvokeConfig::default(),
            gc: GcPolicy::Retain,
            chaos: Chaos::default(),
            latency: LatencyProfile::default(),
            keyring: None,
            invoke_deadline: DEFAULT_INVOKE_DEADLINE,
            store_policy: crate::policy::CallPolicy::default(),
            store_policies: BTreeMap::new(),
        }
    }
}

struct Inner {
    workflow: Arc<Workflow>,
    clouds: Clouds,
    handlers: Handlers,
    invoker: Invoker,
    cfg: RuntimeConfig,
    observer: Option<Arc<dyn Observer>>,
    deferred: Mutex<Vec<(String, Vec<String>)>>,
    /// Executions started per (instance, delivery), kept only when crashes or kills are
    /// injected: a second execution with the same delivery number (a racing copy, a re-sent
    /// event after its first was dead-lettered) draws its faults anew.
    executions: Mutex<std::collections::HashMap<(String, u32), u32>>,
}

/// The runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workflow", &self.inner.workflow.name)
            .field("clouds", &self.inner.clouds.names())
            .finish()
    }
}

/// Delivers events to a runtime (implemented by [`Runtime`]); FaaS emulators hold one.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Handle one delivery of `event` on `cloud`.
    async fn deliver(&self, cloud: &str, event: Bytes, delivery: u32) -> Result<Outcome>;
    /// Functions this runtime can execute on `cloud` (placed there or replicated there).
    fn hosted(&self, cloud: &str) -> Vec<String>;
    /// The workflow version (definition hash) whose events this runtime executes.
    fn version(&self) -> String;
    /// One sweeper pass ([`Runtime::sweep`]): what a scheduled `{"joint": "sweep"}` event runs.
    async fn sweep(&self) -> Result<SweepReport>;
}

#[async_trait]
impl Deliver for Runtime {
    async fn deliver(&self, cloud: &str, event: Bytes, delivery: u32) -> Result<Outcome> {
        self.handle(cloud, &event, delivery).await
    }
    fn hosted(&self, cloud: &str) -> Vec<String> {
        self.inner
            .workflow
            .functions
            .values()
            .filter(|s| s.faas == cloud || s.failover.iter().any(|c| c == cloud))
            .map(|s| s.name.clone())
            .collect()
    }
    async fn sweep(&self) -> Result<SweepReport> {
        Runtime::sweep(self).await
    }
    fn version(&self) -> String {
        self.inner.workflow.hash.clone()
    }
}

/// Protocol points where `--chaos crash=P` may stop an execution.
pub const CRASH_POINTS: &[&str] = &[
    "read_checkpoint",
    "fetch",
    "run",
    "spill",
    "commit",
    "join",
    "invoke",
    "record",
    "finish",
    "gc",
];

/// Kill this process at once (`Chaos::kill`, a test-only fault): `SIGKILL` on Unix, which no
/// handler can intercept; `abort` elsewhere.
fn kill_this_process() -> ! {
    #[cfg(unix)]
    // SAFETY: kill(2) on our own pid with SIGKILL has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

fn rt_err(kind: ErrorKind, op: &'static str, target: &str, msg: impl Into<String>) -> Error {
    Error::new(kind, "runtime", op, target, msg)
}

/// A run's status, rebuilt from the coordination stores.
#[derive(Debug, Clone)]
pub struct RunStatus {
    /// The run record, once the run ended.
    pub record: Option<RunRecord>,
    /// Committed instances: (cloud, instance id, ok?, invoked successors).
    pub instances: Vec<InstanceStatus>,
}

/// One committed instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceStatus {
    /// Cloud whose store holds it.
    pub cloud: String,
    /// Instance id.
    pub instance: String,
    /// `ok` or `failed`.
    pub status: &'static str,
    /// Successors it recorded as invoked.
    pub invoked: Vec<String>,
    /// Of those, the ones with no output after their deadline: lost events `joint resume`
    /// re-drives.
    pub overdue: Vec<String>,
}

impl Runtime {
    /// A runtime for `workflow` over `clouds`, running user functions from `handlers`.
    ///
    /// Fails when a cloud of the workflow is missing, or when a store would delete what it holds
    /// sooner than a platform may still redeliver an event (its retention is shorter than some
    /// cloud's redelivery window): a duplicate arriving after that would commit its instance a
    /// second time (ADR 0009).
    pub fn new(
        workflow: Arc<Workflow>,
        clouds: Clouds,
        handlers: Handlers,
        cfg: RuntimeConfig,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Self> {
        check_retention(&clouds)?;
        let invoker = Invoker::new(&clouds, &cfg.invoke);
        // Every store call of the runtime runs under its cloud's policy; each cloud's calls
        // share one retry budget.
        let mut policied = Clouds::new();
        for c in clouds.iter() {
            let mut policy = cfg
                .store_policies
                .get(&c.name)
                .cloned()
                .unwrap_or_else(|| cfg.store_policy.clone());
            if let Some(b) = &policy.budget {
                policy.budget = Some(Arc::new(crate::policy::RetryBudget::new(
                    b.ratio(),
                    b.min_per_sec(),
                )));
            }
            policied.insert(crate::cloud::Cloud {
                name: c.name.clone(),
                faas: c.faas.clone(),
                coord: Arc::new(crate::policy::Policied::new(
                    c.coord.clone(),
                    policy.clone(),
                    format!("store({})", c.name),
                )),
                blob: Arc::new(crate::policy::Policied::new(
                    c.blob.clone(),
                    policy,
                    format!("blobs({})", c.name),
                )),
            });
        }
        let clouds = policied;
        Ok(Runtime {
            inner: Arc::new(Inner {
                workflow,
                clouds,
                handlers,
                invoker,
                cfg,
                observer,
                deferred: Mutex::new(Vec::new()),
                executions: Mutex::default(),
            }),
        })
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.inner.workflow
    }

    /// The clouds.
    pub fn clouds(&self) -> &Clouds {
        &self.inner.clouds
    }

    /// The invoker (for breaker inspection).
    pub fn invoker(&self) -> &Invoker {
        &self.inner.invoker
    }

    fn emit(&self, e: ObsEvent) {
        if let Some(o) = &self.inner.observer {
            o.event(&e);
        }
    }

    /// The cloud holding runs' records.
    pub fn home(&self) -> Result<&SubGraph> {
        let w = &self.inner.workflow;
        w.sub(&w.start).ok_or_else(|| {
            rt_err(
                ErrorKind::InvalidInput,
                "start",
                &w.start,
                "the start function has no sub-graph",
            )
        })
    }

    /// The envelope that starts run `run_id` with `input` (inline; see [`Runtime::start`]).
    pub fn start_envelope(&self, run_id: &str, input: Input) -> Result<Envelope> {
        let start = self.home()?;
        let env = Envelope {
            v: ENVELOPE_VERSION,
            workflow: self.inner.workflow.name.clone(),
            workflow_id: run_id.to_string(),
            function: start.name.clone(),
            step: 0,
            branch: vec![],
            vars: BTreeMap::new(),
            input,
            home: start.faas.clone(),
            def_hash: self.inner.workflow.hash.clone(),
            trace: None,
            tag: None,
        };
        env.check()
            .map_err(|e| rt_err(ErrorKind::InvalidInput, "start", run_id, e.to_string()))?;
        let mut env = env;
        if let Some(k) = &self.inner.cfg.keyring {
            k.sign(&mut env);
        }
        Ok(env)
    }

    /// Start run `run_id` with `input`: write the run's start record, then invoke the start
    /// function asynchronously on its cloud (failing over like any invocation). Large inputs are
    /// stored in the home cloud's blob store.
    ///
    /// A run id names one run: starting it again with the same workflow version and input is
    /// harmless (the start is sent again and the start instance deduplicates), anything else
    /// fails with `AlreadyExists` naming what differs, before anything is invoked.
    pub async fn start(&self, run_id: &str, input: Value) -> Result<()> {
        self.claim_run_id(run_id, &input).await?;
        self.send_start(run_id, input).await
    }

    /// Invoke the start function of run `run_id` with `input`, without writing or checking the
    /// start record (for a caller that did [`Runtime::claim_run_id`] itself).
    pub async fn send_start(&self, run_id: &str, input: Value) -> Result<()> {
        let start = self.home()?.clone();
        let cloud = self.inner.clouds.get(&start.faas)?;
        let bytes = serde_json::to_vec(&input).unwrap_or_default();
        let limit = cloud.faas.capabilities().async_payload_limit;
        let input = if (bytes.len() as u64) + machine::ENVELOPE_OVERHEAD <= limit {
            Input::Inline(input)
        } else {
            let sha = hex::encode(Sha256::digest(&bytes));
            let key = format!("{}/_input.{}", run_id, &sha[..16]);
            match cloud.blob.put_new(&key, Bytes::from(bytes.clone())).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            Input::Blob {
                blob: BlobRef {
                    cloud: start.faas.clone(),
                    key,
                    size: bytes.len() as u64,
                    sha256: sha,
                },
                select: None,
            }
        };
        let env = self.start_envelope(run_id, input)?;
        self.inner
            .invoker
            .invoke(
                &start.name,
                &start.faas,
                &start.failover,
                Bytes::from(env.encode()),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Write the start record of `run_id` (create-if-absent in the home cloud's store), or check
    /// that the existing one is for this workflow version and `input`.
    pub async fn claim_run_id(&self, run_id: &str, input: &Value) -> Result<()> {
        if !naming::valid_id(run_id) {
            return Err(rt_err(
                ErrorKind::InvalidInput,
                "start",
                run_id,
                "a run id must be 1-128 characters of A-Z a-z 0-9 - _ . (not starting with '.')",
            ));
        }
        let wf = &self.inner.workflow;
        let rec = RunStart {
            workflow: wf.name.clone(),
            def_hash: wf.hash.clone(),
            input_sha256: RunStart::input_hash(input),
            started_ms: now_ms(),
        };
        let home = self.inner.clouds.get(&self.home()?.faas)?;
        let key = naming::run_start_key(run_id);
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        match home.coord.create(&key, Bytes::from(bytes)).await? {
            Created::New => Ok(()),
            Created::Existing(item) => {
                let old: RunStart = serde_json::from_slice(&item.value).map_err(|e| {
                    rt_err(
                        ErrorKind::InvalidInput,
                        "start",
                        &key,
                        format!("not a start record: {e}"),
                    )
                })?;
                match old.conflict(run_id, &rec.workflow, &rec.def_hash, &rec.input_sha256) {
                    None => Ok(()),
                    Some(why) => Err(rt_err(ErrorKind::AlreadyExists, "start", run_id, why)),
                }
            }
        }
    }

    /// The start record of `run_id`, if it was started through [`Runtime::start`] and the
    /// record is still kept.
    pub async fn start_record(&self, run_id: &str) -> Result<Option<RunStart>> {
        let home = self.inner.clouds.get(&self.home()?.faas)?;
        let key = naming::run_start_key(run_id);
        match home.coord.get(&key).await? {
            None => Ok(None),
            Some(item) => serde_json::from_slice(&item.value).map(Some).map_err(|e| {
                rt_err(
                    ErrorKind::InvalidInput,
                    "start",
                    &key,
                    format!("not a start record: {e}"),
                )
            }),
        }
    }

    /// The run record of `run_id` (home cloud first, then every cloud).
    pub async fn run_record(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let home = self.home()?.faas.clone();
        find_run_record(&self.inner.clouds, run_id, Some(&home)).await
    }

    /// The output value of a finished run (reading a spilled result from its blob).
    pub async fn resolve_output(
        &self,
        rec: &RunRecord,
    ) -> Result<std::result::Result<Value, joint_core::envelope::Failure>> {
        resolve_output(&self.inner.clouds, rec).await
    }

    /// Status of a run: its record and every committed instance on every cloud.
    pub async fn status(&self, run_id: &str) -> Result<RunStatus> {
        run_status(&self.inner.clouds, run_id).await
    }

    /// Delete the run's working state; with `record`, also its run record and result blob.
    pub async fn gc(&self, run_id: &str, record: bool) -> Result<u64> {
        gc_run(&self.inner.clouds, run_id, record).await
    }

    /// Perform GC queued under [`GcPolicy::WhenQuiet`].
    pub async fn run_deferred_gc(&self) -> Result<u64> {
        let jobs: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut n = 0;
        for (prefix, clouds) in jobs {
            n += self.gc_prefix(&prefix, &clouds).await?;
        }
        Ok(n)
    }

    async fn gc_prefix(&self, prefix: &str, clouds: &[String]) -> Result<u64> {
        let mut n = 0;
        for name in clouds {
            let c = self.inner.clouds.get(name)?;
            n += c.coord.delete_prefix(prefix).await?;
            n += c.blob.delete_prefix(prefix).await?;
        }
        Ok(n)
    }

    fn machine_config(&self, sub: &SubGraph, cloud: &str) -> Result<machine::Config> {
        let mut cfg = self.inner.cfg.machine.clone();
        cfg.executing_cloud = cloud.to_string();
        cfg.now_ms = Some(now_ms());
        for c in self.inner.clouds.iter() {
            let mut limit = c.faas.capabilities().async_payload_limit;
            if let Some(o) = sub.inline_limit.get(&c.name) {
                limit = limit.min(*o);
            }
            cfg.inline_limits.insert(c.name.clone(), limit);
        }
        let own = self.inner.clouds.get(&sub.faas)?;
        cfg.item_limit = cfg.item_limit.min(own.coord.capabilities().item_limit);
        // A join lives in its successor's store: branch outputs travel inline in it only while
        // their member record (the output plus its framing) fits that store's member limit.
        if let Some(join) = sub
            .next
            .first()
            .and_then(|e| self.inner.clouds.get(&e.faas).ok())
        {
            let limit = join.coord.capabilities().join_value_limit;
            cfg.join_inline_limit = cfg
                .join_inline_limit
                .min(limit.saturating_sub(JOIN_MEMBER_FRAMING));
        }
        Ok(cfg)
    }

    /// Handle one delivery of `event` on `cloud`. Returns the outcome, or an error after which
    /// the platform should deliver the event again (nothing committed is lost or doubled).
    pub async fn handle(&self, cloud: &str, event: &[u8], delivery: u32) -> Result<Outcome> {
        let env = Envelope::decode(event, self.inner.cfg.max_envelope).map_err(|e| {
            rt_err(ErrorKind::InvalidInput, "handle", cloud, e.to_string()).with_source(e)
        })?;
        if let Some(k) = &self.inner.cfg.keyring {
            k.verify(&env).map_err(|e| {
                rt_err(
                    ErrorKind::InvalidInput,
                    "handle",
                    &env.instance_id(),
                    e.to_string(),
                )
            })?;
        }
        let wf = &self.inner.workflow;
        if env.def_hash != wf.hash {
            return Err(rt_err(
                ErrorKind::InvalidInput,
                "handle",
                &env.instance_id(),
                format!(
                    "the event was made by workflow version {} but this deployment runs {} of '{}'; deploy the matching version",
                    short(&env.def_hash),
                    short(&wf.hash),
                    wf.name
                ),
            ));
        }
        let sub = wf.sub(&env.function).ok_or_else(|| {
            rt_err(
                ErrorKind::FunctionNotFound,
                "handle",
                &env.function,
                format!("workflow '{}' has no function '{}'", wf.name, env.function),
            )
        })?;
        let cfg = self.machine_config(sub, cloud)?;
        let run = env.workflow_id.clone();
        let mut m = Machine::new(sub, env, cfg).map_err(|e| {
            rt_err(ErrorKind::InvalidInput, "handle", &sub.name, e.to_string()).with_source(e)
        })?;
        let instance = m.instance_id().to_string();
        let t0 = Instant::now();
        self.emit(ObsEvent::InstanceStart {
            run: run.clone(),
            instance: instance.clone(),
            function: sub.name.clone(),
            cloud: cloud.to_string(),
            delivery,
            at: SystemTime::now(),
        });
        let chaos = &self.inner.cfg.chaos;
        let repeat = if chaos.crash > 0.0 || chaos.kill > 0.0 {
            let mut ex = self
                .inner
                .executions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = ex.entry((instance.clone(), delivery)).or_insert(0);
            *n += 1;
            *n - 1
        } else {
            0
        };
        let first = m.start();
        let result = self
            .drive(&mut m, first, sub, cloud, &run, (delivery, repeat), None)
            .await;
        let (ran, adopted, error) = match &result {
            Ok(o) => (o.ran_function, o.adopted, None),
            Err(e) => (false, false, Some(e.to_string())),
        };
        self.emit(ObsEvent::InstanceEnd {
            run,
            instance,
            function: sub.name.clone(),
            cloud: cloud.to_string(),
            ran_function: ran,
            adopted,
            error,
            elapsed: t0.elapsed(),
        });
        result
    }

    /// Whether an injected crash or kill fires at `point` of execution `attempt` (the delivery
    /// number, and how many executions of this instance with that delivery number this runtime
    /// started before: 0 for the first, whose schedule is the seed's alone).
    fn crash_check(
        &self,
        run: &str,
        instance: &str,
        point: String,
        attempt: (u32, u32),
    ) -> Result<()> {
        let chaos = &self.inner.cfg.chaos;
        let (delivery, repeat) = attempt;
        let delivery = if repeat == 0 {
            delivery.to_string()
        } else {
            format!("{delivery}.{repeat}")
        };
        if chaos.fires(chaos.kill, &["kill", instance, &point, &delivery]) {
            // Test-only (`Chaos::kill`): the whole process dies here, as a host that loses
            // power does; nothing is flushed, no destructor runs.
            tracing::warn!(run, instance, point = %point, "injected process kill");
            kill_this_process();
        }
        if chaos.fires(chaos.crash, &["crash", instance, &point, &delivery]) {
            self.emit(ObsEvent::Crash {
                run: run.to_string(),
                instance: instance.to_string(),
                point: point.clone(),
            });
            return Err(rt_err(
                ErrorKind::InjectedCrash,
                "handle",
                instance,
                format!("injected crash at {point}"),
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        m: &mut Machine<'_>,
        first: Action,
        sub: &SubGraph,
        cloud: &str,
        run: &str,
        attempt: (u32, u32),
        redrive: Option<&resume::Redrive>,
    ) -> Result<Outcome> {
        let instance = m.instance_id().to_string();
        let mut action = first;
        loop {
            let kind = action.kind();
            if let Action::Done(outcome) = action {
                if let Some(f) = &outcome.incomplete {
                    // The successor's own failure kind, so a caller (an adapter, a test) sees
                    // why; the platform delivers the event again whatever the kind.
                    let kind = ErrorKind::from_name(&f.kind).unwrap_or(ErrorKind::Unavailable);
                    return Err(
                        rt_err(kind, "invoke", &instance, f.message.clone()).with_retryable(true)
                    );
                }
                return Ok(outcome);
            }
            // A resume is not a platform delivery: faults are injected into deliveries only.
            let deliver = redrive.is_none();
            if deliver {
                self.crash_check(run, &instance, format!("before:{kind}"), attempt)?;
            }
            let start = SystemTime::now();
            let t = Instant::now();
            let answer = self.perform(action, m, sub, cloud, run, redrive).await?;
            self.emit(ObsEvent::Action {
                run: run.to_string(),
                instance: instance.clone(),
                cloud: cloud.to_string(),
                kind,
                start,
                elapsed: t.elapsed(),
            });
            if deliver {
                self.crash_check(run, &instance, format!("after:{kind}"), attempt)?;
            }
            m.set_clock(now_ms());
            action = m.on(answer).map_err(|e| {
                rt_err(ErrorKind::InvalidInput, "handle", &instance, e.to_string()).with_source(e)
            })?;
        }
    }

    async fn fetch_blob(&self, b: &BlobRef) -> Result<Bytes> {
        fetch_blob(&self.inner.clouds, b).await
    }

    async fn fetch(&self, r: Ref) -> Result<Vec<u8>> {
        match r {
            Ref::Blob(b) => Ok(self.fetch_blob(&b).await?.to_vec()),
            Ref::Item { cloud, key } => {
                let c = self.inner.clouds.get(&cloud)?;
                match c.coord.get(&key).await? {
                    Some(item) => Ok(item.value),
                    None => Err(rt_err(
                        ErrorKind::NotFound,
                        "fetch",
                        &key,
                        format!("the input item is not in {cloud}'s store (not committed yet, or collected)"),
                    )
                    .with_retryable(true)),
                }
            }
        }
    }

    async fn run_user(
        &self,
        sub: &SubGraph,
        input: Value,
        retry: joint_core::subgraph::RetryPolicy,
        m: &Machine<'_>,
        cloud: &str,
    ) -> Result<std::result::Result<Value, FnError>> {
        let handler = match self.inner.handlers.resolve(sub) {
            Ok(h) => h,
            // A handler that is not registered never will be: the instance fails (and with it
            // the run, or its catch route) at once instead of being redelivered until the
            // platform gives up.
            Err(e) => {
                return Ok(Err(FnError {
                    kind: "HandlerNotFound".into(),
                    message: e.message().to_string(),
                }));
            }
        };
        let limit = match sub.timeout {
            None => None,
            Some(secs) => Some(
                Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        rt_err(
                            ErrorKind::InvalidInput,
                            "run",
                            &sub.name,
                            format!(
                                "function '{}' has timeout {secs}, which is not a number of seconds above 0",
                                sub.name
                            ),
                        )
                    })?,
            ),
        };
        let env = m.envelope();
        let mut backoff = Duration::from_millis(retry.backoff_ms);
        let attempts = retry.max_attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            let ctx = Context {
                workflow_id: env.workflow_id.clone(),
                instance: m.instance_id().to_string(),
                function: sub.name.clone(),
                cloud: cloud.to_string(),
                attempt,
                vars: env.vars.clone(),
            };
            let call = handler.call(input.clone(), &ctx);
            let result = match limit {
                None => call.await,
                // Past the limit the call's future is dropped: a Rust handler stops at its next
                // await, a command's process group is killed.
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(FnError {
                            kind: "Timeout".into(),
                            message: format!(
                                "function '{}' did not finish within its timeout of {} s (attempt {attempt} of {attempts})",
                                sub.name,
                                limit.as_secs_f64()
                            ),
                        })
                    }),
            };
            match result {
                Ok(v) => return Ok(Ok(v)),
                Err(e) => {
                    last = Some(e);
                    if attempt < attempts {
                        tokio::time::sleep(backoff).await;
                        // Capped: a long retry policy must not wait hours between attempts.
                        backoff = (backoff * 2).min(MAX_FUNCTION_BACKOFF);
                    }
                }
            }
        }
        Ok(Err(last.unwrap_or(FnError {
            kind: "HandlerError".into(),
            message: "no attempt ran".into(),
        })))
    }

    async fn perform(
        &self,
        action: Action,
        m: &Machine<'_>,
        sub: &SubGraph,
        cloud: &str,
        run: &str,
        redrive: Option<&resume::Redrive>,
    ) -> Result<Answer> {
        let clouds = &self.inner.clouds;
        Ok(match action {
            Action::ReadCheckpoint { cloud: c, key } => {
                Answer::Checkpoint(clouds.get(&c)?.coord.get(&key).await?)
            }
            Action::Fetch { refs } => {
                let n = self.inner.cfg.fetch_concurrency.max(1);
                let holders: Vec<String> = refs
                    .iter()
                    .map(|r| match r {
                        Ref::Blob(b) => b.cloud.clone(),
                        Ref::Item { cloud, .. } => cloud.clone(),
                    })
                    .collect();
                let got: Vec<Result<Vec<u8>>> =
                    stream::iter(refs.into_iter().map(|r| self.fetch(r)))
                        .buffered(n)
                        .collect()
                        .await;
                let got = got.into_iter().collect::<Result<Vec<_>>>()?;
                let mut by_cloud: BTreeMap<&str, u64> = BTreeMap::new();
                for (from, bytes) in holders.iter().zip(&got) {
                    if from != cloud {
                        *by_cloud.entry(from).or_default() += bytes.len() as u64;
                    }
                }
                for (from, bytes) in by_cloud {
                    self.emit(ObsEvent::Fetched {
                        run: run.to_string(),
                        from: from.to_string(),
                        to: cloud.to_string(),
                        bytes,
                    });
                }
                Answer::Fetched(got)
            }
            Action::Run { input, retry } => {
                Answer::Ran(self.run_user(sub, input, retry, m, cloud).await?)
            }
            Action::Spill { blob, bytes } => {
                let c = clouds.get(&blob.cloud)?;
                match c.blob.put_new(&blob.key, Bytes::from(bytes)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                Answer::Spilled
            }
            Action::Commit {
                cloud: c,
                key,
                record,
            } => {
                let created = clouds
                    .get(&c)?
                    .coord
                    .create(&key, Bytes::from(record))
                    .await?;
                self.emit(ObsEvent::Committed {
                    run: run.to_string(),
                    instance: key,
                    won: matches!(created, Created::New),
                });
                match created {
                    Created::New => Answer::Committed(None),
                    Created::Existing(item) => Answer::Committed(Some(item)),
                }
            }
            Action::Join {
                cloud: c,
                key,
                member,
                value,
                capacity,
                complete_at,
            } => Answer::Joined(
                clouds
                    .get(&c)?
                    .coord
                    .join(
                        &key,
                        &member,
                        Bytes::from(value),
                        JoinSize {
                            capacity,
                            complete_at,
                        },
                    )
                    .await?,
            ),
            Action::Invoke { calls } => {
                let n = self.inner.cfg.invoke_concurrency.max(1);
                let results: Vec<std::result::Result<String, machine::CallFailure>> =
                    stream::iter(calls.into_iter().map(|call| async move {
                        match redrive {
                            Some(r) => self.redrive_call(r, call, cloud, run).await,
                            None => self.invoke_call(call, cloud, run).await,
                        }
                    }))
                    .buffered(n)
                    .collect()
                    .await;
                Answer::Invoked(results)
            }
            Action::Record {
                cloud: c,
                key,
                names,
            } => {
                let deadline = now_ms().saturating_add(
                    u64::try_from(self.inner.cfg.invoke_deadline.as_millis()).unwrap_or(u64::MAX),
                );
                let entries: Vec<String> = names
                    .iter()
                    .map(|n| naming::invocation_entry(n, deadline))
                    .collect();
                match clouds.get(&c)?.coord.add_invoked(&key, &entries).await {
                    Ok(_) => {}
                    // The run ended and was collected meanwhile: nothing left to record.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                Answer::Recorded
            }
            Action::Finish {
                cloud: c,
                key,
                record,
                ok,
            } => {
                if let Created::New = clouds
                    .get(&c)?
                    .coord
                    .create(&key, Bytes::from(record))
                    .await?
                {
                    self.emit(ObsEvent::RunFinished {
                        run: run.to_string(),
                        ok,
                    });
                }
                Answer::Finished
            }
            Action::Gc { prefix, clouds: cs } => {
                match self.inner.cfg.gc {
                    GcPolicy::Retain => {}
                    GcPolicy::WhenQuiet => self
                        .inner
                        .deferred
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((prefix, cs)),
                }
                Answer::GcDone
            }
            Action::Done(_) => {
                return Err(rt_err(
                    ErrorKind::Other,
                    "handle",
                    m.instance_id(),
                    "Done is not an action to perform",
                ));
            }
        })
    }

    async fn invoke_call(
        &self,
        call: machine::Call,
        from: &str,
        run: &str,
    ) -> std::result::Result<String, machine::CallFailure> {
        let delay = self.inner.cfg.latency.invoke(from, &call.cloud);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut envelope = call.envelope.clone();
        if let Some(k) = &self.inner.cfg.keyring {
            k.sign(&mut envelope);
        }
        let payload = Bytes::from(envelope.encode());
        let size = payload.len() as u64;
        match self
            .inner
            .invoker
            .invoke(&call.function, &call.cloud, &call.failover, payload)
            .await
        {
            Ok(report) => {
                self.emit(ObsEvent::Invoked {
                    run: run.to_string(),
                    from: from.to_string(),
                    to: report.cloud.clone(),
                    function: call.function.clone(),
                    bytes: size,
                });
                // Clouds are tried in order: the i-th failure hands over to target i + 1.
                let targets: Vec<&String> = std::iter::once(&call.cloud)
                    .chain(call.failover.iter())
                    .collect();
                for (i, (from, e)) in report.failed_over.iter().enumerate() {
                    let to = targets
                        .get(i + 1)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    self.emit(ObsEvent::Failover {
                        run: run.to_string(),
                        function: call.function.clone(),
                        from: from.clone(),
                        to,
                        error: e.to_string(),
                    });
                }
                Ok(report.cloud)
            }
            Err((e, tried)) => Err(machine::CallFailure {
                kind: e.kind().as_str().to_string(),
                message: format!(
                    "{e} (tried {})",
                    tried
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
}

/// Refuse clouds whose stores keep working state for less time than some platform may still
/// deliver an event (ADR 0009).
fn check_retention(clouds: &Clouds) -> Result<()> {
    let Some((faas_cloud, window)) = clouds
        .iter()
        .map(|c| (c.name.as_str(), c.faas.capabilities().redelivery_window))
        .max_by_key(|(_, w)| *w)
    else {
        return Ok(());
    };
    let fmt = |d: Duration| {
        let s = d.as_secs();
        if s >= 3600 && s.is_multiple_of(3600) {
            format!("{} h", s / 3600)
        } else {
            format!("{:.1} s", d.as_secs_f64())
        }
    };
    for c in clouds.iter() {
        let stores = [
            ("coordination store", c.coord.capabilities().retention),
            ("blob store", c.blob.capabilities().retention),
        ];
        for (what, retention) in stores {
            if let Some(r) = retention
                && r < window
            {
                return Err(rt_err(
                    ErrorKind::InvalidInput,
                    "retention",
                    &c.name,
                    format!(
                        "the {what} of cloud '{}' keeps what it writes for {} but {faas_cloud}'s FaaS may redeliver an event up to {} after accepting it; a late duplicate would find its checkpoint gone and commit again. Raise the store's retention (TTL) to at least {} or lower the platform's event age and its `redelivery_window_seconds`",
                        c.name,
                        fmt(r),
                        fmt(window),
                        fmt(window),
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The wall clock in Unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}

/// Read a blob and check it against its reference.
pub async fn fetch_blob(clouds: &Clouds, b: &BlobRef) -> Result<Bytes> {
    let c = clouds.get(&b.cloud)?;
    let bytes = c.blob.get(&b.key).await?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != b.sha256 {
        return Err(rt_err(
            ErrorKind::InvalidInput,
            "fetch",
            &b.key,
            format!(
                "blob content does not match its reference (sha256 {} != {})",
                short(&sha),
                short(&b.sha256)
            ),
        ));
    }
    Ok(bytes)
}

/// Find the run record of `run_id`, trying `prefer` first, then every cloud.
pub async fn find_run_record(
    clouds: &Clouds,
    run_id: &str,
    prefer: Option<&str>,
) -> Result<Option<RunRecord>> {
    let key = naming::run_key(run_id);
    let mut order: Vec<String> = prefer.map(|p| vec![p.to_string()]).unwrap_or_default();
    order.extend(
        clouds
            .names()
            .into_iter()
            .filter(|c| Some(c.as_str()) != prefer),
    );
    for c in order {
        let Ok(cloud) = clouds.get(&c) else {
            continue;
        };
        let got = match cloud.coord.get(&key).await {
            Ok(g) => g,
            // With a preferred (home) cloud, the others are only looked at for batch runs; one
            // of them being unreachable must not hide the home's answer.
            Err(_) if prefer.is_some() && Some(c.as_str()) != prefer => None,
            Err(e) => return Err(e),
        };
        if let Some(item) = got {
            let rec: RunRecord = serde_json::from_slice(&item.value).map_err(|e| {
                rt_err(
                    ErrorKind::InvalidInput,
                    "run_record",
                    &key,
                    format!("not a run record: {e}"),
                )
            })?;
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

/// The output value of a finished run.
pub async fn resolve_output(
    clouds: &Clouds,
    rec: &RunRecord,
) -> Result<std::result::Result<Value, joint_core::envelope::Failure>> {
    match &rec.result {
        OutputRecord::Err(f) => Ok(Err(f.clone())),
        OutputRecord::Ok(joint_core::envelope::Payload::Inline(v)) => Ok(Ok(v.clone())),
        OutputRecord::Ok(joint_core::envelope::Payload::Blob(b)) => {
            let bytes = fetch_blob(clouds, b).await?;
            let v = serde_json::from_slice(&bytes).map_err(|e| {
                rt_err(
                    ErrorKind::InvalidInput,
                    "resolve_output",
                    &b.key,
                    e.to_string(),
                )
            })?;
            Ok(Ok(v))
        }
    }
}

/// A run's record and committed instances, rebuilt from every cloud's coordination store.
pub async fn run_status(clouds: &Clouds, run_id: &str) -> Result<RunStatus> {
    let record = find_run_record(clouds, run_id, None).await?;
    let mut items = Vec::new();
    for c in clouds.iter() {
        for (key, item) in c.coord.list(&naming::run_prefix(run_id)).await? {
            items.push((c.name.clone(), key, item));
        }
    }
    let present: std::collections::BTreeSet<String> =
        items.iter().map(|(_, k, _)| k.clone()).collect();
    let now = now_ms();
    let mut instances = Vec::new();
    for (cloud, key, item) in &items {
        let ok = matches!(
            joint_core::envelope::ItemRecord::decode(&item.value),
            Ok(r) if matches!(r.out, OutputRecord::Ok(_))
        );
        let mut invoked = std::collections::BTreeSet::new();
        let mut overdue = std::collections::BTreeSet::new();
        for e in &item.invoked {
            invoked.insert(naming::split_invocation_entry(e).0.to_string());
            if let Some(name) = joint_core::recovery::overdue(run_id, e, &present, now, false) {
                overdue.insert(name.to_string());
            }
        }
        instances.push(InstanceStatus {
            cloud: cloud.clone(),
            instance: key.clone(),
            status: if ok { "ok" } else { "failed" },
            invoked: invoked.into_iter().collect(),
            overdue: overdue.into_iter().collect(),
        });
    }
    Ok(RunStatus { record, instances })
}

/// Delete `{run}/` on every cloud's stores; with `record`, also the run record and result blob.
pub async fn gc_run(clouds: &Clouds, run_id: &str, record: bool) -> Result<u64> {
    let mut n = 0;
    let prefix = naming::run_prefix(run_id);
    for c in clouds.iter() {
        n += c.coord.delete_prefix(&prefix).await?;
        n += c.blob.delete_prefix(&prefix).await?;
        if record {
            n += c
                .coord
                .delete_prefix(&naming::run_record_prefix(run_id))
                .await?;
            n += c
                .blob
                .delete_prefix(&naming::run_record_prefix(run_id))
                .await?;
        }
    }
    Ok(n)
}
