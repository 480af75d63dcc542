//! The invocation path: a tower stack per cloud (timeout, retry with backoff for retryable
//! errors, circuit breaker) and failover to replica clouds in order.

mod breaker;
mod retry;
mod timeout;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

pub use breaker::{BreakerConfig, BreakerStats, CircuitBreaker, CircuitBreakerLayer};
pub use retry::{Retry, RetryConfig, RetryLayer};
pub use timeout::{Timeout, TimeoutLayer};

use crate::cloud::Clouds;
use crate::error::{Error, Result};
use crate::traits::Faas;

/// Boxed future used by the invoke services.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One asynchronous invocation.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// Target function.
    pub function: String,
    /// The event.
    pub payload: Bytes,
}

/// The innermost service: a cloud's [`Faas`].
#[derive(Debug, Clone)]
pub struct FaasService {
    faas: Arc<dyn Faas>,
}

impl FaasService {
    /// Wrap a FaaS backend.
    pub fn new(faas: Arc<dyn Faas>) -> Self {
        FaasService { faas }
    }
}

impl Service<InvokeRequest> for FaasService {
    type Response = ();
    type Error = Error;
    type Future = BoxFuture<Result<()>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: InvokeRequest) -> Self::Future {
        let faas = self.faas.clone();
        Box::pin(async move { faas.invoke_async(&req.function, req.payload).await })
    }
}

/// Settings of the invocation stack.
#[derive(Debug, Clone)]
pub struct InvokeConfig {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries of retryable errors.
    pub retry: RetryConfig,
    /// Circuit breaker per cloud.
    pub breaker: BreakerConfig,
}

impl Default for InvokeConfig {
    fn default() -> Self {
        InvokeConfig {
            timeout: Duration::from_secs(10),
            retry: RetryConfig {
                max_retries: 2,
                ..RetryConfig::default()
            },
            breaker: BreakerConfig::default(),
        }
    }
}

type InvokeService = BoxCloneSyncService<InvokeRequest, (), Error>;

/// Invokes functions on any cloud through that cloud's stack, failing over in order.
#[derive(Clone)]
pub struct Invoker {
    stacks: BTreeMap<String, InvokeService>,
    breakers: BTreeMap<String, CircuitBreaker>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("clouds", &self.stacks.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where an invocation landed, or why it did not.
#[derive(Debug, Clone)]
pub struct InvokeReport {
    /// The cloud that accepted it.
    pub cloud: String,
    /// Errors from clouds tried before it (failovers), in order.
    pub failed_over: Vec<(String, Error)>,
}

impl Invoker {
    /// One stack per cloud.
    pub fn new(clouds: &Clouds, cfg: &InvokeConfig) -> Self {
        let mut stacks = BTreeMap::new();
        let mut breakers = BTreeMap::new();
        for c in clouds.iter() {
            let breaker = CircuitBreaker::new(&c.name, cfg.breaker.clone());
            let svc = ServiceBuilder::new()
                .layer(CircuitBreakerLayer::new(breaker.clone()))
                .layer(
                    RetryLayer::new(cfg.retry.clone())
                        .with_budget(Arc::new(crate::policy::RetryBudget::default())),
                )
                .layer(TimeoutLayer::new(cfg.timeout))
                .service(FaasService::new(c.faas.clone()));
            stacks.insert(c.name.clone(), BoxCloneSyncService::new(svc));
            breakers.insert(c.name.clone(), breaker);
        }
        Invoker { stacks, breakers }
    }

    /// The breaker of `cloud`.
    pub fn breaker(&self, cloud: &str) -> Option<&CircuitBreaker> {
        self.breakers.get(cloud)
    }

    /// Invoke on `cloud`; on a failover-worthy error try each of `failover` in order.
    pub async fn invoke(
        &self,
        function: &str,
        cloud: &str,
        failover: &[String],
        payload: Bytes,
    ) -> std::result::Result<InvokeReport, (Error, Vec<(String, Error)>)> {
        let mut failed = Vec::new();
        for target in std::iter::once(cloud).chain(failover.iter().map(String::as_str)) {
            let Some(svc) = self.stacks.get(target) else {
                let e = Error::new(
                    crate::error::ErrorKind::InvalidInput,
                    "runtime",
                    "invoke",
                    function,
                    format!("no cloud '{target}' is configured"),
                );
                failed.push((target.to_string(), e));
                continue;
            };
            let req = InvokeRequest {
                function: function.to_string(),
                payload: payload.clone(),
            };
            match svc.clone().oneshot(req).await {
                Ok(()) => {
                    return Ok(InvokeReport {
                        cloud: target.to_string(),
                        failed_over: failed,
                    });
                }
                Err(e) => {
                    let go_on =
                        e.is_failover_worthy() || e.kind() == crate::error::ErrorKind::InvalidInput;
                    failed.push((target.to_string(), e.clone()));
                    if !go_on {
                        return Err((e, failed));
                    }
                }
            }
        }
        let last = failed.last().map(|(_, e)| e.clone()).unwrap_or_else(|| {
            Error::new(
                crate::error::ErrorKind::Other,
                "runtime",
                "invoke",
                function,
                "no cloud to invoke on",
            )
        });
        Err((last, failed))
    }
}
