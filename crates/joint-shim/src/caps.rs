//! Declared capabilities: what a backend can do and its limits, so callers decide up front
//! instead of discovering by failure.

/// Capabilities of a FaaS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaasCapabilities {
    /// Largest async-invoke payload in bytes (Lambda 1 MB, FC 128 KB).
    pub async_payload_limit: u64,
    /// Largest sync-invoke payload in bytes.
    pub sync_payload_limit: u64,
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
}

/// Capabilities of a blob store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobCapabilities {
    /// Create-only puts are atomic (If-None-Match / forbid-overwrite).
    pub create_only: bool,
    /// Largest object in bytes.
    pub max_object: u64,
}
