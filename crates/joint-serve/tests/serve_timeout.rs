//! `joint serve`'s per-request timeouts: a request that runs past `NAME.timeout_secs` gets the
//! provider's timeout error instead of hanging, a normal request still passes, and a bad
//! setting is refused with an error naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use joint_serve::{ServeState, endpoint_router, request_timeout, serve, spawn};
use joint_shim::{BlobStore, ErrorKind, Faas, handler_fn};
use joint_shim_aliyun::{Credential, FcFaas, OssBlobStore};
use joint_shim_local::{LocalClouds, LocalCloudsBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AK: &str = "joint-test-ak";
const SK: &str = "joint-test-secret";

/// Only turns a hang into a failure; the assertions are about the answer, not its timing.
const HANG: Duration = Duration::from_secs(120);

struct Served {
    addrs: BTreeMap<String, SocketAddr>,
    _local: LocalClouds,
    /// Stops serving when dropped.
    _served: joint_serve::Served,
    _dir: tempfile::TempDir,
}

fn settings(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut s = BTreeMap::from([
        ("aliyun.access_key_id".to_string(), AK.to_string()),
        ("aliyun.access_key_secret".to_string(), SK.to_string()),
    ]);
    for (k, v) in extra {
        s.insert(k.to_string(), v.to_string());
    }
    s
}

fn local(dir: &tempfile::TempDir) -> LocalClouds {
    LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(["aliyun"])
        .build()
        .expect("local clouds")
}

/// Every endpoint with a 2 s request timeout, and the raw functions `echo` and `slow` (which
/// would take an hour).
async fn start() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = local(&dir);
    let f = &local.faas["aliyun"];
    f.add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    f.add_raw(
        "slow",
        handler_fn(|v, _| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(v)
        }),
    );
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local.clone(),
        settings: settings(&[
            ("lambda.timeout_secs", "2"),
            ("fc.timeout_secs", "2"),
            ("oss.timeout_secs", "2"),
            ("ots.timeout_secs", "2"),
        ]),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listen = ["lambda", "fc", "oss", "ots"]
        .iter()
        .map(|n| (n.to_string(), any))
        .collect();
    let served = spawn(state, listen).await.expect("joint serve");
    let addrs = served
        .urls()
        .iter()
        .map(|(n, u)| {
            let addr = u.trim_start_matches("http://").parse().expect("address");
            (n.clone(), addr)
        })
        .collect();
    Served {
        addrs,
        _local: local,
        _served: served,
        _dir: dir,
    }
}

/// An HTTP/1.1 exchange over a raw socket: writes `head` (request line and headers, without
/// the blank line) and `body`, then reads the answer until the server closes. With
/// `content_length` larger than `body`, the upload stalls.
async fn raw(
    addr: SocketAddr,
    head: &str,
    content_length: usize,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "{head}\r\nHost: {addr}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write head");
        s.write_all(body).await.expect("write body");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read answer");
        out
    };
    let out = tokio::time::timeout(HANG, exchange)
        .await
        .unwrap_or_else(|_| panic!("{head}: no answer — the request hung"));
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{head}: not an HTTP answer: {out:?}"));
    let headers = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{head}: no status in {headers}"));
    (status, headers, out[split + 4..].to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn lambda_times_out(s: &Served) {
    let addr = s.addrs["lambda"];
    let (status, headers, body) = raw(
        addr,
        "POST /2015-03-31/functions/slow/invocations HTTP/1.1",
        2,
        b"{}",
    )
    .await;
    assert_eq!(status, 408, "{headers}\n{}", text(&body));
    assert!(
        headers.contains("x-amzn-errortype: requesttimeoutexception"),
        "{headers}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("Lambda's JSON error body");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("lambda.timeout_secs"), "{v}");

    let (status, _, body) = raw(
        addr,
        "POST /2015-03-31/functions/echo/invocations HTTP/1.1",
        7,
        b"{\"x\":1}",
    )
    .await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"x": 1})
    );
}

async fn fc_times_out(s: &Served) {
    let fc = FcFaas::builder()
        .credential(Credential::new(AK, SK))
        .endpoint(&format!("http://{}", s.addrs["fc"]))
        .build()
        .expect("fc");
    let err = tokio::time::timeout(HANG, fc.invoke_sync("slow", "{}".into()))
        .await
        .expect("the FC request hung")
        .expect_err("a function past the timeout fails");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.message().contains("fc.timeout_secs"), "{err}");
    let out = fc
        .invoke_sync("echo", "{\"x\":2}".into())
        .await
        .expect("a quick function still answers");
    assert_eq!(&out[..], b"{\"x\":2}");
}

async fn oss_times_out(s: &Served) {
    // An upload that stalls after 10 of its 100 bytes.
    let (status, headers, body) = raw(
        s.addrs["oss"],
        "PUT /joint/stalled HTTP/1.1",
        100,
        &[b'x'; 10],
    )
    .await;
    assert_eq!(status, 408, "{headers}\n{}", text(&body));
    let body = text(&body);
    assert!(body.contains("<Code>RequestTimeout</Code>"), "{body}");
    assert!(body.contains("oss.timeout_secs"), "{body}");

    let oss = OssBlobStore::builder()
        .credential(Credential::new(AK, SK))
        .region("cn-hangzhou")
        .bucket("joint")
        .endpoint(&format!("http://{}", s.addrs["oss"]))
        .build()
        .expect("oss");
    oss.put_new("ok/blob", "hello".into())
        .await
        .expect("a whole upload still passes");
    assert_eq!(&oss.get("ok/blob").await.expect("get")[..], b"hello");
}

async fn ots_times_out(s: &Served) {
    let (status, headers, body) =
        raw(s.addrs["ots"], "POST /PutRow HTTP/1.1", 100, &[0u8; 10]).await;
    assert_eq!(status, 408, "{headers}\n{}", text(&body));
    assert!(headers.contains("x-ots-requestid"), "{headers}");
    let body = text(&body);
    assert!(body.contains("OTSRequestTimeout"), "{body}");
    assert!(body.contains("ots.timeout_secs"), "{body}");

    let ots = joint_shim_aliyun::ots::OtsClient::builder()
        .endpoint(format!("http://{}", s.addrs["ots"]))
        .instance("joint-test")
        .credential(Credential::new(AK, SK))
        .build()
        .expect("ots client");
    let tables: joint_shim_aliyun::ots::proto::ListTableResponse = ots
        .call(
            "ListTable",
            &joint_shim_aliyun::ots::proto::ListTableRequest {},
        )
        .await
        .expect("a normal request still passes");
    assert!(tables.table_names.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_requests_get_the_providers_timeout_error_and_quick_ones_pass() {
    let s = start().await;
    tokio::join!(
        lambda_times_out(&s),
        fc_times_out(&s),
        oss_times_out(&s),
        ots_times_out(&s)
    );
}

#[tokio::test]
async fn timeouts_have_documented_defaults_and_bad_settings_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = |extra: &[(&str, &str)]| ServeState {
        runtime: None,
        clouds: local(&dir),
        settings: settings(extra),
    };
    let plain = state(&[]);
    for (name, secs) in [("lambda", 900), ("fc", 900), ("oss", 30), ("ots", 30)] {
        assert_eq!(
            request_timeout(&plain, name).expect("default"),
            Duration::from_secs(secs),
            "{name}"
        );
    }
    assert_eq!(
        request_timeout(&state(&[("ots.timeout_secs", "0.25")]), "ots").expect("decimal"),
        Duration::from_millis(250)
    );
    for bad in ["abc", "0", "-1", "inf", "NaN", "", "1e300"] {
        let st = state(&[("lambda.timeout_secs", bad)]);
        let err = request_timeout(&st, "lambda").expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
        assert!(
            err.to_string().contains("lambda.timeout_secs"),
            "{bad}: the error names the setting: {err}"
        );
        let err = endpoint_router(Arc::new(st), "lambda").expect_err(bad);
        assert!(err.to_string().contains("lambda.timeout_secs"), "{err}");
    }
    // serve refuses to start with a bad setting, naming it.
    let st = Arc::new(state(&[("fc.timeout_secs", "soon")]));
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let err = serve(st, vec![("fc".into(), any)], |_| {}, async {})
        .await
        .expect_err("bad setting");
    assert!(err.to_string().contains("fc.timeout_secs=soon"), "{err}");
    let err = request_timeout(&plain, "nope").expect_err("unknown endpoint");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}
