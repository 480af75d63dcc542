//! Decorators over the three traits: operation counting, latency injection and fault
//! injection. Each wraps any backend, so the same tests run with and without them.

mod counting;
mod faults;
mod latency;

pub use counting::{Counted, OpCounts, OpSnapshot};
pub use faults::{Chaos, ChaosParseError, Faulty};
pub use latency::{Delayed, LatencyProfile};
