//! Centralized baselines, run in the same harness as joint: the same workflow, the same
//! functions, the same emulated network ([`LatencyProfile`]), the fewest round trips their
//! architecture allows.
//!
//! - [`Architecture::ManagedOrchestrator`] — what AWS Step Functions / Aliyun CloudFlow do: a state
//!   machine in one cloud; every state transition is persisted there (billed per transition), and
//!   functions are invoked synchronously from it, their data returning through it.
//! - [`Architecture::CrossCloudEngine`] — what xAFCL does: one engine (a VM with a database VM
//!   beside it) in one cloud invokes functions on every cloud synchronously; data returns through
//!   the engine; each step is logged to the database.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use joint_core::expr::Scope;
use joint_core::machine::FnError;
use joint_core::subgraph::{InvokeMode, NextEntry, Shape};
use joint_core::workflow::Workflow;
use joint_shim::layers::LatencyProfile;
use joint_shim::{Context, Handlers};
use serde_json::Value;

/// Which centralized design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Step Functions / CloudFlow.
    ManagedOrchestrator,
    /// xAFCL.
    CrossCloudEngine,
}

/// Settings of a baseline.
#[derive(Debug, Clone)]
pub struct BaselineConfig {
    /// The design.
    pub arch: Architecture,
    /// The cloud the orchestrator or engine runs in.
    pub home: String,
    /// Emulated network (invocation latency per cloud pair).
    pub latency: LatencyProfile,
    /// Time to persist one state transition (managed orchestrator) or one step record (engine's
    /// database), in ms.
    pub persist_ms: f64,
}

/// What a baseline run did.
#[derive(Debug, Clone, Default)]
pub struct BaselineReport {
    /// The output.
    pub output: Value,
    /// Wall time.
    pub makespan: Duration,
    /// Synchronous invocations.
    pub invocations: u64,
    /// State transitions (managed) or database writes (engine).
    pub transitions: u64,
    /// Bytes crossing between the orchestrator's cloud and other clouds (both directions).
    pub cross_cloud_bytes: u64,
    /// Function execution time per cloud (for GB-s), seconds × memory in GB.
    pub gb_seconds: BTreeMap<String, f64>,
    /// Invocations per cloud.
    pub requests: BTreeMap<String, u64>,
}

struct Ctx {
    w: Arc<Workflow>,
    handlers: Handlers,
    cfg: BaselineConfig,
    invocations: AtomicU64,
    transitions: AtomicU64,
    bytes: AtomicU64,
    per_cloud: std::sync::Mutex<(BTreeMap<String, f64>, BTreeMap<String, u64>)>,
}

enum PathEnd {
    /// The path reached an edge into a join at `agg`.
    Joined {
        agg: String,
        entry: Box<NextEntry>,
        output: Value,
    },
    /// The path ended the run.
    Ended(Value),
}

type Fut<'a> = Pin<Box<dyn Future<Output = Result<PathEnd, String>> + Send + 'a>>;

struct VarScope<'a> {
    output: &'a Value,
    cloud: &'a str,
    vars: &'a BTreeMap<String, i64>,
    counters: Vec<&'a str>,
}

impl Scope for VarScope<'_> {
    fn lookup(&self, root: &str) -> Option<Value> {
        match root {
            "output" => Some(self.output.clone()),
            "FaaS" | "cloud" => Some(Value::String(self.cloud.into())),
            v => self
                .vars
                .get(v)
                .map(|x| Value::from(*x))
                .or_else(|| self.counters.contains(&v).then(|| Value::from(0))),
        }
    }
}

async fn sleep_ms(ms: f64) {
    if ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
}

impl Ctx {
    /// Persist a transition / step record.
    async fn persist(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
        sleep_ms(self.cfg.persist_ms).await;
    }

    /// Invoke `function` synchronously from the orchestrator's cloud.
    async fn invoke(
        &self,
        function: &str,
        input: Value,
        vars: &BTreeMap<String, i64>,
    ) -> Result<Value, String> {
        let sub = self
            .w
            .sub(function)
            .ok_or_else(|| format!("no function '{function}'"))?;
        let handler = self.handlers.resolve(sub).map_err(|e| e.to_string())?;
        let cloud = sub.faas.clone();
        let req_bytes = serde_json::to_vec(&input).map(|b| b.len()).unwrap_or(0) as u64;
        // Request and response cross the network once each: one invoke latency for the round trip.
        tokio::time::sleep(self.cfg.latency.invoke(&self.cfg.home, &cloud)).await;
        let ctx = Context {
            workflow_id: "baseline".into(),
            instance: format!("baseline/{function}"),
            function: function.into(),
            cloud: cloud.clone(),
            attempt: 1,
            vars: vars.clone(),
        };
        let t = Instant::now();
        let out = handler
            .call(input, &ctx)
            .await
            .map_err(|e: FnError| format!("function '{function}' failed: {e}"))?;
        let secs = t.elapsed().as_secs_f64();
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if cloud != self.cfg.home {
            let resp = serde_json::to_vec(&out).map(|b| b.len()).unwrap_or(0) as u64;
            self.bytes.fetch_add(req_bytes + resp, Ordering::Relaxed);
        }
        let mut pc = self.per_cloud.lock().unwrap_or_else(|p| p.into_inner());
        *pc.0.entry(cloud.clone()).or_default() += secs * f64::from(sub.memory_mb) / 1024.0;
        *pc.1.entry(cloud).or_default() += 1;
        Ok(out)
    }

    /// Run from `function` with `input` until the path joins or ends.
    fn path(
        self: Arc<Self>,
        function: String,
        input: Value,
        vars: BTreeMap<String, i64>,
    ) -> Fut<'static> {
        Box::pin(async move {
            let mut function = function;
            let mut input = input;
            let mut vars = vars;
            loop {
                self.persist().await; // entering the Task state
                let output = self.invoke(&function, input, &vars).await?;
                let sub = self.w.sub(&function).ok_or("missing sub-graph")?.clone();
                match sub.shape()? {
                    Shape::End => return Ok(PathEnd::Ended(output)),
                    Shape::Sequence => {
                        let e = &sub.next[0];
                        apply(&mut vars, e)?;
                        function = e.name.clone();
                        input = output;
                    }
                    Shape::Choice => {
                        let counters = sub.next.iter().filter_map(NextEntry::counter).collect();
                        let scope = VarScope {
                            output: &output,
                            cloud: &sub.faas,
                            vars: &vars,
                            counters,
                        };
                        let mut chosen = None;
                        for e in &sub.next {
                            if let Some(g) = &e.choice
                                && g.eval_bool(&scope).map_err(|x| x.to_string())?
                            {
                                chosen = Some(e.clone());
                                break;
                            }
                        }
                        self.persist().await; // the Choice state
                        let Some(e) = chosen else {
                            return Ok(PathEnd::Ended(output));
                        };
                        if let (Some(max), Some(c)) = (e.max_iterations, e.counter())
                            && vars.get(c).copied().unwrap_or(0) >= i64::from(max)
                        {
                            return Err(format!("cycle at '{function}' exceeded {max} iterations"));
                        }
                        apply(&mut vars, &e)?;
                        function = e.name.clone();
                        input = output;
                    }
                    Shape::FanIn | Shape::ByRedundant => {
                        let e = sub.next[0].clone();
                        return Ok(PathEnd::Joined {
                            agg: e.name.clone(),
                            entry: Box::new(e),
                            output,
                        });
                    }
                    Shape::Parallel | Shape::Map => {
                        self.persist().await; // the Parallel / Map state
                        let (branches, width): (Vec<(String, Value)>, usize) =
                            if sub.shape()? == Shape::Map {
                                let e = &sub.next[0];
                                let items = output.as_array().cloned().ok_or_else(|| {
                                    format!("Map over a non-list from '{function}'")
                                })?;
                                let width = match e.invoke_mode {
                                    InvokeMode::Map {
                                        max_concurrency: Some(c),
                                    } => c as usize,
                                    _ => items.len(),
                                };
                                (
                                    items.into_iter().map(|v| (e.name.clone(), v)).collect(),
                                    width.max(1),
                                )
                            } else {
                                let n = sub.next.len();
                                (
                                    sub.next
                                        .iter()
                                        .map(|e| (e.name.clone(), output.clone()))
                                        .collect(),
                                    n,
                                )
                            };
                        let (agg, entry, outputs) =
                            self.clone().fork(branches, width, vars.clone()).await?;
                        apply(&mut vars, &entry)?;
                        function = agg;
                        input = Value::Array(outputs);
                    }
                    Shape::ByBatch => {
                        return Err("ByBatch spans runs; the baselines run one workflow".into());
                    }
                }
            }
        })
    }

    /// Run branches (at most `width` at once) to their join; returns the aggregator and the
    /// outputs in branch order (the first k for a k-of-n join).
    async fn fork(
        self: Arc<Self>,
        branches: Vec<(String, Value)>,
        width: usize,
        vars: BTreeMap<String, i64>,
    ) -> Result<(String, NextEntry, Vec<Value>), String> {
        let n = branches.len();
        let mut pending = branches.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        let mut done: Vec<(usize, Value)> = Vec::new();
        let mut join: Option<(String, NextEntry)> = None;
        let mut need = n;
        loop {
            while running.len() < width {
                let Some((i, (f, v))) = pending.next() else {
                    break;
                };
                let me = self.clone();
                let vars = vars.clone();
                running.push(async move { (i, me.path(f, v, vars).await) });
            }
            let Some((i, r)) = running.next().await else {
                break;
            };
            match r? {
                PathEnd::Joined { agg, entry, output } => {
                    if let InvokeMode::ByRedundant { completion, .. } = entry.invoke_mode {
                        need = (completion as usize).clamp(1, n);
                    }
                    join.get_or_insert((agg, *entry));
                    done.push((i, output));
                    if done.len() >= need {
                        break;
                    }
                }
                PathEnd::Ended(_) => return Err("a branch ended without joining".into()),
            }
        }
        let (agg, entry) = join.ok_or("no branch reached a join")?;
        done.sort_by_key(|(i, _)| *i);
        Ok((agg, entry, done.into_iter().map(|(_, v)| v).collect()))
    }
}

fn apply(vars: &mut BTreeMap<String, i64>, e: &NextEntry) -> Result<(), String> {
    for m in &e.modify_event {
        m.apply(vars)?;
    }
    Ok(())
}

/// Run `w` once under a centralized baseline.
pub async fn run_baseline(
    w: Arc<Workflow>,
    handlers: Handlers,
    cfg: BaselineConfig,
    input: Value,
) -> Result<BaselineReport, String> {
    let ctx = Arc::new(Ctx {
        w: w.clone(),
        handlers,
        cfg,
        invocations: AtomicU64::new(0),
        transitions: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        per_cloud: std::sync::Mutex::new((BTreeMap::new(), BTreeMap::new())),
    });
    let t0 = Instant::now();
    let input_bytes = serde_json::to_vec(&input).map(|b| b.len()).unwrap_or(0) as u64;
    let end = ctx
        .clone()
        .path(w.start.clone(), input, BTreeMap::new())
        .await?;
    let output = match end {
        PathEnd::Ended(v) => v,
        PathEnd::Joined { agg, .. } => {
            return Err(format!(
                "the run ended at a join into '{agg}' outside a fork"
            ));
        }
    };
    ctx.persist().await; // the final (succeed) transition
    let makespan = t0.elapsed();
    let (gb, req) = ctx
        .per_cloud
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let _ = input_bytes;
    Ok(BaselineReport {
        output,
        makespan,
        invocations: ctx.invocations.load(Ordering::Relaxed),
        transitions: ctx.transitions.load(Ordering::Relaxed),
        cross_cloud_bytes: ctx.bytes.load(Ordering::Relaxed),
        gb_seconds: gb,
        requests: req,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(src: &str) -> Arc<Workflow> {
        Arc::new(joint_core::compile::load("t.yaml", src).unwrap())
    }

    fn cfg(arch: Architecture) -> BaselineConfig {
        BaselineConfig {
            arch,
            home: "local-a".into(),
            latency: LatencyProfile::default(),
            persist_ms: 0.0,
        }
    }

    #[tokio::test]
    async fn baselines_compute_what_joint_computes() {
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
        for (file, input, want) in [
            ("parallel.yaml", json!(3), json!(13)),
            ("map.yaml", json!({"n": 4}), json!(14)),
            ("choice.yaml", json!(50), json!(2500)),
            ("chain.yaml", json!(3), json!(6)),
            ("demo.yaml", json!({"n": 8}), json!(141)),
        ] {
            let src = std::fs::read_to_string(format!("{examples}{file}")).unwrap();
            for arch in [
                Architecture::ManagedOrchestrator,
                Architecture::CrossCloudEngine,
            ] {
                let r = run_baseline(
                    wf(&src),
                    crate::builtin_handlers(),
                    cfg(arch),
                    input.clone(),
                )
                .await
                .unwrap();
                assert_eq!(r.output, want, "{file} {arch:?}");
                assert!(r.invocations > 0 && r.transitions > r.invocations);
            }
        }
        let src = std::fs::read_to_string(format!("{examples}cycle.yaml")).unwrap();
        let r = run_baseline(
            wf(&src),
            crate::builtin_handlers(),
            cfg(Architecture::ManagedOrchestrator),
            json!({"i": 0}),
        )
        .await
        .unwrap();
        assert_eq!(r.output["i"], 5);
    }

    #[tokio::test]
    async fn every_invocation_pays_the_round_trip_from_the_orchestrator() {
        let src = "workflow: c\nfunctions:\n  - {name: a, cloud: x, handler: inc, next: [{to: b}]}\n  - {name: b, cloud: y, handler: inc}\n";
        let mut c = cfg(Architecture::CrossCloudEngine);
        c.home = "x".into();
        c.latency = serde_json::from_str(r#"{"invoke_ms": {"same": 10, "cross": 30}}"#).unwrap();
        let r = run_baseline(wf(src), crate::builtin_handlers(), c, json!(1))
            .await
            .unwrap();
        assert_eq!(r.output, json!(3));
        assert!(r.makespan >= Duration::from_millis(40), "{:?}", r.makespan);
        assert!(
            r.cross_cloud_bytes > 0,
            "b's input and output crossed clouds"
        );
    }
}
