//! A minimal Tablestore client: sign, POST the protobuf, verify and decode the answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

use super::error::OtsError;
use crate::credential::Credential;
use crate::sign::{self, Parts};
use crate::time::Timestamp;

/// Builds an [`OtsClient`].
#[derive(Debug, Clone, Default)]
pub struct OtsClientBuilder {
    endpoint: Option<String>,
    instance: Option<String>,
    credential: Option<Credential>,
    timeout: Option<Duration>,
    verify_response: Option<bool>,
    sign_version: Option<sign::ots::SignVersion>,
}

impl OtsClientBuilder {
    /// `https://<instance>.<region>.ots.aliyuncs.com` or a local `http://127.0.0.1:PORT`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
    /// Instance name (`x-ots-instancename`).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }
    /// Credential.
    pub fn credential(mut self, c: Credential) -> Self {
        self.credential = Some(c);
        self
    }
    /// Per-request timeout (default 10 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// Check the response signature and MD5 (default true).
    pub fn verify_response(mut self, v: bool) -> Self {
        self.verify_response = Some(v);
        self
    }
    /// The request signature: SignV2 (the default) or SignV4 scoped to a region (what the
    /// official SDKs send when a region is configured).
    pub fn sign_version(mut self, v: sign::ots::SignVersion) -> Self {
        self.sign_version = Some(v);
        self
    }
    /// Validate and build.
    pub fn build(self) -> Result<OtsClient, String> {
        let endpoint = self
            .endpoint
            .ok_or("tablestore: 'endpoint' is required")?
            .trim_end_matches('/')
            .to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "tablestore: endpoint '{endpoint}' must start with http:// or https://"
            ));
        }
        let instance = self.instance.ok_or("tablestore: 'instance' is required")?;
        let credential = self
            .credential
            .ok_or("tablestore: a credential is required")?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout.unwrap_or(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("tablestore: cannot build the HTTP client: {e}"))?;
        let sign_version = self.sign_version.unwrap_or_default();
        if let sign::ots::SignVersion::V4 { region } = &sign_version
            && region.trim().is_empty()
        {
            return Err("tablestore: SignV4 needs a region".into());
        }
        Ok(OtsClient {
            endpoint,
            instance,
            credential,
            http,
            sign_version,
            verify_response: self.verify_response.unwrap_or(true),
            requests: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }
}

/// A Tablestore client for one instance.
#[derive(Clone)]
pub struct OtsClient {
    endpoint: String,
    instance: String,
    credential: Credential,
    http: reqwest::Client,
    sign_version: sign::ots::SignVersion,
    verify_response: bool,
    requests: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl std::fmt::Debug for OtsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtsClient")
            .field("endpoint", &self.endpoint)
            .field("instance", &self.instance)
            .field("credential", &self.credential)
            .field("sign_version", &self.sign_version)
            .finish()
    }
}

impl OtsClient {
    /// A builder.
    pub fn builder() -> OtsClientBuilder {
        OtsClientBuilder::default()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Requests sent so far, by action (wire-level operation counts).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Call `action` with `req`; a non-2xx answer is an [`OtsError`] (status 0: transport).
    pub async fn call<Q: Message, R: Message + Default>(
        &self,
        action: &str,
        req: &Q,
    ) -> Result<R, OtsError> {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(action.to_string())
            .or_default() += 1;
        let body = req.encode_to_vec();
        let headers = sign::ots::sign_with(
            &self.sign_version,
            action,
            &self.instance,
            &body,
            &self.credential,
            Timestamp::now(),
        );
        // A V4 response is signed with the request's signing key.
        let response_key = match &self.sign_version {
            sign::ots::SignVersion::V2 => sign::ots::ResponseKey::V2,
            sign::ots::SignVersion::V4 { region } => {
                let date = headers
                    .iter()
                    .find(|(k, _)| k == "x-ots-signdate")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                sign::ots::ResponseKey::V4(sign::ots::v4_signing_key(
                    self.credential.access_key_secret(),
                    date,
                    region,
                ))
            }
        };
        let mut rb = self.http.post(format!("{}/{action}", self.endpoint));
        for (k, v) in &headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let transport = |m: String| OtsError {
            status: 0,
            code: "OTSTransportError".into(),
            message: m,
            request_id: None,
        };
        let resp = rb.body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                OtsError {
                    code: "OTSRequestTimeout".into(),
                    ..transport(format!("{action}: {e}"))
                }
            } else {
                transport(format!("{action}: {e}"))
            }
        })?;
        let status = resp.status().as_u16();
        let rh: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let request_id = rh
            .iter()
            .find(|(k, _)| k == "x-ots-requestid")
            .map(|(_, v)| v.clone());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(format!("{action}: reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(OtsError::decode(status, &bytes, request_id));
        }
        if self.verify_response {
            self.check_response(action, &rh, &bytes, request_id.clone(), &response_key)?;
        }
        R::decode(bytes.as_ref()).map_err(|e| OtsError {
            status,
            code: "OTSClientDecodeError".into(),
            message: format!("{action}: cannot decode the answer: {e}"),
            request_id,
        })
    }

    fn check_response(
        &self,
        action: &str,
        h: &[(String, String)],
        body: &[u8],
        request_id: Option<String>,
        key: &sign::ots::ResponseKey,
    ) -> Result<(), OtsError> {
        let bad = |m: String| OtsError {
            status: 200,
            code: "OTSClientResponseInvalid".into(),
            message: m,
            request_id: request_id.clone(),
        };
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        match get("x-ots-contentmd5") {
            Some(m) if m == sign::md5_base64(body) => {}
            Some(_) => return Err(bad(format!("{action}: response MD5 mismatch"))),
            None => return Err(bad(format!("{action}: response has no x-ots-contentmd5"))),
        }
        let Some(auth) = get("authorization") else {
            return Err(bad(format!("{action}: response has no Authorization")));
        };
        let want =
            sign::ots::response_authorization_with(&format!("/{action}"), h, &self.credential, key);
        if auth != want {
            return Err(bad(format!("{action}: response signature does not verify")));
        }
        Ok(())
    }

    /// The parts of a request as the server sees them (for tests of the verifier).
    pub fn signed_parts(&self, action: &str, body: &[u8], now: Timestamp) -> Parts {
        let mut p = Parts::new("POST", &format!("/{action}"));
        p.headers = sign::ots::sign_with(
            &self.sign_version,
            action,
            &self.instance,
            body,
            &self.credential,
            now,
        );
        p
    }
}
