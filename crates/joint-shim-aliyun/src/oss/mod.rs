//! OSS: [`OssBlobStore`] — create-only put (`x-oss-forbid-overwrite`), get, delete by prefix
//! (ListObjectsV2 + DeleteMultipleObjects), all signed with OSS V4.

pub mod error;
pub mod xml;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use joint_shim::{BlobCapabilities, BlobStore, Error, ErrorKind, Result};

use crate::credential::Credential;
use crate::http::{authority, header_pairs, is_ip_or_localhost};
use crate::sign::{self, Parts, percent_encode, percent_encode_path};
use crate::time::Timestamp;

pub use error::{OssError, parse_error};

/// Builds an [`OssBlobStore`]. Keys for [`OssBlobStoreBuilder::with_config`]: `region`,
/// `bucket`, `endpoint` (alias `oss_endpoint`), `path_style`, `timeout_ms`,
/// `access_key_id`, `access_key_secret`, `security_token`.
#[derive(Debug, Clone, Default)]
pub struct OssBlobStoreBuilder {
    cloud: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    credential: Option<Credential>,
    timeout: Option<Duration>,
    settings: BTreeMap<String, String>,
}

impl OssBlobStoreBuilder {
    /// Empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Credential and region (`ALIBABA_CLOUD_REGION`) from the environment.
    pub fn from_env() -> Self {
        let mut b = Self::new();
        b.credential = Credential::from_env().ok();
        b.region = std::env::var("ALIBABA_CLOUD_REGION").ok();
        b
    }
    /// Set a key (see the type docs); validated in `build`.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }
    /// Cloud name used in errors.
    pub fn cloud(mut self, name: &str) -> Self {
        self.cloud = Some(name.into());
        self
    }
    /// Region (`cn-hangzhou`), used in the V4 scope and the default endpoint.
    pub fn region(mut self, r: &str) -> Self {
        self.region = Some(r.into());
        self
    }
    /// Bucket.
    pub fn bucket(mut self, b: &str) -> Self {
        self.bucket = Some(b.into());
        self
    }
    /// Endpoint (default `https://oss-{region}.aliyuncs.com`).
    pub fn endpoint(mut self, e: &str) -> Self {
        self.endpoint = Some(e.into());
        self
    }
    /// Credential.
    pub fn credential(mut self, c: Credential) -> Self {
        self.credential = Some(c);
        self
    }

    /// Validate and build; an error names the bad key.
    pub fn build(mut self) -> std::result::Result<OssBlobStore, String> {
        let (mut id, mut secret, mut token) = (None, None, None);
        for (k, v) in std::mem::take(&mut self.settings) {
            match k.as_str() {
                "region" => self.region = Some(v),
                "bucket" => self.bucket = Some(v),
                "endpoint" | "oss_endpoint" => self.endpoint = Some(v),
                "path_style" => {
                    self.path_style = Some(v.parse().map_err(|_| {
                        format!("oss: setting 'path_style' must be true or false, got '{v}'")
                    })?)
                }
                "timeout_ms" => {
                    self.timeout = Some(Duration::from_millis(v.parse().map_err(|_| {
                        format!("oss: setting 'timeout_ms' must be a number, got '{v}'")
                    })?))
                }
                "access_key_id" => id = Some(v),
                "access_key_secret" => secret = Some(v),
                "security_token" => token = Some(v),
                other => return Err(format!("oss: unknown setting '{other}'")),
            }
        }
        if let (Some(i), Some(s)) = (id, secret) {
            let mut c = Credential::new(i, s);
            if let Some(t) = token {
                c = c.with_security_token(t);
            }
            self.credential = Some(c);
        }
        let credential = self.credential.ok_or("oss: no credential")?;
        let region = self.region.ok_or("oss: 'region' is required")?;
        let bucket = self.bucket.ok_or("oss: 'bucket' is required")?;
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| format!("https://oss-{region}.aliyuncs.com"))
            .trim_end_matches('/')
            .to_string();
        let (scheme, host) = match endpoint.split_once("://") {
            Some((s @ ("http" | "https"), _)) => (s.to_string(), authority(&endpoint).to_string()),
            _ => {
                return Err(format!(
                    "oss: endpoint '{endpoint}' must start with http:// or https://"
                ));
            }
        };
        let path_style = self.path_style.unwrap_or_else(|| is_ip_or_localhost(&host));
        let (base, host) = if path_style {
            (format!("{scheme}://{host}"), host)
        } else {
            let h = format!("{bucket}.{host}");
            (format!("{scheme}://{h}"), h)
        };
        let http = reqwest::Client::builder()
            .timeout(self.timeout.unwrap_or(Duration::from_secs(60)))
            .build()
            .map_err(|e| format!("oss: cannot build the HTTP client: {e}"))?;
        Ok(OssBlobStore {
            backend: format!("oss({})", self.cloud.unwrap_or_else(|| "aliyun".into())),
            region: region.trim_start_matches("oss-").to_string(),
            bucket,
            base,
            host,
            path_style,
            credential,
            http,
        })
    }
}

/// An OSS bucket as a joint blob store.
#[derive(Clone)]
pub struct OssBlobStore {
    backend: String,
    region: String,
    bucket: String,
    base: String,
    host: String,
    path_style: bool,
    credential: Credential,
    http: reqwest::Client,
}

impl std::fmt::Debug for OssBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OssBlobStore")
            .field("backend", &self.backend)
            .field("bucket", &self.bucket)
            .field("base", &self.base)
            .field("credential", &self.credential)
            .finish()
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl OssBlobStore {
    /// A builder.
    pub fn builder() -> OssBlobStoreBuilder {
        OssBlobStoreBuilder::new()
    }

    fn err(&self, kind: ErrorKind, op: &'static str, key: &str, m: impl Into<String>) -> Error {
        Error::new(kind, self.backend.clone(), op, key, m)
    }

    async fn send(
        &self,
        op: &'static str,
        method: &str,
        key: &str,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<Answer> {
        let path = if self.path_style {
            format!("/{}/{}", self.bucket, percent_encode_path(key))
        } else {
            format!("/{}", percent_encode_path(key))
        };
        let mut parts = Parts::new(method, &path);
        parts.query = query;
        parts.headers = headers;
        parts.headers.push(("host".into(), self.host.clone()));
        let add = sign::oss_v4::sign(
            &parts,
            &self.bucket,
            key,
            &self.region,
            &[],
            &self.credential,
            Timestamp::now(),
        );
        parts.headers.extend(add);
        let mut url = format!("{}{}", self.base, path);
        if !parts.query.is_empty() {
            url.push('?');
            url.push_str(
                &parts
                    .query
                    .iter()
                    .map(|(k, v)| {
                        if v.is_empty() {
                            percent_encode(k)
                        } else {
                            format!("{}={}", percent_encode(k), percent_encode(v))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| self.err(ErrorKind::InvalidInput, op, key, e.to_string()))?;
        let mut rb = self.http.request(m, url);
        for (k, v) in &parts.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let resp = rb.body(body).send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            };
            self.err(kind, op, key, format!("cannot reach {}: {e}", self.base))
        })?;
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let body = resp.bytes().await.map_err(|e| {
            self.err(
                ErrorKind::Unavailable,
                op,
                key,
                format!("reading the answer: {e}"),
            )
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn fail(&self, op: &'static str, key: &str, a: &Answer) -> Error {
        parse_error(
            &self.backend,
            op,
            key,
            &OssError::decode(a.status, &a.headers, &a.body),
        )
    }
}

#[async_trait]
impl BlobStore for OssBlobStore {
    fn capabilities(&self) -> BlobCapabilities {
        BlobCapabilities {
            create_only: true,
            max_object: 5 * 1024 * 1024 * 1024,
            // Objects are kept until deleted unless the bucket has a lifecycle rule (ADR 0009).
            retention: None,
        }
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        let headers = vec![
            ("content-md5".to_string(), sign::md5_base64(&bytes)),
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("x-oss-forbid-overwrite".to_string(), "true".to_string()),
        ];
        let a = self
            .send("put_new", "PUT", key, vec![], headers, bytes)
            .await?;
        if (200..300).contains(&a.status) {
            Ok(())
        } else {
            Err(self.fail("put_new", key, &a))
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let a = self
            .send("get", "GET", key, vec![], vec![], Bytes::new())
            .await?;
        if a.status == 200 {
            Ok(a.body)
        } else {
            Err(self.fail("get", key, &a))
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let mut deleted = 0u64;
        // Deleting changes the listing, so every round lists from the start.
        loop {
            let q = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
                ("max-keys".to_string(), "1000".to_string()),
            ];
            let a = self
                .send("delete_prefix", "GET", "", q, vec![], Bytes::new())
                .await?;
            if a.status != 200 {
                return Err(self.fail("delete_prefix", prefix, &a));
            }
            let list: xml::ListBucketResult = xml::parse(&a.body)
                .map_err(|m| {
                    self.err(
                        ErrorKind::Other,
                        "delete_prefix",
                        prefix,
                        format!("ListObjectsV2: {m}"),
                    )
                })
                .map(xml::ListBucketResult::decoded)?;
            let keys: Vec<String> = list
                .contents
                .iter()
                .map(|c| c.key.clone())
                .filter(|k| k.starts_with(prefix))
                .collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            let doc = Bytes::from(xml::Delete::to_xml(&keys));
            let headers = vec![
                ("content-md5".to_string(), sign::md5_base64(&doc)),
                ("content-type".to_string(), "application/xml".to_string()),
            ];
            let a = self
                .send(
                    "delete_prefix",
                    "POST",
                    "",
                    vec![("delete".into(), String::new())],
                    headers,
                    doc,
                )
                .await?;
            if a.status != 200 {
                return Err(self.fail("delete_prefix", prefix, &a));
            }
            let res: xml::DeleteResult = xml::parse(&a.body).map_err(|m| {
                self.err(
                    ErrorKind::Other,
                    "delete_prefix",
                    prefix,
                    format!("DeleteMultipleObjects: {m}"),
                )
            })?;
            if res.deleted.is_empty() {
                return Err(self.err(
                    ErrorKind::Other,
                    "delete_prefix",
                    prefix,
                    format!("OSS listed {} objects but deleted none", keys.len()),
                ));
            }
            deleted += res.deleted.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_styles_and_errors() {
        let c = Credential::new("AK", "SECRET");
        let s = OssBlobStore::builder()
            .credential(c.clone())
            .region("cn-hangzhou")
            .bucket("bkt")
            .build()
            .expect("build");
        assert_eq!(s.base, "https://bkt.oss-cn-hangzhou.aliyuncs.com");
        assert!(!s.path_style);
        assert!(!format!("{s:?}").contains("SECRET"));
        let s = OssBlobStore::builder()
            .credential(c.clone())
            .with_config("region", "oss-cn-hangzhou")
            .with_config("bucket", "bkt")
            .with_config("endpoint", "http://127.0.0.1:9")
            .build()
            .expect("build");
        assert!(s.path_style);
        assert_eq!(s.region, "cn-hangzhou");
        let e = OssBlobStore::builder()
            .credential(c)
            .with_config("bucket", "b")
            .build()
            .unwrap_err();
        assert!(e.contains("region"), "{e}");
    }
}
