//! What docs/embedding.md and docs/new-backend.md promise, from a crate outside joint: the
//! conformance suites run on a backend of its own, joint runs behind another platform's HTTP
//! trigger and calls that platform to invoke successors, and a binary of its own gets the whole
//! command line with its handlers and its backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joint_example_custom::{GatewayBackend, GatewayFaas, gateway, handlers};
use joint_shim::{Backend, Clouds, Runtime, RuntimeConfig};
use serde_json::json;

async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

fn serve(l: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
}

/// The suites a backend author runs: the backend's FaaS against the gateway (with an echo and a
/// failing function behind it), and its stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_backend_passes_the_conformance_suites() {
    use axum::routing::post;
    let (fl, fa) = listen().await;
    serve(
        fl,
        axum::Router::new()
            .route("/echo", post(|b: bytes::Bytes| async move { b }))
            .route(
                "/fail",
                post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            ),
    );
    let (gl, ga) = listen().await;
    serve(
        gl,
        gateway(BTreeMap::from([
            ("echo".to_string(), format!("http://{fa}/echo")),
            ("fail".to_string(), format!("http://{fa}/fail")),
        ])),
    );
    let faas = GatewayFaas::new(&format!("http://{ga}"), "edge");
    joint_shim::conformance::faas(Arc::new(faas), "echo", "fail").await;

    let dir = tempfile::tempdir().expect("dir");
    let cloud = GatewayBackend
        .build(
            "edge",
            &BTreeMap::from([
                ("url".to_string(), format!("http://{ga}")),
                (
                    "state_dir".to_string(),
                    dir.path().to_string_lossy().to_string(),
                ),
            ]),
        )
        .await
        .expect("cloud");
    joint_shim::conformance::coord_store(cloud.coord.clone(), "conf/").await;
    joint_shim::conformance::blob_store(cloud.blob.clone(), "conf/").await;
    let e = GatewayBackend
        .build(
            "edge",
            &BTreeMap::from([("ulr".to_string(), "x".to_string())]),
        )
        .await
        .expect_err("a typo");
    assert_eq!(e.target(), "ulr", "{e}");
}

const DEF: &str = "workflow: orders
defaults: { cloud: edge }
functions:
  - {name: price, handler: price, next: [{to: total}]}
  - {name: total, handler: echo}
";

/// joint inside the gateway platform: every function's trigger is `Runtime::handle` behind
/// `joint_examples::embed::router`, and successors are invoked through the gateway.
async fn host_on_gateway(dir: &std::path::Path) -> (Runtime, SocketAddr) {
    let w = Arc::new(joint_core::compile::load("orders.yaml", DEF).expect("definition"));
    let (fl, fa) = listen().await;
    let (gl, ga) = listen().await;
    let cloud = GatewayBackend
        .build(
            "edge",
            &BTreeMap::from([
                ("url".to_string(), format!("http://{ga}")),
                ("state_dir".to_string(), dir.to_string_lossy().to_string()),
            ]),
        )
        .await
        .expect("cloud");
    let mut clouds = Clouds::new();
    clouds.insert(cloud);
    let rt = Runtime::new(
        w.clone(),
        clouds,
        handlers(),
        RuntimeConfig::default(),
        None,
    )
    .expect("runtime");
    serve(fl, joint_examples::embed::router(rt.clone(), "edge"));
    let functions = w
        .functions
        .keys()
        .map(|f| (f.clone(), format!("http://{fa}/invoke")))
        .collect();
    serve(gl, gateway(functions));
    (rt, ga)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_runs_behind_another_platforms_trigger_and_invokes_through_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (rt, _) = host_on_gateway(dir.path()).await;
    rt.start("o-1", json!({"id": "o-1", "qty": 3, "unit_cents": 250}))
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rec = loop {
        if let Some(r) = rt.run_record("o-1").await.expect("read") {
            break r;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = rt.resolve_output(&rec).await.expect("output").expect("ok");
    assert_eq!(out, json!({"id": "o-1", "total_cents": 750}));
    // The typed handler refuses input of the wrong shape with a clear kind.
    rt.start("o-2", json!({"id": "o-2"})).await.expect("start");
    let rec = loop {
        if let Some(r) = rt.run_record("o-2").await.expect("read") {
            break r;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = rt
        .resolve_output(&rec)
        .await
        .expect("output")
        .expect_err("failed");
    assert_eq!(err.kind, "BadInput", "{err:?}");
    assert!(err.message.contains("qty"), "{err:?}");
}

fn custom() -> Command {
    Command::new(env!("CARGO_BIN_EXE_joint-custom"))
}

/// The binary of your own: every command, with its handlers and its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_of_your_own_has_the_whole_cli_with_its_handlers_and_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let def = dir.path().join("orders.yaml");
    std::fs::write(&def, DEF).expect("write");
    let o = custom()
        .arg("validate")
        .arg(&def)
        .output()
        .expect("validate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // On local clouds: the typed `price` handler is this binary's.
    let o = custom()
        .arg("run")
        .arg(&def)
        .args([
            "--json",
            "--input",
            r#"{"id":"a","qty":2,"unit_cents":100}"#,
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["output"], json!({"id": "a", "total_cents": 200}), "{v}");
    // On the gateway backend, named in a --clouds file: the functions run behind the gateway
    // (hosted by this test), the CLI starts the run there and reads its result from the store.
    let store = dir.path().join("edge");
    let (_rt, ga) = host_on_gateway(&store).await;
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  edge: {{ backend: gateway, url: 'http://{ga}', state_dir: '{}' }}\n",
            store.display()
        ),
    )
    .expect("write");
    let out = tokio::task::spawn_blocking(move || {
        custom()
            .arg("run")
            .arg(&def)
            .args([
                "--json",
                "--input",
                r#"{"id":"b","qty":4,"unit_cents":5}"#,
                "--clouds",
            ])
            .arg(&clouds)
            .args(["--timeout", "60", "--state-dir"])
            .arg(dir.path().join("state2"))
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["output"], json!({"id": "b", "total_cents": 20}), "{v}");
}
