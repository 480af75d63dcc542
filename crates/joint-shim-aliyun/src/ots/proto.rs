//! The Tablestore protobuf messages this crate speaks (package
//! `com.aliyun.tablestore.protocol`, proto2), as prost derives — no `protoc` at build time.
//! Field numbers follow `table_store.proto` / `table_store_filter.proto`.
#![allow(missing_docs)]

/// Error body of a non-2xx response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    #[prost(string, required, tag = "1")]
    pub code: String,
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RowExistenceExpectation {
    Ignore = 0,
    ExpectExist = 1,
    ExpectNotExist = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Condition {
    #[prost(enumeration = "RowExistenceExpectation", required, tag = "1")]
    pub row_existence: i32,
    /// A serialized [`Filter`].
    #[prost(bytes = "vec", optional, tag = "2")]
    pub column_condition: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CapacityUnit {
    #[prost(int32, optional, tag = "1")]
    pub read: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub write: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConsumedCapacity {
    #[prost(message, required, tag = "1")]
    pub capacity_unit: CapacityUnit,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeRange {
    #[prost(int64, optional, tag = "1")]
    pub start_time: Option<i64>,
    #[prost(int64, optional, tag = "2")]
    pub end_time: Option<i64>,
    #[prost(int64, optional, tag = "3")]
    pub specific_time: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReturnType {
    RtNone = 0,
    RtPk = 1,
    RtAfterModify = 2,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReturnContent {
    #[prost(enumeration = "ReturnType", optional, tag = "1")]
    pub return_type: Option<i32>,
    #[prost(string, repeated, tag = "2")]
    pub return_column_names: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRowRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    /// PlainBuffer row: primary key only.
    #[prost(bytes = "vec", required, tag = "2")]
    pub primary_key: Vec<u8>,
    #[prost(string, repeated, tag = "3")]
    pub columns_to_get: Vec<String>,
    #[prost(message, optional, tag = "4")]
    pub time_range: Option<TimeRange>,
    #[prost(int32, optional, tag = "5")]
    pub max_versions: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub filter: Option<Vec<u8>>,
    #[prost(string, optional, tag = "8")]
    pub start_column: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub end_column: Option<String>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub token: Option<Vec<u8>>,
    #[prost(string, optional, tag = "11")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRowResponse {
    #[prost(message, required, tag = "1")]
    pub consumed: ConsumedCapacity,
    /// Empty: no such row.
    #[prost(bytes = "vec", required, tag = "2")]
    pub row: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub next_token: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRowRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(bytes = "vec", required, tag = "2")]
    pub row: Vec<u8>,
    #[prost(message, required, tag = "3")]
    pub condition: Condition,
    #[prost(message, optional, tag = "4")]
    pub return_content: Option<ReturnContent>,
    #[prost(string, optional, tag = "5")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRowResponse {
    #[prost(message, required, tag = "1")]
    pub consumed: ConsumedCapacity,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub row: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateRowRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(bytes = "vec", required, tag = "2")]
    pub row_change: Vec<u8>,
    #[prost(message, required, tag = "3")]
    pub condition: Condition,
    #[prost(message, optional, tag = "4")]
    pub return_content: Option<ReturnContent>,
    #[prost(string, optional, tag = "5")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateRowResponse {
    #[prost(message, required, tag = "1")]
    pub consumed: ConsumedCapacity,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub row: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRowRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    /// PlainBuffer: primary key plus the delete-row marker.
    #[prost(bytes = "vec", required, tag = "2")]
    pub primary_key: Vec<u8>,
    #[prost(message, required, tag = "3")]
    pub condition: Condition,
    #[prost(message, optional, tag = "4")]
    pub return_content: Option<ReturnContent>,
    #[prost(string, optional, tag = "5")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRowResponse {
    #[prost(message, required, tag = "1")]
    pub consumed: ConsumedCapacity,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub row: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum OperationType {
    Put = 1,
    Update = 2,
    Delete = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RowInBatchWriteRowRequest {
    #[prost(enumeration = "OperationType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", required, tag = "2")]
    pub row_change: Vec<u8>,
    #[prost(message, required, tag = "3")]
    pub condition: Condition,
    #[prost(message, optional, tag = "4")]
    pub return_content: Option<ReturnContent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TableInBatchWriteRowRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(message, repeated, tag = "2")]
    pub rows: Vec<RowInBatchWriteRowRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchWriteRowRequest {
    #[prost(message, repeated, tag = "1")]
    pub tables: Vec<TableInBatchWriteRowRequest>,
    #[prost(string, optional, tag = "2")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RowInBatchWriteRowResponse {
    #[prost(bool, required, tag = "1")]
    pub is_ok: bool,
    #[prost(message, optional, tag = "2")]
    pub error: Option<Error>,
    #[prost(message, optional, tag = "3")]
    pub consumed: Option<ConsumedCapacity>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub row: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TableInBatchWriteRowResponse {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(message, repeated, tag = "2")]
    pub rows: Vec<RowInBatchWriteRowResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchWriteRowResponse {
    #[prost(message, repeated, tag = "1")]
    pub tables: Vec<TableInBatchWriteRowResponse>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Direction {
    Forward = 0,
    Backward = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRangeRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(enumeration = "Direction", required, tag = "2")]
    pub direction: i32,
    #[prost(string, repeated, tag = "3")]
    pub columns_to_get: Vec<String>,
    #[prost(message, optional, tag = "4")]
    pub time_range: Option<TimeRange>,
    #[prost(int32, optional, tag = "5")]
    pub max_versions: Option<i32>,
    #[prost(int32, optional, tag = "6")]
    pub limit: Option<i32>,
    #[prost(bytes = "vec", required, tag = "7")]
    pub inclusive_start_primary_key: Vec<u8>,
    #[prost(bytes = "vec", required, tag = "8")]
    pub exclusive_end_primary_key: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub filter: Option<Vec<u8>>,
    #[prost(string, optional, tag = "11")]
    pub start_column: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub end_column: Option<String>,
    #[prost(bytes = "vec", optional, tag = "13")]
    pub token: Option<Vec<u8>>,
    #[prost(string, optional, tag = "14")]
    pub transaction_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRangeResponse {
    #[prost(message, required, tag = "1")]
    pub consumed: ConsumedCapacity,
    /// PlainBuffer rows (one header, rows back to back).
    #[prost(bytes = "vec", required, tag = "2")]
    pub rows: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub next_start_primary_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub next_token: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PrimaryKeyType {
    Integer = 1,
    String = 2,
    Binary = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PrimaryKeySchema {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(enumeration = "PrimaryKeyType", required, tag = "2")]
    pub r#type: i32,
    #[prost(int32, optional, tag = "3")]
    pub option: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TableMeta {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
    #[prost(message, repeated, tag = "2")]
    pub primary_key: Vec<PrimaryKeySchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReservedThroughput {
    #[prost(message, required, tag = "1")]
    pub capacity_unit: CapacityUnit,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TableOptions {
    /// Seconds; -1 keeps data forever.
    #[prost(int32, optional, tag = "1")]
    pub time_to_live: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub max_versions: Option<i32>,
    #[prost(int64, optional, tag = "5")]
    pub deviation_cell_version_in_sec: Option<i64>,
    #[prost(bool, optional, tag = "6")]
    pub allow_update: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateTableRequest {
    #[prost(message, required, tag = "1")]
    pub table_meta: TableMeta,
    #[prost(message, required, tag = "2")]
    pub reserved_throughput: ReservedThroughput,
    #[prost(message, optional, tag = "3")]
    pub table_options: Option<TableOptions>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateTableResponse {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListTableRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListTableResponse {
    #[prost(string, repeated, tag = "1")]
    pub table_names: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteTableRequest {
    #[prost(string, required, tag = "1")]
    pub table_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteTableResponse {}

// ---- table_store_filter.proto ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FilterType {
    FtSingleColumnValue = 1,
    FtCompositeColumnValue = 2,
    FtColumnPagination = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ComparatorType {
    CtEqual = 1,
    CtNotEqual = 2,
    CtGreaterThan = 3,
    CtGreaterEqual = 4,
    CtLessThan = 5,
    CtLessEqual = 6,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SingleColumnValueFilter {
    #[prost(enumeration = "ComparatorType", required, tag = "1")]
    pub comparator: i32,
    #[prost(string, required, tag = "2")]
    pub column_name: String,
    /// PlainBuffer variant without a length prefix.
    #[prost(bytes = "vec", required, tag = "3")]
    pub column_value: Vec<u8>,
    #[prost(bool, required, tag = "4")]
    pub filter_if_missing: bool,
    #[prost(bool, required, tag = "5")]
    pub latest_version_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LogicalOperator {
    LoNot = 1,
    LoAnd = 2,
    LoOr = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CompositeColumnValueFilter {
    #[prost(enumeration = "LogicalOperator", required, tag = "1")]
    pub combinator: i32,
    #[prost(message, repeated, tag = "2")]
    pub sub_filters: Vec<Filter>,
}

/// Wide-row reads: skip `offset` columns (after `start_column`), return at most `limit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ColumnPaginationFilter {
    #[prost(int32, required, tag = "1")]
    pub offset: i32,
    #[prost(int32, required, tag = "2")]
    pub limit: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Filter {
    #[prost(enumeration = "FilterType", required, tag = "1")]
    pub r#type: i32,
    /// The serialized filter of `type`.
    #[prost(bytes = "vec", required, tag = "2")]
    pub filter: Vec<u8>,
}
