//! `joint serve`'s FC 3.0 endpoint: a signed request runs once (a replayed nonce is refused
//! with FC's error), FC's payload limits, qualifiers and log tails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use joint_serve::{ServeState, spawn};
use joint_shim::handler_fn;
use joint_shim_aliyun::Credential;
use joint_shim_aliyun::Timestamp;
use joint_shim_aliyun::fc::invoke_request;
use joint_shim_aliyun::sign::{self, Parts, acs3};
use joint_shim_local::LocalCloudsBuilder;
use serde_json::Value;

const AK: &str = "joint-test-ak";
const SK: &str = "joint-test-secret";

struct Fc {
    url: String,
    host: String,
    http: reqwest::Client,
    calls: Arc<AtomicU64>,
    _served: joint_serve::Served,
}

async fn start() -> Fc {
    let local = LocalCloudsBuilder::new()
        .clouds(["aliyun"])
        .build()
        .expect("local clouds");
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    local.faas["aliyun"].add_raw(
        "count",
        handler_fn(move |v, _| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            }
        }),
    );
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local,
        settings: BTreeMap::from([
            ("aliyun.access_key_id".to_string(), AK.to_string()),
            ("aliyun.access_key_secret".to_string(), SK.to_string()),
        ]),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let served = spawn(state, vec![("fc".into(), any)]).await.expect("serve");
    let url = served.url("fc").expect("url").to_string();
    Fc {
        host: url.trim_start_matches("http://").to_string(),
        url,
        http: reqwest::Client::new(),
        calls,
        _served: served,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["Code"].as_str().unwrap_or_default().to_string()
    }
}

impl Fc {
    fn signed(
        &self,
        function: &str,
        qualifier: Option<&str>,
        asynchronous: bool,
        body: &[u8],
        nonce: &str,
    ) -> Parts {
        invoke_request(
            &self.host,
            function,
            qualifier,
            asynchronous,
            body,
            &Credential::new(AK, SK),
            Timestamp::now(),
            nonce,
        )
    }

    async fn send(&self, p: &Parts, body: &[u8], extra: &[(&str, &str)]) -> Answer {
        let query: String = p
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let url = if query.is_empty() {
            format!("{}{}", self.url, p.path)
        } else {
            format!("{}{}?{query}", self.url, p.path)
        };
        let mut rb = self.http.post(url);
        for (k, v) in &p.headers {
            if k.eq_ignore_ascii_case("host") {
                continue;
            }
            rb = rb.header(k.as_str(), v.as_str());
        }
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        let r = rb.body(body.to_vec()).send().await.expect("request");
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.expect("body").to_vec(),
        }
    }
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_the_function_runs_once() {
    let fc = start().await;
    let body = b"{\"x\":1}";
    let p = fc.signed(
        "count",
        None,
        false,
        body,
        "0123456789abcdef0123456789abcdef",
    );
    let a = fc.send(&p, body, &[]).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // The very same signed request again: FC's replay error, and the function does not run.
    let a = fc.send(&p, body, &[]).await;
    assert_eq!((a.status, a.code().as_str()), (400, "SignatureNonceUsed"));
    assert_eq!(fc.calls.load(Ordering::SeqCst), 1);
    // A fresh nonce is a new request.
    let p = fc.signed(
        "count",
        None,
        false,
        body,
        "fedcba9876543210fedcba9876543210",
    );
    assert_eq!(fc.send(&p, body, &[]).await.status, 200);
    assert_eq!(fc.calls.load(Ordering::SeqCst), 2);
    // Correctly signed but without a nonce: refused, as replays of it could not be told apart.
    let mut p = fc.signed("count", None, false, body, "unused");
    p.headers
        .retain(|(k, _)| k != "x-acs-signature-nonce" && k != "Authorization");
    let signed = acs3::default_signed_headers(&p);
    let auth = acs3::authorization(
        &p,
        &signed,
        &sign::sha256_hex(body),
        &Credential::new(AK, SK),
    );
    p.headers.push(("Authorization".into(), auth));
    let a = fc.send(&p, body, &[]).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (400, "MissingRequiredHeader")
    );
    assert_eq!(fc.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fc_limits_qualifiers_and_log_tails() {
    let fc = start().await;
    // Sync: FC's 32 MB (more than the local FaaS's own 6 MB).
    let big = format!("\"{}\"", "x".repeat(8 * 1024 * 1024));
    let p = fc.signed("count", None, false, big.as_bytes(), "n-big");
    let a = fc.send(&p, big.as_bytes(), &[]).await;
    assert_eq!(
        a.status,
        200,
        "{}",
        String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
    );
    assert_eq!(a.body.len(), big.len());
    // Async: FC's 128 KB.
    let event = format!("\"{}\"", "x".repeat(128 * 1024));
    let p = fc.signed("count", None, true, event.as_bytes(), "n-async");
    let a = fc.send(&p, event.as_bytes(), &[]).await;
    assert_eq!((a.status, a.code().as_str()), (400, "EntityTooLarge"));

    for (q, code) in [("prod", "AliasNotFound"), ("3", "VersionNotFound")] {
        let p = fc.signed("count", Some(q), false, b"{}", &format!("n-q-{q}"));
        let a = fc.send(&p, b"{}", &[]).await;
        assert_eq!((a.status, a.code().as_str()), (404, code), "{q}");
    }
    let p = fc.signed("count", Some("LATEST"), false, b"{}", "n-latest");
    assert_eq!(fc.send(&p, b"{}", &[]).await.status, 200);

    // x-fc-log-type is a signed x-* header only for x-acs-*; FC reads it unsigned.
    let p = fc.signed("count", None, false, b"{}", "n-tail");
    let mut p2 = p.clone();
    p2.headers.retain(|(k, _)| k != "x-fc-log-type");
    let a = fc.send(&p2, b"{}", &[("x-fc-log-type", "Tail")]).await;
    assert_eq!(a.status, 200);
    let rid = a.headers["x-fc-request-id"]
        .to_str()
        .expect("rid")
        .to_string();
    let log = a.headers.get("x-fc-log-result").expect("x-fc-log-result");
    let log = base64::engine::general_purpose::STANDARD
        .decode(log.as_bytes())
        .expect("base64");
    let log = String::from_utf8(log).expect("utf-8");
    assert!(
        log.contains(&format!("FC Invoke Start RequestId: {rid}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("FC Invoke End RequestId: {rid}")),
        "{log}"
    );
}
