//! OSS over HTTP: PutObject (with `x-oss-forbid-overwrite`), GetObject, HeadObject,
//! DeleteObject, ListObjectsV2 and DeleteMultipleObjects, path-style (`/bucket/key`, as the
//! SDKs use for IP endpoints) or virtual-hosted. Signatures (V4 and V1) are verified with the
//! client's own code; errors are OSS XML (HEAD: base64 XML in `x-oss-err`).
//!
//! Objects are stored create-only and atomically by an [`FsBlobStore`] under
//! `{state_dir}/{cloud}/blobs/{bucket}/` — the local cloud's blob folder. Settings:
//! `aliyun.access_key_id` / `aliyun.access_key_secret`, `oss.bucket` (only this bucket
//! exists; default: any), `oss.cloud`, `oss.timeout_secs` (default 30 s; past it a request is
//! answered 408 `RequestTimeout`, see [`super`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use joint_shim::{BlobStore, ErrorKind};
use joint_shim_aliyun::Timestamp;
use joint_shim_aliyun::http::is_ip_or_localhost;
use joint_shim_aliyun::oss::OssError;
use joint_shim_aliyun::oss::xml;
use joint_shim_aliyun::sign::{self, VerifyError};

use super::ServeState;
use super::fc::{MAX_SKEW_SECS, cloud_name, lookup, parts_of, request_id};
use crate::FsBlobStore;

struct Oss {
    state: Arc<ServeState>,
    store: FsBlobStore,
    root: PathBuf,
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
            return Router::new().fallback(move || {
                let m = msg.clone();
                async move { (StatusCode::INTERNAL_SERVER_ERROR, m) }
            });
        }
    };
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(1024 * 1024 * 1024))
        .with_state(Arc::new(Oss { state, store, root }))
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

fn error(status: u16, code: &str, message: impl Into<String>, head: bool) -> Response {
    let rid = request_id();
    let e = OssError {
        status,
        code: code.into(),
        message: message.into(),
        request_id: Some(rid.clone()),
        ec: Some("0000-00000000".into()),
    };
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if head {
        let b64 = base64::engine::general_purpose::STANDARD.encode(e.body());
        (
            st,
            [
                ("x-oss-request-id", rid.as_str()),
                ("x-oss-err", b64.as_str()),
            ],
        )
            .into_response()
    } else {
        (
            st,
            [
                ("x-oss-request-id", rid.as_str()),
                ("content-type", "application/xml"),
            ],
            e.body(),
        )
            .into_response()
    }
}

/// OSS's answer to a request that ran past `oss.timeout_secs`: `RequestTimeout` (OSS's code
/// for a request that took too long; here with HTTP 408).
pub(super) fn timed_out(_: &ServeState, method: &Method, _: &Uri, message: &str) -> Response {
    error(408, "RequestTimeout", message, *method == Method::HEAD)
}

fn blob_error(e: &joint_shim::Error, head: bool) -> Response {
    match e.kind() {
        ErrorKind::NotFound => error(404, "NoSuchKey", "The specified key does not exist.", head),
        ErrorKind::AlreadyExists => error(
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten now.",
            head,
        ),
        ErrorKind::InvalidInput => error(400, "InvalidObjectName", e.message().to_string(), head),
        _ => error(500, "InternalError", e.to_string(), head),
    }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".joint-tmp") {
            continue;
        }
        let key = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        match e.metadata() {
            Ok(m) if m.is_dir() => walk(&e.path(), &key, out),
            Ok(m) => out.push((key, m.len())),
            Err(_) => {}
        }
    }
}

async fn handle(State(oss): State<Arc<Oss>>, req: Request) -> Response {
    let (head, body) = req.into_parts();
    let is_head = head.method == axum::http::Method::HEAD;
    let body = match axum::body::to_bytes(body, 1024 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return error(400, "EntityTooLarge", e.to_string(), is_head),
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
    if bucket.is_empty() {
        return error(
            400,
            "InvalidBucketName",
            "no bucket in the request",
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
    let stored = format!("{bucket}/{key}");
    let q = |n: &str| {
        parts
            .query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    match (head.method.as_str(), key.is_empty()) {
        ("PUT", false) => {
            let forbid = parts.get("x-oss-forbid-overwrite") == Some("true");
            let crc = crc64_ecma(&body);
            let etag = format!("\"{}\"", hex_md5(&body));
            match oss.store.put_new(&stored, body).await {
                Ok(()) => (
                    StatusCode::OK,
                    [
                        ("x-oss-request-id", request_id()),
                        ("etag", etag),
                        ("x-oss-hash-crc64ecma", crc.to_string()),
                    ],
                )
                    .into_response(),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !forbid => error(
                    501,
                    "NotImplemented",
                    "joint serve stores objects create-only: overwriting an existing object is not supported",
                    false,
                ),
                Err(e) => blob_error(&e, false),
            }
        }
        ("GET" | "HEAD", false) => match oss.store.get(&stored).await {
            Ok(b) => {
                let headers = [
                    ("x-oss-request-id", request_id()),
                    ("etag", format!("\"{}\"", hex_md5(&b))),
                    ("x-oss-hash-crc64ecma", crc64_ecma(&b).to_string()),
                    ("last-modified", now.http_date()),
                    ("content-type", "application/octet-stream".to_string()),
                    ("content-length", b.len().to_string()),
                ];
                if is_head {
                    (StatusCode::OK, headers).into_response()
                } else {
                    (StatusCode::OK, headers, b).into_response()
                }
            }
            Err(e) => blob_error(&e, is_head),
        },
        ("DELETE", false) => {
            if let Err(e) = oss.store.get(&stored).await
                && e.kind() != ErrorKind::NotFound
            {
                return blob_error(&e, false);
            }
            let _ = std::fs::remove_file(oss.root.join(&stored));
            (StatusCode::NO_CONTENT, [("x-oss-request-id", request_id())]).into_response()
        }
        ("GET", true) if q("list-type").as_deref() == Some("2") => {
            let prefix = q("prefix").unwrap_or_default();
            let max = q("max-keys")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(1000)
                .clamp(1, 1000);
            let after = q("continuation-token")
                .or_else(|| q("start-after"))
                .unwrap_or_default();
            let mut all = Vec::new();
            walk(&oss.root.join(&bucket), "", &mut all);
            all.sort();
            let matching: Vec<(String, u64)> = all
                .into_iter()
                .filter(|(k, _)| k.starts_with(&prefix) && k.as_str() > after.as_str())
                .collect();
            let truncated = matching.len() > max;
            let page: Vec<xml::Contents> = matching
                .into_iter()
                .take(max)
                .map(|(key, size)| xml::Contents { key, size })
                .collect();
            let res = xml::ListBucketResult {
                next_continuation_token: truncated
                    .then(|| page.last().map(|c| c.key.clone()).unwrap_or_default()),
                is_truncated: truncated,
                contents: page,
            };
            (
                StatusCode::OK,
                [
                    ("x-oss-request-id", request_id()),
                    ("content-type", "application/xml".into()),
                ],
                res.to_xml(&bucket, &prefix, max),
            )
                .into_response()
        }
        ("POST", true) if q("delete").is_some() => {
            if parts.get("content-md5").is_none() {
                return error(
                    400,
                    "MissingArgument",
                    "Content-MD5 is required for DeleteMultipleObjects",
                    false,
                );
            }
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
            let mut done = Vec::new();
            for o in &doc.object {
                let path = format!("{bucket}/{}", o.key);
                match oss.store.get(&path).await {
                    Ok(_) | Err(_) => {
                        if !o.key.is_empty() && !o.key.contains("..") {
                            let _ = std::fs::remove_file(oss.root.join(&path));
                        }
                        done.push(o.key.clone());
                    }
                }
            }
            let keys = if doc.quiet { Vec::new() } else { done };
            (
                StatusCode::OK,
                [
                    ("x-oss-request-id", request_id()),
                    ("content-type", "application/xml".into()),
                ],
                xml::DeleteResult::to_xml(&keys),
            )
                .into_response()
        }
        (m, _) => error(
            405,
            "MethodNotAllowed",
            format!("{m} {} is not supported by joint serve", parts.path),
            is_head,
        ),
    }
}

fn hex_md5(b: &[u8]) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sign::md5_base64(b))
        .unwrap_or_default();
    raw.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc64_check_value() {
        // CRC-64/XZ check value.
        assert_eq!(super::crc64_ecma(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(super::crc64_ecma(b""), 0);
    }
}
