//! Deterministic fault injection.
//!
//! A [`Chaos`] plan decides, from a seed and a description of the moment (a protocol point, an
//! instance, an attempt), whether a fault fires. The decision is a hash, not a random draw, so a
//! seed reproduces the same faults regardless of scheduling.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::caps::FaasCapabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::traits::Faas;

/// Fault probabilities (0..=1) and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Chaos {
    /// Seed of every decision.
    pub seed: u64,
    /// Crash at a protocol point (before or after each action of an instance).
    pub crash: f64,
    /// Deliver an async event a second time, after its first execution finished.
    pub dup: f64,
    /// Deliver an async event two to four times at once, the copies racing each other (what a
    /// platform queue does when a delivery's visibility lapses while it still runs).
    pub concurrent: f64,
    /// Deliver an async event once more, long after the first delivery (the queue's `late
    /// delay`): typically after the run ended, as Lambda and FC do hours later.
    pub late: f64,
    /// Lose a delivery attempt (the queue redelivers it after its visibility timeout).
    pub drop: f64,
    /// Refuse an invocation with a throttling error.
    pub throttle: f64,
    /// Accept an async event and lose it for good: no error, no redelivery. Only `joint resume`
    /// or the sweeper brings the run forward again.
    pub lose: f64,
    /// Kill the whole process at a protocol point (before or after each action of an instance):
    /// `SIGKILL` on Unix, `abort` elsewhere. **A test-only fault**: it models a host dying between
    /// two protocol actions (a Lambda sandbox frozen for good, a machine losing power) and makes
    /// sense only for a process whose queue survives it (local clouds with a state directory);
    /// the next process on the same state directory must finish the run. Never set it in a
    /// deployed function.
    pub kill: f64,
}

/// A `--chaos` string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosParseError(pub String);

impl fmt::Display for ChaosParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad --chaos value: {}", self.0)
    }
}

impl std::error::Error for ChaosParseError {}

impl std::str::FromStr for Chaos {
    type Err = ChaosParseError;

    /// `seed=N,crash=P,dup=P,concurrent=P,late=P,drop=P,throttle=P,lose=P,kill=P` (any subset,
    /// any order).
    fn from_str(s: &str) -> std::result::Result<Self, ChaosParseError> {
        let mut c = Chaos::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ChaosParseError(format!("'{part}' is not key=value")))?;
            let prob = |v: &str| -> std::result::Result<f64, ChaosParseError> {
                let p: f64 = v
                    .parse()
                    .map_err(|_| ChaosParseError(format!("'{k}={v}': '{v}' is not a number")))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(ChaosParseError(format!(
                        "'{k}={v}': a probability must be between 0 and 1"
                    )));
                }
                Ok(p)
            };
            match k {
                "seed" => {
                    c.seed = v.parse().map_err(|_| {
                        ChaosParseError(format!("'seed={v}': not a non-negative integer"))
                    })?
                }
                "crash" => c.crash = prob(v)?,
                "dup" => c.dup = prob(v)?,
                "concurrent" => c.concurrent = prob(v)?,
                "late" => c.late = prob(v)?,
                "drop" => c.drop = prob(v)?,
                "throttle" => c.throttle = prob(v)?,
                "lose" => c.lose = prob(v)?,
                "kill" => c.kill = prob(v)?,
                other => {
                    return Err(ChaosParseError(format!(
                        "unknown key '{other}' (known: seed, crash, dup, concurrent, late, drop, throttle, lose, kill)"
                    )));
                }
            }
        }
        Ok(c)
    }
}

impl Chaos {
    /// Whether any fault can fire.
    pub fn is_active(&self) -> bool {
        self.crash > 0.0
            || self.dup > 0.0
            || self.concurrent > 0.0
            || self.late > 0.0
            || self.drop > 0.0
            || self.throttle > 0.0
            || self.lose > 0.0
            || self.kill > 0.0
    }

    /// A uniform number in [0, 1) derived from the seed and `parts`.
    pub fn draw(&self, parts: &[&str]) -> f64 {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a fault of probability `p` fires at this moment.
    pub fn fires(&self, p: f64, parts: &[&str]) -> bool {
        p > 0.0 && self.draw(parts) < p
    }
}

/// Refuses invocations with `Throttled` as the chaos plan says (deterministic per payload and
/// per repetition of the same payload).
#[derive(Debug, Clone)]
pub struct Faulty<T> {
    inner: T,
    chaos: Chaos,
    cloud: String,
    seen: Arc<Mutex<HashMap<[u8; 32], u32>>>,
    injected: Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Faulty<T> {
    /// Inject `chaos.throttle` into `inner`, which serves `cloud`.
    pub fn new(inner: T, chaos: Chaos, cloud: &str) -> Self {
        Faulty {
            inner,
            chaos,
            cloud: cloud.to_string(),
            seen: Arc::new(Mutex::new(HashMap::new())),
            injected: Arc::default(),
        }
    }

    /// The number of invocations refused so far (shared by clones).
    pub fn injected(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.injected.clone()
    }

    fn throttled(&self, function: &str, payload: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(payload).into();
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(digest).or_insert(0);
            *n += 1;
            *n
        };
        let fires = self.chaos.fires(
            self.chaos.throttle,
            &[
                "throttle",
                &self.cloud,
                function,
                &hex::encode(digest),
                &n.to_string(),
            ],
        );
        if fires {
            self.injected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fires
    }
}

#[async_trait]
impl<T: Faas> Faas for Faulty<T> {
    fn capabilities(&self) -> FaasCapabilities {
        self.inner.capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        if self.throttled(function, &payload) {
            return Err(Error::new(
                ErrorKind::Throttled,
                format!("chaos({})", self.cloud),
                "invoke_async",
                function,
                "injected throttling",
            ));
        }
        self.inner.invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        if self.throttled(function, &payload) {
            return Err(Error::new(
                ErrorKind::Throttled,
                format!("chaos({})", self.cloud),
                "invoke_sync",
                function,
                "injected throttling",
            ));
        }
        self.inner.invoke_sync(function, payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_determinism() {
        let c: Chaos = "seed=7,crash=0.1,dup=0.2,drop=0.05,throttle=0.3"
            .parse()
            .unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.dup, 0.2);
        assert!(c.is_active());
        assert_eq!(c.draw(&["a", "b"]), c.draw(&["a", "b"]));
        assert_ne!(c.draw(&["a", "b"]), c.draw(&["ab", ""]));
        let hits = (0..10_000)
            .filter(|i| c.fires(0.2, &["x", &i.to_string()]))
            .count();
        assert!((1_700..2_300).contains(&hits), "{hits}");
        assert!(
            "crash=2"
                .parse::<Chaos>()
                .unwrap_err()
                .0
                .contains("between 0 and 1")
        );
        assert!(
            "boom=1"
                .parse::<Chaos>()
                .unwrap_err()
                .0
                .contains("unknown key 'boom'")
        );
        assert!("seed".parse::<Chaos>().unwrap_err().0.contains("key=value"));
        assert!(!Chaos::default().is_active());
    }
}
