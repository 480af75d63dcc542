//! What the runtime reports while it works: per-instance and per-action events, for progress
//! bars, timelines and tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsEvent {
    /// An instance started executing on a cloud.
    InstanceStart {
        /// Run id.
        run: String,
        /// Instance id.
        instance: String,
        /// Function.
        function: String,
        /// Executing cloud.
        cloud: String,
        /// Delivery attempt of the event.
        delivery: u32,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// One protocol action finished.
    Action {
        /// Run id.
        run: String,
        /// Instance id.
        instance: String,
        /// Executing cloud.
        cloud: String,
        /// Action kind (`read_checkpoint`, `run`, `commit`, `join`, `invoke`, …).
        kind: &'static str,
        /// When it started.
        start: SystemTime,
        /// How long it took.
        elapsed: Duration,
    },
    /// An instance finished (successfully or not).
    InstanceEnd {
        /// Run id.
        run: String,
        /// Instance id.
        instance: String,
        /// Function.
        function: String,
        /// Executing cloud.
        cloud: String,
        /// The user function ran in this execution.
        ran_function: bool,
        /// The output was adopted from a checkpoint.
        adopted: bool,
        /// Error, if the execution failed (the platform redelivers).
        error: Option<String>,
        /// Duration of the execution.
        elapsed: Duration,
    },
    /// An output commit finished: `won` is true for the execution whose create made the item.
    Committed {
        /// Run id.
        run: String,
        /// Instance id.
        instance: String,
        /// This execution created the item (false: it adopted an existing one).
        won: bool,
    },
    /// A fault was injected.
    Crash {
        /// Run id.
        run: String,
        /// Instance id.
        instance: String,
        /// Protocol point (`before:commit`, `after:invoke`, …).
        point: String,
    },
    /// A successor invocation was accepted.
    Invoked {
        /// Run id.
        run: String,
        /// Caller's cloud.
        from: String,
        /// Cloud that accepted it.
        to: String,
        /// Target function.
        function: String,
        /// Event size in bytes.
        bytes: u64,
    },
    /// An instance read data (a blob or another instance's output) held by another cloud.
    Fetched {
        /// Run id.
        run: String,
        /// Cloud holding the data.
        from: String,
        /// Cloud reading it.
        to: String,
        /// Bytes read.
        bytes: u64,
    },
    /// An invocation failed over.
    Failover {
        /// Run id.
        run: String,
        /// Target function.
        function: String,
        /// Cloud that refused.
        from: String,
        /// Cloud tried next.
        to: String,
        /// Why.
        error: String,
    },
    /// A run record was written.
    RunFinished {
        /// Run id.
        run: String,
        /// Whether the run succeeded.
        ok: bool,
    },
}

/// Receives events. Must be quick; it runs on the runtime's tasks.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, e: &ObsEvent);
}

/// Keeps every event in memory (tests, timelines).
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    events: Arc<Mutex<Vec<ObsEvent>>>,
}

impl Recorder {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<ObsEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Observer for Recorder {
    fn event(&self, e: &ObsEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
    }
}

/// Sends events to several observers.
#[derive(Default, Clone)]
pub struct Fanout(pub Vec<Arc<dyn Observer>>);

impl Observer for Fanout {
    fn event(&self, e: &ObsEvent) {
        for o in &self.0 {
            o.event(e);
        }
    }
}
