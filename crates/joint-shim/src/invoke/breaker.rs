//! A per-cloud circuit breaker: after `failure_threshold` consecutive outage errors
//! (unavailable, timed out, throttled after retries) it fails fast with `CircuitOpen` for
//! `cooldown`, then lets one probe through (half-open); a probe the cloud answers closes it, a
//! probe that hits an outage opens it again, and a probe whose future is dropped before it
//! finishes gives the slot back so the next call probes.
//!
//! Other errors (function not found, access denied, bad input, payload too large) say nothing
//! about the cloud's health: it answered. They are failover-worthy for the one call (see
//! [`super::Invoker::invoke`]) but count as an answer here, so one missing function cannot open
//! the breaker for a whole cloud.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

use super::{BoxFuture, InvokeRequest};
use crate::error::{Error, ErrorKind, Result};

/// Breaker settings.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive outage errors that open the breaker.
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
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; `probe` tells it apart from earlier ones.
    HalfOpen {
        probe: u64,
    },
}

#[derive(Debug)]
struct Shared {
    state: BreakerState,
    next_probe: u64,
    stats: BreakerStats,
}

/// What a breaker did so far (benchmarks report it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Times it opened (from closed, or again after a failed probe).
    pub opened: u64,
    /// Calls it refused with `CircuitOpen`.
    pub refused: u64,
}

/// Shared state of one cloud's breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    cloud: String,
    cfg: BreakerConfig,
    shared: Arc<Mutex<Shared>>,
}

/// What [`CircuitBreaker::admit`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// A call on a closed breaker.
    Call,
    /// The half-open probe with this number.
    Probe(u64),
}

/// Whether `e` says the cloud itself is failing (and so counts against its breaker).
fn is_outage(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Throttled
    )
}

impl CircuitBreaker {
    /// A closed breaker for `cloud`.
    pub fn new(cloud: &str, cfg: BreakerConfig) -> Self {
        CircuitBreaker {
            cloud: cloud.to_string(),
            cfg,
            shared: Arc::new(Mutex::new(Shared {
                state: BreakerState::Closed { failures: 0 },
                next_probe: 0,
                stats: BreakerStats::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call made now would be refused with `CircuitOpen`: the breaker is open and its
    /// cooldown has not passed, or it is half-open with its probe still in flight.
    pub fn is_open(&self) -> bool {
        match self.lock().state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } => Instant::now() < until,
            BreakerState::HalfOpen { .. } => true,
        }
    }

    /// How often it opened and how many calls it refused so far.
    pub fn stats(&self) -> BreakerStats {
        self.lock().stats
    }

    fn admit(&self) -> Option<Admission> {
        let mut sh = self.lock();
        let admitted = match sh.state {
            BreakerState::Closed { .. } => Some(Admission::Call),
            BreakerState::Open { until } if Instant::now() >= until => {
                let probe = sh.next_probe;
                sh.next_probe += 1;
                sh.state = BreakerState::HalfOpen { probe };
                Some(Admission::Probe(probe))
            }
            BreakerState::Open { .. } => None,
            // One probe at a time.
            BreakerState::HalfOpen { .. } => None,
        };
        if admitted.is_none() {
            sh.stats.refused += 1;
        }
        admitted
    }

    fn record(&self, outage: bool) {
        let mut sh = self.lock();
        let sh = &mut *sh;
        sh.state = match (&sh.state, outage) {
            (_, false) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, true)
                if failures + 1 < self.cfg.failure_threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                sh.stats.opened += 1;
                BreakerState::Open {
                    until: Instant::now() + self.cfg.cooldown,
                }
            }
        };
    }

    /// A call admitted as `admission` ended without a result (its future was dropped). A
    /// dropped probe gives its slot back: the breaker is open with its cooldown over, so the
    /// next call probes. A dropped ordinary call says nothing about the cloud.
    fn abandon(&self, admission: Admission) {
        let Admission::Probe(probe) = admission else {
            return;
        };
        let mut sh = self.lock();
        if matches!(sh.state, BreakerState::HalfOpen { probe: p } if p == probe) {
            sh.state = BreakerState::Open {
                until: Instant::now(),
            };
        }
    }
}

/// Records the result of one admitted call; if it is dropped before a result arrives, it tells
/// the breaker the call was abandoned.
struct Pending {
    breaker: CircuitBreaker,
    admission: Admission,
    settled: bool,
}

impl Pending {
    fn settle(mut self, r: &Result<()>) {
        self.settled = true;
        self.breaker.record(matches!(r, Err(e) if is_outage(e)));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.abandon(self.admission);
        }
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
        let Some(admission) = breaker.admit() else {
            let e = Error::new(
                ErrorKind::CircuitOpen,
                format!("breaker({})", breaker.cloud),
                "invoke_async",
                req.function,
                "the circuit breaker is open after repeated failures; failing over",
            );
            return Box::pin(async move { Err(e) });
        };
        let pending = Pending {
            breaker,
            admission,
            settled: false,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            pending.settle(&r);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;
    use tower::ServiceExt;

    use super::*;

    /// How the cloud behind the breaker answers.
    #[derive(Clone, Copy)]
    enum Answer {
        Accept,
        Fail(ErrorKind),
        /// Never answers (a hung connection).
        Hang,
    }

    type Svc = tower::util::BoxCloneSyncService<InvokeRequest, (), Error>;

    /// A breaker in front of a tower service that answers as `answer` says and counts the calls
    /// that reached it: (breaker, answer, calls that reached the cloud, the stack).
    fn stack(cfg: BreakerConfig) -> (CircuitBreaker, Arc<Mutex<Answer>>, Arc<AtomicU32>, Svc) {
        let breaker = CircuitBreaker::new("c1", cfg);
        let answer = Arc::new(Mutex::new(Answer::Accept));
        let reached = Arc::new(AtomicU32::new(0));
        let (a, n) = (answer.clone(), reached.clone());
        let cloud = tower::service_fn(move |req: InvokeRequest| {
            n.fetch_add(1, Ordering::SeqCst);
            let answer = *a.lock().unwrap();
            async move {
                match answer {
                    Answer::Accept => Ok(()),
                    Answer::Fail(kind) => Err(Error::new(
                        kind,
                        "test-cloud",
                        "invoke_async",
                        req.function,
                        "refused",
                    )),
                    Answer::Hang => futures::future::pending().await,
                }
            }
        });
        let svc = Svc::new(CircuitBreakerLayer::new(breaker.clone()).layer(cloud));
        (breaker, answer, reached, svc)
    }

    fn req() -> InvokeRequest {
        InvokeRequest {
            function: "f".into(),
            payload: Bytes::from_static(b"{}"),
        }
    }

    fn set(a: &Arc<Mutex<Answer>>, to: Answer) {
        *a.lock().unwrap() = to;
    }

    #[tokio::test]
    async fn a_dropped_probe_gives_its_slot_back() {
        // No cooldown: once open, the next call is the probe.
        let (breaker, answer, reached, svc) = stack(BreakerConfig {
            failure_threshold: 2,
            cooldown: Duration::ZERO,
        });
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        for _ in 0..2 {
            let e = svc.clone().oneshot(req()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable);
        }
        // The probe hangs, and whoever awaited it gives up (an embedder cancelling
        // `Runtime::handle`, a client disconnecting).
        set(&answer, Answer::Hang);
        let mut probe = svc.clone().oneshot(req());
        assert!(futures::poll!(&mut probe).is_pending());
        assert!(
            breaker.is_open(),
            "while the probe is in flight a call is refused, so the breaker says it is open"
        );
        let e = svc.clone().oneshot(req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        drop(probe);
        assert!(
            !breaker.is_open(),
            "the dropped probe gave its slot back: the next call may probe"
        );
        set(&answer, Answer::Accept);
        let before = reached.load(Ordering::SeqCst);
        svc.clone()
            .oneshot(req())
            .await
            .expect("the next call is admitted as the probe and closes the breaker");
        assert_eq!(reached.load(Ordering::SeqCst), before + 1);
        assert!(!breaker.is_open());
        svc.clone().oneshot(req()).await.expect("closed again");
    }

    #[tokio::test]
    async fn a_dropped_ordinary_call_neither_opens_nor_closes_it() {
        let (breaker, answer, _, svc) = stack(BreakerConfig {
            failure_threshold: 2,
            cooldown: Duration::from_secs(600),
        });
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        svc.clone().oneshot(req()).await.unwrap_err();
        set(&answer, Answer::Hang);
        let mut call = svc.clone().oneshot(req());
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        svc.clone().oneshot(req()).await.unwrap_err();
        assert!(
            breaker.is_open(),
            "two consecutive outages, one abandoned call between"
        );
    }

    #[tokio::test]
    async fn errors_that_are_not_outages_never_open_it() {
        let (breaker, answer, reached, svc) = stack(BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(600),
        });
        for kind in [
            ErrorKind::FunctionNotFound,
            ErrorKind::AccessDenied,
            ErrorKind::InvalidInput,
            ErrorKind::PayloadTooLarge,
        ] {
            set(&answer, Answer::Fail(kind));
            for _ in 0..10 {
                let e = svc.clone().oneshot(req()).await.unwrap_err();
                assert_eq!(e.kind(), kind, "the cloud's own answer, not CircuitOpen");
            }
            assert!(!breaker.is_open(), "{kind:?} x 10 opened the breaker");
        }
        assert_eq!(
            reached.load(Ordering::SeqCst),
            40,
            "every call reached the cloud"
        );
        // An answer between outages resets the count.
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        svc.clone().oneshot(req()).await.unwrap_err();
        svc.clone().oneshot(req()).await.unwrap_err();
        set(&answer, Answer::Fail(ErrorKind::FunctionNotFound));
        svc.clone().oneshot(req()).await.unwrap_err();
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        svc.clone().oneshot(req()).await.unwrap_err();
        assert!(!breaker.is_open());
    }

    #[tokio::test]
    async fn outages_up_to_the_threshold_open_it() {
        for kind in [
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Throttled,
        ] {
            let (breaker, answer, reached, svc) = stack(BreakerConfig {
                failure_threshold: 3,
                cooldown: Duration::from_secs(600),
            });
            set(&answer, Answer::Fail(kind));
            for i in 0..3 {
                assert!(!breaker.is_open(), "{kind:?}: open after {i}");
                let e = svc.clone().oneshot(req()).await.unwrap_err();
                assert_eq!(e.kind(), kind);
            }
            assert!(breaker.is_open(), "{kind:?} x 3 did not open the breaker");
            set(&answer, Answer::Accept);
            let e = svc.clone().oneshot(req()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CircuitOpen);
            assert_eq!(
                reached.load(Ordering::SeqCst),
                3,
                "the open breaker failed fast"
            );
            assert_eq!(
                breaker.stats(),
                BreakerStats {
                    opened: 1,
                    refused: 1
                },
                "{kind:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_probe_that_hits_an_outage_opens_it_again_and_one_the_cloud_answers_closes_it() {
        let (breaker, answer, _, svc) = stack(BreakerConfig {
            failure_threshold: 1,
            cooldown: Duration::ZERO,
        });
        set(&answer, Answer::Fail(ErrorKind::Unavailable));
        svc.clone().oneshot(req()).await.unwrap_err();
        // The probe fails: open again (cooldown zero, so the next call probes again).
        let e = svc.clone().oneshot(req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        // The cloud answers, even with an error of the function: closed.
        set(&answer, Answer::Fail(ErrorKind::FunctionNotFound));
        svc.clone().oneshot(req()).await.unwrap_err();
        assert_eq!(
            breaker.stats(),
            BreakerStats {
                opened: 2,
                refused: 0
            }
        );
        assert!(matches!(
            breaker.lock().state,
            BreakerState::Closed { failures: 0 }
        ));
    }
}
