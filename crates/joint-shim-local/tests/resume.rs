//! Lost events: a FaaS queue that accepts an event and never runs it. `Runtime::resume` (what
//! `joint resume` and the sweeper call) re-drives the run from its stores, on the replica first,
//! and never commits two outputs for one instance.

use std::sync::Arc;
use std::time::Duration;

use joint_shim::observe::{ObsEvent, Recorder};
use joint_shim::runtime::{ResumeOptions, ResumeOutcome};
use joint_shim::{RuntimeConfig, handler_fn};
use joint_shim_local::runner::{RunOptions, deploy, run_local};
use serde_json::json;

const DEF: &str = "workflow: lost
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, failover: [three], handler: inc, next: [{to: c}]}
  - {name: c, cloud: one, handler: inc}
";

fn handlers() -> joint_shim::Handlers {
    let mut h = joint_shim::Handlers::new();
    h.register(
        "inc",
        handler_fn(|v, _| async move { Ok(json!(v.as_i64().unwrap_or(0) + 1)) }),
    );
    h
}

/// Cloud two accepts `b`'s events and drops them: a raw handler that commits nothing.
fn lose_b_on_two(dep: &joint_shim_local::runner::LocalDeployment) {
    dep.clouds.faas["two"].add_raw("b", handler_fn(|_, _| async move { Ok(json!(null)) }));
}

/// The handlers of examples/map.yaml.
fn joint_examples_handlers() -> joint_shim::Handlers {
    let mut h = joint_shim::Handlers::new();
    h.register(
        "split",
        handler_fn(|v, _| async move {
            let n = v["n"].as_i64().unwrap_or(0);
            Ok(json!((0..n).collect::<Vec<_>>()))
        }),
    );
    h.register(
        "square",
        handler_fn(|v, _| async move {
            let x = v.as_i64().unwrap_or(0);
            Ok(json!(x * x))
        }),
    );
    h.register(
        "sum",
        handler_fn(|v, _| async move {
            let list = v.as_array().cloned().unwrap_or_default();
            Ok(json!(list.iter().filter_map(|x| x.as_i64()).sum::<i64>()))
        }),
    );
    h
}

fn opts(deadline: Duration) -> RunOptions {
    RunOptions {
        runtime: Some(RuntimeConfig {
            invoke_deadline: deadline,
            ..RuntimeConfig::default()
        }),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn a_lost_event_is_redriven_on_the_replica_after_its_deadline() {
    let w = Arc::new(joint_core::compile::load("lost.yaml", DEF).unwrap());
    let rec = Recorder::new();
    let dep = deploy(
        w,
        handlers(),
        &opts(Duration::from_millis(300)),
        Some(Arc::new(rec.clone())),
    )
    .unwrap();
    lose_b_on_two(&dep);
    let rt = &dep.runtime;
    rt.start("r1", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    assert!(
        rt.run_record("r1").await.unwrap().is_none(),
        "b's event was lost"
    );

    // Within the deadline the run counts as in progress: nothing is re-driven.
    let r = rt.resume("r1", &ResumeOptions::default()).await.unwrap();
    assert!(
        matches!(r.outcome, ResumeOutcome::InProgress { wait_ms } if wait_ms > 0),
        "{r:?}"
    );
    assert!(r.redriven.is_empty());

    // After it, b is invoked again from a's stored output, on the replica.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = rt.resume("r1", &ResumeOptions::default()).await.unwrap();
    assert_eq!(r.outcome, ResumeOutcome::Resumed, "{r:?}");
    assert_eq!(r.redriven, ["b_1 on three"]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    dep.clouds.idle().await;
    let record = rt
        .run_record("r1")
        .await
        .unwrap()
        .expect("the run finished");
    assert_eq!(rt.resolve_output(&record).await.unwrap().unwrap(), json!(4));
    let events = rec.events();
    assert!(events.iter().any(|e| matches!(e,
        ObsEvent::InstanceEnd { function, cloud, error: None, .. } if function == "b" && cloud == "three")));
    // Every instance committed exactly once.
    for i in ["r1/a_0", "r1/b_1", "r1/c_2"] {
        let wins = events
            .iter()
            .filter(
                |e| matches!(e, ObsEvent::Committed { instance, won: true, .. } if instance == i),
            )
            .count();
        assert_eq!(wins, 1, "{i}");
    }

    // Once finished, resuming again does nothing.
    let r = rt.resume("r1", &ResumeOptions::default()).await.unwrap();
    assert_eq!(r.outcome, ResumeOutcome::Finished { ok: true });
}

#[tokio::test]
async fn force_redrives_now_and_a_second_resume_does_not_invoke_twice() {
    let w = Arc::new(joint_core::compile::load("lost.yaml", DEF).unwrap());
    let dep = deploy(w, handlers(), &opts(Duration::from_secs(3600)), None).unwrap();
    lose_b_on_two(&dep);
    // Cloud three is down too: the re-drive falls back to the primary, which loses it again.
    dep.clouds.faas["three"].set_down(true);
    let rt = &dep.runtime;
    rt.start("r2", json!(10)).await.unwrap();
    dep.clouds.idle().await;
    let force = ResumeOptions {
        force: true,
        from: None,
    };
    let r = rt.resume("r2", &force).await.unwrap();
    assert_eq!(r.redriven, ["b_1 on two"], "{r:?}");
    dep.clouds.idle().await;
    // With the replica back, the next forced resume completes the run.
    dep.clouds.faas["three"].set_down(false);
    let r = rt.resume("r2", &force).await.unwrap();
    assert_eq!(r.redriven, ["b_1 on three"], "{r:?}");
    dep.clouds.idle().await;
    let record = rt.run_record("r2").await.unwrap().expect("finished");
    assert_eq!(
        rt.resolve_output(&record).await.unwrap().unwrap(),
        json!(13)
    );
}

#[tokio::test]
async fn a_lost_start_is_reported_as_not_started() {
    let w = Arc::new(joint_core::compile::load("lost.yaml", DEF).unwrap());
    let dep = deploy(w, handlers(), &RunOptions::default(), None).unwrap();
    let r = dep
        .runtime
        .resume("never-started", &ResumeOptions::default())
        .await
        .unwrap();
    assert_eq!(r.outcome, ResumeOutcome::NotStarted);
    let err = dep
        .runtime
        .resume("../x", &ResumeOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run id"), "{err}");
}

#[tokio::test]
async fn the_local_runner_resumes_runs_whose_events_were_lost() {
    let w = Arc::new(
        joint_core::compile::load(
            "map.yaml",
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/map.yaml"
            ))
            .unwrap(),
        )
        .unwrap(),
    );
    let clean = run_local(
        w.clone(),
        joint_examples_handlers(),
        RunOptions {
            input: json!({"n": 6}),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let chaos: joint_shim::layers::Chaos = "seed=7,lose=0.3".parse().unwrap();
    let lossy = run_local(
        w.clone(),
        joint_examples_handlers(),
        RunOptions {
            // A fixed run id: chaos decisions hash the events, which carry the run id.
            run_id: Some("lossy".into()),
            input: json!({"n": 6}),
            chaos,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(lossy.output, clean.output);
    assert!(lossy.queue.lost > 0 && lossy.resumes > 0, "{lossy:?}");
    // Without resumes the same run stalls with a clear message.
    let err = run_local(
        w,
        joint_examples_handlers(),
        RunOptions {
            run_id: Some("lossy".into()),
            input: json!({"n": 6}),
            chaos,
            no_resume: true,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("stalled"), "{err}");
}

fn keep() -> RunOptions {
    RunOptions {
        keep: true,
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn from_reruns_a_failed_step_after_the_fix() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fixed = Arc::new(AtomicBool::new(false));
    let mut h = handlers();
    let f = fixed.clone();
    h.register(
        "flaky",
        handler_fn(move |v, _| {
            let ok = f.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(json!(v.as_i64().unwrap_or(0) * 10))
                } else {
                    Err(joint_shim::fn_error("not fixed yet"))
                }
            }
        }),
    );
    let def = "workflow: fix
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, handler: flaky, next: [{to: c}]}
  - {name: c, cloud: one, handler: inc}
";
    let w = Arc::new(joint_core::compile::load("fix.yaml", def).unwrap());
    let dep = deploy(w, h, &keep(), None).unwrap();
    let rt = &dep.runtime;
    rt.start("r5", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    let rec = rt.run_record("r5").await.unwrap().unwrap();
    assert!(rt.resolve_output(&rec).await.unwrap().is_err(), "b failed");

    // Without --from a failed run is finished: nothing to resume.
    let r = rt.resume("r5", &ResumeOptions::default()).await.unwrap();
    assert_eq!(r.outcome, ResumeOutcome::Finished { ok: false });

    fixed.store(true, Ordering::SeqCst);
    let from_b = ResumeOptions {
        force: false,
        from: Some("b".into()),
    };
    let r = rt.resume("r5", &from_b).await.unwrap();
    assert_eq!(r.outcome, ResumeOutcome::Resumed, "{r:?}");
    assert_eq!(r.deleted, ["r5/b_1"]);
    assert_eq!(r.redriven, ["b_1 on two"]);
    dep.clouds.idle().await;
    let rec = rt.run_record("r5").await.unwrap().expect("finished again");
    assert_eq!(rt.resolve_output(&rec).await.unwrap().unwrap(), json!(21));
}

#[tokio::test]
async fn from_a_map_target_reruns_every_branch_and_the_join() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let squares = Arc::new(AtomicU32::new(0));
    let mut h = joint_examples_handlers();
    let n = squares.clone();
    h.register(
        "square",
        handler_fn(move |v, _| {
            n.fetch_add(1, Ordering::SeqCst);
            async move {
                let x = v.as_i64().unwrap_or(0);
                Ok(json!(x * x))
            }
        }),
    );
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/map.yaml"
    ))
    .unwrap();
    let w = Arc::new(joint_core::compile::load("map.yaml", &text).unwrap());
    let dep = deploy(w, h, &keep(), None).unwrap();
    let rt = &dep.runtime;
    rt.start("m1", json!({"n": 5})).await.unwrap();
    dep.clouds.idle().await;
    let out = |rt: &joint_shim::Runtime| {
        let rt = rt.clone();
        async move {
            let rec = rt.run_record("m1").await.unwrap().expect("finished");
            rt.resolve_output(&rec).await.unwrap().unwrap()
        }
    };
    assert_eq!(out(rt).await, json!(30));
    assert_eq!(squares.load(Ordering::SeqCst), 5);

    // From the aggregator: only it runs again, re-invoked by a branch that joined.
    let r = rt
        .resume(
            "m1",
            &ResumeOptions {
                force: false,
                from: Some("total".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.deleted, ["m1/total_2"], "{r:?}");
    assert_eq!(r.redriven.len(), 1, "{r:?}");
    dep.clouds.idle().await;
    assert_eq!(out(rt).await, json!(30));
    assert_eq!(squares.load(Ordering::SeqCst), 5);

    // From the Map's target: every branch, its join and the aggregator run again.
    let r = rt
        .resume(
            "m1",
            &ResumeOptions {
                force: false,
                from: Some("square".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.deleted.len(), 5 + 1 + 1, "{r:?}");
    assert!(r.deleted.contains(&"m1/total-join@0".to_string()), "{r:?}");
    dep.clouds.idle().await;
    assert_eq!(out(rt).await, json!(30));
    assert_eq!(squares.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn from_refuses_what_it_cannot_rerun() {
    let w = Arc::new(joint_core::compile::load("lost.yaml", DEF).unwrap());
    let dep = deploy(w.clone(), handlers(), &keep(), None).unwrap();
    let rt = &dep.runtime;
    rt.start("r6", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    let from = |f: &str| ResumeOptions {
        force: false,
        from: Some(f.into()),
    };
    let err = rt.resume("r6", &from("zz")).await.unwrap_err().to_string();
    assert!(
        err.contains("no function 'zz'") && err.contains("a, b, c"),
        "{err}"
    );
    let err = rt.resume("r6", &from("a")).await.unwrap_err().to_string();
    assert!(err.contains("start function"), "{err}");
    // A run whose state was collected cannot be re-run from a step.
    let dep = deploy(w, handlers(), &RunOptions::default(), None).unwrap();
    dep.runtime.start("r7", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    dep.runtime.run_deferred_gc().await.unwrap();
    let err = dep
        .runtime
        .resume("r7", &from("b"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("collected"), "{err}");
}
