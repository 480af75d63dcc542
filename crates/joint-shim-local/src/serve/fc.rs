//! Function Compute 3.0 `InvokeFunction` over HTTP, backed by a local cloud's FaaS. Every
//! request's ACS3-HMAC-SHA256 signature is verified with the same code the client signs with;
//! errors are answered as FC does (`{"Code","Message","RequestId"}`).
//!
//! Settings: `aliyun.access_key_id`, `aliyun.access_key_secret` (else the
//! `ALIBABA_CLOUD_*` variables), `fc.cloud` (which local cloud runs the functions; default: the
//! only cloud, else `aliyun`), `fc.timeout_secs` (default 900 s; past it a request is answered
//! 408 `RequestTimeout`, see [`super`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
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

/// The FC endpoint.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
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

async fn handle(State(state): State<Arc<ServeState>>, req: Request) -> Response {
    let rid = request_id();
    let (head, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return fc_error(400, "EntityTooLarge", e.to_string(), &rid),
    };
    let parts = parts_of(head.method.as_str(), &head.uri, &head.headers);
    if let Err(e) = sign::acs3::verify(
        &parts,
        &body,
        lookup(&state),
        Timestamp::now(),
        MAX_SKEW_SECS,
    ) {
        let (status, code) = match &e {
            VerifyError::Mismatch { .. } => (403, "SignatureNotMatch"),
            VerifyError::UnknownAccessKey(_) => (403, "InvalidAccessKeyID"),
            VerifyError::Skewed(_) => (403, "InvalidTimeStamp.Expired"),
            VerifyError::BadDigest(_) => (400, "InvalidArgument"),
            VerifyError::Malformed(_) => (403, "AccessDenied"),
        };
        return fc_error(status, code, e.to_string(), &rid);
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
                format!("{} {} is not supported", head.method, parts.path),
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
        return fc_error(
            404,
            "AliasNotFound",
            format!("alias '{q}' of function '{function}' not found (joint serve has LATEST only)"),
            &rid,
        );
    }
    let cloud = cloud_name(&state, "fc");
    let Ok(c) = state.clouds.clouds.get(&cloud) else {
        return fc_error(
            500,
            "InternalServerError",
            format!("joint serve has no local cloud '{cloud}' (set fc.cloud)"),
            &rid,
        );
    };
    let asynchronous = match parts.get("x-fc-invocation-type").unwrap_or("Sync") {
        "Async" => true,
        "Sync" => false,
        other => {
            return fc_error(
                400,
                "InvalidArgument",
                format!("bad x-fc-invocation-type '{other}'"),
                &rid,
            );
        }
    };
    let result = if asynchronous {
        c.faas
            .invoke_async(&function, body)
            .await
            .map(|_| Bytes::new())
    } else {
        c.faas.invoke_sync(&function, body).await
    };
    match result {
        Ok(_) if asynchronous => {
            (StatusCode::ACCEPTED, [("x-fc-request-id", rid.as_str())]).into_response()
        }
        Ok(out) => (StatusCode::OK, [("x-fc-request-id", rid.as_str())], out).into_response(),
        Err(e) => match e.kind() {
            ErrorKind::FunctionError => (
                StatusCode::OK,
                [
                    ("x-fc-request-id", rid.as_str()),
                    ("x-fc-error-type", "UnhandledInvocationError"),
                    ("content-type", "application/json"),
                ],
                serde_json::json!({"errorType": "HandlerError", "errorMessage": e.message()})
                    .to_string(),
            )
                .into_response(),
            ErrorKind::FunctionNotFound => fc_error(
                404,
                "FunctionNotFound",
                format!("function '{function}' not found"),
                &rid,
            ),
            ErrorKind::PayloadTooLarge => {
                fc_error(400, "EntityTooLarge", e.message().to_string(), &rid)
            }
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
