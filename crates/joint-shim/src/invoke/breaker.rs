//! A per-cloud circuit breaker: after `failure_threshold` consecutive failover-worthy failures
//! it fails fast with `CircuitOpen` for `cooldown`, then lets one probe through (half-open); a
//! success closes it, a failure opens it again.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

use super::{BoxFuture, InvokeRequest};
use crate::error::{Error, ErrorKind, Result};

/// Breaker settings.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Shared state of one cloud's breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    cloud: String,
    cfg: BreakerConfig,
    state: Arc<Mutex<BreakerState>>,
}

impl CircuitBreaker {
    /// A closed breaker for `cloud`.
    pub fn new(cloud: &str, cfg: BreakerConfig) -> Self {
        CircuitBreaker {
            cloud: cloud.to_string(),
            cfg,
            state: Arc::new(Mutex::new(BreakerState::Closed { failures: 0 })),
        }
    }

    /// Whether calls currently fail fast.
    pub fn is_open(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        matches!(*st, BreakerState::Open { until } if Instant::now() < until)
    }

    fn admit(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *st {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if Instant::now() >= until => {
                *st = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
            // One probe at a time.
            BreakerState::HalfOpen => false,
        }
    }

    fn record(&self, ok: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *st = match (&*st, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false)
                if failures + 1 < self.cfg.failure_threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => BreakerState::Open {
                until: Instant::now() + self.cfg.cooldown,
            },
        };
    }
}

/// Adds a [`CircuitBreakerService`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: CircuitBreaker,
}

impl CircuitBreakerLayer {
    /// Use this breaker's shared state.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// The breaker middleware.
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> Service<InvokeRequest> for CircuitBreakerService<S>
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
        let breaker = self.breaker.clone();
        if !breaker.admit() {
            let e = Error::new(
                ErrorKind::CircuitOpen,
                format!("breaker({})", breaker.cloud),
                "invoke_async",
                req.function,
                "the circuit breaker is open after repeated failures; failing over",
            );
            return Box::pin(async move { Err(e) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let failed = matches!(&r, Err(e) if e.is_failover_worthy());
            breaker.record(!failed);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = CircuitBreaker::new(
            "x",
            BreakerConfig {
                failure_threshold: 2,
                cooldown: Duration::from_millis(30),
            },
        );
        assert!(b.admit());
        b.record(false);
        assert!(!b.is_open());
        b.record(false);
        assert!(b.is_open());
        assert!(!b.admit());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit(), "half-open lets one probe through");
        assert!(!b.admit(), "only one probe at a time");
        b.record(true);
        assert!(b.admit());
    }
}
