//! `parse_error` for S3 and Lambda: the provider's error code first, then the HTTP status, then
//! the SDK's transport class, mapped to the shim's semantic kinds.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use joint_shim::{Error, ErrorKind};
use joint_store::dynamo::error::{kind_of_status, transport_failure, with_metadata};

/// Which service an error came from (codes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon S3.
    S3,
    /// AWS Lambda.
    Lambda,
}

/// The semantic kind of a provider error code (`None`: decide by HTTP status).
pub(crate) fn kind_of_code(service: Service, code: &str) -> Option<ErrorKind> {
    use ErrorKind::*;
    let common = match code {
        "ThrottlingException" | "Throttling" | "ThrottledException" | "RequestLimitExceeded" => {
            Some(Throttled)
        }
        "AccessDenied"
        | "AccessDeniedException"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken" => Some(AccessDenied),
        "ServiceUnavailable" | "ServiceException" | "InternalError" | "InternalFailure" => {
            Some(Unavailable)
        }
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match service {
        Service::S3 => match code {
            "NoSuchKey" | "NotFound" => Some(NotFound),
            "PreconditionFailed" => Some(AlreadyExists),
            "ConditionalRequestConflict" => Some(Precondition),
            "SlowDown" => Some(Throttled),
            // The bucket is not there: the cloud's store is misconfigured or gone.
            "NoSuchBucket" => Some(Unavailable),
            "EntityTooLarge" => Some(PayloadTooLarge),
            "InvalidRequest" | "InvalidArgument" | "KeyTooLongError" => Some(InvalidInput),
            _ => None,
        },
        Service::Lambda => match code {
            "ResourceNotFoundException" => Some(FunctionNotFound),
            "TooManyRequestsException" | "EC2ThrottledException" => Some(Throttled),
            "RequestTooLargeException" => Some(PayloadTooLarge),
            "InvalidRequestContentException" | "InvalidParameterValueException" => {
                Some(InvalidInput)
            }
            "ResourceNotReadyException"
            | "ResourceConflictException"
            | "EC2UnexpectedException"
            | "ENILimitReachedException"
            | "SubnetIPAddressLimitReachedException"
            | "SnapStartTimeoutException"
            | "SnapStartNotReadyException" => Some(Unavailable),
            "KMSAccessDeniedException" | "EFSMountFailureException" => Some(AccessDenied),
            _ => None,
        },
    }
}

/// Map an SDK error of `op` on `target` (a key or function) into the shim's [`Error`], with the
/// provider's code and request id.
pub fn parse_error<E>(
    err: &SdkError<E, HttpResponse>,
    service: Service,
    backend: &str,
    op: &'static str,
    target: &str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let name = match service {
        Service::S3 => "S3",
        Service::Lambda => "Lambda",
    };
    let (kind, message) = match transport_failure(err, name) {
        Some(failure) => failure,
        None => {
            let code = err.code().unwrap_or_default();
            let status = err.raw_response().map(|r| r.status().as_u16());
            let kind = kind_of_code(service, code)
                .or_else(|| status.map(kind_of_status))
                .unwrap_or(ErrorKind::Other);
            let kind = match (service, kind) {
                // A Lambda 404 without a code is still an unknown function.
                (Service::Lambda, ErrorKind::NotFound) => ErrorKind::FunctionNotFound,
                (_, k) => k,
            };
            let msg = err
                .message()
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| match status {
                    Some(s) => format!("{name} answered HTTP {s}"),
                    None => DisplayErrorContext(err).to_string(),
                });
            (kind, msg)
        }
    };
    let mut e = with_metadata(Error::new(kind, backend, op, target, message), err);
    if err.code() == Some("NoSuchBucket") {
        e = e.with_retryable(false);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            kind_of_code(Service::Lambda, "ResourceNotFoundException"),
            Some(ErrorKind::FunctionNotFound)
        );
        assert_eq!(
            kind_of_code(Service::Lambda, "TooManyRequestsException"),
            Some(ErrorKind::Throttled)
        );
        assert_eq!(
            kind_of_code(Service::S3, "PreconditionFailed"),
            Some(ErrorKind::AlreadyExists)
        );
        assert_eq!(
            kind_of_code(Service::S3, "NoSuchKey"),
            Some(ErrorKind::NotFound)
        );
        assert_eq!(
            kind_of_code(Service::S3, "SlowDown"),
            Some(ErrorKind::Throttled)
        );
        assert_eq!(kind_of_status(502), ErrorKind::Unavailable);
    }
}
