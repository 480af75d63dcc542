//! `parse_error`: DynamoDB failures mapped to the shim's semantic error kinds — first by the
//! provider's error code, then by HTTP status; transport failures by their SDK class.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use joint_shim::{Error, ErrorKind};

/// The semantic kind of a DynamoDB error code (`None`: decide by HTTP status).
fn kind_of_code(code: &str, message: &str) -> Option<ErrorKind> {
    Some(match code {
        "ConditionalCheckFailedException" | "TransactionConflictException" => {
            ErrorKind::Precondition
        }
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => ErrorKind::Throttled,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "IncompleteSignatureException" => ErrorKind::AccessDenied,
        // A missing table: the cloud's store is not there (misconfigured or gone).
        "ResourceNotFoundException" => ErrorKind::Unavailable,
        "ItemCollectionSizeLimitExceededException" => ErrorKind::PayloadTooLarge,
        // PutItem: "Item size has exceeded the maximum allowed size"; UpdateItem: "Item size to
        // update has exceeded the maximum allowed size".
        "ValidationException"
            if message.contains("size") && message.contains("exceeded the maximum") =>
        {
            ErrorKind::PayloadTooLarge
        }
        "ValidationException" | "SerializationException" => ErrorKind::InvalidInput,
        "InternalServerError" | "InternalFailure" | "ServiceUnavailable" => ErrorKind::Unavailable,
        _ => return None,
    })
}

/// The semantic kind of an HTTP status from any AWS service.
pub fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        400 => ErrorKind::InvalidInput,
        401 | 403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 | 412 => ErrorKind::Precondition,
        413 => ErrorKind::PayloadTooLarge,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// The kind and message of an AWS SDK failure that is not the service's answer (a timeout, an
/// unreachable endpoint, a request that could not be built, an unreadable response); `None` for a
/// service error, which the caller maps by its code. Shared by every AWS backend.
pub fn transport_failure<E>(
    err: &SdkError<E, HttpResponse>,
    service: &str,
) -> Option<(ErrorKind, String)>
where
    E: std::error::Error + Send + Sync + 'static,
{
    Some(match err {
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "the request timed out".to_string()),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                ErrorKind::Timeout
            } else if d.is_user() {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::Unavailable
            };
            (
                kind,
                format!("cannot reach {service}: {}", DisplayErrorContext(err)),
            )
        }
        SdkError::ConstructionFailure(_) => (
            ErrorKind::InvalidInput,
            format!("cannot build the request: {}", DisplayErrorContext(err)),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            format!(
                "unreadable {service} response: {}",
                DisplayErrorContext(err)
            ),
        ),
        _ => return None,
    })
}

/// Attach the provider's error code and request id of `err` to `e`.
pub fn with_metadata<E>(mut e: Error, err: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata,
{
    if let Some(code) = err.code() {
        e = e.with_provider_code(code);
    }
    if let Some(id) = err.request_id() {
        e = e.with_request_id(id);
    }
    e
}

/// Map an SDK error of operation `op` on `target` (a key) into the shim's [`Error`], keeping the
/// provider's code and request id.
pub fn parse_error<E>(
    err: &SdkError<E, HttpResponse>,
    backend: &str,
    op: &'static str,
    target: &str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match transport_failure(err, "DynamoDB") {
        Some(failure) => failure,
        None => {
            let code = err.code().unwrap_or_default();
            let msg = err.message().unwrap_or_default().to_string();
            let status = err.raw_response().map(|r| r.status().as_u16());
            let kind = kind_of_code(code, &msg)
                .or_else(|| status.map(kind_of_status))
                .unwrap_or(ErrorKind::Other);
            let msg = if msg.is_empty() {
                DisplayErrorContext(err).to_string()
            } else {
                msg
            };
            let msg = match kind {
                ErrorKind::Unavailable if code == "ResourceNotFoundException" => {
                    format!("{msg} (does the table exist? `joint aws create-table` creates it)")
                }
                _ => msg,
            };
            (kind, msg)
        }
    };
    let mut e = with_metadata(Error::new(kind, backend, op, target, message), err);
    if err.code() == Some("ResourceNotFoundException") {
        // Retrying cannot create the table; failing over can help.
        e = e.with_retryable(false);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_first_then_status() {
        assert_eq!(
            kind_of_code("ProvisionedThroughputExceededException", ""),
            Some(ErrorKind::Throttled)
        );
        assert_eq!(
            kind_of_code("ValidationException", "Item size has exceeded the maximum"),
            Some(ErrorKind::PayloadTooLarge)
        );
        assert_eq!(
            kind_of_code(
                "ValidationException",
                "Item size to update has exceeded the maximum allowed size"
            ),
            Some(ErrorKind::PayloadTooLarge)
        );
        assert_eq!(kind_of_code("SomethingNew", ""), None);
        assert_eq!(kind_of_status(503), ErrorKind::Unavailable);
        assert_eq!(kind_of_status(429), ErrorKind::Throttled);
    }
}
