//! `joint serve`'s Lambda-compatible endpoint driven by aws-sdk-lambda: the FaaS conformance
//! suite, workflows of every invoke mode with DynamoDB/S3 on an emulator, a sample of fault
//! schedules (events lost for good included, recovered by resuming the run from DynamoDB), and
//! the datastore operations per step.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use joint_core::workflow::Workflow;
use joint_serve::{ServeState, serve};
use joint_shim::layers::Chaos;
use joint_shim::{fn_error, handler_fn};
use joint_shim_local::LocalCloudsBuilder;
use joint_shim_local::runner::{RunOptions, run_local};
use serde_json::{Value, json};

use common::serve::deploy;

/// The examples with every invoke mode, their clouds renamed to two AWS clouds, and inputs.
fn workflows() -> Vec<(&'static str, Workflow, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    [
        ("chain.yaml", json!(3)),
        ("parallel.yaml", json!(3)),
        ("map.yaml", json!({"n": 6})),
        ("choice.yaml", json!(12)),
        ("cycle.yaml", json!({"i": 0})),
    ]
    .into_iter()
    .map(|(file, input)| {
        let src = std::fs::read_to_string(dir.join(file)).expect("example");
        let src = src.replace("local-a", "aws").replace("local-b", "aws2");
        let w = joint_core::compile::load(file, &src).unwrap_or_else(|d| panic!("{file}: {d:?}"));
        (file, w, input)
    })
    .collect()
}

/// The output of a fault-free run on local clouds.
async fn reference(w: &Workflow, input: &Value) -> Value {
    let r = run_local(
        Arc::new(w.clone()),
        joint_examples::builtin_handlers(),
        RunOptions {
            input: input.clone(),
            ..RunOptions::default()
        },
    )
    .await
    .expect("local run");
    r.output.expect("local output")
}

fn store_url() -> Option<String> {
    common::emulator("ministack", "JOINT_TEST_MINISTACK_URL")
        .or_else(|| common::emulator("moto", "JOINT_TEST_MOTO_URL"))
}

#[tokio::test]
async fn faas_conformance_against_joint_serve() {
    let local = LocalCloudsBuilder::new()
        .clouds(["aws"])
        .build()
        .expect("local");
    let faas = &local.faas["aws"];
    faas.add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    faas.add_raw(
        "fail",
        handler_fn(|_, _| async move { Err(fn_error("this function always fails")) }),
    );
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local.clone(),
        settings: BTreeMap::new(),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (atx, arx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve(
        state,
        vec![("lambda".into(), "127.0.0.1:0".parse().expect("addr"))],
        move |a| {
            let _ = atx.send(a[0].1);
        },
        async move {
            let _ = rx.await;
        },
    ));
    let addr = arx.await.expect("bound");
    let cloud = joint_shim_aws::AwsBuilder::new()
        .with_config("region", "us-east-1")
        .with_config("endpoint_url", format!("http://{addr}"))
        .with_config("access_key_id", "test")
        .with_config("secret_access_key", "test")
        .with_config("table", "unused")
        .with_config("bucket", "unused")
        .build()
        .await
        .expect("aws config");
    joint_shim::conformance::faas(Arc::new(cloud.faas.clone()), "echo", "fail").await;
    // The failing function's type and message come through Lambda's error document.
    let e = joint_shim::Faas::invoke_sync(&cloud.faas, "fail", bytes::Bytes::from_static(b"{}"))
        .await
        .expect_err("fails");
    assert_eq!(e.message(), "HandlerError: this function always fails");
    let _ = tx.send(());
    server.await.expect("join").expect("serve");
}

#[tokio::test]
async fn every_invoke_mode_through_joint_serve_and_dynamodb() {
    let Some(url) = store_url() else { return };
    let mut cases = workflows();
    // A Map of 40: its fan-in is wide on DynamoDB (an item per member, the completer claims the
    // join). Only on ministack: moto's TransactWriteItems is not safe under concurrency (see
    // joint-store's dynamo_conformance.rs).
    if std::env::var("JOINT_TEST_MINISTACK_URL").is_ok_and(|u| u == url) {
        let map = cases
            .iter()
            .find(|(f, _, _)| *f == "map.yaml")
            .map(|(_, w, _)| w.clone())
            .expect("map.yaml");
        cases.push(("map.yaml", map, json!({"n": 40})));
    }
    for (file, w, input) in cases {
        let expected = reference(&w, &input).await;
        let d = deploy(Arc::new(w), &url, Chaos::default()).await;
        let run = format!("r{}", common::uniq());
        let out = d
            .run(&run, input)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(out, expected, "{file}: same output as the local run");
        let doubles = d.ledger.doubles();
        assert!(
            doubles.is_empty(),
            "{file}: one commit per key: {doubles:?}"
        );
        // GC left nothing of the run in DynamoDB.
        for c in d.runtime.clouds().iter() {
            assert!(
                c.coord
                    .list(&format!("{run}/"))
                    .await
                    .expect("list")
                    .is_empty(),
                "{file}: GC on {}",
                c.name
            );
        }
    }
}

#[tokio::test]
async fn fault_schedules_against_dynamodb() {
    let Some(url) = store_url() else { return };
    let ws = workflows();
    let (mut lost, mut total_resumes) = (0u64, 0u32);
    for seed in 1..=3u64 {
        for (file, w, input) in ws
            .iter()
            .filter(|(f, ..)| matches!(*f, "parallel.yaml" | "map.yaml" | "cycle.yaml"))
        {
            let expected = reference(w, input).await;
            // `lose` events are recovered by resuming the run from DynamoDB (common::serve).
            let chaos: Chaos = format!("seed={seed},crash=0.1,dup=0.3,drop=0.1,lose=0.15")
                .parse()
                .expect("chaos");
            let d = deploy(Arc::new(w.clone()), &url, chaos).await;
            let run = format!("c{seed}x{}", common::uniq());
            let out = d
                .run(&run, input.clone())
                .await
                .unwrap_or_else(|e| panic!("{file} seed {seed}: {e}"));
            assert_eq!(
                &out, &expected,
                "{file} seed {seed}: identical to fault-free"
            );
            let doubles = d.ledger.doubles();
            assert!(
                doubles.is_empty(),
                "{file} seed {seed}: exactly one committed output per instance: {doubles:?}"
            );
            let stats = d.local.queue_stats();
            let resumes = d.resumes.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "{file} seed {seed}: deliveries {} duplicated {} dropped {} retries {} lost {} resumes {resumes}",
                stats.deliveries, stats.duplicated, stats.dropped, stats.retries, stats.lost
            );
            lost += stats.lost;
            total_resumes += resumes;
        }
    }
    assert!(
        lost > 0 && total_resumes > 0,
        "the schedules lost events ({lost}) and runs were resumed ({total_resumes})"
    );
}

/// Datastore operations per step on DynamoDB, next to the paper's numbers. The step under
/// study runs alone on cloud `aws`; everything else on `aws2`/`aws3`.
#[tokio::test]
async fn datastore_operations_per_step() {
    let Some(url) = store_url() else { return };
    let shapes = [
        (
            "Sequence step",
            "3W+2R",
            "workflow: seq\nfunctions:\n  - {name: first, cloud: aws2, handler: inc, next: [{to: mid}]}\n  - {name: mid, cloud: aws, handler: inc, next: [{to: last}]}\n  - {name: last, cloud: aws2, handler: inc}\n",
            json!(1),
        ),
        (
            "fan-in branch",
            "5W+4R",
            "workflow: fan\nfunctions:\n  - {name: A, cloud: aws2, handler: echo, next: [{to: B}, {to: C}]}\n  - {name: B, cloud: aws, handler: inc, next: [{to: D, mode: fan_in}]}\n  - {name: C, cloud: aws2, handler: square, next: [{to: D, mode: fan_in}]}\n  - {name: D, cloud: aws3, handler: sum}\n",
            json!(3),
        ),
        (
            "32-way Map initiator",
            "6W+2R",
            "workflow: map32\nfunctions:\n  - {name: head, cloud: aws2, handler: echo, next: [{to: split}]}\n  - {name: split, cloud: aws, handler: split, output: list, next: [{to: sq, mode: map}]}\n  - {name: sq, cloud: aws2, handler: square, next: [{to: total, mode: fan_in}]}\n  - {name: total, cloud: aws3, handler: sum}\n",
            json!({"n": 32}),
        ),
    ];
    println!("\n| step | joint on DynamoDB | paper |\n|---|---|---|");
    for (what, paper, src, input) in shapes {
        let w = joint_core::compile::load("ops.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
        let d = deploy(Arc::new(w), &url, Chaos::default()).await;
        let run = format!("o{}", common::uniq());
        d.run(&run, input).await.expect("run");
        let s = d.counts["aws"].snapshot();
        // A fan-in branch's join lands in the aggregator's store (aws3): one per branch.
        let joins = if what == "fan-in branch" {
            d.counts["aws3"].snapshot().coord_join / 2
        } else {
            0
        };
        // GC deletes are not per-step costs.
        let writes = s.coord_create + s.coord_add_invoked + s.coord_join + joins;
        let reads = s.coord_get + s.coord_list;
        println!(
            "| {what} | {writes}W+{reads}R (create {}, add_invoked {}, join {}, get {}; blob put {}) | {paper} |",
            s.coord_create,
            s.coord_add_invoked,
            s.coord_join + joins,
            s.coord_get,
            s.blob_put
        );
        // Exactly the step's round trips (eager policy): one consistent read, one
        // create-if-absent, at most one invoked-set update, each one DynamoDB request.
        assert_eq!(s.coord_get, 1, "{what}: {s:?}");
        assert_eq!(s.coord_create, 1, "{what}: {s:?}");
        assert!(s.coord_add_invoked <= 1, "{what}: {s:?}");
    }
}
