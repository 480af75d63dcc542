//! [`TablestoreCoordStore`]: the `CoordStore` operations as Tablestore requests.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use joint_shim::{CoordStore, Created, Error, ErrorKind, Result, StoreCapabilities};
use joint_shim_aliyun::ots::proto::{
    self, ComparatorType, LogicalOperator, RowExistenceExpectation,
};
use joint_shim_aliyun::ots::{
    Cell, OtsClient, OtsError, Row, Value, column_pagination_filter, composite_filter, parse_error,
    single_column_filter,
};
use prost::Message;

use super::keys::{column, partition, pk, successor, uncolumn};
use joint_shim::JoinSize;

/// Tablestore's largest attribute value (2 MB).
pub const ITEM_LIMIT: u64 = 2 * 1024 * 1024;
/// Default largest join member value: 4 KiB (the runtime passes larger branch outputs by
/// reference).
pub const DEFAULT_JOIN_VALUE_LIMIT: u64 = 4 * 1024;
const BATCH: usize = 200;
/// Bytes of member values one GetRow of a join's members returns at most (Tablestore caps a
/// read's answer at 4 MB; GetRange documents it, GetRow pages wide rows by columns).
const MEMBER_PAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of one member column besides its value: the hex column name, timestamp and framing.
const MEMBER_COLUMN_BYTES: u64 = 300;

/// The coordination store on one Tablestore table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TablestoreCoordStore {
    client: OtsClient,
    table: String,
    backend: String,
    item_limit: u64,
    retention: Option<std::time::Duration>,
    join_value_limit: u64,
}

fn cond(e: RowExistenceExpectation, filter: Option<proto::Filter>) -> proto::Condition {
    proto::Condition {
        row_existence: e as i32,
        column_condition: filter.map(|f| f.encode_to_vec()),
    }
}

impl TablestoreCoordStore {
    /// A store on `table` through `client`; `cloud` names it in errors. The table's TTL is taken
    /// to be [`joint_shim::caps::DEFAULT_RETENTION`] (what `joint aliyun create-table` sets);
    /// see [`TablestoreCoordStore::with_retention`].
    pub fn new(client: OtsClient, table: String, cloud: &str, item_limit: u64) -> Self {
        TablestoreCoordStore {
            client,
            table,
            backend: format!("tablestore({cloud})"),
            item_limit,
            retention: Some(joint_shim::caps::DEFAULT_RETENTION),
            join_value_limit: DEFAULT_JOIN_VALUE_LIMIT,
        }
    }

    /// Set the largest join member value in bytes (default [`DEFAULT_JOIN_VALUE_LIMIT`]).
    pub fn with_join_value_limit(mut self, limit: u64) -> Self {
        self.join_value_limit = limit;
        self
    }

    /// The table's time to live (`None`: rows are kept until deleted). It must be the TTL the
    /// table was created with: the runtime checks it against the platforms' redelivery windows.
    pub fn with_retention(mut self, retention: Option<std::time::Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// A builder.
    pub fn builder() -> super::TablestoreStoreBuilder {
        super::TablestoreStoreBuilder::new()
    }

    /// The client (wire-level request counts, table administration).
    pub fn client(&self) -> &OtsClient {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn map(&self, op: &'static str, key: &str, e: &OtsError, idempotent: bool) -> Error {
        parse_error(&self.backend, op, key, e, idempotent)
    }

    fn err(&self, kind: ErrorKind, op: &'static str, key: &str, m: impl Into<String>) -> Error {
        Error::new(kind, self.backend.clone(), op, key, m)
    }

    fn col(&self, op: &'static str, key: &str, prefix: &str, name: &str) -> Result<String> {
        column(prefix, name).ok_or_else(|| {
            self.err(
                ErrorKind::InvalidInput,
                op,
                key,
                format!("name '{name}' is too long for a Tablestore column (max 126 bytes)"),
            )
        })
    }

    fn decode_row(&self, op: &'static str, key: &str, b: &[u8]) -> Result<Option<Row>> {
        Row::decode(b).map_err(|e| self.err(ErrorKind::Other, op, key, e.to_string()))
    }

    async fn get_row(
        &self,
        op: &'static str,
        key: &str,
        columns: (Option<&str>, Option<&str>),
    ) -> Result<Option<Row>> {
        self.read_row(op, key, vec![], columns, None).await
    }

    async fn read_row(
        &self,
        op: &'static str,
        key: &str,
        columns_to_get: Vec<String>,
        columns: (Option<&str>, Option<&str>),
        filter: Option<proto::Filter>,
    ) -> Result<Option<Row>> {
        let req = proto::GetRowRequest {
            table_name: self.table.clone(),
            primary_key: Row::with_pk(pk(key)).encode(),
            columns_to_get,
            time_range: None,
            max_versions: Some(1),
            filter: filter.map(|f| f.encode_to_vec()),
            start_column: columns.0.map(str::to_string),
            end_column: columns.1.map(str::to_string),
            token: None,
            transaction_id: None,
        };
        let resp: proto::GetRowResponse = self
            .client
            .call("GetRow", &req)
            .await
            .map_err(|e| self.map(op, key, &e, true))?;
        self.decode_row(op, key, &resp.row)
    }

    fn item(row: &Row) -> Option<StoredItem> {
        let value = match row.get("v")? {
            Value::Blob(b) => b.clone(),
            _ => return None,
        };
        Some(StoredItem {
            value,
            invoked: Self::invoked(row),
        })
    }

    fn invoked(row: &Row) -> BTreeSet<String> {
        row.cells
            .iter()
            .filter_map(|c| uncolumn("i_", &c.name))
            .collect()
    }

    fn count_of(row: Option<&Row>) -> u32 {
        match row.and_then(|r| r.get("n")) {
            Some(Value::Integer(n)) => u32::try_from((*n).max(0)).unwrap_or(u32::MAX),
            _ => 0,
        }
    }

    /// Every member of the join at `key`: the `m_` column range read in pages (a wide row is
    /// read by columns, at most [`MEMBER_PAGE_BYTES`] of values per GetRow).
    async fn members(&self, key: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let per_page = (MEMBER_PAGE_BYTES / (self.join_value_limit + MEMBER_COLUMN_BYTES))
            .clamp(1, 5000) as i32;
        let mut members = BTreeMap::new();
        let mut start = "m_".to_string();
        loop {
            let page = self
                .read_row(
                    "join",
                    key,
                    vec![],
                    (Some(&start), Some("m`")),
                    Some(column_pagination_filter(0, per_page)),
                )
                .await?;
            let cells = page.map(|r| r.cells).unwrap_or_default();
            let Some(last) = cells.last().map(|c| c.name.clone()) else {
                return Ok(members);
            };
            let n = cells.len();
            for c in cells {
                match (uncolumn("m_", &c.name), c.value) {
                    (Some(m), Some(Value::Blob(v))) => {
                        members.insert(m, v);
                    }
                    _ => {
                        return Err(self.err(
                            ErrorKind::Other,
                            "join",
                            key,
                            format!("unexpected column '{}' in a join row", c.name),
                        ));
                    }
                }
            }
            if n < per_page as usize {
                return Ok(members);
            }
            // The next page starts right after the last column: `0` is the smallest character
            // a column name may continue with.
            start = format!("{last}0");
        }
    }

    /// Rows whose key starts with `prefix`: a range read over the run's partition when the
    /// prefix names one, otherwise a scan of the table.
    async fn scan(&self, op: &'static str, prefix: &str, pk_only: bool) -> Result<Vec<Row>> {
        let (start, end) = match prefix.split_once('/') {
            Some(_) => {
                let p = Value::String(partition(prefix).to_string());
                let end_k = successor(prefix)
                    .map(Value::String)
                    .unwrap_or(Value::InfMax);
                (
                    Row::with_pk(vec![
                        ("p", p.clone()),
                        ("k", Value::String(prefix.to_string())),
                    ]),
                    Row::with_pk(vec![("p", p), ("k", end_k)]),
                )
            }
            None => (
                Row::with_pk(vec![("p", Value::InfMin), ("k", Value::InfMin)]),
                Row::with_pk(vec![("p", Value::InfMax), ("k", Value::InfMax)]),
            ),
        };
        let mut next = Some(start.encode());
        let end = end.encode();
        let mut out = Vec::new();
        while let Some(from) = next.take() {
            let req = proto::GetRangeRequest {
                table_name: self.table.clone(),
                direction: proto::Direction::Forward as i32,
                columns_to_get: if pk_only {
                    vec!["p".into(), "k".into()]
                } else {
                    vec![]
                },
                time_range: None,
                max_versions: Some(1),
                limit: Some(1000),
                inclusive_start_primary_key: from,
                exclusive_end_primary_key: end.clone(),
                filter: None,
                start_column: None,
                end_column: None,
                token: None,
                transaction_id: None,
            };
            let resp: proto::GetRangeResponse = self
                .client
                .call("GetRange", &req)
                .await
                .map_err(|e| self.map(op, prefix, &e, true))?;
            let rows = joint_shim_aliyun::ots::plainbuffer::decode_rows(&resp.rows)
                .map_err(|e| self.err(ErrorKind::Other, op, prefix, e.to_string()))?;
            out.extend(rows.into_iter().filter(
                |r| matches!(r.pk_value("k"), Some(Value::String(k)) if k.starts_with(prefix)),
            ));
            next = resp.next_start_primary_key.filter(|b| !b.is_empty());
        }
        Ok(out)
    }
}

#[async_trait]
impl CoordStore for TablestoreCoordStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            item_limit: self.item_limit,
            join_value_limit: self.join_value_limit,
            max_join_width: None,
            atomic_join: true,
            consistent_read: true,
            retention: self.retention,
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        if value.len() as u64 > self.item_limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                "create",
                key,
                format!(
                    "value of {} bytes is over the {}-byte item limit",
                    value.len(),
                    self.item_limit
                ),
            ));
        }
        for _ in 0..3 {
            let row = Row::with_pk(pk(key)).cell(Cell::put("v", Value::Blob(value.to_vec())));
            let req = proto::PutRowRequest {
                table_name: self.table.clone(),
                row: row.encode(),
                condition: cond(RowExistenceExpectation::ExpectNotExist, None),
                return_content: None,
                transaction_id: None,
            };
            match self
                .client
                .call::<_, proto::PutRowResponse>("PutRow", &req)
                .await
            {
                Ok(_) => return Ok(Created::New),
                Err(e) if e.is_condition_failed() => {
                    if let Some(item) = self
                        .get_row("create", key, (None, None))
                        .await?
                        .as_ref()
                        .and_then(Self::item)
                    {
                        return Ok(Created::Existing(item));
                    }
                    // Deleted between the two requests (GC): try to create again.
                }
                // A conditional create is safe to replay: a retry either creates or loses.
                Err(e) => return Err(self.map("create", key, &e, true)),
            }
        }
        Err(self.err(
            ErrorKind::Other,
            "create",
            key,
            "the item kept appearing and disappearing (concurrent deletion)",
        ))
    }

    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        Ok(self
            .get_row("get", key, (None, None))
            .await?
            .as_ref()
            .and_then(Self::item))
    }

    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        let mut row = Row::with_pk(pk(key));
        for n in names {
            row = row.cell(Cell::put(
                &self.col("add_invoked", key, "i_", n)?,
                Value::Boolean(true),
            ));
        }
        if !names.is_empty() {
            let req = proto::UpdateRowRequest {
                table_name: self.table.clone(),
                row_change: row.encode(),
                condition: cond(RowExistenceExpectation::ExpectExist, None),
                return_content: None,
                transaction_id: None,
            };
            match self
                .client
                .call::<_, proto::UpdateRowResponse>("UpdateRow", &req)
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_condition_failed() => {
                    return Err(self.err(
                        ErrorKind::NotFound,
                        "add_invoked",
                        key,
                        "no output item to record invocations in",
                    ));
                }
                // Setting the same columns again is idempotent.
                Err(e) => return Err(self.map("add_invoked", key, &e, true)),
            }
        }
        // Read back only the `i_` column range.
        match self
            .get_row("add_invoked", key, (Some("i_"), Some("i`")))
            .await?
        {
            Some(r) => Ok(Self::invoked(&r)),
            None => Err(self.err(
                ErrorKind::NotFound,
                "add_invoked",
                key,
                "the item disappeared",
            )),
        }
    }

    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        let JoinSize {
            capacity,
            complete_at,
        } = size;
        if value.len() as u64 > self.join_value_limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                "join",
                key,
                format!(
                    "member '{member}': value of {} bytes is over the {}-byte join member limit",
                    value.len(),
                    self.join_value_limit
                ),
            ));
        }
        let m = self.col("join", key, "m_", member)?;
        let row = Row::with_pk(pk(key))
            .cell(Cell::put(&m, Value::Blob(value.to_vec())))
            .cell(Cell::increment("n", 1));
        // The member's own column tells whether it is in: no stored value equals both the empty
        // blob and a single zero byte, so both comparisons pass only while the column is
        // missing. One column per member keeps a 10,000-way join at 10,001 columns.
        let absent =
            |v: Vec<u8>| single_column_filter(&m, ComparatorType::CtEqual, &Value::Blob(v), true);
        let filter = composite_filter(
            LogicalOperator::LoAnd,
            vec![
                absent(vec![]),
                absent(vec![0]),
                single_column_filter(
                    "n",
                    ComparatorType::CtLessThan,
                    &Value::Integer(i64::from(capacity)),
                    true,
                ),
            ],
        );
        let req = proto::UpdateRowRequest {
            table_name: self.table.clone(),
            row_change: row.encode(),
            condition: cond(RowExistenceExpectation::Ignore, Some(filter)),
            return_content: Some(proto::ReturnContent {
                return_type: Some(proto::ReturnType::RtAfterModify as i32),
                return_column_names: vec!["n".into()],
            }),
            transaction_id: None,
        };
        match self
            .client
            .call::<_, proto::UpdateRowResponse>("UpdateRow", &req)
            .await
        {
            Ok(resp) => {
                let after = self.decode_row("join", key, resp.row.as_deref().unwrap_or(&[]))?;
                let count = Self::count_of(after.as_ref());
                // The increment that took `n` to `complete_at` is this one: the completer.
                let completed = count == complete_at;
                let members = if completed {
                    self.members(key).await?
                } else {
                    BTreeMap::new()
                };
                Ok(JoinState {
                    added: true,
                    completed,
                    count,
                    members,
                })
            }
            Err(e) if e.is_condition_failed() => {
                // Already a member, or the join is full: report the state without adding.
                let head = self
                    .read_row("join", key, vec!["n".into()], (None, None), None)
                    .await?;
                let count = Self::count_of(head.as_ref());
                let members = if count >= complete_at {
                    self.members(key).await?
                } else {
                    BTreeMap::new()
                };
                Ok(JoinState {
                    added: false,
                    completed: false,
                    count,
                    members,
                })
            }
            // An increment is not idempotent, but the condition makes a replay of the same
            // member fail instead of double-counting.
            Err(e) => Err(self.map("join", key, &e, true)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        let mut out: Vec<(String, StoredItem)> = self
            .scan("list", prefix, false)
            .await?
            .iter()
            .filter_map(|r| match (r.pk_value("k"), Self::item(r)) {
                (Some(Value::String(k)), Some(it)) => Some((k.clone(), it)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let rows = self.scan("delete_prefix", prefix, true).await?;
        let mut deleted = 0u64;
        for chunk in rows.chunks(BATCH) {
            let req = proto::BatchWriteRowRequest {
                tables: vec![proto::TableInBatchWriteRowRequest {
                    table_name: self.table.clone(),
                    rows: chunk
                        .iter()
                        .map(|r| {
                            let mut d = Row {
                                pk: r.pk.clone(),
                                ..Row::default()
                            };
                            d.delete_marker = true;
                            proto::RowInBatchWriteRowRequest {
                                r#type: proto::OperationType::Delete as i32,
                                row_change: d.encode(),
                                condition: cond(RowExistenceExpectation::Ignore, None),
                                return_content: None,
                            }
                        })
                        .collect(),
                }],
                transaction_id: None,
            };
            let resp: proto::BatchWriteRowResponse = self
                .client
                .call("BatchWriteRow", &req)
                .await
                .map_err(|e| self.map("delete_prefix", prefix, &e, true))?;
            for t in &resp.tables {
                for r in &t.rows {
                    if r.is_ok {
                        deleted += 1;
                    } else if let Some(e) = &r.error {
                        let oe = OtsError {
                            status: 200,
                            code: e.code.clone(),
                            message: e.message.clone().unwrap_or_default(),
                            request_id: None,
                        };
                        return Err(self.map("delete_prefix", prefix, &oe, true));
                    }
                }
            }
        }
        Ok(deleted)
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        // Outputs and joins are both rows at `pk(key)`. DeleteRow does not say whether a row
        // was there (`RT_PK` echoes the key either way), so it expects one: success means it
        // deleted a row, a failed condition that there was none. One request either way.
        let mut row = Row::with_pk(pk(key));
        row.delete_marker = true;
        let req = proto::DeleteRowRequest {
            table_name: self.table.clone(),
            primary_key: row.encode(),
            condition: cond(RowExistenceExpectation::ExpectExist, None),
            return_content: None,
            transaction_id: None,
        };
        match self
            .client
            .call::<_, proto::DeleteRowResponse>("DeleteRow", &req)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_condition_failed() => Ok(false),
            // Deleting again is harmless (a replay whose first attempt won reports `false`).
            Err(e) => Err(self.map("delete", key, &e, true)),
        }
    }
}
