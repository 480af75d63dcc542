//! Decorators over the three traits: operation counting, latency injection, fault injection,
//! whole-cloud outages and a commit ledger. Each wraps any backend, so the same tests run with and without them.

mod counting;
mod faults;
mod latency;
mod ledger;
mod outage;

pub use counting::{Counted, OpCounts, OpSnapshot};
pub use faults::{Chaos, ChaosParseError, Faulty};
pub use latency::{Delayed, LatencyProfile};
pub use ledger::{CommitLedger, Ledgered};
pub use outage::{OutageSwitch, Switched};
