//! `parse_error` for Function Compute 3.0: HTTP status, then the FC error code.

use joint_shim::{Error, ErrorKind};

use crate::http::find;

/// The error fields of an FC answer (`{"Code","Message","RequestId"}`; the FC 2.0 spellings
/// `errorCode`/`errorMessage` and lowercase keys are accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FcError {
    /// HTTP status.
    pub status: u16,
    /// `FunctionNotFound`, `ResourceExhausted`…
    pub code: String,
    /// Message.
    pub message: String,
    /// Request id (body, `x-fc-request-id` or `x-acs-request-id`).
    pub request_id: Option<String>,
    /// `x-acs-retry-after` in milliseconds, when the service asked for a pause.
    pub retry_after_ms: Option<u64>,
}

impl FcError {
    /// Decode an error answer.
    pub fn decode(status: u16, headers: &[(String, String)], body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| v.get(*n).and_then(|x| x.as_str()))
                .map(str::to_string)
        };
        let code = field(&["Code", "code", "errorCode", "ErrorCode"]).unwrap_or_else(|| {
            match status {
                429 => "ResourceExhausted",
                503 => "ResourceThrottled",
                404 => "NotFound",
                s if s >= 500 => "InternalServerError",
                _ => "UnknownError",
            }
            .to_string()
        });
        let message = field(&["Message", "message", "errorMessage", "ErrorMessage"])
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        let request_id = field(&["RequestId", "requestId"])
            .or_else(|| find(headers, "x-fc-request-id").map(str::to_string))
            .or_else(|| find(headers, "x-acs-request-id").map(str::to_string));
        let retry_after_ms = find(headers, "x-acs-retry-after").and_then(|s| s.trim().parse().ok());
        FcError {
            status,
            code,
            message,
            request_id,
            retry_after_ms,
        }
    }

    /// The JSON body a server sends for this error.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "Code": self.code,
            "Message": self.message,
            "RequestId": self.request_id.clone().unwrap_or_default(),
        })
        .to_string()
        .into_bytes()
    }

    /// Whether the service throttled the request.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ResourceExhausted" | "ResourceThrottled" | "Throttling"
        ) || self.status == 429
            || self.retry_after_ms.is_some()
    }
}

/// Map an FC error to a joint error.
pub fn parse_error(backend: &str, op: &'static str, function: &str, e: &FcError) -> Error {
    let kind = match (e.status, e.code.as_str()) {
        (_, "FunctionNotFound" | "AliasNotFound" | "VersionNotFound" | "ServiceNotFound") => {
            ErrorKind::FunctionNotFound
        }
        _ if e.is_throttle() => ErrorKind::Throttled,
        (_, "EntityTooLarge" | "RequestEntityTooLarge") | (413, _) => ErrorKind::PayloadTooLarge,
        (_, "AccessDenied" | "SignatureNotMatch" | "InvalidAccessKeyID" | "InvalidAccessKeyId")
        | (401 | 403, _) => ErrorKind::AccessDenied,
        (404, _) => ErrorKind::FunctionNotFound,
        (_, "InvalidArgument" | "MissingRequiredHeader" | "PathNotSupported") | (400, _) => {
            ErrorKind::InvalidInput
        }
        (408 | 499 | 504, _) => ErrorKind::Timeout,
        (0, _) | (500..=599, _) => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    let mut msg = e.message.clone();
    if let Some(ms) = e.retry_after_ms {
        msg.push_str(&format!(" (retry after {ms} ms)"));
    }
    let mut err = Error::new(kind, backend, op, function, msg).with_provider_code(e.code.clone());
    if let Some(r) = &e.request_id {
        err = err.with_request_id(r.clone());
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn maps_status_then_code() {
        let nf = FcError::decode(
            404,
            &[],
            br#"{"Code":"FunctionNotFound","Message":"function not found","RequestId":"1-64e7"}"#,
        );
        let e = parse_error("fc(x)", "invoke_async", "f", &nf);
        assert_eq!(e.kind(), ErrorKind::FunctionNotFound);
        assert!(e.is_failover_worthy());
        assert!(e.to_string().contains("1-64e7"));

        let th = FcError::decode(
            429,
            &h(&[("x-acs-retry-after", "1500")]),
            br#"{"Code":"ResourceExhausted"}"#,
        );
        assert_eq!(th.retry_after_ms, Some(1500));
        let e = parse_error("fc(x)", "invoke_async", "f", &th);
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert!(e.is_retryable());

        let th = FcError::decode(
            503,
            &[],
            br#"{"code":"ResourceThrottled","message":"slow down"}"#,
        );
        assert_eq!(
            parse_error("fc", "i", "f", &th).kind(),
            ErrorKind::Throttled
        );

        let legacy = FcError::decode(
            400,
            &h(&[("x-fc-request-id", "rq")]),
            br#"{"errorCode":"EntityTooLarge","errorMessage":"big"}"#,
        );
        let e = parse_error("fc", "i", "f", &legacy);
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        assert!(e.to_string().contains("rq") && e.to_string().contains("big"));

        let down = FcError::decode(502, &[], b"bad gateway");
        let e = parse_error("fc", "i", "f", &down);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable() && e.is_failover_worthy());

        let sig = FcError::decode(403, &[], br#"{"Code":"SignatureNotMatch"}"#);
        assert_eq!(
            parse_error("fc", "i", "f", &sig).kind(),
            ErrorKind::AccessDenied
        );
    }
}
