//! Request signing as pure functions of (request parts, credential, time, nonce).
//!
//! - [`acs3`]: ACS3-HMAC-SHA256, the OpenAPI "V3" signature used by Function Compute 3.0.
//! - [`oss_v4`]: `OSS4-HMAC-SHA256` (what [`crate::OssBlobStore`] sends).
//! - [`oss_v1`]: `OSS ak:sig` HMAC-SHA1 (still accepted by OSS; the default of `oss2`).
//! - [`ots`]: Tablestore SignV2 `x-ots-signature`.
//!
//! Every scheme has a signer and a verifier built from the same canonicalisation code, so the
//! local endpoints refuse exactly what the real services refuse.

pub mod acs3;
pub mod oss_v1;
pub mod oss_v4;
pub mod ots;

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Digest;

/// The parts of an HTTP request a signature covers. Header names keep their case; lookups are
/// case-insensitive. `path` is the path as sent on the wire (already percent-encoded) and
/// `query` holds decoded pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    /// `GET`, `PUT`, `POST`…
    pub method: String,
    /// Path as sent (percent-encoded), starting with `/`.
    pub path: String,
    /// Decoded query pairs in request order.
    pub query: Vec<(String, String)>,
    /// Headers in request order.
    pub headers: Vec<(String, String)>,
}

impl Parts {
    /// New parts without query or headers.
    pub fn new(method: &str, path: &str) -> Self {
        Parts {
            method: method.to_string(),
            path: path.to_string(),
            ..Parts::default()
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Add a query pair.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// The first header called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Why a signature was refused by a verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No or malformed authorization.
    Malformed(String),
    /// The access key id is not the one configured.
    UnknownAccessKey(String),
    /// The signature does not match; carries the string to sign the server computed (the
    /// services echo it back to help debugging).
    Mismatch {
        /// What the server signed.
        string_to_sign: String,
    },
    /// The request time is too far from the server's clock.
    Skewed(String),
    /// The body does not match its declared digest.
    BadDigest(String),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Malformed(m) => write!(f, "malformed authorization: {m}"),
            VerifyError::UnknownAccessKey(a) => write!(f, "unknown access key id '{a}'"),
            VerifyError::Mismatch { string_to_sign } => write!(
                f,
                "the request signature does not match; the server signed {string_to_sign:?}"
            ),
            VerifyError::Skewed(m) => write!(f, "request time too skewed: {m}"),
            VerifyError::BadDigest(m) => write!(f, "body digest mismatch: {m}"),
        }
    }
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = match hmac::Hmac::<sha1::Sha1>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Base64 of the MD5 of `data` (`Content-MD5`, `x-ots-contentmd5`).
pub fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Constant-time string comparison for signatures.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// RFC 3986 percent-encoding: everything but `A-Za-z0-9-_.~` (space `%20`, `*` `%2A`).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// RFC 3986 percent-encoding of a path: every segment encoded, `/` kept.
pub fn percent_encode_path(s: &str) -> String {
    s.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decode `%XX` escapes (and nothing else); invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parse a raw query string into decoded pairs (`+` is a literal plus, as in RFC 3986).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Split `Scheme a=b,c=d` (or `a=b, c=d`) into its key/value pairs.
pub(crate) fn auth_params<'a>(value: &'a str, scheme: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let rest = value.strip_prefix(scheme)?.strip_prefix(' ')?;
    rest.split(',')
        .map(|p| p.trim().split_once('='))
        .collect::<Option<Vec<_>>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_test_matches_the_sdk_test() {
        // darabonba-openapi-util golang/service/service_test.go
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d+e/f"), "a%20b%2Ac~d%2Be%2Ff");
        assert_eq!(
            percent_encode_path("/1234+-/123/1.txt"),
            "/1234%2B-/123/1.txt"
        );
        assert_eq!(
            parse_query("a=1&b=&c&d=x%20y+z"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "".into()),
                ("c".into(), "".into()),
                ("d".into(), "x y+z".into())
            ]
        );
    }

    #[test]
    fn compare_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
