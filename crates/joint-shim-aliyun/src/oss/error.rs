//! `parse_error` for OSS: the XML error body (or, for HEAD and other bodiless answers, the
//! base64 XML in `x-oss-err`), mapped by status then code.

use base64::Engine;
use joint_shim::{Error, ErrorKind};
use serde::Deserialize;

use crate::http::find;

/// An OSS error answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OssError {
    /// HTTP status.
    pub status: u16,
    /// `NoSuchKey`, `FileAlreadyExists`…
    pub code: String,
    /// Message.
    pub message: String,
    /// `x-oss-request-id` / `<RequestId>`.
    pub request_id: Option<String>,
    /// `<EC>` / `x-oss-ec`.
    pub ec: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorXml {
    code: String,
    message: String,
    request_id: Option<String>,
    #[serde(rename = "EC")]
    ec: Option<String>,
}

impl OssError {
    /// Decode an error answer from its status, headers and body.
    pub fn decode(status: u16, headers: &[(String, String)], body: &[u8]) -> Self {
        let from_header = || {
            find(headers, "x-oss-err").and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
        };
        let xml = if body.is_empty() {
            from_header().unwrap_or_default()
        } else {
            body.to_vec()
        };
        let parsed: Option<ErrorXml> = std::str::from_utf8(&xml)
            .ok()
            .and_then(|s| quick_xml::de::from_str(s).ok());
        let p = parsed.unwrap_or_default();
        OssError {
            status,
            code: if p.code.is_empty() {
                match status {
                    404 => "NoSuchKey".into(),
                    409 => "Conflict".into(),
                    s if s >= 500 => "InternalError".into(),
                    _ => "Unknown".into(),
                }
            } else {
                p.code
            },
            message: p.message,
            request_id: p
                .request_id
                .or_else(|| find(headers, "x-oss-request-id").map(str::to_string)),
            ec: p
                .ec
                .or_else(|| find(headers, "x-oss-ec").map(str::to_string)),
        }
    }

    /// The XML body a server sends for this error.
    pub fn body(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{}</Code>\n  <Message>{}</Message>\n  <RequestId>{}</RequestId>\n  <HostId>joint-serve</HostId>\n  <EC>{}</EC>\n</Error>\n",
            xml_escape(&self.code),
            xml_escape(&self.message),
            xml_escape(self.request_id.as_deref().unwrap_or("")),
            xml_escape(self.ec.as_deref().unwrap_or("")),
        )
    }
}

/// Escape text for XML content.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Map an OSS error to a joint error.
pub fn parse_error(backend: &str, op: &'static str, key: &str, e: &OssError) -> Error {
    let kind = match (e.status, e.code.as_str()) {
        (_, "NoSuchKey" | "NoSuchBucket") => ErrorKind::NotFound,
        (_, "FileAlreadyExists") => ErrorKind::AlreadyExists,
        (_, "PreconditionFailed") | (412, _) => ErrorKind::Precondition,
        (
            _,
            "AccessDenied"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "RequestTimeTooSkewed"
            | "SecurityTokenExpired"
            | "InvalidSecurityToken",
        )
        | (401 | 403, _) => ErrorKind::AccessDenied,
        (_, "EntityTooLarge") | (413, _) => ErrorKind::PayloadTooLarge,
        (_, "Throttling" | "SlowDown" | "TooManyRequests") | (429, _) => ErrorKind::Throttled,
        // OSS answers a request that took too long 400 `RequestTimeout`; `joint serve` uses 408.
        (_, "RequestTimeout") | (408, _) => ErrorKind::Timeout,
        (_, "InvalidDigest" | "InvalidArgument" | "MalformedXML" | "InvalidObjectName")
        | (400, _) => ErrorKind::InvalidInput,
        (404, _) => ErrorKind::NotFound,
        (_, "InternalError" | "ServiceUnavailable") | (500..=599, _) => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    let mut msg = e.message.clone();
    if let Some(ec) = &e.ec {
        msg.push_str(&format!(" (EC {ec})"));
    }
    let mut err = Error::new(kind, backend, op, key, msg).with_provider_code(e.code.clone());
    if let Some(r) = &e.request_id {
        err = err.with_request_id(r.clone());
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [SDK-test] aliyun-oss-go-sdk client_test.go::emptyBodyHeaderHandler.
    #[test]
    fn head_error_from_x_oss_err() {
        let h = vec![
            ("x-oss-request-id".to_string(), "64195A905C006935335FE181".to_string()),
            ("x-oss-ec".to_string(), "0026-00000001".to_string()),
            ("x-oss-err".to_string(), "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPEVycm9yPgogIDxDb2RlPk5vU3VjaEtleTwvQ29kZT4KICA8TWVzc2FnZT5UaGUgc3BlY2lmaWVkIGtleSBkb2VzIG5vdCBleGlzdC48L01lc3NhZ2U+CiAgPFJlcXVlc3RJZD42NDE5NUE5MDVDMDA2OTM1MzM1RkUxODE8L1JlcXVlc3RJZD4KICA8SG9zdElkPmRlbW8td2Fsa2VyLTY5NjEub3NzLWNuLWhhbmd6aG91LmFsaXl1bmNzLmNvbTwvSG9zdElkPgogIDxLZXk+ZGVtby0xMTEudXh1PC9LZXk+CiAgPEVDPjAwMjYtMDAwMDAwMDE8L0VDPgo8L0Vycm9yPgo=".to_string()),
        ];
        let e = OssError::decode(404, &h, b"");
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.message, "The specified key does not exist.");
        assert_eq!(e.request_id.as_deref(), Some("64195A905C006935335FE181"));
        assert_eq!(e.ec.as_deref(), Some("0026-00000001"));
        let j = parse_error("oss(x)", "get", "demo-111.uxu", &e);
        assert_eq!(j.kind(), ErrorKind::NotFound);
        assert!(j.to_string().contains("64195A905C006935335FE181"), "{j}");
    }

    #[test]
    fn body_round_trip_and_mapping() {
        let e = OssError {
            status: 409,
            code: "FileAlreadyExists".into(),
            message: "The object you specified already exists & can not be overwritten now.".into(),
            request_id: Some("R1".into()),
            ec: Some("0026-00000014".into()),
        };
        let back = OssError::decode(409, &[], e.body().as_bytes());
        assert_eq!(back, e);
        assert_eq!(
            parse_error("o", "put_new", "k", &back).kind(),
            ErrorKind::AlreadyExists
        );
        let s = OssError::decode(503, &[], b"not xml");
        assert_eq!(
            parse_error("o", "get", "k", &s).kind(),
            ErrorKind::Unavailable
        );
        let sig = OssError::decode(
            403,
            &[],
            OssError {
                status: 403,
                code: "SignatureDoesNotMatch".into(),
                ..Default::default()
            }
            .body()
            .as_bytes(),
        );
        assert_eq!(
            parse_error("o", "get", "k", &sig).kind(),
            ErrorKind::AccessDenied
        );
    }
    #[test]
    fn request_timeouts_are_timeouts() {
        for status in [400, 408] {
            let e = OssError {
                status,
                code: "RequestTimeout".into(),
                ..Default::default()
            };
            assert_eq!(
                parse_error("o", "put_new", "k", &e).kind(),
                ErrorKind::Timeout,
                "{status}"
            );
        }
    }
}
