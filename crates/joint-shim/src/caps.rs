//! Declared capabilities: what a backend can do and its limits, so callers decide up front
//! instead of discovering by failure.

use std::time::Duration;

/// Capabilities of a FaaS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaasCapabilities {
    /// Largest async-invoke payload in bytes (Lambda 1 MB, FC 128 KB).
    pub async_payload_limit: u64,
    /// Largest sync-invoke payload in bytes.
    pub sync_payload_limit: u64,
    /// The longest time after the platform accepted an asynchronous invocation during which it
    /// may still deliver that event — retries, duplicates and queueing included. Every store a
    /// runtime writes to must keep what it wrote at least this long (ADR 0009): Lambda keeps
    /// events up to 6 hours, FC up to 7 days.
    pub redelivery_window: Duration,
}

/// Capabilities of a coordination store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCapabilities {
    /// Largest value one item holds, in bytes (DynamoDB 400 KB, Tablestore 2 MB per cell).
    pub item_limit: u64,
    /// Largest value of one join member, in bytes; a larger one fails `PayloadTooLarge`. The
    /// runtime keeps branch outputs inline in a join only up to this size (minus its own
    /// framing) and passes larger ones by reference.
    pub join_value_limit: u64,
    /// Largest `capacity` a join accepts (`None`: no ceiling); a wider join fails
    /// `InvalidInput` before anything is written.
    pub max_join_width: Option<u32>,
    /// The join is one atomic operation that returns the whole state.
    pub atomic_join: bool,
    /// Reads are strongly consistent.
    pub consistent_read: bool,
    /// How long the store keeps an item after its last write before it deletes it by itself
    /// (DynamoDB and Tablestore TTL, the local stores' expiry); `None` when it keeps items until
    /// they are deleted.
    pub retention: Option<Duration>,
}

/// Capabilities of a blob store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobCapabilities {
    /// Create-only puts are atomic (If-None-Match / forbid-overwrite).
    pub create_only: bool,
    /// Largest object in bytes.
    pub max_object: u64,
    /// How long the store keeps a blob after it was written before it deletes it by itself (an
    /// S3/OSS lifecycle rule, the local store's expiry); `None` when it keeps blobs until they
    /// are deleted.
    pub retention: Option<Duration>,
}

/// The retention every store keeps working state for by default: 8 days. It covers the longest
/// redelivery window of the supported platforms — Function Compute keeps asynchronous events up to
/// 7 days (`maxAsyncEventAgeInSeconds` ≤ 604800) and Lambda up to 6 hours — plus a day for the
/// last attempt to run (ADR 0009).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);
