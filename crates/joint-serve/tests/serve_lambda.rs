//! `joint serve`'s Lambda endpoint answers as Lambda does: its payload limits, its parsing of
//! function names, ARNs and qualifiers, `DryRun`, `LogType=Tail`, invalid JSON, unknown routes,
//! and envelopes sent to another function than their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use joint_core::envelope::Input;
use joint_serve::{ServeState, spawn};
use joint_shim::{Deliver, Runtime, RuntimeConfig, handler_fn};
use joint_shim_local::{LocalClouds, LocalCloudsBuilder};
use serde_json::{Value, json};

const DEF: &str = "workflow: w
functions:
  - {name: first, cloud: local, handler: inc, next: [{to: boom}]}
  - {name: boom, cloud: local, handler: inc}
";

fn handlers() -> joint_shim::Handlers {
    let mut h = joint_shim::Handlers::new();
    h.register(
        "inc",
        handler_fn(|v, _| async move { Ok(json!(v.as_i64().unwrap_or(0) + 1)) }),
    );
    h
}

struct Lambda {
    url: String,
    http: reqwest::Client,
    runtime: Runtime,
    local: LocalClouds,
    _served: joint_serve::Served,
}

async fn start() -> Lambda {
    let local = LocalCloudsBuilder::new()
        .clouds(["local"])
        .build()
        .expect("local clouds");
    let w = Arc::new(joint_core::compile::load("w.yaml", DEF).expect("definition"));
    let runtime = Runtime::new(
        w,
        local.clouds.clone(),
        handlers(),
        RuntimeConfig::default(),
        None,
    )
    .expect("runtime");
    local.attach(Arc::new(runtime.clone()) as Arc<dyn Deliver>);
    local.faas["local"].add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    let state = Arc::new(ServeState {
        runtime: Some(runtime.clone()),
        clouds: local.clone(),
        settings: BTreeMap::new(),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let served = spawn(state, vec![("lambda".into(), any)])
        .await
        .expect("serve");
    Lambda {
        url: served.url("lambda").expect("url").to_string(),
        http: reqwest::Client::new(),
        runtime,
        local,
        _served: served,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// Lambda's error shape: `x-amzn-ErrorType` and `{"Type", "message"}`.
    fn error(&self) -> (u16, String, String) {
        let v = self.json();
        assert!(v["Type"].is_string(), "{v}");
        (
            self.status,
            self.header("x-amzn-errortype")
                .unwrap_or_default()
                .to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        )
    }
}

impl Lambda {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.body(body).send().await.expect("request");
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.expect("body").to_vec(),
        }
    }

    /// Invoke `name` (`NAME?QUERY` adds a query string).
    async fn invoke(
        &self,
        name: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let (name, query) = match name.split_once('?') {
            Some((n, q)) => (n, format!("?{q}")),
            None => (name, String::new()),
        };
        self.send(
            reqwest::Method::POST,
            &format!("/2015-03-31/functions/{name}/invocations{query}"),
            headers,
            body.into(),
        )
        .await
    }
}

#[tokio::test]
async fn sync_payloads_up_to_6_mb_pass_and_larger_are_request_too_large() {
    let l = start().await;
    // 3 MiB: over axum's default 2 MB body limit, under Lambda's 6 MB.
    let big = format!("\"{}\"", "x".repeat(3 * 1024 * 1024));
    let a = l.invoke("echo", &[], big.clone()).await;
    assert_eq!(
        a.status,
        200,
        "{}",
        String::from_utf8_lossy(&a.body[..200.min(a.body.len())])
    );
    assert_eq!(a.body.len(), big.len());
    let over = format!("\"{}\"", "x".repeat(6 * 1024 * 1024));
    let (status, code, msg) = l.invoke("echo", &[], over).await.error();
    assert_eq!((status, code.as_str()), (413, "RequestTooLargeException"));
    assert!(msg.contains("6291456"), "{msg}");
    // Event: Lambda's 1 MB.
    let event = format!("\"{}\"", "x".repeat(1024 * 1024));
    let (status, code, _) = l
        .invoke("echo", &[("x-amz-invocation-type", "Event")], event)
        .await
        .error();
    assert_eq!((status, code.as_str()), (413, "RequestTooLargeException"));
    let a = l
        .invoke(
            "echo",
            &[("x-amz-invocation-type", "Event")],
            format!("\"{}\"", "x".repeat(900 * 1024)),
        )
        .await;
    assert_eq!(a.status, 202);
}

#[tokio::test]
async fn names_arns_and_qualifiers_are_parsed_as_lambda_parses_them() {
    let l = start().await;
    for name in [
        "echo",
        "echo:$LATEST",
        "echo%3A%24LATEST",
        "123456789012:function:echo",
        "arn:aws:lambda:us-east-1:123456789012:function:echo",
        "arn:aws:lambda:us-east-1:123456789012:function:echo:$LATEST",
    ] {
        let a = l.invoke(name, &[], "{\"n\":1}").await;
        assert_eq!(
            a.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json(), json!({"n": 1}), "{name}");
        assert_eq!(a.header("x-amz-executed-version"), Some("$LATEST"));
    }
    let a = l.invoke("echo?Qualifier=%24LATEST", &[], "{}").await;
    assert_eq!(a.status, 200);
    // A version or alias that does not exist: 404, and nothing runs.
    for name in [
        "echo:prod",
        "echo:7",
        "echo?Qualifier=prod",
        "arn:aws:lambda:us-east-1:123456789012:function:echo:live",
    ] {
        let (status, code, msg) = l.invoke(name, &[], "{}").await.error();
        assert_eq!(
            (status, code.as_str()),
            (404, "ResourceNotFoundException"),
            "{name}"
        );
        assert!(msg.contains("function:echo:"), "{name}: {msg}");
    }
    // The qualifier of the name and the Qualifier parameter disagree.
    let (status, code, _) = l
        .invoke("echo:$LATEST?Qualifier=prod", &[], "{}")
        .await
        .error();
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    // Not a function name at all.
    for bad in ["a%20b", "echo:a:b", "arn:aws:s3:::bucket"] {
        let (status, code, _) = l.invoke(bad, &[], "{}").await.error();
        assert_eq!(
            (status, code.as_str()),
            (400, "ValidationException"),
            "{bad}"
        );
    }
    let (status, code, _) = l.invoke("nope", &[], "{}").await.error();
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
}

#[tokio::test]
async fn dry_run_log_tail_invalid_json_and_unknown_routes() {
    let l = start().await;
    let a = l
        .invoke("echo", &[("x-amz-invocation-type", "DryRun")], "{}")
        .await;
    assert_eq!(a.status, 204);
    assert!(a.body.is_empty());
    let (status, code, _) = l
        .invoke("nope", &[("x-amz-invocation-type", "DryRun")], "{}")
        .await
        .error();
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));

    let a = l.invoke("echo", &[("x-amz-log-type", "Tail")], "{}").await;
    assert_eq!(a.status, 200);
    let log = a.header("x-amz-log-result").expect("X-Amz-Log-Result");
    let log = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(log)
            .expect("base64"),
    )
    .expect("utf-8");
    let rid = a.header("x-amzn-requestid").expect("request id");
    assert!(log.starts_with(&format!("START RequestId: {rid}")), "{log}");
    assert!(log.contains(&format!("END RequestId: {rid}")), "{log}");
    assert!(
        log.contains("REPORT RequestId") && log.contains("Duration:"),
        "{log}"
    );
    assert!(
        l.invoke("echo", &[], "{}")
            .await
            .header("x-amz-log-result")
            .is_none()
    );

    for kind in ["RequestResponse", "Event"] {
        let (status, code, msg) = l
            .invoke("echo", &[("x-amz-invocation-type", kind)], "{not json")
            .await
            .error();
        assert_eq!(
            (status, code.as_str()),
            (400, "InvalidRequestContentException"),
            "{kind}"
        );
        assert!(
            msg.contains("Could not parse request body into json"),
            "{msg}"
        );
    }
    assert_eq!(
        l.local.faas["local"].stats().accepted,
        0,
        "no invalid event was queued"
    );

    for (method, path) in [
        (reqwest::Method::GET, "/2015-03-31/functions/echo"),
        (
            reqwest::Method::GET,
            "/2015-03-31/functions/echo/invocations",
        ),
        (
            reqwest::Method::POST,
            "/2014-11-13/functions/echo/invoke-async/",
        ),
        (reqwest::Method::GET, "/"),
    ] {
        let (status, code, msg) = l.send(method.clone(), path, &[], Vec::new()).await.error();
        assert_eq!(
            (status, code.as_str()),
            (404, "UnknownOperationException"),
            "{method} {path}"
        );
        assert!(msg.contains("Invoke"), "{msg}");
    }
}

#[tokio::test]
async fn an_envelope_for_another_function_does_not_run_it() {
    let l = start().await;
    let mut env = l
        .runtime
        .start_envelope("misaddressed", Input::Inline(json!(1)))
        .expect("envelope");
    env.function = "boom".into();
    let a = l.invoke("first", &[], env.encode()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-amz-function-error"), Some("Unhandled"));
    let msg = a.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("for function 'boom'") && msg.contains("delivered to function 'first'"),
        "{msg}"
    );
    // Asynchronously: accepted (as Lambda accepts it), then refused at delivery, never run.
    let a = l
        .invoke("first", &[("x-amz-invocation-type", "Event")], env.encode())
        .await;
    assert_eq!(a.status, 202);
    l.local.idle().await;
    let dead = l.local.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.error.contains("for function 'boom'"), "{dead:?}");
    assert!(
        l.runtime
            .status("misaddressed")
            .await
            .expect("status")
            .instances
            .is_empty(),
        "boom never ran"
    );
    // Sent to its own function, it runs.
    let a = l.invoke("boom", &[], env.encode()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.header("x-amz-function-error").is_none(), "{:?}", a.json());
}
