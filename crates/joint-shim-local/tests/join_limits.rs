//! The runtime keeps a branch output inline in a join only while its member record fits the join
//! store's declared member limit (`StoreCapabilities::join_value_limit`).

use std::sync::Arc;

use joint_shim::{Cloud, CoordStore, Deliver};
use joint_shim_local::runner::{RunOptions, deploy};
use joint_shim_local::{LocalCloudsBuilder, SqliteCoordStore};
use serde_json::{Value, json};

/// Branch outputs of 1,000 bytes are under the runtime's default join-inline limit (1 KiB) but
/// their member records are over a store limit of 1 KiB: they join by reference and the run
/// completes with every output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_over_the_join_stores_member_limit_join_by_reference() {
    let src = "workflow: fat\nfunctions:\n  - {name: split, cloud: local-a, handler: echo, output: list, next: [{to: work, mode: map}]}\n  - {name: work, cloud: local-a, handler: echo, next: [{to: total, mode: fan_in}]}\n  - {name: total, cloud: sink, handler: echo}\n";
    let w = Arc::new(joint_core::compile::load("fat.yaml", src).expect("definition"));
    // The aggregator's cloud, whose store takes join members of at most 1 KiB.
    let sink = LocalCloudsBuilder::new()
        .clouds(["sink"])
        .build()
        .expect("sink cloud");
    let local = sink.clouds.get("sink").expect("sink");
    let store = SqliteCoordStore::in_memory("sink")
        .expect("store")
        .with_join_value_limit(1024);
    assert_eq!(store.capabilities().join_value_limit, 1024);
    let cloud = Cloud {
        name: "sink".into(),
        faas: local.faas.clone(),
        coord: Arc::new(store),
        blob: local.blob.clone(),
    };
    let opts = RunOptions {
        remote: vec![cloud],
        ..RunOptions::default()
    };
    let mut handlers = joint_shim::Handlers::new();
    handlers.register("echo", joint_shim::handler_fn(|v, _| async move { Ok(v) }));
    let dep = deploy(w, handlers, &opts, None).expect("deploy");
    sink.attach(Arc::new(dep.runtime.clone()) as Arc<dyn Deliver>);
    let input: Vec<Value> = (0..3)
        .map(|i| json!(format!("{i}{}", "x".repeat(997))))
        .collect();
    assert_eq!(serde_json::to_vec(&input[0]).expect("json").len(), 1000);
    dep.runtime.start("fat", json!(input)).await.expect("start");
    for _ in 0..200 {
        dep.clouds.idle().await;
        sink.idle().await;
        if dep
            .runtime
            .run_record("fat")
            .await
            .expect("record")
            .is_some()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rec = dep
        .runtime
        .run_record("fat")
        .await
        .expect("record")
        .expect("the run finished");
    let out = dep
        .runtime
        .resolve_output(&rec)
        .await
        .expect("resolve")
        .expect("the run succeeded");
    assert_eq!(out, json!(input));
}
