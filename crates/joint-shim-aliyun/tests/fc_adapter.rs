//! The FC custom-runtime adapter over HTTP: the test plays Function Compute — it keeps the
//! async invocations the runtime makes in a queue and delivers each one as FC does, with a
//! `POST /invoke` to the adapter listening on a free port — and the run completes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use joint_shim::{Cloud, Clouds, Deliver, Faas, FaasCapabilities, Result, Runtime, RuntimeConfig};
use joint_shim_aliyun::fc::adapter;
use joint_shim_local::{FsBlobStore, SqliteCoordStore};
use serde_json::{Value, json};

/// FC's async queue, as far as the runtime can tell: accepted events wait to be delivered.
#[derive(Debug, Default)]
struct Queue(Mutex<VecDeque<(String, Bytes)>>);

#[async_trait]
impl Faas for Queue {
    fn capabilities(&self) -> FaasCapabilities {
        FaasCapabilities {
            async_payload_limit: 128 * 1024,
            sync_payload_limit: 32 * 1024 * 1024,
            redelivery_window: std::time::Duration::from_secs(60),
        }
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.0
            .lock()
            .expect("queue")
            .push_back((function.to_string(), payload));
        Ok(())
    }
    async fn invoke_sync(&self, _function: &str, _payload: Bytes) -> Result<Bytes> {
        unreachable!("the runtime invokes asynchronously")
    }
}

impl Queue {
    fn pop(&self) -> Option<(String, Bytes)> {
        self.0.lock().expect("queue").pop_front()
    }
}

/// FC's `POST /invoke` of function `function` (FC names the invoked function in
/// `x-fc-function-name`).
async fn post_to(
    client: &reqwest::Client,
    url: &str,
    function: &str,
    event: Bytes,
) -> (u16, Value) {
    let r = client
        .post(url)
        .header("content-type", "application/octet-stream")
        .header("x-fc-request-id", "1-6747a1b2-0123456789abcdef")
        .header("x-fc-function-name", function)
        .body(event)
        .send()
        .await
        .expect("POST /invoke");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// FC's `POST /invoke` of the function the event is for.
async fn post(client: &reqwest::Client, url: &str, event: Bytes) -> (u16, Value) {
    let function =
        joint_core::envelope::addressed_function(&event).unwrap_or_else(|| "sweeper".into());
    post_to(client, url, &function, event).await
}

/// A runtime for definition `src` on one cloud `aliyun` whose FaaS is the test's queue, and the
/// adapter serving it on a free port (as the example binary runs it inside FC).
struct Adapter {
    rt: Runtime,
    queue: Arc<Queue>,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn adapter(src: &str, cfg: RuntimeConfig) -> Adapter {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = joint_core::compile::load("fc.yaml", src).expect("definition");
    let queue = Arc::new(Queue::default());
    let mut clouds = Clouds::new();
    clouds.insert(Cloud {
        name: "aliyun".into(),
        faas: queue.clone(),
        coord: Arc::new(SqliteCoordStore::in_memory("aliyun").expect("sqlite")),
        blob: Arc::new(FsBlobStore::new(dir.path(), "aliyun").expect("blobs")),
    });
    let rt = Runtime::new(
        Arc::new(workflow),
        clouds,
        joint_examples::builtin_handlers(),
        cfg,
        None,
    )
    .expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/invoke", listener.local_addr().expect("addr"));
    let app = adapter::router(Arc::new(rt.clone()) as Arc<dyn Deliver>, "aliyun");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Adapter {
        rt,
        queue,
        url,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fc_style_invocations_run_the_workflow_through_the_adapter() {
    let src = "workflow: fc-chain\nfunctions:\n  - {name: first, cloud: aliyun, handler: inc, next: [{to: second}]}\n  - {name: second, cloud: aliyun, handler: inc}\n";
    let Adapter {
        rt,
        queue,
        url,
        client,
        ..
    } = &adapter(src, RuntimeConfig::default()).await;

    rt.start("fc-run-1", json!(3)).await.expect("start");
    let mut delivered = Vec::new();
    let mut first_event = None;
    while let Some((function, event)) = queue.pop() {
        if first_event.is_none() {
            first_event = Some(event.clone());
        }
        let (status, body) = post(client, url, event).await;
        assert_eq!(status, 200, "{function}: {body}");
        assert_eq!(body["ok"], true, "{function}: {body}");
        delivered.push(function);
    }
    assert_eq!(delivered, ["first", "second"]);
    let rec = rt
        .run_record("fc-run-1")
        .await
        .expect("record")
        .expect("the run finished");
    let out = rt
        .resolve_output(&rec)
        .await
        .expect("resolve")
        .expect("succeeded");
    assert_eq!(out, json!(5));

    // FC delivers at least once: a duplicate delivery is answered 200 and changes nothing.
    let (status, body) = post(client, url, first_event.expect("an event")).await;
    assert_eq!(status, 200, "{body}");
    while let Some((_, event)) = queue.pop() {
        assert_eq!(post(client, url, event).await.0, 200);
    }
    let rec = rt
        .run_record("fc-run-1")
        .await
        .expect("record")
        .expect("run");
    assert_eq!(
        rt.resolve_output(&rec).await.expect("resolve").expect("ok"),
        json!(5)
    );

    // An envelope for `second` delivered to `first` is refused, and runs nothing.
    let misaddressed = first_event_for(rt, "fc-run-2", "second");
    let (status, body) = post_to(client, url, "first", misaddressed).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["errorType"], "InvalidInput", "{body}");
    let msg = body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        msg.contains("for function 'second'") && msg.contains("delivered to function 'first'"),
        "{body}"
    );
    assert!(queue.pop().is_none(), "nothing was invoked");
    assert!(
        rt.status("fc-run-2")
            .await
            .expect("status")
            .instances
            .is_empty(),
        "nothing was committed"
    );

    // A forged or malformed event is an error FC would retry, with a stable error type.
    let (status, body) = post(
        client,
        url,
        Bytes::from_static(b"{\"not\":\"an envelope\"}"),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["errorType"], "InvalidInput", "{body}");
    assert!(body["errorMessage"].is_string(), "{body}");
}

/// A valid start envelope of run `run`, readdressed to `function`.
fn first_event_for(rt: &Runtime, run: &str, function: &str) -> Bytes {
    let mut env = rt
        .start_envelope(run, joint_core::envelope::Input::Inline(json!(1)))
        .expect("envelope");
    env.function = function.into();
    Bytes::from(env.encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_triggered_sweep_redrives_a_lost_event() {
    let src = "workflow: fc-sweep\nfunctions:\n  - {name: first, cloud: aliyun, handler: inc, next: [{to: second}]}\n  - {name: second, cloud: aliyun, handler: inc}\n";
    let cfg = RuntimeConfig {
        // Every invocation is overdue at once, so one sweep finds the lost one.
        invoke_deadline: std::time::Duration::ZERO,
        ..RuntimeConfig::default()
    };
    let Adapter {
        rt,
        queue,
        url,
        client,
        ..
    } = &adapter(src, cfg).await;

    rt.start("fc-lost", json!(1)).await.expect("start");
    let (f, event) = queue.pop().expect("the start event");
    assert_eq!(f, "first");
    assert_eq!(post(client, url, event).await.0, 200);
    // FC accepted `second` and lost it.
    let (f, _lost) = queue.pop().expect("second's event");
    assert_eq!(f, "second");
    assert!(rt.run_record("fc-lost").await.expect("record").is_none());

    // The timer trigger's event makes the function sweep: `second` is invoked again.
    let (status, body) = post(client, url, Bytes::from_static(b"{\"joint\":\"sweep\"}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["sweep"]["resumed"][0]["redriven"][0], "second_1 on aliyun",
        "{body}"
    );
    let (f, event) = queue.pop().expect("the re-driven event");
    assert_eq!(f, "second");
    assert_eq!(post(client, url, event).await.0, 200);
    let rec = rt
        .run_record("fc-lost")
        .await
        .expect("record")
        .expect("finished");
    assert_eq!(
        rt.resolve_output(&rec).await.expect("resolve").expect("ok"),
        json!(3)
    );

    // Nothing is left to sweep.
    let (status, body) = post(client, url, Bytes::from_static(b"{\"joint\":\"sweep\"}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sweep"]["runs"], 0, "{body}");
}
