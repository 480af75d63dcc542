//! Tablestore over HTTP: the wide-column actions joint's store and the official SDK use —
//! CreateTable, ListTable, DeleteTable, PutRow, GetRow, UpdateRow, DeleteRow, BatchWriteRow,
//! GetRange — with row-existence and column conditions, atomic increments and
//! `RT_AFTER_MODIFY`. Every request's signature — SignV2, or SignV4 as the SDKs send it when
//! configured with a region — and content MD5 and date are verified; answers carry the
//! response signature the SDKs check (for SignV4, keyed with the request's signing key). Errors are protobuf `Error` bodies.
//!
//! Request data is bounded before it is used: a filter or column condition holds at most
//! [`MAX_FILTER_CONDITIONS`] single-column conditions nested at most [`MAX_FILTER_DEPTH`]
//! deep (Tablestore's "up to 10 conditions"), else 400 `OTSParameterInvalid` — it is parsed
//! once, with the depth checked before each level, so no request drives unbounded recursion.
//!
//! Reads apply `filter` (on the columns read, as Tablestore does: a column left out of
//! `columns_to_get` is missing to the filter), `time_range` and `max_versions`. A table keeps
//! one version per column (`max_versions` 1, the newest timestamp wins; CreateTable with more
//! versions is refused as not implemented), honours its TTL (a row's expired cells are removed
//! before any request reads or writes it; a row whose cells all expired is gone) and `deviation_cell_version_in_sec` for explicit
//! timestamps. Local transactions are not implemented: `StartLocalTransaction` and any
//! request with a `transaction_id` are refused.
//!
//! Rows live in memory for the life of the server, behind one lock, so every request is
//! atomic per row (and per batch). Settings: `aliyun.access_key_id` / `aliyun.access_key_secret`
//! (else `ALIBABA_CLOUD_*`), optional `ots.instance` (refuse other instance names),
//! optional `ots.region` (refuse SignV4 requests scoped to another region),
//! `ots.timeout_secs` (default 30 s; past it a request is answered 408 `OTSRequestTimeout`, see
//! [`super`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use joint_shim_aliyun::Timestamp;
use joint_shim_aliyun::ots::plainbuffer::{decode_rows, encode_rows, pk_cmp};
use joint_shim_aliyun::ots::proto;
use joint_shim_aliyun::ots::{Cell, CellOp, OtsError, Row, Value};
use joint_shim_aliyun::sign::{self, md5_base64};
use prost::Message;

use super::ServeState;
use super::fc::{MAX_SKEW_SECS, credential, lookup, parts_of, request_id};

const MAX_VALUE: usize = 2 * 1024 * 1024;
const MAX_BATCH: usize = 200;
/// Most single-column conditions in one filter or column condition.
pub const MAX_FILTER_CONDITIONS: usize = 10;
/// Deepest nesting of composite conditions (`NOT`, `AND`, `OR`) in one filter.
pub const MAX_FILTER_DEPTH: usize = 10;
/// Most rows one GetRange scans (Tablestore's 5,000).
const MAX_SCAN: usize = 5000;
/// Tablestore's default `deviation_cell_version_in_sec` (one day).
const DEFAULT_DEVIATION_SECS: i64 = 86_400;

#[derive(Debug, Clone)]
struct Key(Vec<Value>);

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&o.0) {
            match pk_cmp(a, b) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        self.0.len().cmp(&o.0.len())
    }
}

#[derive(Debug, Default)]
struct Table {
    pk: Vec<(String, i32)>,
    rows: BTreeMap<Key, BTreeMap<String, (Value, i64)>>,
    /// Seconds a cell lives after its timestamp (`None`: forever).
    ttl_secs: Option<i64>,
    /// How far an explicit cell timestamp may be from now (seconds).
    deviation_secs: i64,
}

impl Table {
    /// Remove row `k`'s cells past the table's TTL; a row whose cells all expired is gone.
    /// Every request touching a row calls it first, so expired data is never read.
    fn expire_row(&mut self, k: &Key, now: i64) {
        let Some(ttl) = self.ttl_secs else { return };
        let horizon = now - ttl * 1000;
        if let Some(cells) = self.rows.get_mut(k)
            && !cells.is_empty()
        {
            cells.retain(|_, (_, ts)| *ts >= horizon);
            if cells.is_empty() {
                self.rows.remove(k);
            }
        }
    }

    /// [`Table::expire_row`] for every row in `start..end`.
    fn expire_range(&mut self, start: &Key, end: &Key, now: i64) {
        if self.ttl_secs.is_none() || start >= end {
            return;
        }
        let keys: Vec<Key> = self
            .rows
            .range(start.clone()..end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.expire_row(&k, now);
        }
    }

    /// Refuse an explicit cell timestamp further from now than the table allows.
    fn check_timestamp(&self, c: &Cell, now: i64) -> Result<(), Fail> {
        if let Some(ts) = c.timestamp
            && (ts - now).abs() > self.deviation_secs * 1000
        {
            return Err(invalid(format!(
                "The timestamp {ts} of column '{}' deviates from the server time by more than \
                 the table's {} seconds (deviation_cell_version_in_sec).",
                c.name, self.deviation_secs
            )));
        }
        Ok(())
    }
}

/// Write one version of a column: with one version kept, the newest timestamp wins.
fn write_version(cells: &mut BTreeMap<String, (Value, i64)>, name: &str, v: Value, ts: i64) {
    match cells.get(name) {
        Some((_, old)) if *old > ts => {}
        _ => {
            cells.insert(name.to_string(), (v, ts));
        }
    }
}

#[derive(Default)]
struct Engine {
    tables: BTreeMap<String, Table>,
}

struct Ots {
    state: Arc<ServeState>,
    engine: Mutex<Engine>,
}

type Fail = (u16, &'static str, String);

fn invalid(m: impl Into<String>) -> Fail {
    (400, "OTSParameterInvalid", m.into())
}

fn condition_failed() -> Fail {
    (
        403,
        "OTSConditionCheckFail",
        "Condition check failed.".into(),
    )
}

/// The Tablestore endpoint.
pub fn router(state: Arc<ServeState>) -> Router {
    let ots = Arc::new(Ots {
        state,
        engine: Mutex::new(Engine::default()),
    });
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(ots)
}

/// Tablestore's answer to a request that ran past `ots.timeout_secs`: 408 `OTSRequestTimeout`,
/// as Tablestore documents it.
pub(super) fn timed_out(state: &ServeState, _: &Method, uri: &Uri, message: &str) -> Response {
    let action = uri.path().trim_start_matches('/');
    fail(
        state,
        action,
        (408, "OTSRequestTimeout", message.to_string()),
    )
}

fn answer(state: &ServeState, action: &str, status: u16, body: Vec<u8>) -> Response {
    answer_with(state, action, status, body, &sign::ots::ResponseKey::V2)
}

/// An answer whose `Authorization` is signed with `key` (the request's SignV4 key, or the
/// secret for SignV2 and for requests that did not verify).
fn answer_with(
    state: &ServeState,
    action: &str,
    status: u16,
    body: Vec<u8>,
    key: &sign::ots::ResponseKey,
) -> Response {
    let mut h = vec![
        ("x-ots-requestid".to_string(), request_id()),
        ("x-ots-date".to_string(), Timestamp::now().iso8601_millis()),
        ("x-ots-contentmd5".to_string(), md5_base64(&body)),
        (
            "x-ots-contenttype".to_string(),
            "protocol buffer".to_string(),
        ),
    ];
    if let Some(c) = credential(state) {
        let auth = sign::ots::response_authorization_with(&format!("/{action}"), &h, &c, key);
        h.push(("authorization".into(), auth));
    }
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    for (k, v) in h {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

fn fail(state: &ServeState, action: &str, f: Fail) -> Response {
    let e = OtsError {
        status: f.0,
        code: f.1.to_string(),
        message: f.2,
        request_id: None,
    };
    answer(state, action, f.0, e.encode_body())
}

async fn handle(State(ots): State<Arc<Ots>>, req: Request) -> Response {
    let (head, body) = req.into_parts();
    let action = head.uri.path().trim_start_matches('/').to_string();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return fail(
                &ots.state,
                &action,
                (413, "OTSRequestBodyTooLarge", e.to_string()),
            );
        }
    };
    let parts = parts_of(head.method.as_str(), &head.uri, &head.headers);
    if head.method != axum::http::Method::POST {
        return fail(
            &ots.state,
            &action,
            (405, "OTSMethodNotAllowed", "only POST is supported".into()),
        );
    }
    let region = ots.state.settings.get("ots.region").map(String::as_str);
    let key = match sign::ots::verify_request(
        &parts,
        &body,
        lookup(&ots.state),
        Timestamp::now(),
        MAX_SKEW_SECS,
        region,
    ) {
        Ok(v) => v.response_key,
        Err(e) => return fail(&ots.state, &action, (403, "OTSAuthFailed", e.to_string())),
    };
    let fail = |state: &ServeState, action: &str, f: Fail| {
        let e = OtsError {
            status: f.0,
            code: f.1.to_string(),
            message: f.2,
            request_id: None,
        };
        answer_with(state, action, f.0, e.encode_body(), &key)
    };
    if let Some(want) = ots.state.settings.get("ots.instance")
        && parts.get("x-ots-instancename") != Some(want.as_str())
    {
        return fail(
            &ots.state,
            &action,
            (403, "OTSAuthFailed", "instance not found".into()),
        );
    }
    match dispatch(&ots, &action, &body) {
        Ok(out) => answer_with(&ots.state, &action, 200, out, &key),
        Err(f) => fail(&ots.state, &action, f),
    }
}

fn decode<M: Message + Default>(b: &Bytes) -> Result<M, Fail> {
    M::decode(b.as_ref()).map_err(|e| invalid(format!("cannot decode the request: {e}")))
}

fn consumed() -> proto::ConsumedCapacity {
    proto::ConsumedCapacity {
        capacity_unit: proto::CapacityUnit {
            read: Some(1),
            write: Some(1),
        },
    }
}

fn no_transactions(id: &Option<String>) -> Result<(), Fail> {
    match id {
        Some(t) => Err(invalid(format!(
            "The transaction '{}' does not exist: joint serve does not implement local \
             transactions.",
            t.chars().take(128).collect::<String>()
        ))),
        None => Ok(()),
    }
}

fn dispatch(ots: &Ots, action: &str, body: &Bytes) -> Result<Vec<u8>, Fail> {
    let mut eng = ots.engine.lock().unwrap_or_else(|p| p.into_inner());
    let now = Timestamp::now().unix_millis();
    Ok(match action {
        "CreateTable" => {
            let r: proto::CreateTableRequest = decode(body)?;
            let name = r.table_meta.table_name.clone();
            check_name(&name)?;
            if eng.tables.contains_key(&name) {
                return Err((
                    409,
                    "OTSObjectAlreadyExist",
                    format!("Requested table already exists: {name}"),
                ));
            }
            if r.table_meta.primary_key.is_empty() || r.table_meta.primary_key.len() > 4 {
                return Err(invalid("a table has 1 to 4 primary key columns"));
            }
            let opts = r.table_options.clone().unwrap_or_default();
            match opts.max_versions {
                None | Some(1) => {}
                Some(n) if n < 1 => {
                    return Err(invalid(format!("max_versions must be positive, got {n}")));
                }
                Some(n) => {
                    return Err((
                        400,
                        "OTSUnsupportOperation",
                        format!(
                            "joint serve keeps one version per column: max_versions {n} is \
                             not supported (use 1)"
                        ),
                    ));
                }
            }
            let ttl_secs = match opts.time_to_live {
                None | Some(-1) => None,
                Some(t) if t > 0 => Some(t as i64),
                Some(t) => {
                    return Err(invalid(format!(
                        "time_to_live must be -1 or positive, got {t}"
                    )));
                }
            };
            let deviation_secs = match opts.deviation_cell_version_in_sec {
                None => DEFAULT_DEVIATION_SECS,
                Some(d) if d > 0 => d,
                Some(d) => {
                    return Err(invalid(format!(
                        "deviation_cell_version_in_sec must be positive, got {d}"
                    )));
                }
            };
            let pk = r
                .table_meta
                .primary_key
                .iter()
                .map(|p| (p.name.clone(), p.r#type))
                .collect();
            eng.tables.insert(
                name,
                Table {
                    pk,
                    rows: BTreeMap::new(),
                    ttl_secs,
                    deviation_secs,
                },
            );
            proto::CreateTableResponse {}.encode_to_vec()
        }
        "ListTable" => proto::ListTableResponse {
            table_names: eng.tables.keys().cloned().collect(),
        }
        .encode_to_vec(),
        "DeleteTable" => {
            let r: proto::DeleteTableRequest = decode(body)?;
            eng.tables.remove(&r.table_name).ok_or_else(|| {
                (
                    404,
                    "OTSObjectNotExist",
                    format!("Requested table does not exist: {}", r.table_name),
                )
            })?;
            proto::DeleteTableResponse {}.encode_to_vec()
        }
        "PutRow" => {
            let r: proto::PutRowRequest = decode(body)?;
            no_transactions(&r.transaction_id)?;
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.row)?;
            let out = put(t, &row, &r.condition, now)?;
            proto::PutRowResponse {
                consumed: consumed(),
                row: returned(t, &out, r.return_content.as_ref()),
            }
            .encode_to_vec()
        }
        "UpdateRow" => {
            let r: proto::UpdateRowRequest = decode(body)?;
            no_transactions(&r.transaction_id)?;
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.row_change)?;
            let key = update(t, &row, &r.condition, now)?;
            proto::UpdateRowResponse {
                consumed: consumed(),
                row: returned(t, &key, r.return_content.as_ref()),
            }
            .encode_to_vec()
        }
        "DeleteRow" => {
            let r: proto::DeleteRowRequest = decode(body)?;
            no_transactions(&r.transaction_id)?;
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.primary_key)?;
            let key = delete(t, &row, &r.condition, now)?;
            proto::DeleteRowResponse {
                consumed: consumed(),
                row: returned(t, &key, r.return_content.as_ref()),
            }
            .encode_to_vec()
        }
        "GetRow" => {
            let r: proto::GetRowRequest = decode(body)?;
            no_transactions(&r.transaction_id)?;
            let read = Read::new(r.max_versions, r.time_range.as_ref(), r.filter.as_deref())?;
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.primary_key)?;
            let key = key_of(t, &row, false)?;
            t.expire_row(&key, now);
            let out = t
                .rows
                .get(&key)
                .map(|cells| {
                    project(
                        t,
                        &key,
                        cells,
                        &r.columns_to_get,
                        r.start_column.as_deref(),
                        r.end_column.as_deref(),
                    )
                })
                .and_then(|row| read.keep(row));
            proto::GetRowResponse {
                consumed: consumed(),
                row: out.map(|r| r.encode()).unwrap_or_default(),
                next_token: None,
            }
            .encode_to_vec()
        }
        "GetRange" => {
            let r: proto::GetRangeRequest = decode(body)?;
            if r.direction != proto::Direction::Forward as i32 {
                return Err((
                    400,
                    "OTSUnsupportOperation",
                    "joint serve reads FORWARD ranges only".into(),
                ));
            }
            no_transactions(&r.transaction_id)?;
            let read = Read::new(r.max_versions, r.time_range.as_ref(), r.filter.as_deref())?;
            let t = table(&mut eng, &r.table_name)?;
            let start = key_of(t, &one_row(&r.inclusive_start_primary_key)?, true)?;
            let end = key_of(t, &one_row(&r.exclusive_end_primary_key)?, true)?;
            let limit = r.limit.filter(|l| *l > 0).unwrap_or(5000) as usize;
            let mut rows = Vec::new();
            let mut next = None;
            t.expire_range(&start, &end, now);
            if start < end {
                // Rows the filter drops are scanned but not returned; a scan stops after
                // MAX_SCAN rows with the next key to continue from, as Tablestore's does.
                for (scanned, (k, cells)) in t.rows.range(start..end).enumerate() {
                    if rows.len() == limit || scanned == MAX_SCAN {
                        next = Some(pk_row(t, k).encode());
                        break;
                    }
                    let row = project(
                        t,
                        k,
                        cells,
                        &r.columns_to_get,
                        r.start_column.as_deref(),
                        r.end_column.as_deref(),
                    );
                    if let Some(row) = read.keep(row) {
                        rows.push(row);
                    }
                }
            }
            proto::GetRangeResponse {
                consumed: consumed(),
                rows: if rows.is_empty() {
                    Vec::new()
                } else {
                    encode_rows(&rows)
                },
                next_start_primary_key: next,
                next_token: None,
            }
            .encode_to_vec()
        }
        "BatchWriteRow" => {
            let r: proto::BatchWriteRowRequest = decode(body)?;
            no_transactions(&r.transaction_id)?;
            let n: usize = r.tables.iter().map(|t| t.rows.len()).sum();
            if n > MAX_BATCH {
                return Err(invalid(format!(
                    "BatchWriteRow takes at most {MAX_BATCH} rows, got {n}"
                )));
            }
            let mut tables = Vec::new();
            for tr in &r.tables {
                let t = table(&mut eng, &tr.table_name)?;
                let mut rows = Vec::new();
                for rr in &tr.rows {
                    let res = one_row(&rr.row_change).and_then(|row| match rr.r#type {
                        1 => put(t, &row, &rr.condition, now),
                        2 => update(t, &row, &rr.condition, now),
                        3 => delete(t, &row, &rr.condition, now),
                        other => Err(invalid(format!("unknown operation type {other}"))),
                    });
                    rows.push(match res {
                        Ok(_) => proto::RowInBatchWriteRowResponse {
                            is_ok: true,
                            error: None,
                            consumed: Some(consumed()),
                            row: None,
                        },
                        Err((_, code, m)) => proto::RowInBatchWriteRowResponse {
                            is_ok: false,
                            error: Some(proto::Error {
                                code: code.into(),
                                message: Some(m),
                            }),
                            consumed: None,
                            row: None,
                        },
                    });
                }
                tables.push(proto::TableInBatchWriteRowResponse {
                    table_name: tr.table_name.clone(),
                    rows,
                });
            }
            proto::BatchWriteRowResponse { tables }.encode_to_vec()
        }
        other => {
            return Err((
                400,
                "OTSUnsupportOperation",
                format!("joint serve does not implement {other}"),
            ));
        }
    })
}

fn check_name(n: &str) -> Result<(), Fail> {
    let ok = !n.is_empty()
        && n.len() <= 255
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("Invalid column name: '{n}'.")))
    }
}

fn table<'a>(eng: &'a mut Engine, name: &str) -> Result<&'a mut Table, Fail> {
    eng.tables.get_mut(name).ok_or_else(|| {
        (
            404,
            "OTSObjectNotExist",
            format!("Requested table does not exist: {name}"),
        )
    })
}

fn one_row(b: &[u8]) -> Result<Row, Fail> {
    let mut rows = decode_rows(b).map_err(|e| invalid(e.to_string()))?;
    if rows.len() != 1 {
        return Err(invalid(format!("expected one row, got {}", rows.len())));
    }
    rows.pop().ok_or_else(|| invalid("no row"))
}

fn key_of(t: &Table, row: &Row, range: bool) -> Result<Key, Fail> {
    if row.pk.len() != t.pk.len() {
        return Err(invalid(format!(
            "The number of primary key columns must be {}.",
            t.pk.len()
        )));
    }
    let mut k = Vec::new();
    for (c, (name, ty)) in row.pk.iter().zip(&t.pk) {
        if &c.name != name {
            return Err(invalid(format!(
                "Validate PK name fail. Input: {}, Meta: {name}.",
                c.name
            )));
        }
        let v = c
            .value
            .clone()
            .ok_or_else(|| invalid("a primary key cell has no value"))?;
        let ok = match (&v, ty) {
            (Value::Integer(_), 1) | (Value::String(_), 2) | (Value::Blob(_), 3) => true,
            (Value::InfMin | Value::InfMax, _) => range,
            _ => false,
        };
        if !ok {
            return Err(invalid(format!("Validate PK type fail for '{name}'.")));
        }
        k.push(v);
    }
    Ok(Key(k))
}

fn pk_row(t: &Table, k: &Key) -> Row {
    Row {
        pk: t
            .pk
            .iter()
            .zip(&k.0)
            .map(|((n, _), v)| Cell::put(n, v.clone()))
            .collect(),
        ..Row::default()
    }
}

fn project(
    t: &Table,
    k: &Key,
    cells: &BTreeMap<String, (Value, i64)>,
    columns: &[String],
    start: Option<&str>,
    end: Option<&str>,
) -> Row {
    let mut r = pk_row(t, k);
    for (n, (v, ts)) in cells {
        if !columns.is_empty() && !columns.contains(n) {
            continue;
        }
        if start.is_some_and(|s| n.as_str() < s) || end.is_some_and(|e| n.as_str() >= e) {
            continue;
        }
        r.cells.push(Cell {
            name: n.clone(),
            value: Some(v.clone()),
            op: None,
            timestamp: Some(*ts),
        });
    }
    r
}

/// A ColumnPaginationFilter: (`offset`, `limit`) of the attribute columns a read selected.
fn pagination(f: &proto::Filter) -> Result<(usize, usize), Fail> {
    let p = proto::ColumnPaginationFilter::decode(f.filter.as_slice())
        .map_err(|e| invalid(format!("bad filter: {e}")))?;
    match (usize::try_from(p.offset), usize::try_from(p.limit)) {
        (Ok(offset), Ok(limit)) if limit > 0 => Ok((offset, limit)),
        _ => Err(invalid(format!(
            "ColumnPaginationFilter needs offset >= 0 and limit > 0, got {} and {}",
            p.offset, p.limit
        ))),
    }
}

/// Keep `limit` attribute columns after skipping `offset` (of those the read selected).
fn paginate(mut r: Row, page: Option<(usize, usize)>) -> Row {
    if let Some((offset, limit)) = page {
        r.cells = r.cells.into_iter().skip(offset).take(limit).collect();
    }
    r
}

fn returned(t: &Table, k: &Key, rc: Option<&proto::ReturnContent>) -> Option<Vec<u8>> {
    let rc = rc?;
    match rc.return_type {
        Some(1) => Some(pk_row(t, k).encode()),
        Some(2) => {
            let empty = BTreeMap::new();
            let cells = t.rows.get(k).unwrap_or(&empty);
            Some(project(t, k, cells, &rc.return_column_names, None, None).encode())
        }
        _ => None,
    }
}

fn check(t: &Table, k: &Key, c: &proto::Condition) -> Result<(), Fail> {
    let existing = t.rows.get(k);
    match c.row_existence {
        1 if existing.is_none() => return Err(condition_failed()),
        2 if existing.is_some() => return Err(condition_failed()),
        0..=2 => {}
        other => return Err(invalid(format!("bad row existence expectation {other}"))),
    }
    if let Some(f) = &c.column_condition {
        let cond = Cond::parse(f)?;
        let empty = BTreeMap::new();
        if !cond.eval(existing.unwrap_or(&empty)) {
            return Err(condition_failed());
        }
    }
    Ok(())
}

/// A filter or column condition, parsed and bounded ([`MAX_FILTER_CONDITIONS`],
/// [`MAX_FILTER_DEPTH`]) before it is evaluated.
#[derive(Debug, Clone)]
enum Cond {
    Single {
        comparator: i32,
        column: String,
        value: Value,
        filter_if_missing: bool,
    },
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    /// Parse a serialized `Filter`.
    fn parse(bytes: &[u8]) -> Result<Cond, Fail> {
        let f = proto::Filter::decode(bytes).map_err(|e| invalid(format!("bad filter: {e}")))?;
        let mut conditions = 0;
        Cond::from_filter(&f, 1, &mut conditions)
    }

    fn from_filter(f: &proto::Filter, depth: usize, conditions: &mut usize) -> Result<Cond, Fail> {
        match f.r#type {
            1 => {
                *conditions += 1;
                if *conditions > MAX_FILTER_CONDITIONS {
                    return Err(invalid(format!(
                        "A filter can hold at most {MAX_FILTER_CONDITIONS} conditions."
                    )));
                }
                let s = proto::SingleColumnValueFilter::decode(f.filter.as_slice())
                    .map_err(|e| invalid(format!("bad filter: {e}")))?;
                if !(1..=6).contains(&s.comparator) {
                    return Err(invalid(format!("bad comparator {}", s.comparator)));
                }
                let value =
                    Value::from_variant(&s.column_value).map_err(|e| invalid(e.to_string()))?;
                Ok(Cond::Single {
                    comparator: s.comparator,
                    column: s.column_name,
                    value,
                    filter_if_missing: s.filter_if_missing,
                })
            }
            2 => {
                // Checked before going one level deeper: the parse never recurses further.
                if depth > MAX_FILTER_DEPTH {
                    return Err(invalid(format!(
                        "A filter can nest composite conditions at most {MAX_FILTER_DEPTH} deep."
                    )));
                }
                let c = proto::CompositeColumnValueFilter::decode(f.filter.as_slice())
                    .map_err(|e| invalid(format!("bad filter: {e}")))?;
                let subs = c
                    .sub_filters
                    .iter()
                    .map(|s| Cond::from_filter(s, depth + 1, conditions))
                    .collect::<Result<Vec<_>, _>>()?;
                match (c.combinator, subs.len()) {
                    (1, 1) => Ok(Cond::Not(Box::new(
                        subs.into_iter()
                            .next()
                            .ok_or_else(|| invalid("bad composite filter"))?,
                    ))),
                    (2, n) if n >= 2 => Ok(Cond::And(subs)),
                    (3, n) if n >= 2 => Ok(Cond::Or(subs)),
                    _ => Err(invalid(
                        "bad composite filter (NOT takes one condition, AND and OR two or more)",
                    )),
                }
            }
            other => Err((
                400,
                "OTSUnsupportOperation",
                format!("joint serve does not implement filter type {other}"),
            )),
        }
    }

    /// Whether `cells` pass.
    fn eval(&self, cells: &BTreeMap<String, (Value, i64)>) -> bool {
        match self {
            Cond::Single {
                comparator,
                column,
                value,
                filter_if_missing,
            } => {
                let Some((have, _)) = cells.get(column) else {
                    return !filter_if_missing;
                };
                match (comparator, have.compare(value)) {
                    (1, Some(o)) => o == Ordering::Equal,
                    (2, Some(o)) => o != Ordering::Equal,
                    (2, None) => true,
                    (3, Some(o)) => o == Ordering::Greater,
                    (4, Some(o)) => o != Ordering::Less,
                    (5, Some(o)) => o == Ordering::Less,
                    (6, Some(o)) => o != Ordering::Greater,
                    _ => false,
                }
            }
            Cond::Not(c) => !c.eval(cells),
            Cond::And(cs) => cs.iter().all(|c| c.eval(cells)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(cells)),
        }
    }
}

/// What a GetRow or GetRange returns of a row: versions, time range and filter.
struct Read {
    time_range: Option<(i64, i64)>,
    filter: Option<Cond>,
    /// A ColumnPaginationFilter (wide rows are read by pages).
    page: Option<(usize, usize)>,
}

impl Read {
    fn new(
        max_versions: Option<i32>,
        time_range: Option<&proto::TimeRange>,
        filter: Option<&[u8]>,
    ) -> Result<Read, Fail> {
        if let Some(n) = max_versions
            && n < 1
        {
            return Err(invalid(format!("max_versions must be positive, got {n}")));
        }
        // Every table keeps one version, so any max_versions >= 1 reads all there is.
        let time_range = match time_range {
            None if max_versions.is_none() => {
                return Err(invalid("Neither max_versions nor time_range is set."));
            }
            None => None,
            Some(t) => Some(match (t.specific_time, t.start_time, t.end_time) {
                (Some(at), None, None) => (at, at.saturating_add(1)),
                (None, Some(a), Some(b)) if a < b => (a, b),
                _ => {
                    return Err(invalid(
                        "time_range needs specific_time, or start_time < end_time",
                    ));
                }
            }),
        };
        let mut page = None;
        let mut cond = None;
        if let Some(bytes) = filter {
            let f =
                proto::Filter::decode(bytes).map_err(|e| invalid(format!("bad filter: {e}")))?;
            if f.r#type == proto::FilterType::FtColumnPagination as i32 {
                page = Some(pagination(&f)?);
            } else {
                cond = Some(Cond::parse(bytes)?);
            }
        }
        Ok(Read {
            time_range,
            filter: cond,
            page,
        })
    }

    /// The row as read (its projected cells), or `None` when the filter drops it.
    fn keep(&self, mut row: Row) -> Option<Row> {
        if let Some((a, b)) = self.time_range {
            row.cells
                .retain(|c| c.timestamp.is_some_and(|t| t >= a && t < b));
        }
        if let Some(f) = &self.filter {
            // The filter sees the columns read, as Tablestore's does.
            let cells: BTreeMap<String, (Value, i64)> = row
                .cells
                .iter()
                .filter_map(|c| {
                    Some((c.name.clone(), (c.value.clone()?, c.timestamp.unwrap_or(0))))
                })
                .collect();
            if !f.eval(&cells) {
                return None;
            }
        }
        Some(paginate(row, self.page))
    }
}

fn check_cell(c: &Cell) -> Result<(), Fail> {
    check_name(&c.name)?;
    if let Some(Value::String(s)) = &c.value
        && s.len() > MAX_VALUE
    {
        return Err(invalid(format!(
            "The length of attribute column: '{}' exceeds the MaxLength:{MAX_VALUE}",
            c.name
        )));
    }
    if let Some(Value::Blob(b)) = &c.value
        && b.len() > MAX_VALUE
    {
        return Err(invalid(format!(
            "The length of attribute column: '{}' exceeds the MaxLength:{MAX_VALUE}",
            c.name
        )));
    }
    Ok(())
}

fn put(t: &mut Table, row: &Row, c: &proto::Condition, now: i64) -> Result<Key, Fail> {
    let k = key_of(t, row, false)?;
    t.expire_row(&k, now);
    check(t, &k, c)?;
    let mut cells = BTreeMap::new();
    for cell in &row.cells {
        check_cell(cell)?;
        if cell.op.is_some() {
            return Err(invalid("PutRow cells carry no operation type"));
        }
        let v = cell
            .value
            .clone()
            .ok_or_else(|| invalid("a PutRow cell has no value"))?;
        t.check_timestamp(cell, now)?;
        write_version(&mut cells, &cell.name, v, cell.timestamp.unwrap_or(now));
    }
    t.rows.insert(k.clone(), cells);
    Ok(k)
}

fn update(t: &mut Table, row: &Row, c: &proto::Condition, now: i64) -> Result<Key, Fail> {
    let k = key_of(t, row, false)?;
    t.expire_row(&k, now);
    check(t, &k, c)?;
    // The new values of the columns the request touches (`None`: deleted), computed before
    // anything changes so a refused request changes nothing; the rest of the row is left in
    // place rather than copied, so an update costs the columns it writes, not the row's width.
    let current = t.rows.get(&k);
    let mut staged: BTreeMap<&str, Option<(Value, i64)>> = BTreeMap::new();
    for cell in &row.cells {
        check_cell(cell)?;
        if staged.contains_key(cell.name.as_str()) && cell.op == Some(CellOp::Increment) {
            return Err(invalid(format!(
                "column '{}' is incremented and written in one request",
                cell.name
            )));
        }
        // The column as this request sees it: what an earlier cell of it staged, else the row.
        let have: Option<(Value, i64)> = match staged.get(cell.name.as_str()) {
            Some(v) => v.clone(),
            None => current.and_then(|cells| cells.get(&cell.name)).cloned(),
        };
        let new = match cell.op {
            None => {
                let v = cell
                    .value
                    .clone()
                    .ok_or_else(|| invalid("a put cell has no value"))?;
                t.check_timestamp(cell, now)?;
                let ts = cell.timestamp.unwrap_or(now);
                // The newest version wins (one version is kept).
                match have {
                    Some((old, old_ts)) if old_ts > ts => Some((old, old_ts)),
                    _ => Some((v, ts)),
                }
            }
            Some(CellOp::DeleteAll) => None,
            Some(CellOp::DeleteOne) => {
                // Deletes the version at that timestamp only.
                let ts = cell
                    .timestamp
                    .ok_or_else(|| invalid("deleting one version needs its timestamp"))?;
                match have {
                    Some((_, have_ts)) if have_ts == ts => None,
                    other => other,
                }
            }
            Some(CellOp::Increment) => {
                let Some(Value::Integer(d)) = cell.value else {
                    return Err(invalid("an increment needs an integer value"));
                };
                let cur = match &have {
                    None => 0,
                    Some((Value::Integer(i), _)) => *i,
                    Some(_) => {
                        return Err(invalid(format!("column '{}' is not an integer", cell.name)));
                    }
                };
                let n = cur
                    .checked_add(d)
                    .ok_or_else(|| invalid("increment overflow"))?;
                Some((Value::Integer(n), now))
            }
        };
        staged.insert(cell.name.as_str(), new);
    }
    let existed = current.is_some();
    let cells = t.rows.entry(k.clone()).or_default();
    for (name, new) in staged {
        match new {
            Some(v) => {
                cells.insert(name.to_string(), v);
            }
            None => {
                cells.remove(name);
            }
        }
    }
    if !existed && cells.is_empty() {
        t.rows.remove(&k);
    }
    Ok(k)
}

fn delete(t: &mut Table, row: &Row, c: &proto::Condition, now: i64) -> Result<Key, Fail> {
    let k = key_of(t, row, false)?;
    t.expire_row(&k, now);
    check(t, &k, c)?;
    t.rows.remove(&k);
    Ok(k)
}
