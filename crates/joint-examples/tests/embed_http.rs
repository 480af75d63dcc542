//! The runtime embedded in a plain HTTP handler, driven over a real socket.

use std::sync::Arc;

use joint_core::envelope::Input;
use joint_shim_local::runner::{RunOptions, deploy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, body: &[u8]) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_http_framework_drives_a_whole_run_through_one_call() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/chain.yaml"
    ))
    .unwrap();
    let w = Arc::new(joint_core::compile::load("chain.yaml", &src).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        state_dir: Some(dir.path().to_path_buf()),
        ..RunOptions::default()
    };
    let dep = deploy(w.clone(), joint_examples::builtin_handlers(), &opts, None).unwrap();
    let app = joint_examples::embed::router(dep.runtime.clone(), "local-a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The framework delivers the start event; successors go through the local clouds.
    let env = dep
        .runtime
        .start_envelope("http-run", Input::Inline(json!(3)))
        .unwrap();
    let (status, body) = post(addr, &env.encode()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"], "http-run/first_0");
    assert_eq!(body["ran_function"], true);
    // A retry by the framework is harmless: the checkpoint is adopted.
    let (status, body) = post(addr, &env.encode()).await;
    assert_eq!(status, 200);
    assert_eq!(body["adopted"], true);
    assert_eq!(body["ran_function"], false);
    dep.clouds.idle().await;
    let rec = dep.runtime.run_record("http-run").await.unwrap().unwrap();
    assert_eq!(
        dep.runtime.resolve_output(&rec).await.unwrap().unwrap(),
        json!(6)
    );

    // Garbage is refused with 400 and commits nothing.
    let (status, body) = post(addr, b"{not json").await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("invalid envelope"),
        "{body}"
    );
}
