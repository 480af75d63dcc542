//! The DynamoDB coordination store.
//!
//! # Table design
//! One table, key schema `pk` (partition, S) + `sk` (sort, S):
//! - `pk` is the **partition** of a key: its first path segment (`{run}` for every instance,
//!   join and spill key of a run), or its first two segments when the key starts with `_`
//!   (`_runs/{run}` for a run record, `_batch/{workflow}` for batches). Everything one run
//!   writes shares a partition, so GC (`delete_prefix("{run}/")`) is one paginated Query plus
//!   BatchWriteItem — never a Scan.
//! - `sk` is the **whole key**, so a prefix inside a partition (`{run}/A_` or `_runs/{id}/`) is
//!   an exact `begins_with(sk, :prefix)` key condition.
//! - `kind` is `out` for output items, `join` for joins and `jm` for a wide join's member items;
//!   `list` filters on it.
//! - Output items: `val` (B) the value, `inv` (SS) the invoked set (absent when empty).
//! - Narrow joins (capacity ≤ `wide_join_above`, default 16, and small enough never to outgrow
//!   400 KB): one item, `cnt` (N) the member count, one attribute `m:{member}` (B) per member,
//!   so adding a member is a single `SET` on a top-level attribute and needs no pre-existing map,
//!   and `ord` (L) the members in the order added (the one at `complete_at - 1` completed it).
//! - Wide joins: a head item (`cnt`, `wide` = capacity, `done` = the member that claimed the
//!   completion) and one item per member at `{join key}\u{1}{member}` in the same partition, so
//!   a member's write is billed on its own size (ADR 0101, 0009).
//! - `expires` (N, epoch seconds) on every item: the table's TTL attribute, GC's backstop.
//!
//! # Round trips
//! | operation | request |
//! |---|---|
//! | `create` | PutItem `attribute_not_exists(pk)`, `ReturnValuesOnConditionCheckFailure=ALL_OLD` |
//! | `get` | GetItem `ConsistentRead` |
//! | `add_invoked` | UpdateItem `ADD inv :names`, `attribute_exists(pk)`, `ReturnValues=ALL_NEW` |
//! | `join` (narrow) | UpdateItem `SET #m = :v, ord = list_append(…) ADD cnt :one` if `attribute_not_exists(#m) AND (attribute_not_exists(cnt) OR cnt < :cap)`, ALL_NEW / ALL_OLD on failure |
//! | `join` (wide) | TransactWriteItems {Put member item if absent; Update head `ADD cnt :one` if `cnt < :cap`}, consistent GetItem of the head; the first to find it complete claims it (UpdateItem `SET done`); the completer (and a duplicate) Queries the member items |
//! | `list` | Query (consistent, paginated), filter `kind = out` |
//! | `delete_prefix` | Query keys + BatchWriteItem (25 per request, unprocessed items retried) |
//! | `delete` | Query of the key's member items (none unless a wide join) + BatchWriteItem, then DeleteItem `ReturnValues=ALL_OLD` (an output item or a join: same key space) |
//!
//! A store that does not return the old item on a failed condition (an older emulator) costs one
//! extra consistent GetItem on that path only.
//!
//! `delete` learns whether the key existed from the returned old item; an SDK retry of a
//! DeleteItem whose first response was lost finds nothing and reports `false`.

mod admin;
mod builder;
mod connection;
pub mod error;
mod item;
mod join;
mod keys;
mod prefix;
mod store;

pub use admin::{TableStatus, create_table};
pub use builder::{
    DEFAULT_ITEM_LIMIT, DEFAULT_JOIN_VALUE_LIMIT, DEFAULT_WIDE_JOIN_ABOVE, DynamoStoreBuilder,
};
pub use connection::AwsConnection;
pub use error::parse_error;
pub use keys::partition_of;
pub use store::DynamoCoordStore;
