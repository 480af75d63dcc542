//! The Lambda-compatible invoke endpoint (`joint serve --listen lambda=ADDR`):
//! `POST /2015-03-31/functions/{FunctionName}/invocations` (Lambda's `Invoke`), as the AWS SDKs
//! and CLI call it, answered as Lambda answers it.
//!
//! - `FunctionName` is parsed as Lambda parses it: a name (`first`), a name with a qualifier
//!   (`first:$LATEST`), a partial ARN (`123456789012:function:first`) or a full ARN
//!   (`arn:aws:lambda:us-east-1:123456789012:function:first:$LATEST`); anything else is a 400
//!   `ValidationException`. The qualifier (in the name or the `Qualifier` query parameter; both
//!   must agree) may only be `$LATEST`, the only version here: any other version or alias is a
//!   404 `ResourceNotFoundException`, as for a version or alias that does not exist.
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default) → 200 with the result; `Event` → 202,
//!   queued on the local FaaS of the cloud hosting the function; `DryRun` → 204 once the
//!   function is known to exist.
//! - Payload limits are Lambda's: 6 MB synchronous, 1 MB asynchronous
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html>); a larger request is a
//!   413 `RequestTooLargeException`. A payload that is not JSON is a 400
//!   `InvalidRequestContentException`, for both invocation types.
//! - A function error → 200 with `X-Amz-Function-Error: Unhandled` and Lambda's
//!   `{"errorMessage", "errorType"}` body. An envelope sent to another function than the one it
//!   is for is refused as a function error (the deployed adapter refuses it the same way).
//! - `X-Amz-Log-Type: Tail` (synchronous only) → `X-Amz-Log-Result`: the base64 of the last 4 KB
//!   of the invocation's log, which here holds Lambda's `START`, `END` and `REPORT` lines (with
//!   the measured duration) and, for a failed invocation, the error as the runtime logs it —
//!   local functions write no other log lines per invocation.
//! - Errors carry `x-amzn-ErrorType` and Lambda's `{"Type", "message"}` body: an unknown
//!   function is a 404 `ResourceNotFoundException`; any other route or method (Lambda's other
//!   operations are not implemented here) a 404 `UnknownOperationException`; other failures
//!   `TooManyRequestsException` 429, `ServiceException` 5xx.
//!
//! Functions are the workflow functions the served runtime hosts and the raw functions added
//! with [`joint_shim_local::LocalFaas::add_raw`]. The setting `lambda.cloud` pins one cloud; otherwise
//! the first cloud (by name) hosting the function answers. Requests are not authenticated.
//! A request running past `lambda.timeout_secs` (default 900 s, Lambda's maximum function
//! timeout) is answered 408 `RequestTimeoutException` (see [`super`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use joint_shim::{Error, ErrorKind};
use serde_json::json;

use super::ServeState;

/// Lambda's largest synchronous request (6 MB).
pub const SYNC_PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;
/// Lambda's largest asynchronous (`Event`) request (1 MB).
pub const ASYNC_PAYLOAD_LIMIT: u64 = 1024 * 1024;
/// The part of an invocation's log `LogType=Tail` returns (the last 4 KB).
pub const LOG_TAIL: usize = 4 * 1024;

/// The region and account in the ARNs the endpoint reports.
const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:000000000000:function:";

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
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke).fallback(unknown_operation),
        )
        .fallback(unknown_operation)
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

async fn unknown_operation(method: Method, uri: Uri) -> Response {
    service_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        &format!(
            "{method} {} is not an operation of joint serve's Lambda endpoint, which implements \
             Invoke only (POST /2015-03-31/functions/{{FunctionName}}/invocations)",
            uri.path()
        ),
    )
}

fn not_found(name: &str, qualifier: Option<&str>) -> Response {
    let arn = match qualifier {
        Some(q) => format!("{ARN_PREFIX}{name}:{q}"),
        None => format!("{ARN_PREFIX}{name}"),
    };
    service_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("Function not found: {arn}"),
    )
}

/// A function name, as `Invoke` accepts it, and its qualifier (`name:qualifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    /// The function's name.
    pub name: String,
    /// The version or alias in the name or ARN, if any.
    pub qualifier: Option<String>,
}

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

fn is_name(s: &str) -> bool {
    all(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    })
}

fn is_qualifier(s: &str) -> bool {
    s == "$LATEST"
        || s == "$LATEST.PUBLISHED"
        || all(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// `[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}`, e.g. `us-east-1`, `us-gov-west-1`.
fn is_region(s: &str) -> bool {
    let lower = |p: &str| all(p, |c| c.is_ascii_lowercase());
    let parts: Vec<&str> = s.split('-').collect();
    let rest = match parts.split_first() {
        Some((h, r)) if h.len() == 2 && lower(h) => r,
        _ => return false,
    };
    let rest = match rest.first() {
        Some(&"gov") => &rest[1..],
        Some(p) if p.starts_with("iso") && p.len() <= 4 && lower(p) => &rest[1..],
        _ => rest,
    };
    matches!(rest, [area, digit] if lower(area) && digit.len() == 1 && all(digit, |c| c.is_ascii_digit()))
}

/// Parse `FunctionName` as Lambda does (its pattern
/// `(arn:(aws[a-zA-Z-]*)?:lambda:)?(REGION:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?`,
/// function names of at most 64 characters). Returns why not.
pub fn parse_function_name(raw: &str) -> Result<FunctionRef, String> {
    let refuse = || {
        format!(
            "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST(\\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
        )
    };
    if raw.is_empty() || raw.len() > 170 {
        return Err(refuse());
    }
    let mut rest = raw;
    if let Some(r) = rest.strip_prefix("arn:") {
        let (partition, r) = r.split_once(':').ok_or_else(refuse)?;
        let partition_ok = partition.is_empty()
            || (partition.starts_with("aws")
                && partition
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-'));
        rest = r
            .strip_prefix("lambda:")
            .filter(|_| partition_ok)
            .ok_or_else(refuse)?;
    }
    if let Some((region, r)) = rest.split_once(':')
        && is_region(region)
    {
        rest = r;
    }
    if let Some((account, r)) = rest.split_once(':')
        && account.len() == 12
        && all(account, |c| c.is_ascii_digit())
    {
        rest = r;
    }
    if let Some(r) = rest.strip_prefix("function:") {
        rest = r;
    }
    let (name, qualifier) = match rest.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (rest, None),
    };
    if !is_name(name) || name.len() > 64 || qualifier.is_some_and(|q| !is_qualifier(q)) {
        return Err(refuse());
    }
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier: qualifier.map(str::to_string),
    })
}

/// A shim error as Lambda's answer.
fn error_response(e: &Error, qualifier: Option<&str>) -> Response {
    match e.kind() {
        ErrorKind::FunctionError => function_error(e),
        ErrorKind::FunctionNotFound | ErrorKind::NotFound => not_found(e.target(), qualifier),
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

/// `(errorType, errorMessage)` of a function error (local FaaS messages are `Type: message`).
fn error_parts(e: &Error) -> (&str, &str) {
    e.message()
        .split_once(": ")
        .filter(|(t, _)| !t.contains(' '))
        .unwrap_or(("Unhandled", e.message()))
}

fn function_error(e: &Error) -> Response {
    let (ty, msg) = error_parts(e);
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

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn bad_parameter(message: &str) -> Response {
    service_error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        message,
    )
}

/// The log of one invocation, as Lambda writes it, and its last [`LOG_TAIL`] bytes in base64.
fn log_tail(request_id: &str, started: Instant, error: Option<&Error>) -> String {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut log = format!("START RequestId: {request_id} Version: $LATEST\n");
    if let Some(e) = error {
        let (ty, msg) = error_parts(e);
        log.push_str(&format!(
            "{}\t{request_id}\tERROR\tInvoke Error \t{}\n",
            joint_shim_aliyun::Timestamp::now().iso8601_millis(),
            json!({"errorType": ty, "errorMessage": msg})
        ));
    }
    log.push_str(&format!(
        "END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {ms:.2} ms\t\
         Billed Duration: {} ms\t\n",
        ms.ceil().max(1.0) as u64
    ));
    let bytes = log.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL)..];
    base64::engine::general_purpose::STANDARD.encode(tail)
}

async fn invoke(
    State(state): State<Arc<ServeState>>,
    Path(raw_name): Path<String>,
    req: Request,
) -> Response {
    let (head, body) = req.into_parts();
    let headers = &head.headers;
    let kind = header(headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    if !matches!(kind, "Event" | "RequestResponse" | "DryRun") {
        return bad_parameter(&format!(
            "1 validation error detected: Value '{kind}' at 'invocationType' failed to satisfy \
             constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ));
    }
    let log_type = header(headers, "x-amz-log-type").unwrap_or("None");
    if !matches!(log_type, "None" | "Tail") {
        return bad_parameter(&format!(
            "1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy \
             constraint: Member must satisfy enum value set: [Tail, None]"
        ));
    }
    // The body, read up to Lambda's limit for this invocation type (the length is checked
    // while reading, so an oversized upload is not buffered whole).
    let limit = if kind == "Event" {
        ASYNC_PAYLOAD_LIMIT
    } else {
        SYNC_PAYLOAD_LIMIT
    };
    let too_large = || {
        service_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        )
    };
    if header(headers, "content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > limit)
    {
        return too_large();
    }
    let body: Bytes = match axum::body::to_bytes(body, limit as usize).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let function = match parse_function_name(&raw_name) {
        Ok(f) => f,
        Err(m) => return service_error(StatusCode::BAD_REQUEST, "ValidationException", &m),
    };
    let query = joint_shim_aliyun::sign::parse_query(head.uri.query().unwrap_or(""));
    let query_qualifier = query
        .iter()
        .find(|(k, _)| k == "Qualifier")
        .map(|(_, v)| v.clone());
    let qualifier = match (&function.qualifier, &query_qualifier) {
        (Some(a), Some(b)) if a != b => {
            return bad_parameter(
                "The derived qualifier from the function name does not match the specified \
                 qualifier.",
            );
        }
        (Some(q), _) | (None, Some(q)) => Some(q.clone()),
        (None, None) => None,
    };
    let name = function.name;
    // Only $LATEST exists here: another version or alias is a function that does not exist.
    if let Some(q) = &qualifier
        && q != "$LATEST"
    {
        return not_found(&name, Some(q));
    }
    if !body.is_empty()
        && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body)
    {
        return service_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            &format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            ),
        );
    }
    let pinned = state.settings.get("lambda.cloud");
    let Some(faas) = state
        .clouds
        .faas
        .iter()
        .filter(|(cloud, _)| pinned.is_none_or(|p| p == *cloud))
        .map(|(_, f)| f)
        .find(|f| f.serves(&name))
    else {
        return not_found(&name, qualifier.as_deref());
    };
    let request_id = super::fc::request_id();
    let started = Instant::now();
    let (status, out, error) = match kind {
        "DryRun" => (StatusCode::NO_CONTENT, Ok(Bytes::new()), None),
        "Event" => match faas.invoke_async_within(&name, body, limit).await {
            Ok(()) => (StatusCode::ACCEPTED, Ok(Bytes::new()), None),
            Err(e) => return error_response(&e, qualifier.as_deref()),
        },
        _ => match faas.invoke_sync_within(&name, body, limit).await {
            Ok(b) => (StatusCode::OK, Ok(b), None),
            Err(e) if e.kind() == ErrorKind::FunctionError => {
                (StatusCode::OK, Err(function_error(&e)), Some(e))
            }
            Err(e) => return error_response(&e, qualifier.as_deref()),
        },
    };
    let mut r = match out {
        Ok(bytes) if status == StatusCode::OK => {
            (status, [("content-type", "application/json")], bytes).into_response()
        }
        Ok(_) => status.into_response(),
        Err(r) => r,
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    if status == StatusCode::OK {
        h.insert(
            "X-Amz-Executed-Version",
            HeaderValue::from_static("$LATEST"),
        );
        if log_type == "Tail"
            && let Ok(v) = HeaderValue::from_str(&log_tail(&request_id, started, error.as_ref()))
        {
            h.insert("X-Amz-Log-Result", v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_parse_as_lambda_parses_them() {
        let ok = |raw: &str, name: &str, q: Option<&str>| {
            assert_eq!(
                parse_function_name(raw),
                Ok(FunctionRef {
                    name: name.into(),
                    qualifier: q.map(str::to_string)
                }),
                "{raw}"
            );
        };
        ok("first", "first", None);
        ok("first:$LATEST", "first", Some("$LATEST"));
        ok("my.fn_1-x:prod", "my.fn_1-x", Some("prod"));
        ok("123456789012:function:first", "first", None);
        ok("123456789012:function:first:7", "first", Some("7"));
        ok(
            "arn:aws:lambda:us-east-1:123456789012:function:first",
            "first",
            None,
        );
        ok(
            "arn:aws:lambda:us-east-1:123456789012:function:first:$LATEST",
            "first",
            Some("$LATEST"),
        );
        ok(
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:first",
            "first",
            None,
        );
        ok(
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
            "f",
            None,
        );
        for bad in [
            "",
            "a b",
            "first:",
            "first:a:b",
            "first:$NOPE",
            "arn:aws:s3:::bucket",
            "arn:gcp:lambda:us-east-1:123456789012:function:f",
            &"x".repeat(65),
        ] {
            let e = parse_function_name(bad).expect_err(bad);
            assert!(e.contains("failed to satisfy constraint"), "{bad}: {e}");
        }
    }
}
