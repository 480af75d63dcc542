//! The Lambda-compatible invoke endpoint (`joint serve --listen lambda=ADDR`):
//! `POST /2015-03-31/functions/{name}/invocations`, as the AWS SDKs and CLI call it.
//!
//! - `X-Amz-Invocation-Type: Event` → 202, queued on the local FaaS of the cloud hosting
//!   `name`; `RequestResponse` (the default) → 200 with the result (`DryRun` is refused with 400).
//! - A function error → 200 with `X-Amz-Function-Error: Unhandled` and Lambda's
//!   `{"errorMessage", "errorType"}` body.
//! - An unknown function → 404, `x-amzn-ErrorType: ResourceNotFoundException` and Lambda's
//!   `{"Type": "User", "message"}` body; other failures use Lambda's error codes
//!   (`TooManyRequestsException` 429, `RequestTooLargeException` 413, `ServiceException` 5xx).
//!
//! Functions are the workflow functions the served runtime hosts and the raw functions added
//! with [`crate::LocalFaas::add_raw`]. The setting `lambda.cloud` pins one cloud; otherwise
//! the first cloud (by name) hosting the function answers. Requests are not authenticated.
//! A request running past `lambda.timeout_secs` (default 900 s, Lambda's maximum function
//! timeout) is answered 408 `RequestTimeoutException` (see [`super`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use joint_shim::{Error, ErrorKind, Faas};
use serde_json::json;

use super::ServeState;

/// Lambda's answer to a request that ran past `lambda.timeout_secs`: 408
/// `RequestTimeoutException` (the AWS SDKs retry it as a transient error).
pub(super) fn timed_out(_: &ServeState, _: &Method, _: &Uri, message: &str) -> Response {
    service_error(
        StatusCode::REQUEST_TIMEOUT,
        "RequestTimeoutException",
        message,
    )
}

/// The router of the endpoint.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(state)
}

/// Lambda's error response for service errors.
fn service_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"Type": if status.is_client_error() { "User" } else { "Service" }, "message": message})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

fn not_found(name: &str) -> Response {
    service_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("Function not found: arn:aws:lambda:local:000000000000:function:{name}"),
    )
}

/// A shim error as Lambda's answer.
fn error_response(e: &Error) -> Response {
    match e.kind() {
        ErrorKind::FunctionError => {
            // Local FaaS messages are `Type: message`.
            let (ty, msg) = e
                .message()
                .split_once(": ")
                .filter(|(t, _)| !t.contains(' '))
                .unwrap_or(("Unhandled", e.message()));
            let mut r = (
                StatusCode::OK,
                axum::Json(json!({"errorMessage": msg, "errorType": ty})),
            )
                .into_response();
            r.headers_mut().insert(
                "X-Amz-Function-Error",
                HeaderValue::from_static("Unhandled"),
            );
            r
        }
        ErrorKind::FunctionNotFound | ErrorKind::NotFound => not_found(e.target()),
        ErrorKind::PayloadTooLarge => service_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            e.message(),
        ),
        ErrorKind::Throttled => service_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            e.message(),
        ),
        ErrorKind::InvalidInput => service_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            e.message(),
        ),
        _ => service_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceException",
            &e.to_string(),
        ),
    }
}

async fn invoke(
    State(state): State<Arc<ServeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if !matches!(kind, "Event" | "RequestResponse") {
        return service_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!(
                "X-Amz-Invocation-Type '{kind}' is not supported here (Event, RequestResponse)"
            ),
        );
    }
    // Lambda accepts a function name, a partial or a full ARN; keep the name.
    let name = name.rsplit(':').next().unwrap_or(&name).to_string();
    let pinned = state.settings.get("lambda.cloud");
    let mut last_not_found = None;
    for (cloud, faas) in &state.clouds.faas {
        if pinned.is_some_and(|p| p != cloud) {
            continue;
        }
        let result = match kind {
            "Event" => faas
                .invoke_async(&name, body.clone())
                .await
                .map(|()| (StatusCode::ACCEPTED, Bytes::new())),
            _ => faas
                .invoke_sync(&name, body.clone())
                .await
                .map(|b| (StatusCode::OK, b)),
        };
        match result {
            Ok((status, bytes)) => {
                let mut r = (status, bytes).into_response();
                r.headers_mut().insert(
                    "X-Amz-Executed-Version",
                    HeaderValue::from_static("$LATEST"),
                );
                if status == StatusCode::OK {
                    r.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/json"));
                }
                return r;
            }
            Err(e) if e.kind() == ErrorKind::FunctionNotFound => last_not_found = Some(e),
            Err(e) => return error_response(&e),
        }
    }
    match last_not_found {
        Some(e) => error_response(&e),
        None => not_found(&name),
    }
}
