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
