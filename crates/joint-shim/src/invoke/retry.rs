//! Retry with exponential backoff, for retryable errors only.

use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};

use super::{BoxFuture, InvokeRequest};
use crate::error::{Error, Result};

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each time.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            base: Duration::from_millis(20),
            max: Duration::from_secs(1),
        }
    }
}

/// Adds a [`Retry`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    cfg: RetryConfig,
}

impl RetryLayer {
    /// With these settings.
    pub fn new(cfg: RetryConfig) -> Self {
        RetryLayer { cfg }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// Retries a call whose error is retryable (throttling, timeouts, unavailability). An
/// asynchronous invoke is safe to replay: the callee deduplicates by instance id.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    cfg: RetryConfig,
}

impl<S> Service<InvokeRequest> for Retry<S>
where
    S: Service<InvokeRequest, Response = (), Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = Error;
    type Future = BoxFuture<Result<()>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: InvokeRequest) -> Self::Future {
        let inner = self.inner.clone();
        let cfg = self.cfg.clone();
        Box::pin(async move {
            let mut backoff = cfg.base;
            let mut attempt = 0;
            loop {
                match inner.clone().oneshot(req.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if e.is_retryable() && attempt < cfg.max_retries => {
                        attempt += 1;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(cfg.max);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}
