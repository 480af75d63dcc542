//! joint-shim: the Backend-Shim contract and runtime.
//!
//! - [`traits`]: [`Faas`], [`BlobStore`], [`CoordStore`] — small dyn-compatible traits whose
//!   methods document their **Behavior**; every backend passes the [`conformance`] suite.
//! - [`Error`]: one error type with semantic kinds and a retryable flag.
//! - [`Runtime`]: drives `joint-core`'s state machine against the traits; embeddable through
//!   [`Runtime::handle`].
//! - [`invoke`]: the tower stack (timeout, retry, circuit breaker) and failover.
//! - [`layers`]: decorators for operation counting, latency and fault injection.
#![deny(missing_docs)]

pub mod backend;
pub mod caps;
pub mod cloud;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod handler;
pub mod invoke;
pub mod layers;
pub mod observe;
pub mod policy;
pub mod runtime;
pub mod traits;
pub mod worker;

pub use backend::{Backend, Backends};
pub use caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
pub use cloud::{Cloud, Clouds};
pub use error::{Error, ErrorKind, Result};
pub use handler::{
    CommandHandler, Context, Handler, Handlers, fn_error, handler_fn, typed_handler,
};
pub use runtime::{Deliver, GcPolicy, Runtime, RuntimeConfig};
pub use traits::{BlobStore, CoordStore, Created, Faas, JoinSize};
