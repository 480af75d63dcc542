//! Function Compute 3.0: [`FcFaas`] invokes functions with hand-signed InvokeFunction calls;
//! [`adapter`] runs a joint function inside an FC custom runtime.

pub mod adapter;
pub mod error;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use joint_shim::{Error, ErrorKind, Faas, FaasCapabilities, Result};

use crate::credential::Credential;
use crate::http::{authority, header_pairs};
use crate::sign::{self, Parts, percent_encode};
use crate::time::Timestamp;

pub use error::{FcError, parse_error};

/// The FC 3.0 API version.
pub const API_VERSION: &str = "2023-03-30";
/// Default async payload limit of FC (128 KB).
pub const ASYNC_PAYLOAD_LIMIT: u64 = 128 * 1024;
/// Sync payload limit of FC 3.0 (32 MB).
pub const SYNC_PAYLOAD_LIMIT: u64 = 32 * 1024 * 1024;
/// How long after accepting an asynchronous event FC may still deliver it, by default: the
/// longest `maxAsyncEventAgeInSeconds` an async-invoke configuration allows (604800 s, 7 days;
/// the default is 1 day) plus a day for the last attempt to run. Lower it with
/// `redelivery_window_seconds` when the functions' async configuration is shorter.
pub const DEFAULT_REDELIVERY_WINDOW: Duration = Duration::from_secs(8 * 24 * 3600);

/// Builds an [`FcFaas`]. Keys for [`FcFaasBuilder::with_config`]: `region`, `account_id`,
/// `endpoint`, `qualifier`, `async_payload_limit`, `timeout_ms`, `throttle_retries`,
/// `max_retry_after_ms`, `redelivery_window_seconds`, `access_key_id`, `access_key_secret`,
/// `security_token`.
#[derive(Debug, Clone, Default)]
pub struct FcFaasBuilder {
    cloud: Option<String>,
    region: Option<String>,
    account_id: Option<String>,
    endpoint: Option<String>,
    qualifier: Option<String>,
    credential: Option<Credential>,
    async_payload_limit: Option<u64>,
    timeout: Option<Duration>,
    throttle_retries: Option<u32>,
    max_retry_after: Option<Duration>,
    redelivery_window: Option<Duration>,
    settings: BTreeMap<String, String>,
}

impl FcFaasBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Credential from `ALIBABA_CLOUD_*`, region from `ALIBABA_CLOUD_REGION` and account id
    /// from `ALIBABA_CLOUD_ACCOUNT_ID` when set.
    pub fn from_env() -> Self {
        let mut b = Self::new();
        if let Ok(c) = Credential::from_env() {
            b.credential = Some(c);
        }
        b.region = std::env::var("ALIBABA_CLOUD_REGION").ok();
        b.account_id = std::env::var("ALIBABA_CLOUD_ACCOUNT_ID").ok();
        b
    }

    /// Set a key (see the type docs); validated in [`FcFaasBuilder::build`].
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.to_string(), value.to_string());
        self
    }
    /// The cloud name used in errors (default `aliyun`).
    pub fn cloud(mut self, name: &str) -> Self {
        self.cloud = Some(name.to_string());
        self
    }
    /// Region, e.g. `cn-hangzhou`.
    pub fn region(mut self, r: &str) -> Self {
        self.region = Some(r.to_string());
        self
    }
    /// Account id (part of the default endpoint).
    pub fn account_id(mut self, a: &str) -> Self {
        self.account_id = Some(a.to_string());
        self
    }
    /// Endpoint URL (default `https://{account_id}.{region}.fc.aliyuncs.com`).
    pub fn endpoint(mut self, url: &str) -> Self {
        self.endpoint = Some(url.to_string());
        self
    }
    /// Version or alias invoked (`qualifier=`).
    pub fn qualifier(mut self, q: &str) -> Self {
        self.qualifier = Some(q.to_string());
        self
    }
    /// Credential.
    pub fn credential(mut self, c: Credential) -> Self {
        self.credential = Some(c);
        self
    }
    /// Async payload limit in bytes (default 128 KB).
    pub fn async_payload_limit(mut self, bytes: u64) -> Self {
        self.async_payload_limit = Some(bytes);
        self
    }
    /// Request timeout (default 30 s; sync invocations wait for the function).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// How often a throttled call that carries `x-acs-retry-after` is retried in place.
    pub fn throttle_retries(mut self, n: u32) -> Self {
        self.throttle_retries = Some(n);
        self
    }

    /// Validate and build; an error names the bad key.
    pub fn build(mut self) -> std::result::Result<FcFaas, String> {
        let mut id = None;
        let mut secret = None;
        let mut token = None;
        for (k, v) in std::mem::take(&mut self.settings) {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("fc: setting '{k}' must be a number, got '{v}'"))
            };
            match k.as_str() {
                "region" => self.region = Some(v),
                "account_id" => self.account_id = Some(v),
                "endpoint" | "fc_endpoint" => self.endpoint = Some(v),
                "qualifier" => self.qualifier = Some(v),
                "async_payload_limit" => self.async_payload_limit = Some(num(&v)?),
                "timeout_ms" => self.timeout = Some(Duration::from_millis(num(&v)?)),
                "throttle_retries" => self.throttle_retries = Some(num(&v)? as u32),
                "max_retry_after_ms" => {
                    self.max_retry_after = Some(Duration::from_millis(num(&v)?))
                }
                "redelivery_window_seconds" => {
                    self.redelivery_window = Some(Duration::from_secs(num(&v)?))
                }
                "access_key_id" => id = Some(v),
                "access_key_secret" => secret = Some(v),
                "security_token" => token = Some(v),
                other => return Err(format!("fc: unknown setting '{other}'")),
            }
        }
        if let (Some(i), Some(s)) = (id, secret) {
            let mut c = Credential::new(i, s);
            if let Some(t) = token {
                c = c.with_security_token(t);
            }
            self.credential = Some(c);
        }
        let credential = self.credential.ok_or(
            "fc: no credential (set ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET)",
        )?;
        let endpoint = match (self.endpoint, &self.account_id, &self.region) {
            (Some(e), _, _) => e.trim_end_matches('/').to_string(),
            (None, Some(a), Some(r)) => format!("https://{a}.{r}.fc.aliyuncs.com"),
            _ => return Err("fc: set 'endpoint', or both 'account_id' and 'region'".into()),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "fc: endpoint '{endpoint}' must start with http:// or https://"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout.unwrap_or(Duration::from_secs(30)))
            .build()
            .map_err(|e| format!("fc: cannot build the HTTP client: {e}"))?;
        let cloud = self.cloud.unwrap_or_else(|| "aliyun".into());
        Ok(FcFaas {
            backend: format!("fc({cloud})"),
            host: authority(&endpoint).to_string(),
            endpoint,
            qualifier: self.qualifier,
            credential,
            http,
            async_limit: self.async_payload_limit.unwrap_or(ASYNC_PAYLOAD_LIMIT),
            throttle_retries: self.throttle_retries.unwrap_or(2),
            max_retry_after: self.max_retry_after.unwrap_or(Duration::from_secs(5)),
            redelivery_window: self.redelivery_window.unwrap_or(DEFAULT_REDELIVERY_WINDOW),
        })
    }
}

/// Function Compute 3.0 invoker.
#[derive(Clone)]
pub struct FcFaas {
    backend: String,
    endpoint: String,
    host: String,
    qualifier: Option<String>,
    credential: Credential,
    http: reqwest::Client,
    async_limit: u64,
    throttle_retries: u32,
    max_retry_after: Duration,
    redelivery_window: Duration,
}

impl std::fmt::Debug for FcFaas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcFaas")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("qualifier", &self.qualifier)
            .field("credential", &self.credential)
            .finish()
    }
}

/// The signed parts of an InvokeFunction request (pure; exposed for tests and fixtures).
#[allow(clippy::too_many_arguments)]
pub fn invoke_request(
    host: &str,
    function: &str,
    qualifier: Option<&str>,
    asynchronous: bool,
    body: &[u8],
    cred: &Credential,
    now: Timestamp,
    nonce: &str,
) -> Parts {
    let mut p = Parts::new(
        "POST",
        &format!(
            "/{API_VERSION}/functions/{}/invocations",
            percent_encode(function)
        ),
    )
    .header("host", host)
    .header("content-type", "application/octet-stream")
    .header("x-acs-action", "InvokeFunction")
    .header("x-acs-version", API_VERSION)
    .header(
        "x-fc-invocation-type",
        if asynchronous { "Async" } else { "Sync" },
    )
    .header("x-fc-log-type", "None");
    if let Some(q) = qualifier {
        p = p.query("qualifier", q);
    }
    let add = sign::acs3::sign(&p, body, cred, now, nonce);
    p.headers.extend(add);
    p
}

impl FcFaas {
    /// A builder.
    pub fn builder() -> FcFaasBuilder {
        FcFaasBuilder::new()
    }

    fn err(&self, kind: ErrorKind, op: &'static str, f: &str, m: impl Into<String>) -> Error {
        Error::new(kind, self.backend.clone(), op, f, m)
    }

    async fn invoke(
        &self,
        op: &'static str,
        function: &str,
        payload: Bytes,
        asynchronous: bool,
    ) -> Result<Bytes> {
        let limit = if asynchronous {
            self.async_limit
        } else {
            SYNC_PAYLOAD_LIMIT
        };
        if payload.len() as u64 > limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                op,
                function,
                format!(
                    "payload of {} bytes is over FC's {limit}-byte {} limit",
                    payload.len(),
                    if asynchronous { "async" } else { "sync" }
                ),
            ));
        }
        let mut attempt = 0;
        loop {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let parts = invoke_request(
                &self.host,
                function,
                self.qualifier.as_deref(),
                asynchronous,
                &payload,
                &self.credential,
                Timestamp::now(),
                &nonce,
            );
            let mut url = format!("{}{}", self.endpoint, parts.path);
            if let Some(q) = &self.qualifier {
                url.push_str(&format!("?qualifier={}", percent_encode(q)));
            }
            let mut rb = self.http.post(url);
            for (k, v) in &parts.headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            let resp = match rb.body(payload.clone()).send().await {
                Ok(r) => r,
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Unavailable
                    };
                    return Err(self.err(
                        kind,
                        op,
                        function,
                        format!("cannot reach {}: {e}", self.endpoint),
                    ));
                }
            };
            let status = resp.status().as_u16();
            let headers = header_pairs(resp.headers());
            let body = resp.bytes().await.map_err(|e| {
                self.err(
                    ErrorKind::Unavailable,
                    op,
                    function,
                    format!("reading the answer: {e}"),
                )
            })?;
            match status {
                202 if asynchronous => return Ok(Bytes::new()),
                200 if !asynchronous => {
                    if let Some(t) = crate::http::find(&headers, "x-fc-error-type") {
                        let mut e = self
                            .err(
                                ErrorKind::FunctionError,
                                op,
                                function,
                                format!("{t}: {}", String::from_utf8_lossy(&body)),
                            )
                            .with_provider_code(t.to_string());
                        if let Some(r) = crate::http::find(&headers, "x-fc-request-id") {
                            e = e.with_request_id(r.to_string());
                        }
                        return Err(e);
                    }
                    return Ok(body);
                }
                200..=299 => {
                    return Err(self.err(
                        ErrorKind::Other,
                        op,
                        function,
                        format!(
                            "unexpected status {status} for an {} invocation",
                            if asynchronous { "async" } else { "sync" }
                        ),
                    ));
                }
                _ => {
                    let fe = FcError::decode(status, &headers, &body);
                    if fe.is_throttle()
                        && attempt < self.throttle_retries
                        && let Some(ms) = fe.retry_after_ms
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(ms).min(self.max_retry_after))
                            .await;
                        continue;
                    }
                    return Err(parse_error(&self.backend, op, function, &fe));
                }
            }
        }
    }
}

#[async_trait]
impl Faas for FcFaas {
    fn capabilities(&self) -> FaasCapabilities {
        FaasCapabilities {
            async_payload_limit: self.async_limit,
            sync_payload_limit: SYNC_PAYLOAD_LIMIT,
            redelivery_window: self.redelivery_window,
        }
    }

    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.invoke("invoke_async", function, payload, true)
            .await
            .map(|_| ())
    }

    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.invoke("invoke_sync", function, payload, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates_and_redacts() {
        let e = FcFaas::builder()
            .credential(Credential::new("a", "b"))
            .build()
            .unwrap_err();
        assert!(e.contains("account_id"), "{e}");
        let e = FcFaas::builder()
            .credential(Credential::new("a", "b"))
            .with_config("endpoint", "http://x")
            .with_config("bogus", "1")
            .build()
            .unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = FcFaas::builder()
            .credential(Credential::new("a", "b"))
            .with_config("async_payload_limit", "lots")
            .build()
            .unwrap_err();
        assert!(e.contains("async_payload_limit"), "{e}");
        let f = FcFaas::builder()
            .credential(Credential::new("AKID", "topsecret"))
            .account_id("123")
            .region("cn-hangzhou")
            .with_config("async_payload_limit", "1000")
            .build()
            .expect("builds");
        assert_eq!(f.endpoint, "https://123.cn-hangzhou.fc.aliyuncs.com");
        assert_eq!(f.capabilities().async_payload_limit, 1000);
        let d = format!("{f:?}");
        assert!(!d.contains("topsecret") && d.contains("AKID"), "{d}");
    }

    #[test]
    fn invoke_request_shape() {
        let c = Credential::new("ak", "sk");
        let p = invoke_request(
            "h",
            "my fn",
            Some("LATEST"),
            true,
            b"{}",
            &c,
            Timestamp::from_unix(0),
            "n",
        );
        assert_eq!(p.path, "/2023-03-30/functions/my%20fn/invocations");
        assert_eq!(p.get("x-fc-invocation-type"), Some("Async"));
        assert_eq!(
            p.query,
            vec![("qualifier".to_string(), "LATEST".to_string())]
        );
        let auth = p.get("Authorization").expect("signed");
        assert!(auth.starts_with("ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"), "{auth}");
    }
}
