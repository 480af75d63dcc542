//! The Backend-Shim contract: three small dyn-compatible traits.

use std::collections::BTreeSet;
use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};

use crate::caps::{BlobCapabilities, FaasCapabilities, StoreCapabilities};
use crate::error::Result;

/// Invoking functions on one cloud.
#[async_trait]
pub trait Faas: Send + Sync + Debug {
    /// What this backend can do.
    fn capabilities(&self) -> FaasCapabilities;

    /// Queue an asynchronous invocation of `function` with `payload`.
    ///
    /// Behavior:
    /// - Returns once the platform accepted the event; the function runs later, at least once
    ///   (the platform may deliver it again).
    /// - A payload over `capabilities().async_payload_limit` fails with `PayloadTooLarge`
    ///   before anything is sent.
    /// - An unknown function fails with `FunctionNotFound`; throttling with `Throttled`
    ///   (retryable); an unreachable platform with `Unavailable` (retryable, failover-worthy).
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()>;

    /// Invoke `function` and wait for its result.
    ///
    /// Behavior:
    /// - Returns the function's response bytes.
    /// - A function that returned an error fails with `FunctionError`, the message carrying the
    ///   function's error type and message.
    /// - Errors otherwise as `invoke_async`.
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes>;
}

/// A blob store.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// What this backend can do.
    fn capabilities(&self) -> BlobCapabilities;

    /// Create-only put.
    ///
    /// Behavior:
    /// - Writes `bytes` at `key` if nothing is there, atomically: a reader sees the whole blob or
    ///   nothing.
    /// - If `key` exists, fails with `AlreadyExists` and leaves the existing blob unchanged.
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()>;

    /// Read a blob.
    ///
    /// Behavior:
    /// - Returns the bytes; a missing key fails with `NotFound`.
    /// - Read-after-create is consistent.
    async fn get(&self, key: &str) -> Result<Bytes>;

    /// Delete every blob whose key starts with `prefix`.
    ///
    /// Behavior:
    /// - Returns how many were deleted; deleting nothing is not an error.
    /// - Blobs outside the prefix are untouched (`run1/` does not delete `run10/x`).
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;
}

/// How many members a join takes and when it is complete: `capacity` members at most (a
/// ByBatch batch, the n branches of a fork), complete once `complete_at` are in (`k` of `n` for
/// ByRedundant; `capacity` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSize {
    /// Members the join accepts at most.
    pub capacity: u32,
    /// Members from which it is complete.
    pub complete_at: u32,
}

impl JoinSize {
    /// `n` members, complete when all are in.
    pub fn all(n: u32) -> JoinSize {
        JoinSize {
            capacity: n,
            complete_at: n,
        }
    }

    /// Complete once `k` of at most `n` members are in.
    pub fn k_of_n(k: u32, n: u32) -> JoinSize {
        JoinSize {
            capacity: n,
            complete_at: k,
        }
    }
}

/// What `CoordStore::create` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created the item.
    New,
    /// The item existed; here it is, unchanged.
    Existing(StoredItem),
}

/// The coordination store: checkpoints, invocation records, joins.
#[async_trait]
pub trait CoordStore: Send + Sync + Debug {
    /// What this backend can do.
    fn capabilities(&self) -> StoreCapabilities;

    /// Create-if-absent of an item with `value` and an empty invoked set.
    ///
    /// Behavior:
    /// - Exactly one of any number of concurrent calls for one key returns `Created::New`.
    /// - Every other call returns `Created::Existing` with the stored item (value and invoked
    ///   set), in the same round trip.
    /// - A value over `capabilities().item_limit` fails with `PayloadTooLarge`.
    async fn create(&self, key: &str, value: Bytes) -> Result<Created>;

    /// Strongly consistent read.
    ///
    /// Behavior:
    /// - Returns the item, or `None` if it does not exist (not an error).
    /// - Sees every write that completed before the call.
    async fn get(&self, key: &str) -> Result<Option<StoredItem>>;

    /// Add `names` to the item's invoked set and return the whole set.
    ///
    /// Behavior:
    /// - Atomic; adding a name twice keeps one copy.
    /// - A missing item fails with `NotFound` (the set lives in the output item).
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>>;

    /// Atomically add `member` with `value` to the join at `key` (created on first use) and
    /// return the join state.
    ///
    /// Behavior:
    /// - `added` is true only for the call that put `member` in; a member already present keeps
    ///   its first value and `added` is false. Adding a member and counting it are one atomic
    ///   step: concurrent deliveries of one member count it once.
    /// - A join holding `size.capacity` members accepts no new member (`added` false).
    /// - `completed` is true for exactly one call of all calls on the join once
    ///   `size.complete_at` members are in: the call that completed it. A redelivered duplicate of that member may
    ///   report `completed` again; no other call may. (If the completing call itself fails, e.g.
    ///   its answer is lost, no call may report it: the redelivery of its member sees
    ///   `added == false` and takes the redelivery path.)
    /// - `count` is the number of members after the call, at least (a store that adds and
    ///   counts in one request and reads in another may include members added since).
    /// - When `count >= complete_at` and the call `completed` the join or did not add its
    ///   member, `members` holds every member and value. Other calls may get it empty (a store
    ///   may always return them), so an n-way join reads its n members O(1) times, not n times.
    /// - Bytes written per member do not grow with the join's width.
    /// - A `value` over `capabilities().join_value_limit` fails `PayloadTooLarge`, a
    ///   `capacity` over `capabilities().max_join_width` fails `InvalidInput`, both before
    ///   anything is written.
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState>;

    /// List the output items whose key starts with `prefix` (joins excluded), sorted by key.
    ///
    /// Behavior:
    /// - Returns (key, item) pairs; consistent with completed writes.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>>;

    /// Delete every item (outputs and joins) whose key starts with `prefix`.
    ///
    /// Behavior:
    /// - Returns how many were deleted; deleting nothing is not an error.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;

    /// Delete the output item or join at exactly `key` (with its invoked set / members).
    ///
    /// Behavior:
    /// - Returns whether something was deleted; a missing key is not an error (`false`).
    /// - Only that key: deleting `run1/A_1` leaves `run1/A_10` and `run1/A_1-bindex-0` alone.
    /// - A later `create` of the same key succeeds as if it never existed (`Created::New`).
    async fn delete(&self, key: &str) -> Result<bool>;
}

#[async_trait]
impl<T: Faas + ?Sized> Faas for std::sync::Arc<T> {
    fn capabilities(&self) -> FaasCapabilities {
        (**self).capabilities()
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        (**self).invoke_async(function, payload).await
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        (**self).invoke_sync(function, payload).await
    }
}

#[async_trait]
impl<T: BlobStore + ?Sized> BlobStore for std::sync::Arc<T> {
    fn capabilities(&self) -> BlobCapabilities {
        (**self).capabilities()
    }
    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        (**self).put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        (**self).get(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        (**self).delete_prefix(prefix).await
    }
}

#[async_trait]
impl<T: CoordStore + ?Sized> CoordStore for std::sync::Arc<T> {
    fn capabilities(&self) -> StoreCapabilities {
        (**self).capabilities()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        (**self).create(key, value).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        (**self).get(key).await
    }
    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        (**self).add_invoked(key, names).await
    }
    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        (**self).join(key, member, value, size).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        (**self).list(prefix).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        (**self).delete_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        (**self).delete(key).await
    }
}
