//! The coordination store on an Alibaba Cloud Tablestore table, speaking the Tablestore
//! protocol directly (protobuf + PlainBuffer + SignV2 from `joint-shim-aliyun`).
//!
//! Table layout — primary key `(p STRING, k STRING)`: `p` is the key up to its first `/` (the
//! run id, so a run is one partition) and `k` the whole key.
//!
//! | row | columns |
//! |---|---|
//! | output item | `v` BLOB (the value), `i_<hex(name)>` BOOLEAN per invoked successor |
//! | join | `n` INTEGER (members), `m_<hex(member)>` BLOB (value), one column per member |
//!
//! Operations (wire requests): create = PutRow `EXPECT_NOT_EXIST` (+ GetRow for the winner
//! when it loses); get = GetRow; add_invoked = UpdateRow `EXPECT_EXIST` + GetRow of the
//! `i_` column range; join = ONE conditional UpdateRow (`PUT m_`, `INCREMENT n`, condition
//! `m_ == "" AND m_ == "\0" AND n < capacity` each passing if missing — true only while the
//! member's column is missing — `RT_AFTER_MODIFY` returning `n`), then for the completer the
//! `m_` column range read in pages (ColumnPaginationFilter), for a duplicate a GetRow of `n`
//! first (ADR 0202); list = GetRange
//! over the partition; delete_prefix = GetRange (primary keys only) + BatchWriteRow;
//! delete = ONE DeleteRow `EXPECT_EXIST` (an output item or a join, whichever row is at the key;
//! DeleteRow cannot otherwise tell whether a row existed, so a failed condition means `false`).

mod admin;
mod builder;
mod keys;
mod store;

pub use admin::create_table;
pub use builder::TablestoreStoreBuilder;
pub use store::TablestoreCoordStore;
