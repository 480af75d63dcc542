//! Tablestore errors: the protobuf `Error` body, and `parse_error` mapping HTTP status, then
//! the error code, to a semantic [`ErrorKind`].

use joint_shim::{Error, ErrorKind};
use prost::Message;

use super::proto;

/// An error answer from Tablestore (or a transport failure described the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtsError {
    /// HTTP status (0 for transport failures).
    pub status: u16,
    /// `OTSConditionCheckFail`, `OTSAuthFailed`…
    pub code: String,
    /// The service's message.
    pub message: String,
    /// `x-ots-requestid`.
    pub request_id: Option<String>,
}

impl OtsError {
    /// Decode a non-2xx body; an unparseable body of a 5xx is `OTSServerUnavailable`.
    pub fn decode(status: u16, body: &[u8], request_id: Option<String>) -> Self {
        match proto::Error::decode(body) {
            Ok(e) if !e.code.is_empty() => OtsError {
                status,
                code: e.code,
                message: e.message.unwrap_or_default(),
                request_id,
            },
            _ => OtsError {
                status,
                code: if status >= 500 {
                    "OTSServerUnavailable".into()
                } else {
                    "OTSClientUnknownError".into()
                },
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                request_id,
            },
        }
    }

    /// Whether this is the condition-check failure (a result, never retried).
    pub fn is_condition_failed(&self) -> bool {
        self.code == "OTSConditionCheckFail"
    }

    /// The protobuf body a server sends for this error.
    pub fn encode_body(&self) -> Vec<u8> {
        proto::Error {
            code: self.code.clone(),
            message: Some(self.message.clone()),
        }
        .encode_to_vec()
    }
}

impl std::fmt::Display for OtsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Map a Tablestore error to a joint error. `idempotent` says whether the request may be
/// replayed after an ambiguous server failure (reads yes; writes only when conditional).
pub fn parse_error(
    backend: &str,
    op: &'static str,
    target: &str,
    e: &OtsError,
    idempotent: bool,
) -> Error {
    let (kind, retryable) = match e.code.as_str() {
        "OTSConditionCheckFail" => (ErrorKind::Precondition, false),
        "OTSAuthFailed" | "OTSNoPermissionAccess" => (ErrorKind::AccessDenied, false),
        "OTSObjectNotExist" => (ErrorKind::NotFound, false),
        "OTSRequestBodyTooLarge" => (ErrorKind::PayloadTooLarge, false),
        "OTSParameterInvalid" | "OTSMethodNotAllowed" | "OTSClientUnknownError" => {
            (ErrorKind::InvalidInput, false)
        }
        "OTSRowOperationConflict"
        | "OTSNotEnoughCapacityUnit"
        | "OTSQuotaExhausted"
        | "OTSServerBusy"
        | "OTSPartitionUnavailable"
        | "OTSStorageServerBusy"
        | "OTSTableNotReady"
        | "OTSCapacityUnitExhausted"
        | "OTSTooFrequentReservedThroughputAdjustment" => (ErrorKind::Throttled, true),
        "OTSRequestTimeout" | "OTSTimeout" => (ErrorKind::Timeout, idempotent),
        "OTSServerUnavailable" | "OTSInternalServerError" => (ErrorKind::Unavailable, idempotent),
        _ if e.status == 0 => (ErrorKind::Unavailable, idempotent),
        _ if e.status >= 500 => (ErrorKind::Unavailable, idempotent),
        _ if e.status == 403 => (ErrorKind::AccessDenied, false),
        _ if e.status == 404 => (ErrorKind::NotFound, false),
        _ => (ErrorKind::Other, false),
    };
    let mut err = Error::new(kind, backend, op, target, e.message.clone())
        .with_provider_code(e.code.clone())
        .with_retryable(retryable);
    if let Some(r) = &e.request_id {
        err = err.with_request_id(r.clone());
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_failure_is_a_result_not_a_retry() {
        let body = proto::Error {
            code: "OTSConditionCheckFail".into(),
            message: Some("Condition check failed.".into()),
        }
        .encode_to_vec();
        let e = OtsError::decode(403, &body, Some("rid".into()));
        assert!(e.is_condition_failed());
        let j = parse_error("tablestore(x)", "create", "k", &e, false);
        assert_eq!(j.kind(), ErrorKind::Precondition);
        assert!(!j.is_retryable());
        assert_eq!(j.provider_code(), Some("OTSConditionCheckFail"));
        assert!(j.to_string().contains("rid"), "{j}");
    }

    #[test]
    fn server_failures_retry_only_idempotent_requests() {
        let e = OtsError::decode(503, b"<html>gateway</html>", None);
        assert_eq!(e.code, "OTSServerUnavailable");
        assert!(parse_error("t", "get", "k", &e, true).is_retryable());
        assert!(!parse_error("t", "join", "k", &e, false).is_retryable());
        let busy = OtsError {
            status: 503,
            code: "OTSServerBusy".into(),
            message: String::new(),
            request_id: None,
        };
        let j = parse_error("t", "join", "k", &busy, false);
        assert_eq!(j.kind(), ErrorKind::Throttled);
        assert!(j.is_retryable());
        let auth = OtsError::decode(
            403,
            &proto::Error {
                code: "OTSAuthFailed".into(),
                message: None,
            }
            .encode_to_vec(),
            None,
        );
        assert_eq!(
            parse_error("t", "get", "k", &auth, true).kind(),
            ErrorKind::AccessDenied
        );
    }
}
