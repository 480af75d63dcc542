//! The protocol under random workflows and random fault schedules, on local clouds.
//!
//! For every generated workflow (using Sequence, Parallel, Choice, Map with and without a
//! concurrency bound, FanIn, Cycle and ByRedundant, nested) and every fault schedule (crashes at
//! every protocol point, duplicate deliveries — after the first, racing it, and late, after the
//! run ended —, lost attempts, events lost for good (recovered by resuming the run from its
//! stores), throttling), under the local runner's GC and under the deployed one (retention):
//! - the run completes with the same output as the fault-free run;
//! - every instance has exactly one committed output, counted from the stores' answers;
//! - without crashes and racing copies, no user function runs twice for one instance (eager);
//! - nothing of the run is left in any store after GC, or after the retention under the
//!   deployed policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use joint_core::workflow::Workflow;
use joint_shim::layers::{Chaos, CommitLedger};
use joint_shim::observe::{ObsEvent, Observer};
use joint_shim::{GcPolicy, Handlers, fn_error, handler_fn};
use joint_shim_local::runner::{RunOptions, run_local};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A tiny deterministic generator (xorshift) so one u64 seed describes one workflow.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Default)]
struct Gen {
    functions: Vec<Value>,
    counter: usize,
    cycles: usize,
}

impl Gen {
    fn func(&mut self, rng: &mut Rng, handler: &str) -> usize {
        self.counter += 1;
        let name = format!("f{}", self.counter);
        let cloud = rng.pick(&["local-a", "local-b", "local-c"]);
        let checkpoint = rng.pick(&["eager", "lazy"]);
        self.functions.push(json!({
            "name": name, "cloud": cloud, "checkpoint": checkpoint,
            "handler": handler, "next": [],
        }));
        self.functions.len() - 1
    }

    fn name(&self, i: usize) -> String {
        self.functions[i]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn edge(&mut self, from: usize, edge: Value) {
        if let Some(next) = self.functions[from]["next"].as_array_mut() {
            next.push(edge);
        }
    }

    fn connect(&mut self, exits: &[usize], to: usize) {
        let to = self.name(to);
        for &e in exits {
            self.edge(e, json!({"to": to}));
        }
    }

    /// A block: (entry, exits whose successors the caller adds).
    fn block(&mut self, rng: &mut Rng, depth: u32) -> (usize, Vec<usize>) {
        let kind = if depth >= 2 {
            rng.below(3)
        } else {
            rng.below(9)
        };
        match kind {
            // one function, or a short chain
            0 | 1 => {
                let a = self.func(rng, "mix");
                if rng.below(2) == 0 {
                    return (a, vec![a]);
                }
                let (e, x) = self.block(rng, depth + 1);
                self.connect(&[a], e);
                (a, x)
            }
            // cycle with an exit
            2 => {
                self.cycles += 1;
                let counter = format!("c{}", self.cycles);
                let a = self.func(rng, "mix");
                let b = self.func(rng, "mix");
                let (an, bn) = (self.name(a), self.name(b));
                let n = 1 + rng.below(3);
                self.edge(
                    a,
                    json!({"to": an, "mode": "cycle", "when": format!("{counter} < {n}"),
                           "counter": counter, "max_iterations": 10}),
                );
                self.edge(a, json!({"to": bn, "when": "true"}));
                (a, vec![b])
            }
            // choice
            3 => {
                let a = self.func(rng, "mix");
                let (e1, mut x1) = self.block(rng, depth + 1);
                let (e2, x2) = self.block(rng, depth + 1);
                let (n1, n2) = (self.name(e1), self.name(e2));
                self.edge(a, json!({"to": n1, "when": "output.h % 2 == 0"}));
                self.edge(a, json!({"to": n2, "when": "true"}));
                x1.extend(x2);
                (a, x1)
            }
            // parallel + fan_in / by_redundant
            4..=6 => {
                let fork = self.func(rng, "mix");
                let join = self.func(rng, "mix");
                let k = 2 + rng.below(2) as usize;
                let redundant = kind == 6;
                let completion = 1 + rng.below(k as u64);
                let jn = self.name(join);
                for _ in 0..k {
                    // Redundant branches compute the same thing (that is what makes them
                    // redundant): one function whose output depends on its input only.
                    let (e, x) = if redundant {
                        let r = self.func(rng, "same");
                        (r, vec![r])
                    } else {
                        self.block(rng, depth + 1)
                    };
                    let en = self.name(e);
                    self.edge(fork, json!({"to": en}));
                    for xi in x {
                        if redundant {
                            self.edge(
                                xi,
                                json!({"to": jn, "mode": "by_redundant", "completion": completion}),
                            );
                        } else {
                            self.edge(xi, json!({"to": jn, "mode": "fan_in"}));
                        }
                    }
                }
                (fork, vec![join])
            }
            // map + fan_in
            _ => {
                let fork = self.func(rng, "fan");
                let join = self.func(rng, "mix");
                let (e, x) = self.block(rng, depth + 1);
                let en = self.name(e);
                let jn = self.name(join);
                if rng.below(2) == 0 {
                    self.edge(
                        fork,
                        json!({"to": en, "mode": "map", "concurrency": 1 + rng.below(2)}),
                    );
                } else {
                    self.edge(fork, json!({"to": en, "mode": "map"}));
                }
                for xi in x {
                    self.edge(xi, json!({"to": jn, "mode": "fan_in"}));
                }
                (fork, vec![join])
            }
        }
    }
}

fn generate(seed: u64) -> (Workflow, String) {
    let mut rng = Rng(seed | 1);
    let mut g = Gen::default();
    let (entry, _) = g.block(&mut rng, 0);
    if let Some(f) = g.functions.get_mut(entry) {
        f["start"] = json!(true);
    }
    let def = json!({"workflow": format!("prop{seed}"), "functions": g.functions});
    let text = serde_json::to_string_pretty(&def).unwrap();
    let w = joint_core::compile::load("gen.json", &text)
        .unwrap_or_else(|d| panic!("generated definition is invalid:\n{d}\n{text}"));
    (w, text)
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[derive(Default)]
struct Tally {
    runs: Mutex<HashMap<String, u32>>,
}

fn handlers(tally: Arc<Tally>) -> Handlers {
    let mut h = Handlers::new();
    let t = tally.clone();
    h.register(
        "mix",
        handler_fn(move |v: Value, ctx| {
            let t = t.clone();
            async move {
                *t.runs
                    .lock()
                    .unwrap()
                    .entry(ctx.instance.clone())
                    .or_default() += 1;
                let s = format!("{}:{}", ctx.function, v);
                Ok(json!({"h": fnv(&s) % 1_000_003}))
            }
        }),
    );
    let t = tally.clone();
    h.register(
        "same",
        handler_fn(move |v: Value, ctx| {
            let t = t.clone();
            async move {
                *t.runs
                    .lock()
                    .unwrap()
                    .entry(ctx.instance.clone())
                    .or_default() += 1;
                Ok(json!({"h": fnv(&v.to_string()) % 1_000_003}))
            }
        }),
    );
    let t = tally;
    h.register(
        "fan",
        handler_fn(move |v: Value, ctx| {
            let t = t.clone();
            async move {
                *t.runs
                    .lock()
                    .unwrap()
                    .entry(ctx.instance.clone())
                    .or_default() += 1;
                let h = fnv(&format!("{}:{}", ctx.function, v));
                let n = 1 + h % 4;
                if n == 0 {
                    return Err(fn_error("unreachable"));
                }
                Ok(Value::Array(
                    (0..n).map(|i| json!({"e": i, "h": h % 997})).collect(),
                ))
            }
        }),
    );
    h
}

#[derive(Default)]
struct Events {
    crashes: Mutex<u32>,
}

impl Observer for Events {
    fn event(&self, e: &ObsEvent) {
        if let ObsEvent::Crash { .. } = e {
            *self.crashes.lock().unwrap() += 1;
        }
    }
}

struct Outcome {
    output: Value,
    events: Arc<Events>,
    /// What the coordination stores answered to every create.
    ledger: CommitLedger,
    tally: Arc<Tally>,
    leftover: u64,
}

impl Outcome {
    /// Instance keys committed at least once.
    fn instances(&self, run_id: &str) -> Vec<String> {
        self.ledger
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&format!("{run_id}/")))
            .collect()
    }
}

async fn run(w: Arc<Workflow>, chaos: Chaos, run_id: &str, gc: GcPolicy) -> Outcome {
    let tally = Arc::new(Tally::default());
    let events = Arc::new(Events::default());
    let ledger = CommitLedger::new();
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        run_id: Some(run_id.to_string()),
        input: json!({"seed": run_id}),
        state_dir: Some(dir.path().to_path_buf()),
        chaos,
        faas: Some(joint_shim_local::LocalFaasConfig {
            late_delay: std::time::Duration::from_millis(60),
            ..Default::default()
        }),
        observer: Some(events.clone() as Arc<dyn Observer>),
        timeout: Some(std::time::Duration::from_secs(120)),
        gc: Some(gc),
        ledger: Some(ledger.clone()),
        ..RunOptions::default()
    };
    let report = run_local(w.clone(), handlers(tally.clone()), opts)
        .await
        .unwrap_or_else(|e| panic!("run {run_id} with {chaos:?} did not complete: {e}"));
    assert_eq!(report.status, "succeeded", "{report:?}");
    // Nothing of the run is left after GC or, under the deployed policy, once the retention
    // has passed: deleting its prefix again finds nothing.
    let clouds = joint_shim_local::LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(w.clouds.iter().cloned())
        .build()
        .unwrap();
    if gc == GcPolicy::Retain {
        let later = std::time::SystemTime::now()
            + joint_shim::caps::DEFAULT_RETENTION
            + std::time::Duration::from_secs(1);
        clouds.purge_expired_at(later).await.unwrap();
    }
    let leftover = joint_shim::runtime::gc_run(&clouds.clouds, run_id, false)
        .await
        .unwrap();
    Outcome {
        output: report.output.unwrap_or(Value::Null),
        events,
        ledger,
        tally,
        leftover,
    }
}

fn check(seed: u64, chaos: Chaos, deployed_gc: bool) {
    let (w, text) = generate(seed);
    let w = Arc::new(w);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clean = run(w.clone(), Chaos::default(), "clean", GcPolicy::WhenQuiet).await;
        let gc = if deployed_gc {
            GcPolicy::Retain
        } else {
            GcPolicy::WhenQuiet
        };
        let faulty = run(w.clone(), chaos, "clean", gc).await;
        let ctx = || format!("seed {seed}, {chaos:?}, {gc:?}\n{text}");
        assert_eq!(
            faulty.output,
            clean.output,
            "same output as the fault-free run: {}",
            ctx()
        );
        for o in [&clean, &faulty] {
            assert_eq!(o.leftover, 0, "nothing left after GC: {}", ctx());
            let doubles = o.ledger.doubles();
            assert!(
                doubles.is_empty(),
                "exactly one committed output per instance, the stores answered {doubles:?}: {}",
                ctx()
            );
        }
        // Every instance of the clean run committed in the faulty run too.
        let clean_set = clean.instances("clean");
        let faulty_set = faulty.instances("clean");
        if chaos.lose > 0.0 {
            // A k-of-n join finishes without the branches it does not need; when such a
            // branch's event is lost for good, nothing re-drives it (the run is finished).
            let clean_all: std::collections::BTreeSet<_> = clean_set.iter().collect();
            assert!(
                faulty_set.iter().all(|i| clean_all.contains(i)),
                "no instance the fault-free run lacks: {}",
                ctx()
            );
        } else {
            assert_eq!(faulty_set, clean_set, "same instances: {}", ctx());
        }
        let eager: std::collections::BTreeSet<String> = w
            .functions
            .values()
            .filter(|s| s.checkpoint == joint_core::subgraph::CheckpointPolicy::Eager)
            .map(|s| s.name.clone())
            .collect();
        // Racing copies may both run the function before one of them commits; so may a late copy
        // when the original is slower than the late delay (a loaded machine).
        let racing = chaos.concurrent > 0.0 || chaos.late > 0.0;
        for (o, racing) in [(&clean, false), (&faulty, racing)] {
            if *o.events.crashes.lock().unwrap() > 0 || racing {
                continue;
            }
            for (instance, n) in o.tally.runs.lock().unwrap().iter() {
                let f = instance
                    .split_once('/')
                    .map(|x| x.1)
                    .and_then(|n| n.rsplit_once('_'))
                    .map(|x| x.0.to_string())
                    .unwrap_or_default();
                if eager.contains(&f) {
                    assert_eq!(*n, 1, "{instance} ran {n} times without a crash: {}", ctx());
                }
            }
        }
    });
}

/// The proptest seed: fixed (so CI is reproducible) unless `JOINT_PROP_SEED` names another one
/// or says `random`.
fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var("JOINT_PROP_SEED").as_deref() {
        Ok("random") => proptest::test_runner::RngSeed::Random,
        Ok(s) => s
            .parse()
            .map(proptest::test_runner::RngSeed::Fixed)
            .unwrap_or(proptest::test_runner::RngSeed::Fixed(20_261_130)),
        Err(_) => proptest::test_runner::RngSeed::Fixed(20_261_130),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("JOINT_PROP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        rng_seed: seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_workflows_under_random_faults(
        seed in any::<u64>(),
        chaos_seed in any::<u64>(),
        crash in prop_oneof![Just(0.0), 0.02f64..0.15],
        dup in prop_oneof![Just(0.0), 0.05f64..0.4],
        concurrent in prop_oneof![Just(0.0), 0.05f64..0.4],
        late in prop_oneof![Just(0.0), 0.05f64..0.4],
        deployed_gc in any::<bool>(),
        drop in prop_oneof![Just(0.0), 0.05f64..0.3],
        throttle in prop_oneof![Just(0.0), 0.05f64..0.3],
        lose in prop_oneof![Just(0.0), 0.05f64..0.3],
    ) {
        check(
            seed,
            Chaos { seed: chaos_seed, crash, dup, concurrent, late, drop, throttle, lose, kill: 0.0 },
            deployed_gc,
        );
    }
}

#[test]
fn every_mode_appears_in_generated_workflows() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 1..200u64 {
        let (w, _) = generate(seed);
        for s in w.functions.values() {
            if let Ok(shape) = s.shape() {
                seen.insert(format!("{shape:?}"));
            }
            for n in &s.next {
                if n.max_iterations.is_some() {
                    seen.insert("Cycle".into());
                }
                if let joint_core::InvokeMode::Map {
                    max_concurrency: Some(_),
                } = n.invoke_mode
                {
                    seen.insert("BoundedMap".into());
                }
            }
        }
    }
    for m in [
        "Sequence",
        "Parallel",
        "Choice",
        "Map",
        "FanIn",
        "ByRedundant",
        "Cycle",
        "BoundedMap",
        "End",
    ] {
        assert!(
            seen.contains(m),
            "the generator never produced {m}: {seen:?}"
        );
    }
}
