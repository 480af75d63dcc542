//! Per-attempt timeout that maps elapsed time to `ErrorKind::Timeout`.

use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{BoxFuture, InvokeRequest};
use crate::error::{Error, ErrorKind, Result};

/// Adds a [`Timeout`].
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// Time out after `after`.
    pub fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            after: self.after,
        }
    }
}

/// Fails a call that takes longer than its limit.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
}

impl<S> Service<InvokeRequest> for Timeout<S>
where
    S: Service<InvokeRequest, Response = (), Error = Error> + Send,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = Error;
    type Future = BoxFuture<Result<()>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: InvokeRequest) -> Self::Future {
        let function = req.function.clone();
        let after = self.after;
        let fut = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(after, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    "invoke",
                    "invoke_async",
                    function,
                    format!("no answer within {after:?}"),
                )),
            }
        })
    }
}
