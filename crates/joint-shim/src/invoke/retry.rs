//! Retry with capped exponential backoff and full jitter, for retryable errors only, within the
//! cloud's retry budget.

use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use super::{BoxFuture, InvokeRequest};
use crate::error::{Error, Result};

/// Retry settings of the invoke stack: the same policy as store calls (capped exponential
/// backoff with full jitter), see [`crate::policy::RetryPolicy`].
pub type RetryConfig = crate::policy::RetryPolicy;

/// Adds a [`Retry`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    cfg: RetryConfig,
    budget: Option<std::sync::Arc<crate::policy::RetryBudget>>,
}

impl RetryLayer {
    /// With these settings, and no budget.
    pub fn new(cfg: RetryConfig) -> Self {
        RetryLayer { cfg, budget: None }
    }

    /// Retries also draw on `budget` (shared by every call to one cloud).
    pub fn with_budget(mut self, budget: std::sync::Arc<crate::policy::RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            cfg: self.cfg.clone(),
            budget: self.budget.clone(),
        }
    }
}

/// Retries a call whose error is retryable (throttling, timeouts, unavailability). An
/// asynchronous invoke is safe to replay: the callee deduplicates by instance id.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    cfg: RetryConfig,
    budget: Option<std::sync::Arc<crate::policy::RetryBudget>>,
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
        let budget = self.budget.clone();
        Box::pin(async move {
            if let Some(b) = &budget {
                b.deposit();
            }
            let mut attempt = 0;
            loop {
                match inner.clone().oneshot(req.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e)
                        if e.is_retryable()
                            && attempt < cfg.max_retries
                            && budget.as_ref().is_none_or(|b| b.withdraw()) =>
                    {
                        attempt += 1;
                        tokio::time::sleep(cfg.backoff(attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}
