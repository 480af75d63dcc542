//! Tablestore over HTTP: the wide-column actions joint's store and the official SDK use —
//! CreateTable, ListTable, DeleteTable, PutRow, GetRow, UpdateRow, DeleteRow, BatchWriteRow,
//! GetRange — with row-existence and column conditions, atomic increments and
//! `RT_AFTER_MODIFY`. Every request's SignV2 signature (and content MD5 and date) is verified;
//! answers carry the response signature the SDKs check. Errors are protobuf `Error` bodies.
//!
//! Rows live in memory for the life of the server, behind one lock, so every request is
//! atomic per row (and per batch). Settings: `aliyun.access_key_id` / `aliyun.access_key_secret`
//! (else `ALIBABA_CLOUD_*`), optional `ots.instance` (refuse other instance names),
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
        let auth = sign::ots::response_authorization(&format!("/{action}"), &h, &c);
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
    if let Err(e) = sign::ots::verify(
        &parts,
        &body,
        lookup(&ots.state),
        Timestamp::now(),
        MAX_SKEW_SECS,
    ) {
        return fail(&ots.state, &action, (403, "OTSAuthFailed", e.to_string()));
    }
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
        Ok(out) => answer(&ots.state, &action, 200, out),
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
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.primary_key)?;
            let key = delete(t, &row, &r.condition)?;
            proto::DeleteRowResponse {
                consumed: consumed(),
                row: returned(t, &key, r.return_content.as_ref()),
            }
            .encode_to_vec()
        }
        "GetRow" => {
            let r: proto::GetRowRequest = decode(body)?;
            let t = table(&mut eng, &r.table_name)?;
            let row = one_row(&r.primary_key)?;
            let key = key_of(t, &row, false)?;
            let page = read_filter(r.filter.as_deref())?;
            let out = t.rows.get(&key).map(|cells| {
                paginate(
                    project(
                        t,
                        &key,
                        cells,
                        &r.columns_to_get,
                        r.start_column.as_deref(),
                        r.end_column.as_deref(),
                    ),
                    page,
                )
            });
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
                return Err(invalid("joint serve supports FORWARD ranges only"));
            }
            let t = table(&mut eng, &r.table_name)?;
            let start = key_of(t, &one_row(&r.inclusive_start_primary_key)?, true)?;
            let end = key_of(t, &one_row(&r.exclusive_end_primary_key)?, true)?;
            let limit = r.limit.filter(|l| *l > 0).unwrap_or(5000) as usize;
            let page = read_filter(r.filter.as_deref())?;
            let mut rows = Vec::new();
            let mut next = None;
            if start < end {
                for (k, cells) in t.rows.range(start..end) {
                    if rows.len() == limit {
                        next = Some(pk_row(t, k).encode());
                        break;
                    }
                    rows.push(paginate(
                        project(
                            t,
                            k,
                            cells,
                            &r.columns_to_get,
                            r.start_column.as_deref(),
                            r.end_column.as_deref(),
                        ),
                        page,
                    ));
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
                        3 => delete(t, &row, &rr.condition),
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

/// A read's `filter`: a column pagination (`offset`, `limit`) for wide rows. Value filters on
/// reads are refused rather than ignored (joint serve does not implement them).
fn read_filter(f: Option<&[u8]>) -> Result<Option<(usize, usize)>, Fail> {
    let Some(f) = f else { return Ok(None) };
    let f = proto::Filter::decode(f).map_err(|e| invalid(format!("bad filter: {e}")))?;
    if f.r#type != proto::FilterType::FtColumnPagination as i32 {
        return Err((
            400,
            "OTSUnsupportOperation",
            "joint serve implements only ColumnPaginationFilter on reads".into(),
        ));
    }
    let p = proto::ColumnPaginationFilter::decode(f.filter.as_slice())
        .map_err(|e| invalid(format!("bad filter: {e}")))?;
    match (usize::try_from(p.offset), usize::try_from(p.limit)) {
        (Ok(offset), Ok(limit)) if limit > 0 => Ok(Some((offset, limit))),
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
        let f = proto::Filter::decode(f.as_slice())
            .map_err(|e| invalid(format!("bad column condition: {e}")))?;
        let empty = BTreeMap::new();
        if !eval(&f, existing.unwrap_or(&empty))? {
            return Err(condition_failed());
        }
    }
    Ok(())
}

fn eval(f: &proto::Filter, cells: &BTreeMap<String, (Value, i64)>) -> Result<bool, Fail> {
    match f.r#type {
        1 => {
            let s = proto::SingleColumnValueFilter::decode(f.filter.as_slice())
                .map_err(|e| invalid(format!("bad filter: {e}")))?;
            let want = Value::from_variant(&s.column_value).map_err(|e| invalid(e.to_string()))?;
            let Some((have, _)) = cells.get(&s.column_name) else {
                return Ok(!s.filter_if_missing);
            };
            let ord = have.compare(&want);
            Ok(match (s.comparator, ord) {
                (1, Some(o)) => o == Ordering::Equal,
                (2, Some(o)) => o != Ordering::Equal,
                (2, None) => true,
                (3, Some(o)) => o == Ordering::Greater,
                (4, Some(o)) => o != Ordering::Less,
                (5, Some(o)) => o == Ordering::Less,
                (6, Some(o)) => o != Ordering::Greater,
                (1..=6, None) => false,
                (c, _) => return Err(invalid(format!("bad comparator {c}"))),
            })
        }
        2 => {
            let c = proto::CompositeColumnValueFilter::decode(f.filter.as_slice())
                .map_err(|e| invalid(format!("bad filter: {e}")))?;
            let subs = c
                .sub_filters
                .iter()
                .map(|s| eval(s, cells))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(match c.combinator {
                1 if subs.len() == 1 => !subs[0],
                2 if subs.len() >= 2 => subs.iter().all(|b| *b),
                3 if subs.len() >= 2 => subs.iter().any(|b| *b),
                _ => return Err(invalid("bad composite filter")),
            })
        }
        other => Err(invalid(format!("unsupported filter type {other}"))),
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
        cells.insert(cell.name.clone(), (v, cell.timestamp.unwrap_or(now)));
    }
    t.rows.insert(k.clone(), cells);
    Ok(k)
}

fn update(t: &mut Table, row: &Row, c: &proto::Condition, now: i64) -> Result<Key, Fail> {
    let k = key_of(t, row, false)?;
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
        let new = match cell.op {
            None => Some((
                cell.value
                    .clone()
                    .ok_or_else(|| invalid("a put cell has no value"))?,
                cell.timestamp.unwrap_or(now),
            )),
            Some(CellOp::DeleteAll) | Some(CellOp::DeleteOne) => None,
            Some(CellOp::Increment) => {
                let Some(Value::Integer(d)) = cell.value else {
                    return Err(invalid("an increment needs an integer value"));
                };
                let cur = match current.and_then(|cells| cells.get(&cell.name)) {
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

fn delete(t: &mut Table, row: &Row, c: &proto::Condition) -> Result<Key, Fail> {
    let k = key_of(t, row, false)?;
    check(t, &k, c)?;
    t.rows.remove(&k);
    Ok(k)
}
