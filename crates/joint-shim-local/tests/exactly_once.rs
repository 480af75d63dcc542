//! Exactly-once under the platforms' real delivery semantics (ADR 0009): duplicates that race a
//! run's end or arrive long after it, a result spilled by the instance that ends the run, a
//! lost batch start, and run ids that name one run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joint_shim::layers::{Chaos, CommitLedger};
use joint_shim::runtime::{ResumeOptions, ResumeOutcome};
use joint_shim::{ErrorKind, GcPolicy, Handlers, RuntimeConfig, handler_fn};
use joint_shim_local::LocalFaasConfig;
use joint_shim_local::runner::{RunOptions, deploy, run_local};
use serde_json::{Value, json};

/// A map over four clouds with a fan-in and a choice: every pattern whose items a GC could
/// delete under a late duplicate.
const DEMO: &str = "workflow: demo
functions:
  - {name: split, cloud: a, handler: split, next: [{to: square, mode: map, concurrency: 3}]}
  - {name: square, cloud: b, failover: [c], handler: square, next: [{to: total, mode: fan_in}]}
  - name: total
    cloud: c
    handler: sum
    next:
      - {to: celebrate, when: 'output > 100'}
      - {to: report, when: 'true'}
  - {name: celebrate, cloud: a, handler: inc}
  - {name: report, cloud: a, handler: inc}
";

/// Handlers that count their executions per instance.
fn counting(runs: Arc<Mutex<BTreeMap<String, u32>>>) -> Handlers {
    let mut h = Handlers::new();
    let reg = |h: &mut Handlers, name: &str, f: fn(&Value) -> Value| {
        let runs = runs.clone();
        h.register(
            name,
            handler_fn(move |v, ctx| {
                let runs = runs.clone();
                async move {
                    *runs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(ctx.instance.clone())
                        .or_default() += 1;
                    Ok(f(&v))
                }
            }),
        );
    };
    reg(&mut h, "split", |v| {
        json!((0..v["n"].as_i64().unwrap_or(0)).collect::<Vec<_>>())
    });
    reg(&mut h, "square", |v| json!(v.as_i64().unwrap_or(0).pow(2)));
    reg(&mut h, "sum", |v| {
        json!(
            v.as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).sum::<i64>())
                .unwrap_or(0)
        )
    });
    reg(&mut h, "inc", |v| json!(v.as_i64().unwrap_or(0) + 1));
    reg(&mut h, "echo", |v| v.clone());
    h
}

fn load(name: &str, text: &str) -> Arc<joint_core::workflow::Workflow> {
    Arc::new(joint_core::compile::load(name, text).expect("definition"))
}

/// Every event is delivered late once more, after the run ended; with the deployed GC policy
/// (the runtime's default) a late duplicate finds its instance's checkpoint and neither runs the
/// function again nor commits a second output. Under the old `Immediate` policy the run's items
/// were gone and every instance ran and committed again.
#[tokio::test]
async fn late_duplicates_after_the_run_ended_neither_run_nor_commit_again() {
    let w = load("demo.yaml", DEMO);
    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let ledger = CommitLedger::new();
    let report = run_local(
        w,
        counting(runs.clone()),
        RunOptions {
            run_id: Some("late-1".into()),
            input: json!({"n": 8}),
            chaos: Chaos {
                seed: 1,
                late: 1.0,
                ..Chaos::default()
            },
            faas: Some(LocalFaasConfig {
                late_delay: Duration::from_millis(400),
                ..LocalFaasConfig::default()
            }),
            gc: Some(RuntimeConfig::default().gc),
            ledger: Some(ledger.clone()),
            ..RunOptions::default()
        },
    )
    .await
    .expect("run");
    assert_eq!(report.output, Some(json!(141)));
    assert!(report.queue.duplicated >= 12, "{:?}", report.queue);
    assert!(ledger.doubles().is_empty(), "{:?}", ledger.doubles());
    // 1 split + 8 squares + total + celebrate = 11 instances, each committed and run once.
    let commits: Vec<String> = ledger
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("late-1/"))
        .collect();
    assert_eq!(commits.len(), 11, "{commits:?}");
    let runs = runs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(runs.len(), 11, "{runs:?}");
    assert!(runs.values().all(|n| *n == 1), "ran again: {runs:?}");
}

/// Two to four copies of every event race each other, the start event included (what Lambda's
/// queue did to the deployed functions); the function may run more than once while its
/// copies race, but one output commits and the result is the fault-free one.
#[tokio::test]
async fn concurrent_copies_of_every_event_commit_once() {
    for seed in 0..4 {
        let w = load("demo.yaml", DEMO);
        let ledger = CommitLedger::new();
        let run_id = format!("conc-{seed}");
        let report = run_local(
            w,
            counting(Arc::default()),
            RunOptions {
                run_id: Some(run_id.clone()),
                input: json!({"n": 8}),
                chaos: Chaos {
                    seed,
                    concurrent: 1.0,
                    late: 0.5,
                    ..Chaos::default()
                },
                gc: Some(RuntimeConfig::default().gc),
                ledger: Some(ledger.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .expect("run");
        assert_eq!(report.output, Some(json!(141)), "seed {seed}");
        assert!(report.queue.duplicated >= 11, "{:?}", report.queue);
        assert!(
            ledger.doubles().is_empty(),
            "seed {seed}: {:?}",
            ledger.doubles()
        );
        let instances = ledger
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&format!("{run_id}/")))
            .count();
        assert_eq!(instances, 11, "seed {seed}");
    }
}

/// A store that would delete a checkpoint before the platform stops redelivering its event is
/// refused when the runtime is made, naming the store and both durations.
#[tokio::test]
async fn a_retention_shorter_than_the_redelivery_window_is_refused() {
    let w = load("demo.yaml", DEMO);
    let clouds = joint_shim_local::LocalCloudsBuilder::new()
        .clouds(w.clouds.iter().cloned())
        .retention(Some(Duration::from_millis(100)))
        .build()
        .expect("clouds");
    let err = joint_shim::Runtime::new(
        w,
        clouds.clouds.clone(),
        Handlers::new(),
        RuntimeConfig::default(),
        None,
    )
    .expect_err("too short");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("keeps what it writes for 0.1 s")
            && err.message().contains("may redeliver an event up to"),
        "{err}"
    );
}

/// The instance that ends the run spilled its output (a choice whose guards all fail, with
/// transfer through the store): the result must survive the run's GC.
#[tokio::test]
async fn a_spilled_output_that_ends_the_run_is_its_result() {
    let def = "workflow: ends
transfer: { by_store: true }
functions:
  - name: a
    handler: echo
    next:
      - {to: b, when: 'output.n > 100'}
  - {name: b, handler: inc}
";
    for gc in [GcPolicy::WhenQuiet, GcPolicy::Retain] {
        let dir = tempfile::tempdir().expect("dir");
        let report = run_local(
            load("ends.yaml", def),
            counting(Arc::default()),
            RunOptions {
                input: json!({"n": 5, "pad": "x".repeat(10)}),
                state_dir: Some(dir.path().to_path_buf()),
                gc: Some(gc),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{gc:?}: {e}"));
        assert_eq!(report.status, "succeeded", "{gc:?}");
        assert_eq!(
            report.output,
            Some(json!({"n": 5, "pad": "x".repeat(10)})),
            "{gc:?}"
        );
        assert!(report.ops.blob_put >= 1, "the output was spilled");
        // And it can be read again later (the run id is not broken).
        let again = run_local(
            load("ends.yaml", def),
            counting(Arc::default()),
            RunOptions {
                run_id: Some(report.run_id.clone()),
                input: json!({"n": 5, "pad": "x".repeat(10)}),
                state_dir: Some(dir.path().to_path_buf()),
                ..RunOptions::default()
            },
        )
        .await
        .expect("reuse");
        assert!(again.reused);
        assert_eq!(again.output, report.output);
    }
}

/// A run id names one run: the same workflow and input return the first result; another input
/// or another workflow is refused before anything runs, as Step Functions refuses a second
/// execution of a name.
#[tokio::test]
async fn a_run_id_names_one_workflow_and_one_input() {
    let dir = tempfile::tempdir().expect("dir");
    // On the same home cloud as DEMO's start, so both see one start record.
    let chain = "workflow: chain
functions:
  - {name: a, cloud: a, handler: inc, next: [{to: b}]}
  - {name: b, cloud: a, handler: inc}
";
    let opts = |input: Value| RunOptions {
        run_id: Some("order-42".into()),
        input,
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let first = run_local(
        load("chain.yaml", chain),
        counting(Arc::default()),
        opts(json!(1)),
    )
    .await
    .expect("first");
    assert_eq!(first.output, Some(json!(3)));
    let same = run_local(
        load("chain.yaml", chain),
        counting(Arc::default()),
        opts(json!(1)),
    )
    .await
    .expect("same");
    assert!(same.reused);
    assert_eq!(same.output, Some(json!(3)));
    let err = run_local(
        load("chain.yaml", chain),
        counting(Arc::default()),
        opts(json!(2)),
    )
    .await
    .expect_err("other input");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.message().contains("different input"), "{err}");
    let err = run_local(
        load("demo.yaml", DEMO),
        counting(Arc::default()),
        opts(json!({"n": 8})),
    )
    .await
    .expect_err("other workflow");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.message().contains("workflow 'chain'"), "{err}");
}

/// The event that starts a batch is lost: every contributing run succeeded, and the sweeper
/// (or `joint resume` of a contributing run) starts the batch from the stores.
#[tokio::test]
async fn a_lost_batch_start_is_started_again_by_the_sweeper() {
    let def = "workflow: batch
functions:
  - {name: produce, cloud: one, handler: inc, next: [{to: total, mode: by_batch, batch_size: 4}]}
  - {name: total, cloud: two, handler: sum}
";
    let w = load("batch.yaml", def);
    let opts = RunOptions {
        runtime: Some(RuntimeConfig {
            invoke_deadline: Duration::from_millis(200),
            ..RuntimeConfig::default()
        }),
        ..RunOptions::default()
    };
    let dep = deploy(w, counting(Arc::default()), &opts, None).expect("deploy");
    // Cloud two accepts `total`'s events and drops them.
    dep.clouds.faas["two"].add_raw("total", handler_fn(|_, _| async move { Ok(json!(null)) }));
    let rt = &dep.runtime;
    for i in 0..4 {
        rt.start(&format!("c{i}"), json!(i)).await.expect("start");
    }
    dep.clouds.idle().await;
    for i in 0..4 {
        let rec = rt
            .run_record(&format!("c{i}"))
            .await
            .expect("read")
            .expect("finished");
        assert_eq!(rec.batched_into.as_deref(), Some("batch.batch.total.0"));
    }
    assert!(
        rt.run_record("batch.batch.total.0")
            .await
            .expect("read")
            .is_none()
    );
    dep.clouds.faas["two"].remove_raw("total");

    // Within the deadline the hand-off counts as in progress.
    let s = rt.sweep().await.expect("sweep");
    assert_eq!((s.runs, s.in_progress, s.resumed.len()), (1, 1, 0), "{s:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let s = rt.sweep().await.expect("sweep");
    assert_eq!(s.resumed.len(), 1, "{s:?}");
    assert_eq!(s.resumed[0].redriven, ["batch:total:0 on two"], "{s:?}");
    dep.clouds.idle().await;
    let rec = rt
        .run_record("batch.batch.total.0")
        .await
        .expect("read")
        .expect("the batch ran");
    assert_eq!(
        rt.resolve_output(&rec).await.expect("out").expect("ok"),
        json!(10)
    );
    // Nothing more to do: resume of a contributing run says it finished.
    let r = rt
        .resume("c0", &ResumeOptions::default())
        .await
        .expect("resume");
    assert_eq!(r.outcome, ResumeOutcome::Finished { ok: true });
}

/// Every delivery of the start crashes (as a full disk would fail every commit): the queue gives
/// up, and the run fails with one line saying so — it is not restarted and retried again.
#[tokio::test]
async fn a_start_that_always_fails_ends_the_run_with_one_error() {
    let chain = "workflow: chain
functions:
  - {name: a, handler: inc, next: [{to: b}]}
  - {name: b, handler: inc}
";
    let err = run_local(
        load("chain.yaml", chain),
        counting(Arc::default()),
        RunOptions {
            input: json!(1),
            chaos: Chaos {
                seed: 3,
                crash: 1.0,
                ..Chaos::default()
            },
            faas: Some(LocalFaasConfig {
                retry_delay: Duration::from_millis(1),
                visibility_timeout: Duration::from_millis(1),
                ..LocalFaasConfig::default()
            }),
            ..RunOptions::default()
        },
    )
    .await
    .expect_err("cannot go on");
    let msg = err.to_string();
    assert!(msg.contains("the run cannot go on"), "{msg}");
    assert_eq!(msg.matches("gave up after").count(), 1, "{msg}");
    assert!(msg.len() < 1024, "{} bytes: {msg}", msg.len());
}

/// The instance that ends a run writes the run record and then queues the run's collection; when
/// that execution dies in between and its event is never delivered again (here: one delivery
/// only, as after Lambda's retries or maximum event age), nothing was queued. The runner sees the
/// record and quiet queues, so it collects the run itself: nothing of it is left.
#[tokio::test]
async fn a_run_whose_ending_execution_died_before_its_gc_is_still_collected() {
    let def = "workflow: one
functions:
  - {name: a, cloud: one, handler: inc}
";
    let run = "gc-lost";
    let instance = format!("{run}/a_0");
    // A seed whose only crash in the first delivery is right before the Gc action.
    let p = 0.05;
    let seed = (0..100_000u64)
        .find(|&seed| {
            let c = Chaos {
                seed,
                ..Chaos::default()
            };
            let fires = |point: &str| c.fires(p, &["crash", &instance, point, "1"]);
            fires("before:gc")
                && joint_shim::runtime::CRASH_POINTS.iter().all(|k| {
                    !fires(&format!("after:{k}")) && (*k == "gc" || !fires(&format!("before:{k}")))
                })
        })
        .expect("a seed");
    let dir = tempfile::tempdir().expect("dir");
    let crashes = Arc::new(joint_shim::observe::Recorder::new());
    let report = run_local(
        load("one.yaml", def),
        counting(Arc::default()),
        RunOptions {
            run_id: Some(run.into()),
            input: json!(1),
            state_dir: Some(dir.path().to_path_buf()),
            chaos: Chaos {
                seed,
                crash: p,
                ..Chaos::default()
            },
            faas: Some(LocalFaasConfig {
                max_deliveries: 1,
                ..LocalFaasConfig::default()
            }),
            exact_deliveries: true,
            gc: Some(GcPolicy::WhenQuiet),
            observer: Some(crashes.clone() as Arc<dyn joint_shim::observe::Observer>),
            ..RunOptions::default()
        },
    )
    .await
    .expect("the run has its record");
    assert_eq!(report.output, Some(json!(2)));
    let points: Vec<String> = crashes
        .events()
        .into_iter()
        .filter_map(|e| match e {
            joint_shim::observe::ObsEvent::Crash { point, .. } => Some(point),
            _ => None,
        })
        .collect();
    assert_eq!(points, ["before:gc"], "the schedule this test is about");
    let clouds = joint_shim_local::LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(["one"])
        .build()
        .expect("reopen");
    let left = joint_shim::runtime::gc_run(&clouds.clouds, run, false)
        .await
        .expect("look");
    assert_eq!(left, 0, "the run's working state was left behind");
}
