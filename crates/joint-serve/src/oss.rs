//! OSS over HTTP: PutObject (with `x-oss-forbid-overwrite`), GetObject (with `Range`, the
//! conditional headers and the `response-*` overrides), HeadObject, GetObjectMeta, DeleteObject,
//! ListObjectsV2 (with `delimiter`, `start-after`, `encoding-type=url`, `fetch-owner`) and
//! DeleteMultipleObjects, path-style (`/bucket/key`, as the SDKs use for IP endpoints) or
//! virtual-hosted. Signatures (V4 and V1) are verified with the client's own code; errors are
//! OSS XML (HEAD: base64 XML in `x-oss-err`).
//!
//! - **Names are validated before anything touches the disk.** A bucket name must follow
//!   OSS's rules (3–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter
//!   or digit), else 400 `InvalidBucketName`; an object key must be 1–1023 bytes not starting
//!   with `/` or `\`, else 400 `InvalidObjectName`. Every file operation then goes through the
//!   [`FsBlobStore`] of the cloud's blob folder, which refuses any key that would leave it.
//! - An object is stored with its metadata — `Content-Type`, `Content-Disposition`,
//!   `Content-Encoding`, `Cache-Control`, `Content-Language`, `Expires` and `x-oss-meta-*`
//!   (names lowercased; letters, digits and `-` only; 8 KB in all) — next to the blob
//!   ([`FsBlobStore::put_new_with_meta`]); `Last-Modified` is when it was written.
//! - What is not implemented is refused with 501 `NotImplemented` in OSS's error format,
//!   never ignored: overwriting an object (the store is create-only), other sub-resources
//!   (`?acl`, `?tagging`, `?uploads`…), bucket operations other than ListObjectsV2 and
//!   DeleteMultipleObjects, `x-oss-*` request headers other than the ones above (server-side
//!   encryption, tagging, storage classes other than `Standard`…), and keys OSS allows but a
//!   file tree cannot hold (`a/`, `a//b`, `a/../b`, a key that is also a "directory" of
//!   others): putting one is a 501; reading or deleting one finds nothing, as it cannot exist.
//! - Replays: like OSS, a signed request is accepted while its date (`x-oss-date`, V1 `Date`)
//!   is within 15 minutes of the server's clock and refused after (`RequestTimeTooSkewed`);
//!   OSS has no nonce. Writes are create-only, so a replayed put cannot change an object.
//!
//! Objects are stored create-only and atomically under `{state_dir}/{cloud}/blobs/{bucket}/`
//! — the local cloud's blob folder. Settings: `aliyun.access_key_id` /
//! `aliyun.access_key_secret`, `oss.bucket` (only this bucket exists; default: any),
//! `oss.cloud`, `oss.timeout_secs` (default 30 s; past it a request is answered 408
//! `RequestTimeout`, see [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use joint_shim::{BlobStore, ErrorKind};
use joint_shim_aliyun::Timestamp;
use joint_shim_aliyun::http::is_ip_or_localhost;
use joint_shim_aliyun::oss::OssError;
use joint_shim_aliyun::oss::xml;
use joint_shim_aliyun::sign::{self, Parts, VerifyError};
use serde::{Deserialize, Serialize};

use super::ServeState;
use super::fc::{MAX_SKEW_SECS, cloud_name, lookup, parts_of, request_id};
use joint_shim_local::FsBlobStore;

/// Largest object body accepted (the request is read whole).
const MAX_BODY: usize = 1024 * 1024 * 1024;
/// Longest object key OSS accepts (bytes).
pub const MAX_KEY: usize = 1023;
/// Largest total size of an object's `x-oss-meta-*` names and values (bytes).
pub const MAX_USER_META: usize = 8 * 1024;
/// Standard headers OSS stores with an object and returns on GET and HEAD.
const STORED_HEADERS: &[&str] = &[
    "content-type",
    "content-disposition",
    "content-encoding",
    "cache-control",
    "content-language",
    "expires",
];

struct Oss {
    state: Arc<ServeState>,
    store: FsBlobStore,
}

/// What is kept next to an object's bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    /// The quoted, upper-case hex MD5 of the object.
    etag: String,
    /// Stored standard headers (lowercase name, value).
    headers: Vec<(String, String)>,
    /// `x-oss-meta-*` (lowercase full header name, value).
    user: Vec<(String, String)>,
}

/// The OSS endpoint.
pub fn router(state: Arc<ServeState>) -> Router {
    let cloud = cloud_name(&state, "oss");
    let root = match state.clouds.state_dir() {
        Some(d) => d.join(&cloud).join("blobs"),
        None => {
            std::env::temp_dir().join(format!("joint-oss-{}-{}", std::process::id(), request_id()))
        }
    };
    let store = match FsBlobStore::new(&root, &cloud) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            return Router::new().fallback(move |method: Method| {
                let m = msg.clone();
                async move { error(500, "InternalError", m, method == Method::HEAD) }
            });
        }
    };
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(Oss { state, store }))
}

/// CRC-64/ECMA-182 as OSS reports it in `x-oss-hash-crc64ecma` (reflected, init and xorout
/// all ones).
pub fn crc64_ecma(data: &[u8]) -> u64 {
    const POLY: u64 = 0xC96C_5795_D787_0F42;
    let mut crc = !0u64;
    for b in data {
        crc ^= *b as u64;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn error_ec(status: u16, code: &str, message: impl Into<String>, head: bool, ec: &str) -> Response {
    let rid = request_id();
    let e = OssError {
        status,
        code: code.into(),
        message: message.into(),
        request_id: Some(rid.clone()),
        ec: Some(ec.into()),
    };
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if head {
        let b64 = base64::engine::general_purpose::STANDARD.encode(e.body());
        (
            st,
            [
                ("x-oss-request-id", rid.as_str()),
                ("x-oss-ec", ec),
                ("x-oss-err", b64.as_str()),
            ],
        )
            .into_response()
    } else {
        (
            st,
            [
                ("x-oss-request-id", rid.as_str()),
                ("x-oss-ec", ec),
                ("content-type", "application/xml"),
            ],
            e.body(),
        )
            .into_response()
    }
}

fn error(status: u16, code: &str, message: impl Into<String>, head: bool) -> Response {
    error_ec(status, code, message, head, "0000-00000000")
}

fn not_implemented(what: impl std::fmt::Display, head: bool) -> Response {
    error(
        501,
        "NotImplemented",
        format!("joint serve does not implement {what}"),
        head,
    )
}

/// OSS's answer to a request that ran past `oss.timeout_secs`: `RequestTimeout` (OSS's code
/// for a request that took too long; here with HTTP 408).
pub(super) fn timed_out(_: &ServeState, method: &Method, _: &Uri, message: &str) -> Response {
    error(408, "RequestTimeout", message, *method == Method::HEAD)
}

fn blob_error(e: &joint_shim::Error, head: bool) -> Response {
    match e.kind() {
        ErrorKind::NotFound => no_such_key(head),
        ErrorKind::AlreadyExists => error(
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten now.",
            head,
        ),
        ErrorKind::InvalidInput => not_implemented(
            format!("this key: objects are files here, and {}", e.message()),
            head,
        ),
        _ => error(500, "InternalError", e.to_string(), head),
    }
}

fn no_such_key(head: bool) -> Response {
    error(404, "NoSuchKey", "The specified key does not exist.", head)
}

/// OSS's bucket naming rules: 3–63 characters of `a-z`, `0-9`, `-`, starting and ending with a
/// letter or digit.
pub fn valid_bucket_name(b: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && edge(b.chars().next())
        && edge(b.chars().last())
}

/// Why OSS itself refuses object key `k` (empty, over 1023 bytes, starting with `/` or `\`).
fn oss_key_error(k: &str) -> Option<&'static str> {
    if k.is_empty() {
        Some("the object name is empty")
    } else if k.len() > MAX_KEY {
        Some("the object name is longer than 1023 bytes")
    } else if k.starts_with('/') || k.starts_with('\\') {
        Some("the object name starts with '/' or '\\'")
    } else {
        None
    }
}

fn hex_md5(b: &[u8]) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sign::md5_base64(b))
        .unwrap_or_default();
    raw.iter().map(|x| format!("{x:02X}")).collect()
}

fn etag_of(b: &[u8]) -> String {
    format!("\"{}\"", hex_md5(b))
}

/// `LastModified` as OSS writes it: whole seconds, `….000Z` (what oss2 parses).
fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Timestamp::from_unix(secs).iso8601_millis()
}

fn http_date(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms).http_date()
}

/// `x-oss-*` request headers every operation accepts (signing and transport).
fn common_oss_header(name: &str) -> bool {
    matches!(
        name,
        "x-oss-date" | "x-oss-content-sha256" | "x-oss-security-token" | "x-oss-user-agent"
    )
}

/// The first `x-oss-*` header of the request this operation does not implement.
fn unsupported_oss_header(p: &Parts, allowed: &[&str]) -> Option<String> {
    p.headers.iter().find_map(|(k, v)| {
        let k = k.to_ascii_lowercase();
        if !k.starts_with("x-oss-") || common_oss_header(&k) || allowed.contains(&k.as_str()) {
            return None;
        }
        if allowed.contains(&"x-oss-meta-*") && k.starts_with("x-oss-meta-") {
            return None;
        }
        // Values that change nothing here.
        let noop = match k.as_str() {
            "x-oss-storage-class" => v.eq_ignore_ascii_case("Standard"),
            "x-oss-object-acl" => v == "default",
            _ => false,
        };
        (!noop).then_some(k)
    })
}

/// The first query parameter not in `allowed`.
fn unsupported_query<'a>(p: &'a Parts, allowed: &[&str]) -> Option<&'a str> {
    p.query
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !allowed.contains(k))
}

/// A byte range of an object of `len` bytes, as OSS reads `Range` (`None`: the whole object
/// with 200) — or `Err(())` for a range OSS answers 416 `InvalidRange` (only with
/// `x-oss-range-behavior: standard`).
fn range(header: Option<&str>, len: u64, standard: bool) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    // OSS serves the first range of a multi-range request.
    let first = spec.split(',').next().unwrap_or("").trim();
    let Some((a, b)) = first.split_once('-') else {
        return Ok(None);
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match num(b) {
            Some(0) | None => return Ok(None),
            Some(n) if n > len => {
                return if standard && len > 0 {
                    Ok(Some((0, len - 1)))
                } else {
                    Ok(None)
                };
            }
            Some(n) => (len - n, len - 1),
        },
        // bytes=A-: from A to the end.
        (false, true) => match num(a) {
            None => return Ok(None),
            Some(s) if s >= len => return if standard { Err(()) } else { Ok(None) },
            Some(s) => (s, len - 1),
        },
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= len {
                    return if standard { Err(()) } else { Ok(None) };
                }
                if e >= len {
                    if standard {
                        (s, len - 1)
                    } else {
                        return Ok(None);
                    }
                } else {
                    (s, e)
                }
            }
            _ => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    Ok(Some((start, end)))
}

/// `304`/`412` for GET and HEAD conditional headers, or `None` to answer normally.
fn precondition(p: &Parts, etag: &str, modified: SystemTime, head: bool) -> Option<Response> {
    let matches = |list: &str| {
        list.split(',').map(str::trim).any(|t| {
            t == "*"
                || t.trim_matches('"')
                    .eq_ignore_ascii_case(etag.trim_matches('"'))
        })
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let date = |n: &str| {
        p.get(n)
            .and_then(Timestamp::parse)
            .map(|t| t.unix_millis() / 1000)
    };
    let failed = || {
        error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
            head,
        )
    };
    if let Some(m) = p.get("if-match")
        && !matches(m)
    {
        return Some(failed());
    }
    if let Some(t) = date("if-unmodified-since")
        && secs(modified) > t
    {
        return Some(failed());
    }
    let not_modified = || {
        (
            StatusCode::NOT_MODIFIED,
            [
                ("x-oss-request-id", request_id()),
                ("etag", etag.to_string()),
            ],
        )
            .into_response()
    };
    if let Some(m) = p.get("if-none-match") {
        if matches(m) {
            return Some(not_modified());
        }
    } else if let Some(t) = date("if-modified-since")
        && secs(modified) <= t
    {
        return Some(not_modified());
    }
    None
}

/// The metadata a PUT stores, or the answer refusing it.
fn meta_of(p: &Parts, body: &[u8]) -> Result<Meta, Box<Response>> {
    let mut meta = Meta {
        etag: etag_of(body),
        ..Meta::default()
    };
    for name in STORED_HEADERS {
        if let Some(v) = p.get(name) {
            meta.headers.push((name.to_string(), v.to_string()));
        }
    }
    let mut size = 0;
    for (k, v) in &p.headers {
        let k = k.to_ascii_lowercase();
        let Some(suffix) = k.strip_prefix("x-oss-meta-") else {
            continue;
        };
        if suffix.is_empty()
            || !suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Box::new(error_ec(
                400,
                "InvalidArgument",
                format!("The user metadata name '{k}' may hold letters, digits and '-' only."),
                false,
                "0011-00000004",
            )));
        }
        size += k.len() + v.len();
        meta.user.push((k, v.clone()));
    }
    if size > MAX_USER_META {
        return Err(Box::new(error_ec(
            400,
            "InvalidArgument",
            format!("The user metadata of the object is {size} bytes, over the 8 KB limit."),
            false,
            "0011-00000002",
        )));
    }
    meta.user.sort();
    Ok(meta)
}

async fn handle(State(oss): State<Arc<Oss>>, req: Request) -> Response {
    let (head, body) = req.into_parts();
    let is_head = head.method == Method::HEAD;
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                400,
                "EntityTooLarge",
                format!("joint serve accepts request bodies of at most {MAX_BODY} bytes"),
                is_head,
            );
        }
    };
    let parts = parts_of(head.method.as_str(), &head.uri, &head.headers);
    let host = parts.get("host").unwrap_or("").to_string();
    let raw = parts.path.trim_start_matches('/');
    let (bucket, key) = if is_ip_or_localhost(&host) || host.is_empty() {
        match raw.split_once('/') {
            Some((b, k)) => (sign::percent_decode(b), sign::percent_decode(k)),
            None => (sign::percent_decode(raw), String::new()),
        }
    } else {
        (
            host.split('.').next().unwrap_or("").to_string(),
            sign::percent_decode(raw),
        )
    };
    // Before anything else: a name that is not a bucket name never reaches a path.
    if !valid_bucket_name(&bucket) {
        return error(
            400,
            "InvalidBucketName",
            "The specified bucket is not valid.",
            is_head,
        );
    }
    let auth = parts.get("authorization").unwrap_or("");
    let now = Timestamp::now();
    let verified = if auth.starts_with(sign::oss_v4::ALGORITHM) {
        sign::oss_v4::verify(
            &parts,
            &bucket,
            &key,
            &body,
            lookup(&oss.state),
            now,
            MAX_SKEW_SECS,
        )
    } else {
        sign::oss_v1::verify(
            &parts,
            &bucket,
            &key,
            lookup(&oss.state),
            now,
            MAX_SKEW_SECS,
        )
    };
    if let Err(e) = verified {
        let code = match &e {
            VerifyError::Mismatch { .. } => "SignatureDoesNotMatch",
            VerifyError::UnknownAccessKey(_) => "InvalidAccessKeyId",
            VerifyError::Skewed(_) => "RequestTimeTooSkewed",
            VerifyError::BadDigest(_) => "InvalidDigest",
            VerifyError::Malformed(_) => "AccessDenied",
        };
        return error(
            if code == "InvalidDigest" { 400 } else { 403 },
            code,
            e.to_string(),
            is_head,
        );
    }
    if let Some(b) = oss.state.settings.get("oss.bucket")
        && *b != bucket
    {
        return error(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist.",
            is_head,
        );
    }
    if let Some(md5) = parts.get("content-md5")
        && md5 != sign::md5_base64(&body)
    {
        return error(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
            is_head,
        );
    }
    if !key.is_empty()
        && let Some(why) = oss_key_error(&key)
    {
        return error(
            400,
            "InvalidObjectName",
            format!("The specified object is not valid: {why}."),
            is_head,
        );
    }
    let method = head.method.as_str();
    if key.is_empty() {
        bucket_op(&oss, method, &bucket, &parts, body).await
    } else {
        object_op(&oss, method, &bucket, &key, &parts, body).await
    }
}

/// The store key of `key` in `bucket`, or `None` when a file tree cannot hold it.
fn stored(bucket: &str, key: &str) -> Option<String> {
    let k = format!("{bucket}/{key}");
    FsBlobStore::check_key(&k).is_ok().then_some(k)
}

const RESPONSE_OVERRIDES: &[(&str, &str)] = &[
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

async fn object_op(
    oss: &Oss,
    method: &str,
    bucket: &str,
    key: &str,
    p: &Parts,
    body: Bytes,
) -> Response {
    let head = method == "HEAD";
    let get_params: Vec<&str> = RESPONSE_OVERRIDES.iter().map(|(q, _)| *q).collect();
    let allowed_query: &[&str] = match method {
        "GET" => &get_params,
        // GetObjectMeta.
        "HEAD" => &["objectMeta"],
        _ => &[],
    };
    if let Some(q) = unsupported_query(p, allowed_query) {
        return not_implemented(format!("{method} on an object with '?{q}'"), head);
    }
    let allowed_headers: &[&str] = match method {
        "PUT" => &["x-oss-forbid-overwrite", "x-oss-meta-*"],
        "GET" | "HEAD" => &["x-oss-range-behavior"],
        _ => &[],
    };
    if matches!(method, "PUT" | "GET" | "HEAD" | "DELETE")
        && let Some(h) = unsupported_oss_header(p, allowed_headers)
    {
        return not_implemented(format!("the request header {h} on {method}"), head);
    }
    match method {
        "PUT" => {
            if p.get("x-oss-copy-source").is_some() {
                return not_implemented("CopyObject", false);
            }
            let Some(path) = stored(bucket, key) else {
                let why = FsBlobStore::check_key(&format!("{bucket}/{key}"))
                    .err()
                    .unwrap_or_default();
                return not_implemented(
                    format!("object key '{key}': objects are files here, and {why}"),
                    false,
                );
            };
            let meta = match meta_of(p, &body) {
                Ok(m) => m,
                Err(r) => return *r,
            };
            let forbid = p.get("x-oss-forbid-overwrite") == Some("true");
            let crc = crc64_ecma(&body);
            let etag = meta.etag.clone();
            let doc = serde_json::to_vec(&meta).unwrap_or_default();
            match oss.store.put_new_with_meta(&path, body, doc.into()).await {
                Ok(()) => (
                    StatusCode::OK,
                    [
                        ("x-oss-request-id", request_id()),
                        ("etag", etag),
                        ("x-oss-hash-crc64ecma", crc.to_string()),
                    ],
                )
                    .into_response(),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !forbid => not_implemented(
                    "overwriting an existing object (objects are stored create-only)",
                    false,
                ),
                Err(e) => blob_error(&e, false),
            }
        }
        "GET" | "HEAD" => {
            let Some(path) = stored(bucket, key) else {
                return no_such_key(head);
            };
            let got = match oss.store.get_with_meta(&path).await {
                Ok(g) => g,
                Err(e) => return blob_error(&e, head),
            };
            let meta: Meta = got
                .meta
                .as_deref()
                .and_then(|m| serde_json::from_slice(m).ok())
                .unwrap_or_else(|| Meta {
                    etag: etag_of(&got.bytes),
                    ..Meta::default()
                });
            if let Some(r) = precondition(p, &meta.etag, got.modified, head) {
                return r;
            }
            let len = got.bytes.len() as u64;
            let standard = p.get("x-oss-range-behavior") == Some("standard");
            let span = match range(p.get("range"), len, standard) {
                Ok(s) => s,
                Err(()) => {
                    return error(
                        416,
                        "InvalidRange",
                        "The requested range cannot be satisfied",
                        head,
                    );
                }
            };
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            headers.insert("x-oss-request-id".into(), request_id());
            headers.insert("etag".into(), meta.etag.clone());
            headers.insert(
                "x-oss-hash-crc64ecma".into(),
                crc64_ecma(&got.bytes).to_string(),
            );
            headers.insert("last-modified".into(), http_date(got.modified));
            headers.insert("accept-ranges".into(), "bytes".into());
            headers.insert("x-oss-object-type".into(), "Normal".into());
            headers.insert("x-oss-storage-class".into(), "Standard".into());
            headers.insert("content-type".into(), "application/octet-stream".into());
            for (k, v) in meta.headers.iter().chain(&meta.user) {
                headers.insert(k.clone(), v.clone());
            }
            if !head {
                for (q, h) in RESPONSE_OVERRIDES {
                    if let Some((_, v)) = p.query.iter().find(|(k, _)| k == q) {
                        headers.insert(h.to_string(), v.clone());
                    }
                }
            }
            let (status, bytes) = match span {
                Some((a, b)) => {
                    headers.insert("content-range".into(), format!("bytes {a}-{b}/{len}"));
                    (
                        StatusCode::PARTIAL_CONTENT,
                        got.bytes.slice(a as usize..=b as usize),
                    )
                }
                None => (StatusCode::OK, got.bytes),
            };
            headers.insert("content-length".into(), bytes.len().to_string());
            if head && p.query.iter().any(|(k, _)| k == "objectMeta") {
                // GetObjectMeta: the basic metadata only.
                headers.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "x-oss-request-id" | "etag" | "last-modified" | "content-length"
                    )
                });
            }
            let mut r = if head {
                status.into_response()
            } else {
                (status, bytes).into_response()
            };
            for (k, v) in headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    r.headers_mut().insert(n, v);
                }
            }
            r
        }
        "DELETE" => {
            if let Some(path) = stored(bucket, key)
                && let Err(e) = oss.store.delete(&path).await
            {
                return blob_error(&e, false);
            }
            (StatusCode::NO_CONTENT, [("x-oss-request-id", request_id())]).into_response()
        }
        "POST" => not_implemented("POST on an object (AppendObject, multipart uploads)", false),
        m => not_implemented(format!("{m} on an object"), head),
    }
}

async fn bucket_op(oss: &Oss, method: &str, bucket: &str, p: &Parts, body: Bytes) -> Response {
    let head = method == "HEAD";
    let q = |n: &str| p.query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if let Some(h) = unsupported_oss_header(p, &[]) {
        return not_implemented(format!("the request header {h} on a bucket request"), head);
    }
    match method {
        "GET" if q("list-type").as_deref() == Some("2") => list_v2(oss, bucket, p).await,
        "GET"
            if p.query.iter().all(|(k, _)| {
                matches!(
                    k.as_str(),
                    "prefix" | "delimiter" | "marker" | "max-keys" | "encoding-type"
                )
            }) =>
        {
            not_implemented(
                "ListObjects (version 1); use ListObjectsV2 (list-type=2)",
                false,
            )
        }
        "POST" if q("delete").is_some() => {
            if let Some(k) = unsupported_query(p, &["delete", "encoding-type"]) {
                return not_implemented(format!("DeleteMultipleObjects with '?{k}'"), false);
            }
            delete_multiple(oss, bucket, p, body).await
        }
        m => {
            let sub = p
                .query
                .first()
                .map(|(k, _)| format!(" ?{k}"))
                .unwrap_or_default();
            not_implemented(format!("{m} on a bucket{sub}"), head)
        }
    }
}

fn invalid_argument(m: impl Into<String>) -> Response {
    error(400, "InvalidArgument", m, false)
}

async fn list_v2(oss: &Oss, bucket: &str, p: &Parts) -> Response {
    const PARAMS: &[&str] = &[
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
    ];
    if let Some(k) = unsupported_query(p, PARAMS) {
        return not_implemented(format!("ListObjectsV2 with '?{k}'"), false);
    }
    let q = |n: &str| {
        p.query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let max = match q("max-keys").as_str() {
        "" => 100,
        m => match m.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return invalid_argument(format!("max-keys '{m}' must be 1 to 1000")),
        },
    };
    let url_encoded = match q("encoding-type").as_str() {
        "" => false,
        "url" => true,
        other => return invalid_argument(format!("encoding-type '{other}' (only url)")),
    };
    let fetch_owner = match q("fetch-owner").as_str() {
        "" | "false" => false,
        "true" => true,
        other => return invalid_argument(format!("fetch-owner '{other}' (true or false)")),
    };
    let query = xml::ListQuery {
        bucket: bucket.to_string(),
        prefix: q("prefix"),
        delimiter: q("delimiter"),
        start_after: q("start-after"),
        continuation_token: q("continuation-token"),
        max_keys: max,
        url_encoded,
        fetch_owner,
    };
    // Keys are listed from the store: only its valid prefixes are walked. A prefix the store
    // cannot hold (`a//`, `../`) matches no object.
    let prefix = &query.prefix;
    let objects = match FsBlobStore::check_prefix(&format!("{bucket}/{prefix}")) {
        Ok(()) => match oss.store.list(&format!("{bucket}/{prefix}")).await {
            Ok(o) => o,
            Err(e) => return error(500, "InternalError", e.to_string(), false),
        },
        Err(_) => Vec::new(),
    };
    let strip = bucket.len() + 1;
    // One entry per object, or per group of objects a delimiter rolls up, in key order.
    let after = if query.continuation_token.is_empty() {
        query.start_after.clone()
    } else {
        query.continuation_token.clone()
    };
    let mut entries: Vec<(String, Option<joint_shim_local::fs::BlobInfo>)> = Vec::new();
    for o in objects {
        let key = o.key[strip..].to_string();
        if key.as_str() <= after.as_str() {
            continue;
        }
        let group = (!query.delimiter.is_empty())
            .then(|| {
                key[prefix.len()..]
                    .find(&query.delimiter)
                    .map(|i| key[..prefix.len() + i + query.delimiter.len()].to_string())
            })
            .flatten();
        match group {
            Some(g) => {
                // A group already returned on an earlier page is not repeated.
                if g.as_str() <= after.as_str() {
                    continue;
                }
                if entries.last().map(|(k, _)| k.as_str()) != Some(g.as_str()) {
                    entries.push((g, None));
                }
            }
            None => entries.push((key, Some(o))),
        }
    }
    let truncated = entries.len() > max;
    entries.truncate(max);
    let mut res = xml::ListBucketResult {
        next_continuation_token: truncated
            .then(|| entries.last().map(|(k, _)| k.clone()).unwrap_or_default()),
        is_truncated: truncated,
        ..xml::ListBucketResult::default()
    };
    for (key, info) in entries {
        match info {
            None => res.common_prefixes.push(xml::CommonPrefix { prefix: key }),
            Some(info) => {
                // The ETag kept with the object, else (an object written without metadata,
                // e.g. by the runtime's blob store) the MD5 of its bytes.
                let kept = match oss.store.get_meta(&info.key).await {
                    Ok(m) => m.and_then(|m| serde_json::from_slice::<Meta>(&m).ok()),
                    // Deleted meanwhile: not listed.
                    Err(_) => continue,
                };
                let etag = match kept {
                    Some(m) => m.etag,
                    None => match oss.store.get(&info.key).await {
                        Ok(b) => etag_of(&b),
                        Err(_) => continue,
                    },
                };
                res.contents.push(xml::Contents {
                    key,
                    size: info.size,
                    last_modified: iso8601(info.modified),
                    etag,
                    object_type: "Normal".into(),
                    storage_class: "Standard".into(),
                });
            }
        }
    }
    (
        StatusCode::OK,
        [
            ("x-oss-request-id", request_id()),
            ("content-type", "application/xml".into()),
        ],
        res.to_xml(&query),
    )
        .into_response()
}

async fn delete_multiple(oss: &Oss, bucket: &str, p: &Parts, body: Bytes) -> Response {
    if p.get("content-md5").is_none() {
        return error(
            400,
            "MissingArgument",
            "Content-MD5 is required for DeleteMultipleObjects",
            false,
        );
    }
    let url_encoded = match p
        .query
        .iter()
        .find(|(k, _)| k == "encoding-type")
        .map(|(_, v)| v.as_str())
    {
        None | Some("") => false,
        Some("url") => true,
        Some(other) => return invalid_argument(format!("encoding-type '{other}' (only url)")),
    };
    let doc: xml::Delete = match xml::parse(&body) {
        Ok(d) => d,
        Err(m) => return error(400, "MalformedXML", m, false),
    };
    if doc.object.len() > 1000 {
        return error(
            400,
            "MalformedXML",
            "at most 1000 objects per request",
            false,
        );
    }
    if let Some((k, why)) = doc
        .object
        .iter()
        .find_map(|o| oss_key_error(&o.key).map(|w| (&o.key, w)))
    {
        return error(
            400,
            "InvalidObjectName",
            format!("The specified object is not valid: {why} ('{k}')."),
            false,
        );
    }
    let mut done = Vec::new();
    for o in &doc.object {
        // A key the store cannot hold names no object: deleted, as OSS reports a missing one.
        if let Some(path) = stored(bucket, &o.key)
            && let Err(e) = oss.store.delete(&path).await
        {
            return blob_error(&e, false);
        }
        done.push(o.key.clone());
    }
    let keys: Vec<String> = if doc.quiet {
        Vec::new()
    } else if url_encoded {
        done.iter().map(|k| sign::percent_encode(k)).collect()
    } else {
        done
    };
    let mut xml = xml::DeleteResult::to_xml(&keys);
    if url_encoded {
        xml = xml.replacen(
            "<DeleteResult>\n",
            "<DeleteResult>\n  <EncodingType>url</EncodingType>\n",
            1,
        );
    }
    (
        StatusCode::OK,
        [
            ("x-oss-request-id", request_id()),
            ("content-type", "application/xml".into()),
        ],
        xml,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_check_value() {
        // CRC-64/XZ check value.
        assert_eq!(super::crc64_ecma(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(super::crc64_ecma(b""), 0);
    }

    #[test]
    fn bucket_names_follow_oss_rules() {
        for ok in ["joint", "a1-b2", "123", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "..",
            ".",
            "ab",
            "-ab",
            "ab-",
            "a_b",
            "A-bc",
            "a.b.c",
            "a/b",
            "",
            &"a".repeat(64),
            "a%2e",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn ranges_are_read_as_oss_reads_them() {
        let r = |h: &str, std| range(Some(h), 1000, std);
        assert_eq!(r("bytes=0-499", false), Ok(Some((0, 499))));
        assert_eq!(r("bytes=-500", false), Ok(Some((500, 999))));
        assert_eq!(r("bytes=500-", false), Ok(Some((500, 999))));
        assert_eq!(r("bytes=0-499,600-700", false), Ok(Some((0, 499))));
        // Invalid or out of range: the whole object (200) by default …
        for h in [
            "byte=0-1",
            "bytes=0-1000",
            "bytes=1000-2000",
            "bytes=1000-",
            "bytes=-2000",
            "bytes=5-2",
            "bytes=x-3",
        ] {
            assert_eq!(r(h, false), Ok(None), "{h}");
        }
        // … and with x-oss-range-behavior: standard, the RFC's answers.
        assert_eq!(r("bytes=500-2000", true), Ok(Some((500, 999))));
        assert_eq!(r("bytes=1000-2000", true), Err(()));
        assert_eq!(r("bytes=1000-", true), Err(()));
        assert_eq!(range(None, 10, false), Ok(None));
    }
}
