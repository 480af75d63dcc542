//! The one error type every backend maps its failures into.

use std::fmt;

/// What kind of failure, semantically. Backends map provider errors (HTTP status, then the
/// provider's error code) to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The key, item or blob does not exist.
    NotFound,
    /// A create-only write found the key taken.
    AlreadyExists,
    /// A conditional write's condition failed for another reason.
    Precondition,
    /// The provider throttled the request; retry with backoff.
    Throttled,
    /// The service (or the whole cloud) is unavailable or unreachable; fail over.
    Unavailable,
    /// The request did not finish in time.
    Timeout,
    /// The target function does not exist on that cloud; fail over.
    FunctionNotFound,
    /// Credentials were refused; fail over (another cloud has its own credentials).
    AccessDenied,
    /// The payload is over the provider's limit.
    PayloadTooLarge,
    /// The request or the data was malformed.
    InvalidInput,
    /// The user function returned an error (sync invoke).
    FunctionError,
    /// A fault injected on purpose (chaos testing): the execution stopped at a protocol point.
    InjectedCrash,
    /// A circuit breaker is open for the target cloud; fail over.
    CircuitOpen,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kind whose [`ErrorKind::as_str`] is `name`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        use ErrorKind::*;
        [
            NotFound,
            AlreadyExists,
            Precondition,
            Throttled,
            Unavailable,
            Timeout,
            FunctionNotFound,
            AccessDenied,
            PayloadTooLarge,
            InvalidInput,
            FunctionError,
            InjectedCrash,
            CircuitOpen,
            Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// Stable name, used in messages and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::Precondition => "Precondition",
            ErrorKind::Throttled => "Throttled",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::FunctionNotFound => "FunctionNotFound",
            ErrorKind::AccessDenied => "AccessDenied",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::FunctionError => "FunctionError",
            ErrorKind::InjectedCrash => "InjectedCrash",
            ErrorKind::CircuitOpen => "CircuitOpen",
            ErrorKind::Other => "Other",
        }
    }
}

/// An error from a backend, the runtime or a layer. It says what failed, where, and whether
/// trying again (or elsewhere) can help.
#[derive(Debug, Clone)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    backend: String,
    op: &'static str,
    target: String,
    message: String,
    retryable: bool,
    provider_code: Option<String>,
    request_id: Option<String>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error. `backend` names the implementation and cloud (`sqlite(local-a)`), `op` the
    /// operation (`create`, `invoke_async`), `target` the key or function.
    pub fn new(
        kind: ErrorKind,
        backend: impl Into<String>,
        op: &'static str,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::Throttled | ErrorKind::Timeout | ErrorKind::Unavailable
        );
        Error(Box::new(Inner {
            kind,
            backend: backend.into(),
            op,
            target: target.into(),
            message: message.into(),
            retryable,
            provider_code: None,
            request_id: None,
            source: None,
        }))
    }

    /// Attach the underlying error (an I/O error, a protocol error, an SDK's own error): it is
    /// what [`std::error::Error::source`] returns.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(std::sync::Arc::new(source));
        self
    }

    /// Override the retryable flag.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.0.retryable = retryable;
        self
    }

    /// Attach the provider's error code.
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.0.provider_code = Some(code.into());
        self
    }

    /// Attach the provider's request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.0.request_id = Some(id.into());
        self
    }

    /// The semantic kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// Whether invoking a replica on another cloud may succeed where this failed.
    pub fn is_failover_worthy(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::Throttled
                | ErrorKind::FunctionNotFound
                | ErrorKind::AccessDenied
                | ErrorKind::CircuitOpen
        )
    }

    /// The operation that failed.
    pub fn op(&self) -> &'static str {
        self.0.op
    }

    /// The key or function the operation was about.
    pub fn target(&self) -> &str {
        &self.0.target
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The backend.
    pub fn backend(&self) -> &str {
        &self.0.backend
    }

    /// The provider's error code, if any.
    pub fn provider_code(&self) -> Option<&str> {
        self.0.provider_code.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} '{}': {}: {}",
            self.0.backend,
            self.0.op,
            self.0.target,
            self.0.kind.as_str(),
            self.0.message
        )?;
        if let Some(c) = &self.0.provider_code {
            write!(f, " (code {c})")?;
        }
        if let Some(r) = &self.0.request_id {
            write!(f, " (request id {r})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
