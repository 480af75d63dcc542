//! Tablestore (OTS) wire code shared by the client ([`OtsClient`]) and the local endpoint in
//! `joint serve`: protobuf messages, the PlainBuffer row codec and error decoding.

pub mod client;
pub mod error;
pub mod plainbuffer;
pub mod proto;

pub use client::{OtsClient, OtsClientBuilder};
pub use error::{OtsError, parse_error};
pub use plainbuffer::{Cell, CellOp, Row, Value};

/// Serialize a filter for a condition or read: `SingleColumnValueFilter` wrapped in `Filter`.
pub fn single_column_filter(
    column: &str,
    comparator: proto::ComparatorType,
    value: &Value,
    pass_if_missing: bool,
) -> proto::Filter {
    use prost::Message;
    let f = proto::SingleColumnValueFilter {
        comparator: comparator as i32,
        column_name: column.to_string(),
        column_value: value.variant(),
        filter_if_missing: !pass_if_missing,
        latest_version_only: true,
    };
    proto::Filter {
        r#type: proto::FilterType::FtSingleColumnValue as i32,
        filter: f.encode_to_vec(),
    }
}

/// Combine filters with a logical operator.
pub fn composite_filter(op: proto::LogicalOperator, subs: Vec<proto::Filter>) -> proto::Filter {
    use prost::Message;
    let f = proto::CompositeColumnValueFilter {
        combinator: op as i32,
        sub_filters: subs,
    };
    proto::Filter {
        r#type: proto::FilterType::FtCompositeColumnValue as i32,
        filter: f.encode_to_vec(),
    }
}

/// Serialize a column-pagination filter for a wide-row read (GetRow, GetRange): skip `offset`
/// columns, return at most `limit`.
pub fn column_pagination_filter(offset: i32, limit: i32) -> proto::Filter {
    use prost::Message;
    proto::Filter {
        r#type: proto::FilterType::FtColumnPagination as i32,
        filter: proto::ColumnPaginationFilter { offset, limit }.encode_to_vec(),
    }
}
