//! Function Compute 3.0 `InvokeFunction` over HTTP, backed by a local cloud's FaaS. Every
//! request's ACS3-HMAC-SHA256 signature is verified with the same code the client signs with;
//! errors are answered as FC does (`{"Code","Message","RequestId"}`).
//!
//! - **Replays are refused**: a request's `x-acs-signature-nonce` (required) is remembered until
//!   its `x-acs-date` leaves the 15-minute window; the same nonce again is a 400
//!   `SignatureNonceUsed` ("Specified signature nonce was used already."), as Alibaba Cloud's
//!   API gateway answers it. After the window the request is refused for its date
//!   (`InvalidTimeStamp.Expired`), so a signed request runs at most once.
//! - Payload limits are FC's: 32 MB synchronous, 128 KB asynchronous (`EntityTooLarge`).
//! - The qualifier may only be `LATEST` (the only version here); another alias is a 404
//!   `AliasNotFound`, a version number a 404 `VersionNotFound`.
//! - `x-fc-log-type: Tail` (synchronous) returns `x-fc-log-result`, the base64 of the last 4 KB of
//!   the invocation's log (FC's `FC Invoke Start`/`FC Invoke End` lines and, for a failed
//!   invocation, the error).
//! - An envelope sent to another function than the one it is for is refused as a function error.
//!
//! Settings: `aliyun.access_key_id`, `aliyun.access_key_secret` (else the
//! `ALIBABA_CLOUD_*` variables), `fc.cloud` (which local cloud runs the functions; default: the
//! only cloud, else `aliyun`), `fc.timeout_secs` (default 900 s; past it a request is answered
//! 408 `RequestTimeout`, see [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use joint_shim::ErrorKind;
use joint_shim_aliyun::Credential;
use joint_shim_aliyun::Timestamp;
use joint_shim_aliyun::fc::{API_VERSION, FcError};
use joint_shim_aliyun::sign::{self, Parts, VerifyError};

use super::ServeState;

/// Clock skew the endpoints accept, as the services do (15 minutes).
pub(crate) const MAX_SKEW_SECS: i64 = 15 * 60;

/// The credential requests must be signed with: settings `aliyun.*`, else the environment.
pub(crate) fn credential(state: &ServeState) -> Option<Credential> {
    let s = &state.settings;
    match (
        s.get("aliyun.access_key_id"),
        s.get("aliyun.access_key_secret"),
    ) {
        (Some(id), Some(secret)) => {
            let mut c = Credential::new(id.clone(), secret.clone());
            if let Some(t) = s.get("aliyun.security_token") {
                c = c.with_security_token(t.clone());
            }
            Some(c)
        }
        _ => Credential::from_env().ok(),
    }
}

/// A lookup that accepts exactly the configured access key.
pub(crate) fn lookup(state: &ServeState) -> impl Fn(&str) -> Option<Credential> + use<> {
    let cred = credential(state);
    move |id: &str| cred.clone().filter(|c| c.access_key_id == id)
}

/// The local cloud an endpoint serves: setting `{prefix}.cloud`, the only cloud, or `aliyun`.
pub(crate) fn cloud_name(state: &ServeState, prefix: &str) -> String {
    if let Some(c) = state.settings.get(&format!("{prefix}.cloud")) {
        return c.clone();
    }
    let names = state.clouds.clouds.names();
    if names.len() == 1 {
        return names[0].clone();
    }
    "aliyun".into()
}

/// Request parts as the signature verifiers want them.
pub(crate) fn parts_of(method: &str, uri: &axum::http::Uri, headers: &HeaderMap) -> Parts {
    let mut p = Parts::new(method, uri.path());
    p.query = sign::parse_query(uri.query().unwrap_or(""));
    p.headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    p
}

pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Nonces of signed requests seen within the signature window, each kept until its request's
/// date leaves the window (after which the date check refuses a replay).
#[derive(Default)]
pub(crate) struct Nonces {
    seen: HashMap<String, i64>,
    by_expiry: BTreeMap<i64, Vec<String>>,
}

impl Nonces {
    /// Record `nonce` of a request dated `date` (unix seconds); `false` if it was seen already.
    pub(crate) fn first_use(&mut self, nonce: &str, date: i64, now: i64) -> bool {
        // Forget the nonces whose requests can no longer pass the date check.
        while let Some((&exp, _)) = self.by_expiry.first_key_value() {
            if exp >= now {
                break;
            }
            if let Some((_, gone)) = self.by_expiry.pop_first() {
                for n in gone {
                    if self.seen.get(&n) == Some(&exp) {
                        self.seen.remove(&n);
                    }
                }
            }
        }
        if self.seen.contains_key(nonce) {
            return false;
        }
        let exp = date + MAX_SKEW_SECS + 1;
        self.seen.insert(nonce.to_string(), exp);
        self.by_expiry
            .entry(exp)
            .or_default()
            .push(nonce.to_string());
        true
    }
}

struct Fc {
    state: Arc<ServeState>,
    nonces: Mutex<Nonces>,
}

/// FC 3.0's largest synchronous payload (32 MB).
pub const SYNC_PAYLOAD_LIMIT: u64 = joint_shim_aliyun::fc::SYNC_PAYLOAD_LIMIT;
/// FC's largest asynchronous payload (128 KB).
pub const ASYNC_PAYLOAD_LIMIT: u64 = joint_shim_aliyun::fc::ASYNC_PAYLOAD_LIMIT;

/// The FC endpoint.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(Fc {
            state,
            nonces: Mutex::new(Nonces::default()),
        }))
}

/// FC's answer to a request that ran past `fc.timeout_secs`: 408 `RequestTimeout`.
pub(super) fn timed_out(_: &ServeState, _: &Method, _: &Uri, message: &str) -> Response {
    fc_error(408, "RequestTimeout", message, &request_id())
}

fn fc_error(status: u16, code: &str, message: impl Into<String>, rid: &str) -> Response {
    let e = FcError {
        status,
        code: code.into(),
        message: message.into(),
        request_id: Some(rid.into()),
        retry_after_ms: None,
    };
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("x-fc-request-id", rid),
        ],
        e.body(),
    )
        .into_response();
    if code == "ResourceExhausted" {
        r.headers_mut().insert(
            "x-acs-retry-after",
            axum::http::HeaderValue::from_static("100"),
        );
    }
    r
}

fn log_tail(rid: &str, error: Option<&str>) -> String {
    let mut log = format!("FC Invoke Start RequestId: {rid}\n");
    if let Some(e) = error {
        log.push_str(&format!(
            "{} {rid} [ERROR] {}\n",
            Timestamp::now().iso8601_millis(),
            e.replace('\n', " ")
        ));
    }
    log.push_str(&format!("FC Invoke End RequestId: {rid}\n"));
    let b = log.as_bytes();
    base64::engine::general_purpose::STANDARD.encode(&b[b.len().saturating_sub(4096)..])
}

async fn handle(State(fc): State<Arc<Fc>>, req: Request) -> Response {
    let state = &fc.state;
    let rid = request_id();
    let (head, body) = req.into_parts();
    let asynchronous = head
        .headers
        .get("x-fc-invocation-type")
        .is_some_and(|v| v.as_bytes() == b"Async");
    // Read at most FC's limit for this invocation type: a larger upload is refused while it is
    // read, not buffered whole.
    let limit = if asynchronous {
        ASYNC_PAYLOAD_LIMIT
    } else {
        SYNC_PAYLOAD_LIMIT
    };
    let too_large = || {
        fc_error(
            400,
            "EntityTooLarge",
            format!("payload size exceeds maximum allowed size ({limit} bytes)"),
            &rid,
        )
    };
    let body = match axum::body::to_bytes(body, limit as usize).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let parts = parts_of(head.method.as_str(), &head.uri, &head.headers);
    let now = Timestamp::now();
    if let Err(e) = sign::acs3::verify(&parts, &body, lookup(state), now, MAX_SKEW_SECS) {
        let (status, code) = match &e {
            VerifyError::Mismatch { .. } => (403, "SignatureNotMatch"),
            VerifyError::UnknownAccessKey(_) => (403, "InvalidAccessKeyID"),
            VerifyError::Skewed(_) => (403, "InvalidTimeStamp.Expired"),
            VerifyError::BadDigest(_) => (400, "InvalidArgument"),
            VerifyError::Malformed(_) => (403, "AccessDenied"),
        };
        return fc_error(status, code, e.to_string(), &rid);
    }
    // The signature holds, so the date parses and is within the window.
    let Some(nonce) = parts.get("x-acs-signature-nonce").filter(|n| !n.is_empty()) else {
        return fc_error(
            400,
            "MissingRequiredHeader",
            "required HTTP header x-acs-signature-nonce was not specified",
            &rid,
        );
    };
    let date = parts
        .get("x-acs-date")
        .and_then(Timestamp::parse)
        .map(|t| t.unix_millis() / 1000)
        .unwrap_or_else(|| now.unix_millis() / 1000);
    let fresh = fc
        .nonces
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .first_use(nonce, date, now.unix_millis() / 1000);
    if !fresh {
        return fc_error(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
            &rid,
        );
    }
    let segs: Vec<&str> = parts.path.trim_start_matches('/').split('/').collect();
    let function = match (head.method.as_str(), segs.as_slice()) {
        ("POST", [v, "functions", name, "invocations"]) if *v == API_VERSION => {
            sign::percent_decode(name)
        }
        _ => {
            return fc_error(
                400,
                "PathNotSupported",
                format!(
                    "'{}' against '{}' is not supported",
                    head.method, parts.path
                ),
                &rid,
            );
        }
    };
    if parts.get("x-acs-action") != Some("InvokeFunction")
        || parts.get("x-acs-version") != Some(API_VERSION)
    {
        return fc_error(
            400,
            "InvalidArgument",
            "x-acs-action must be InvokeFunction, x-acs-version 2023-03-30",
            &rid,
        );
    }
    if let Some((_, q)) = parts.query.iter().find(|(k, _)| k == "qualifier")
        && q != "LATEST"
    {
        return if !q.is_empty() && q.chars().all(|c| c.is_ascii_digit()) {
            fc_error(
                404,
                "VersionNotFound",
                format!(
                    "version '{q}' of function '{function}' does not exist (joint serve has LATEST only)"
                ),
                &rid,
            )
        } else {
            fc_error(
                404,
                "AliasNotFound",
                format!(
                    "alias '{q}' of function '{function}' does not exist (joint serve has LATEST only)"
                ),
                &rid,
            )
        };
    }
    match parts.get("x-fc-invocation-type").unwrap_or("Sync") {
        "Async" | "Sync" => {}
        other => {
            return fc_error(
                400,
                "InvalidArgument",
                format!("bad x-fc-invocation-type '{other}' (Sync or Async)"),
                &rid,
            );
        }
    }
    let tail = match parts.get("x-fc-log-type").unwrap_or("None") {
        "None" => false,
        "Tail" => true,
        other => {
            return fc_error(
                400,
                "InvalidArgument",
                format!("bad x-fc-log-type '{other}' (None or Tail)"),
                &rid,
            );
        }
    };
    let cloud = cloud_name(state, "fc");
    let Some(faas) = state.clouds.faas.get(&cloud) else {
        return fc_error(
            500,
            "InternalServerError",
            format!("joint serve has no local cloud '{cloud}' (set fc.cloud)"),
            &rid,
        );
    };
    let result = if asynchronous {
        faas.invoke_async_within(&function, body, limit)
            .await
            .map(|_| Bytes::new())
    } else {
        faas.invoke_sync_within(&function, body, limit).await
    };
    let log = |r: &mut Response, error: Option<&str>| {
        if tail
            && !asynchronous
            && let Ok(v) = axum::http::HeaderValue::from_str(&log_tail(&rid, error))
        {
            r.headers_mut().insert("x-fc-log-result", v);
        }
    };
    match result {
        Ok(_) if asynchronous => {
            (StatusCode::ACCEPTED, [("x-fc-request-id", rid.as_str())]).into_response()
        }
        Ok(out) => {
            let mut r = (StatusCode::OK, [("x-fc-request-id", rid.as_str())], out).into_response();
            log(&mut r, None);
            r
        }
        Err(e) => match e.kind() {
            ErrorKind::FunctionError => {
                let mut r = (
                    StatusCode::OK,
                    [
                        ("x-fc-request-id", rid.as_str()),
                        ("x-fc-error-type", "UnhandledInvocationError"),
                        ("content-type", "application/json"),
                    ],
                    serde_json::json!({"errorType": "HandlerError", "errorMessage": e.message()})
                        .to_string(),
                )
                    .into_response();
                log(&mut r, Some(e.message()));
                r
            }
            ErrorKind::FunctionNotFound => fc_error(
                404,
                "FunctionNotFound",
                format!("function '{function}' does not exist"),
                &rid,
            ),
            ErrorKind::PayloadTooLarge => too_large(),
            ErrorKind::Throttled => {
                fc_error(429, "ResourceExhausted", e.message().to_string(), &rid)
            }
            ErrorKind::Unavailable | ErrorKind::Timeout => {
                fc_error(503, "ServiceUnavailable", e.message().to_string(), &rid)
            }
            _ => fc_error(500, "InternalServerError", e.to_string(), &rid),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Nonces;

    #[test]
    fn a_nonce_is_refused_again_until_its_request_leaves_the_window() {
        let mut n = Nonces::default();
        assert!(n.first_use("a", 1_000, 1_000));
        assert!(!n.first_use("a", 1_000, 1_000));
        assert!(!n.first_use("a", 1_000, 1_000 + super::MAX_SKEW_SECS));
        assert!(n.first_use("b", 1_000, 1_001));
        // Past the window the request's date refuses it; its nonce is forgotten.
        assert!(n.first_use("c", 3_000, 3_000));
        assert!(!n.seen.contains_key("a") && !n.seen.contains_key("b"));
        assert!(!n.first_use("c", 3_000, 3_000));
    }
}
