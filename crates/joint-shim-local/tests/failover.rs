//! Failover to a replica cloud when the primary refuses.

use std::sync::Arc;

use joint_shim::observe::{ObsEvent, Recorder};
use joint_shim_local::runner::{RunOptions, deploy};
use serde_json::json;

const DEF: &str = "workflow: fo
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, failover: [three], handler: inc, next: [{to: c}]}
  - {name: c, cloud: one, handler: inc}
";

fn handlers() -> joint_shim::Handlers {
    let mut h = joint_shim::Handlers::new();
    h.register(
        "inc",
        joint_shim::handler_fn(|v, _| async move { Ok(json!(v.as_i64().unwrap_or(0) + 1)) }),
    );
    h
}

#[tokio::test]
async fn a_down_cloud_fails_over_to_the_replica_which_commits_in_the_primary_store() {
    let w = Arc::new(joint_core::compile::load("fo.yaml", DEF).unwrap());
    let rec = Recorder::new();
    let opts = RunOptions::default();
    let dep = deploy(w, handlers(), &opts, Some(Arc::new(rec.clone()))).unwrap();
    dep.clouds.faas["two"].set_down(true);
    dep.runtime.start("r1", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    let record = dep
        .runtime
        .run_record("r1")
        .await
        .unwrap()
        .expect("the run finished");
    assert_eq!(
        dep.runtime.resolve_output(&record).await.unwrap().unwrap(),
        json!(4)
    );
    let events = rec.events();
    let failover = events.iter().find_map(|e| match e {
        ObsEvent::Failover {
            function, from, to, ..
        } => Some((function.clone(), from.clone(), to.clone())),
        _ => None,
    });
    assert_eq!(failover, Some(("b".into(), "two".into(), "three".into())));
    // b ran on the replica cloud, and committed into b's primary store (cloud two).
    assert!(events.iter().any(|e| matches!(e,
        ObsEvent::InstanceEnd { function, cloud, error: None, .. } if function == "b" && cloud == "three")));
    assert!(events.iter().any(|e| matches!(e,
        ObsEvent::Committed { instance, won: true, .. } if instance == "r1/b_1")));
}

#[tokio::test]
async fn with_every_replica_down_the_caller_retries_and_nothing_is_lost() {
    let w = Arc::new(joint_core::compile::load("fo.yaml", DEF).unwrap());
    let opts = RunOptions {
        faas: Some(joint_shim_local::LocalFaasConfig {
            max_deliveries: 50,
            retry_delay: std::time::Duration::from_millis(5),
            ..Default::default()
        }),
        ..RunOptions::default()
    };
    let dep = deploy(w, handlers(), &opts, None).unwrap();
    dep.clouds.faas["two"].set_down(true);
    dep.clouds.faas["three"].set_down(true);
    dep.runtime.start("r2", json!(1)).await.unwrap();
    // a keeps failing to invoke b: its event is redelivered, its output stays committed once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(dep.runtime.run_record("r2").await.unwrap().is_none());
    let st = dep.runtime.status("r2").await.unwrap();
    assert_eq!(
        st.instances.len(),
        1,
        "only a committed: {:?}",
        st.instances
    );
    assert!(
        st.instances[0].invoked.is_empty(),
        "b is not recorded as invoked"
    );
    // The clouds come back: the redelivery invokes b and the run completes.
    dep.clouds.faas["three"].set_down(false);
    dep.clouds.idle().await;
    let record = dep
        .runtime
        .run_record("r2")
        .await
        .unwrap()
        .expect("finished after recovery");
    assert_eq!(
        dep.runtime.resolve_output(&record).await.unwrap().unwrap(),
        json!(4)
    );
}

fn patient() -> RunOptions {
    RunOptions {
        faas: Some(joint_shim_local::LocalFaasConfig {
            max_deliveries: 1000,
            retry_delay: std::time::Duration::from_millis(2),
            ..Default::default()
        }),
        ..RunOptions::default()
    }
}

/// A whole cloud (FaaS and stores) unreachable mid-run: the replica of the function placed there
/// runs elsewhere but cannot reach its checkpoint store, so the run waits — nothing is committed
/// twice, nothing is lost — and completes with the same output once the cloud is back.
#[tokio::test]
async fn a_whole_cloud_outage_makes_the_run_wait_then_complete() {
    let w = Arc::new(joint_core::compile::load("fo.yaml", DEF).unwrap());
    let rec = Recorder::new();
    let dep = deploy(w, handlers(), &patient(), Some(Arc::new(rec.clone()))).unwrap();
    assert!(dep.clouds.set_cloud_down("two", true));
    dep.runtime.start("out1", json!(1)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        dep.runtime.run_record("out1").await.unwrap().is_none(),
        "waits while two is down"
    );
    let st = dep.runtime.status("out1");
    // status reads every cloud's store, and two's is unreachable: the user is told so.
    let err = st.await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    dep.clouds.set_cloud_down("two", false);
    dep.clouds.idle().await;
    let record = dep
        .runtime
        .run_record("out1")
        .await
        .unwrap()
        .expect("completes after the outage");
    assert_eq!(
        dep.runtime.resolve_output(&record).await.unwrap().unwrap(),
        json!(4)
    );
    let events = rec.events();
    let wins = events
        .iter()
        .filter(|e| matches!(e, ObsEvent::Committed { instance, won: true, .. } if instance == "out1/b_1"))
        .count();
    assert_eq!(wins, 1, "b committed exactly once");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ObsEvent::Failover { from, .. } if from == "two"))
    );
}

/// A cloud that never comes back: the run does not hang silently — `run_local` reports that it
/// stalled and why (the events that gave up and the unreachable cloud).
#[tokio::test]
async fn a_cloud_that_never_returns_is_reported_not_lost_silently() {
    let w = Arc::new(joint_core::compile::load("fo.yaml", DEF).unwrap());
    let opts = RunOptions {
        run_id: Some("gone".into()),
        input: json!(1),
        faas: Some(joint_shim_local::LocalFaasConfig {
            max_deliveries: 3,
            retry_delay: std::time::Duration::from_millis(2),
            ..Default::default()
        }),
        ..RunOptions::default()
    };
    // Take cloud two down before the run through a deployment sharing nothing: use the runner's
    // own clouds by deploying first, then driving the run by hand.
    let dep = deploy(w, handlers(), &opts, None).unwrap();
    dep.clouds.set_cloud_down("two", true);
    dep.runtime.start("gone", json!(1)).await.unwrap();
    dep.clouds.idle().await;
    let dead = dep.clouds.dead_letters();
    assert!(
        !dead.is_empty(),
        "the stuck event is dead-lettered, not dropped"
    );
    let why: Vec<String> = dead
        .iter()
        .map(|(c, d)| format!("{} on {c}: {}", d.function, d.error))
        .collect();
    assert!(why.iter().any(|w| w.contains("unreachable")), "{why:?}");
    assert!(dep.runtime.run_record("gone").await.unwrap().is_none());
}
