//! joint-core: the sans-IO heart of joint.
//!
//! It parses and validates workflow definitions, compiles them to the paper's per-function
//! sub-graphs, defines the envelope and instance naming, evaluates choice expressions and runs the
//! per-instance protocol as a state machine that returns actions and performs none. It knows no
//! cloud and does no I/O.
#![deny(missing_docs)]

pub mod asl;
pub mod compile;
pub mod def;
pub mod diag;
pub mod envelope;
pub mod expr;
pub mod import;
pub mod machine;
pub mod naming;
pub mod recovery;
pub mod sign;
pub mod subgraph;
pub mod validate;
pub mod workflow;

pub use envelope::{Envelope, Input, OutputRecord, Payload};
pub use subgraph::{InvokeMode, SubGraph};
pub use workflow::Workflow;
