//! PlainBuffer, Tablestore's row encoding inside the protobuf messages, with its CRC-8
//! checksums (polynomial 0x07, init 0, no reflection).

use std::cmp::Ordering;

const HEADER: u32 = 0x75;
const TAG_ROW_PK: u8 = 0x01;
const TAG_ROW_DATA: u8 = 0x02;
const TAG_CELL: u8 = 0x03;
const TAG_CELL_NAME: u8 = 0x04;
const TAG_CELL_VALUE: u8 = 0x05;
const TAG_CELL_TYPE: u8 = 0x06;
const TAG_CELL_TIMESTAMP: u8 = 0x07;
const TAG_DELETE_ROW_MARKER: u8 = 0x08;
const TAG_ROW_CHECKSUM: u8 = 0x09;
const TAG_CELL_CHECKSUM: u8 = 0x0A;

const VT_INTEGER: u8 = 0x00;
const VT_DOUBLE: u8 = 0x01;
const VT_BOOLEAN: u8 = 0x02;
const VT_STRING: u8 = 0x03;
const VT_NULL: u8 = 0x06;
const VT_BLOB: u8 = 0x07;
const VT_INF_MIN: u8 = 0x09;
const VT_INF_MAX: u8 = 0x0a;
const VT_AUTO_INCREMENT: u8 = 0x0b;

const fn crc_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u8;
        let mut b = 0;
        while b < 8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            };
            b += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u8; 256] = crc_table();

/// Feed `bytes` into a running CRC-8.
pub fn crc8(mut crc: u8, bytes: &[u8]) -> u8 {
    for b in bytes {
        crc = CRC_TABLE[(crc ^ b) as usize];
    }
    crc
}

/// A cell or primary-key value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 64-bit integer.
    Integer(i64),
    /// IEEE double.
    Double(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// Null (filters only).
    Null,
    /// Smallest primary-key value (range reads).
    InfMin,
    /// Largest primary-key value (range reads).
    InfMax,
    /// Server-assigned auto-increment primary key.
    AutoIncrement,
}

impl Value {
    fn vt(&self) -> u8 {
        match self {
            Value::Integer(_) => VT_INTEGER,
            Value::Double(_) => VT_DOUBLE,
            Value::Boolean(_) => VT_BOOLEAN,
            Value::String(_) => VT_STRING,
            Value::Blob(_) => VT_BLOB,
            Value::Null => VT_NULL,
            Value::InfMin => VT_INF_MIN,
            Value::InfMax => VT_INF_MAX,
            Value::AutoIncrement => VT_AUTO_INCREMENT,
        }
    }

    /// The variant bytes: type byte then payload (strings and blobs with a u32 length).
    pub fn variant(&self) -> Vec<u8> {
        let mut out = vec![self.vt()];
        match self {
            Value::Integer(i) => out.extend_from_slice(&i.to_le_bytes()),
            Value::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
            Value::Boolean(b) => out.push(u8::from(*b)),
            Value::String(s) => {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Blob(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            Value::Null | Value::InfMin | Value::InfMax | Value::AutoIncrement => {}
        }
        out
    }

    /// Parse a variant (as in a filter's `column_value`); the whole slice must be used.
    pub fn from_variant(b: &[u8]) -> Result<Value, DecodeError> {
        let mut r = Reader { b, pos: 0 };
        let v = r.variant(b.len())?;
        if r.pos != b.len() {
            return Err(DecodeError("trailing bytes after a variant".into()));
        }
        Ok(v)
    }

    /// Order of two values of the same type (`None` across types, like the service).
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
            (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
            (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(b)),
            (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Value::Blob(a), Value::Blob(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// Order of primary-key values including the infinities.
pub fn pk_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::InfMin, Value::InfMin) | (Value::InfMax, Value::InfMax) => Ordering::Equal,
        (Value::InfMin, _) | (_, Value::InfMax) => Ordering::Less,
        (_, Value::InfMin) | (Value::InfMax, _) => Ordering::Greater,
        _ => a.compare(b).unwrap_or_else(|| a.vt().cmp(&b.vt())),
    }
}

/// What an update does to a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellOp {
    /// Delete every version.
    DeleteAll,
    /// Delete the version at the cell's timestamp.
    DeleteOne,
    /// Add the (integer) value to the column (missing counts as 0).
    Increment,
}

impl CellOp {
    fn byte(self) -> u8 {
        match self {
            CellOp::DeleteAll => 0x01,
            CellOp::DeleteOne => 0x03,
            CellOp::Increment => 0x04,
        }
    }
}

/// One cell: a name, an optional value, an optional update op and timestamp (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Column name.
    pub name: String,
    /// Value (absent for deletes).
    pub value: Option<Value>,
    /// Update op (absent: put).
    pub op: Option<CellOp>,
    /// Version timestamp in ms since the epoch.
    pub timestamp: Option<i64>,
}

impl Cell {
    /// A plain put (or primary-key) cell.
    pub fn put(name: &str, value: Value) -> Self {
        Cell {
            name: name.to_string(),
            value: Some(value),
            op: None,
            timestamp: None,
        }
    }

    /// An increment by `delta`.
    pub fn increment(name: &str, delta: i64) -> Self {
        Cell {
            name: name.to_string(),
            value: Some(Value::Integer(delta)),
            op: Some(CellOp::Increment),
            timestamp: None,
        }
    }

    /// Delete every version of a column.
    pub fn delete_all(name: &str) -> Self {
        Cell {
            name: name.to_string(),
            value: None,
            op: Some(CellOp::DeleteAll),
            timestamp: None,
        }
    }

    fn checksum(&self) -> u8 {
        let mut c = crc8(0, self.name.as_bytes());
        if let Some(v) = &self.value {
            let var = v.variant();
            c = crc8(c, &var);
        }
        if let Some(ts) = self.timestamp {
            c = crc8(c, &ts.to_le_bytes());
        }
        if let Some(op) = self.op {
            c = crc8(c, &[op.byte()]);
        }
        c
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(TAG_CELL);
        out.push(TAG_CELL_NAME);
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        if let Some(v) = &self.value {
            let var = v.variant();
            out.push(TAG_CELL_VALUE);
            out.extend_from_slice(&(var.len() as u32).to_le_bytes());
            out.extend_from_slice(&var);
        }
        if let Some(op) = self.op {
            out.push(TAG_CELL_TYPE);
            out.push(op.byte());
        }
        if let Some(ts) = self.timestamp {
            out.push(TAG_CELL_TIMESTAMP);
            out.extend_from_slice(&ts.to_le_bytes());
        }
        out.push(TAG_CELL_CHECKSUM);
        out.push(self.checksum());
    }
}

/// A row: primary key, attribute cells, and the delete marker (DeleteRow).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// Primary-key cells, in schema order.
    pub pk: Vec<Cell>,
    /// Attribute cells.
    pub cells: Vec<Cell>,
    /// Set on a DeleteRow primary key.
    pub delete_marker: bool,
}

impl Row {
    /// A row with primary key `pk` (name, value pairs).
    pub fn with_pk(pk: Vec<(&str, Value)>) -> Self {
        Row {
            pk: pk.into_iter().map(|(n, v)| Cell::put(n, v)).collect(),
            ..Row::default()
        }
    }

    /// Add an attribute cell.
    pub fn cell(mut self, c: Cell) -> Self {
        self.cells.push(c);
        self
    }

    /// The first attribute cell called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.cells
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.value.as_ref())
    }

    /// The primary-key value called `name`.
    pub fn pk_value(&self, name: &str) -> Option<&Value> {
        self.pk
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.value.as_ref())
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(TAG_ROW_PK);
        for c in &self.pk {
            c.encode(out);
        }
        if !self.cells.is_empty() {
            out.push(TAG_ROW_DATA);
            for c in &self.cells {
                c.encode(out);
            }
        }
        if self.delete_marker {
            out.push(TAG_DELETE_ROW_MARKER);
        }
        out.push(TAG_ROW_CHECKSUM);
        out.push(self.checksum());
    }

    fn checksum(&self) -> u8 {
        let mut c = 0u8;
        for cell in self.pk.iter().chain(&self.cells) {
            c = crc8(c, &[cell.checksum()]);
        }
        crc8(c, &[u8::from(self.delete_marker)])
    }

    /// Encode as a PlainBuffer (header + this row).
    pub fn encode(&self) -> Vec<u8> {
        encode_rows(std::slice::from_ref(self))
    }

    /// Decode exactly one row (an empty buffer is `Ok(None)`: "no row").
    pub fn decode(b: &[u8]) -> Result<Option<Row>, DecodeError> {
        let mut rows = decode_rows(b)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(DecodeError(format!("expected one row, found {n}"))),
        }
    }
}

/// Encode rows back to back after one header (GetRange responses).
pub fn encode_rows(rows: &[Row]) -> Vec<u8> {
    let mut out = HEADER.to_le_bytes().to_vec();
    for r in rows {
        r.encode_into(&mut out);
    }
    out
}

/// A malformed PlainBuffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad PlainBuffer: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.pos)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_le_bytes(a))
    }
    fn expect(&mut self, tag: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8()?;
        if got != tag {
            return Err(DecodeError(format!(
                "expected {what} (0x{tag:02x}) at byte {}, found 0x{got:02x}",
                self.pos - 1
            )));
        }
        Ok(())
    }
    fn variant(&mut self, vlen: usize) -> Result<Value, DecodeError> {
        let start = self.pos;
        let vt = self.u8()?;
        let v = match vt {
            VT_INTEGER => Value::Integer(self.i64()?),
            VT_DOUBLE => Value::Double(f64::from_bits(self.i64()? as u64)),
            VT_BOOLEAN => Value::Boolean(self.u8()? != 0),
            VT_STRING => {
                let n = self.u32()? as usize;
                let s = self.take(n)?;
                Value::String(
                    String::from_utf8(s.to_vec())
                        .map_err(|_| DecodeError("a string value is not UTF-8".into()))?,
                )
            }
            VT_BLOB => {
                let n = self.u32()? as usize;
                Value::Blob(self.take(n)?.to_vec())
            }
            VT_NULL => Value::Null,
            VT_INF_MIN => Value::InfMin,
            VT_INF_MAX => Value::InfMax,
            VT_AUTO_INCREMENT => Value::AutoIncrement,
            other => return Err(DecodeError(format!("unknown value type 0x{other:02x}"))),
        };
        if self.pos - start != vlen {
            return Err(DecodeError(format!(
                "value length {vlen} does not match its content ({})",
                self.pos - start
            )));
        }
        Ok(v)
    }
    fn cell(&mut self) -> Result<Cell, DecodeError> {
        self.expect(TAG_CELL, "cell")?;
        self.expect(TAG_CELL_NAME, "cell name")?;
        let n = self.u32()? as usize;
        let name = String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| DecodeError("a column name is not UTF-8".into()))?;
        let mut cell = Cell {
            name,
            value: None,
            op: None,
            timestamp: None,
        };
        if self.peek() == Some(TAG_CELL_VALUE) {
            self.pos += 1;
            let vlen = self.u32()? as usize;
            cell.value = Some(self.variant(vlen)?);
        }
        if self.peek() == Some(TAG_CELL_TYPE) {
            self.pos += 1;
            cell.op = Some(match self.u8()? {
                0x01 => CellOp::DeleteAll,
                0x03 => CellOp::DeleteOne,
                0x04 => CellOp::Increment,
                other => return Err(DecodeError(format!("unknown cell type 0x{other:02x}"))),
            });
        }
        if self.peek() == Some(TAG_CELL_TIMESTAMP) {
            self.pos += 1;
            cell.timestamp = Some(self.i64()?);
        }
        self.expect(TAG_CELL_CHECKSUM, "cell checksum")?;
        let sum = self.u8()?;
        if sum != cell.checksum() {
            return Err(DecodeError(format!(
                "cell '{}' checksum 0x{sum:02x}, computed 0x{:02x}",
                cell.name,
                cell.checksum()
            )));
        }
        Ok(cell)
    }
    fn row(&mut self) -> Result<Row, DecodeError> {
        self.expect(TAG_ROW_PK, "row primary key")?;
        let mut row = Row::default();
        while self.peek() == Some(TAG_CELL) {
            row.pk.push(self.cell()?);
        }
        if self.peek() == Some(TAG_ROW_DATA) {
            self.pos += 1;
            while self.peek() == Some(TAG_CELL) {
                row.cells.push(self.cell()?);
            }
        }
        if self.peek() == Some(TAG_DELETE_ROW_MARKER) {
            self.pos += 1;
            row.delete_marker = true;
        }
        self.expect(TAG_ROW_CHECKSUM, "row checksum")?;
        let sum = self.u8()?;
        if sum != row.checksum() {
            return Err(DecodeError(format!(
                "row checksum 0x{sum:02x}, computed 0x{:02x}",
                row.checksum()
            )));
        }
        Ok(row)
    }
}

/// Decode a buffer of rows (empty buffer: no rows).
pub fn decode_rows(b: &[u8]) -> Result<Vec<Row>, DecodeError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { b, pos: 0 };
    let h = r.u32()?;
    if h != HEADER {
        return Err(DecodeError(format!("header 0x{h:x}, expected 0x75")));
    }
    let mut rows = Vec::new();
    while r.pos < b.len() {
        rows.push(r.row()?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [SDK-test] aliyun-tablestore-java-sdk PlainBufferCrc8Test::testByte (cumulative).
    #[test]
    fn crc8_java_sdk_bytes() {
        let mut c = 0u8;
        for (input, want) in [(1u8, 7u8), (3, 28), (7, 65), (255, 51), (128, 16), (0, 112)] {
            c = crc8(c, &[input]);
            assert_eq!(c, want, "after {input}");
        }
    }

    /// [crate test] TimeExceed/alicloud-tablestore-rust-sdk crc oracles.
    #[test]
    fn crc8_rust_sdk_oracles() {
        assert_eq!(CRC_TABLE[1], 0x07);
        assert_eq!(CRC_TABLE[0x80], 0x89);
        assert_eq!(CRC_TABLE[0xff], 0xF3);
        for (v, want) in [
            (0x8C7F0AACu32, 0x5Cu8),
            (0x97C4AA2F, 0x86),
            (0xB716A675, 0x6C),
            (0xD821CCC0, 0x60),
        ] {
            assert_eq!(crc8(0, &v.to_le_bytes()), want, "u32 {v:#x}");
        }
        for (v, want) in [
            (0x972B41F45D8CA4E2u64, 0x1Fu8),
            (0x4D922E9E0241564D, 0x08),
            (0x107E7E75F66E3959, 0xA2),
        ] {
            assert_eq!(crc8(0, &v.to_le_bytes()), want, "u64 {v:#x}");
        }
        for (s, want) in [
            ("eefbf", 0x08u8),
            ("checbe", 0x03),
            ("fbaa", 0xF2),
            ("a", 0x20),
            ("", 0x00),
        ] {
            assert_eq!(crc8(0, s.as_bytes()), want, "{s:?}");
        }
    }

    #[test]
    fn round_trip_every_value_and_op() {
        let mut row = Row::with_pk(vec![
            ("p", Value::String("run".into())),
            ("n", Value::Integer(-3)),
        ])
        .cell(Cell::put("s", Value::String("héllo".into())))
        .cell(Cell::put("b", Value::Blob(vec![0, 1, 255])))
        .cell(Cell::put("d", Value::Double(1.5)))
        .cell(Cell::put("t", Value::Boolean(true)))
        .cell(Cell::increment("c", 1))
        .cell(Cell::delete_all("gone"));
        row.cells.push(Cell {
            name: "one".into(),
            value: None,
            op: Some(CellOp::DeleteOne),
            timestamp: Some(1_700_000_000_000),
        });
        let enc = row.encode();
        assert_eq!(&enc[..4], &[0x75, 0, 0, 0]);
        assert_eq!(Row::decode(&enc).expect("decode"), Some(row.clone()));
        let mut del = Row::with_pk(vec![("p", Value::String("x".into()))]);
        del.delete_marker = true;
        assert_eq!(Row::decode(&del.encode()).expect("decode"), Some(del));
        assert_eq!(Row::decode(&[]).expect("empty"), None);
        let two = encode_rows(&[row.clone(), row.clone()]);
        assert_eq!(decode_rows(&two).expect("rows").len(), 2);
    }

    #[test]
    fn corruption_is_detected() {
        let row = Row::with_pk(vec![("p", Value::String("abc".into()))])
            .cell(Cell::put("v", Value::Integer(7)));
        let enc = row.encode();
        for i in 4..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x01;
            assert!(
                Row::decode(&bad).is_err() || Row::decode(&bad).ok() != Some(Some(row.clone())),
                "flip at {i}"
            );
        }
        assert!(Row::decode(&enc[..enc.len() - 1]).is_err());
        assert!(Value::from_variant(&[VT_STRING, 9, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn filter_variant_has_no_length_prefix() {
        let v = Value::String("PENDING".into()).variant();
        assert_eq!(v, [&[0x03u8, 7, 0, 0, 0][..], b"PENDING"].concat());
        assert_eq!(
            Value::from_variant(&v).expect("parse"),
            Value::String("PENDING".into())
        );
    }
}
