//! How to reach AWS (or an emulator): region, endpoint and credentials, shared by every AWS
//! client joint builds (DynamoDB here; Lambda and S3 in joint-shim-aws).

use std::fmt;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use joint_shim::{Error, ErrorKind, Result};

/// Region, endpoint and credentials. Credentials left unset come from the default chain
/// (environment, shared config and credentials files, web identity, container and instance
/// metadata). The secret key and session token never appear in `Debug` output.
#[derive(Clone, Default)]
pub struct AwsConnection {
    /// AWS region (`region`; env `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Endpoint override for every service (`endpoint_url`; env `AWS_ENDPOINT_URL`), e.g. an
    /// emulator such as ministack at `http://127.0.0.1:4566`.
    pub endpoint_url: Option<String>,
    /// Static access key id (`access_key_id`).
    pub access_key_id: Option<String>,
    /// Static secret access key (`secret_access_key`); redacted in `Debug`.
    pub secret_access_key: Option<String>,
    /// Static session token (`session_token`); redacted in `Debug`.
    pub session_token: Option<String>,
    /// Named profile of the shared config files (`profile`; env `AWS_PROFILE`).
    pub profile: Option<String>,
}

impl fmt::Debug for AwsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AwsConnection")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("profile", &self.profile)
            .finish()
    }
}

/// The configuration keys [`AwsConnection::with_config`] accepts.
pub const CONNECTION_KEYS: &[&str] = &[
    "region",
    "endpoint_url",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "profile",
];

impl AwsConnection {
    /// Nothing set: everything from the default chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Region and endpoint from the standard variables (`AWS_REGION` or `AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_PROFILE`); credentials stay with the default chain, which reads
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` itself.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        AwsConnection {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            profile: var("AWS_PROFILE"),
            ..Self::default()
        }
    }

    /// Set one key of [`CONNECTION_KEYS`]. Returns `Ok(false)` for a key that is not a
    /// connection key, so callers can chain their own keys.
    pub fn with_config(&mut self, key: &str, value: &str) -> bool {
        let v = Some(value.to_string());
        match key {
            "region" => self.region = v,
            "endpoint_url" => self.endpoint_url = v,
            "access_key_id" => self.access_key_id = v,
            "secret_access_key" => self.secret_access_key = v,
            "session_token" => self.session_token = v,
            "profile" => self.profile = v,
            _ => return false,
        }
        true
    }

    /// Check the settings and load the SDK configuration (resolving the credential chain
    /// lazily, on the first request).
    pub async fn load(&self, backend: &str) -> Result<SdkConfig> {
        let bad = |key: &str, msg: String| {
            Error::new(ErrorKind::InvalidInput, backend, "config", key, msg)
        };
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => {
                return Err(bad(
                    "secret_access_key",
                    "access_key_id is set but secret_access_key is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "access_key_id",
                    "secret_access_key is set but access_key_id is not".into(),
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad(
                "endpoint_url",
                format!("'{url}' is not an http:// or https:// URL"),
            ));
        }
        // Every AWS call is bounded: a connect timeout, and a timeout per attempt and per
        // operation (the SDK's own retries included); joint's call policy retries above it.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .operation_attempt_timeout(std::time::Duration::from_secs(30))
            .operation_timeout(std::time::Duration::from_secs(90))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(r) = &self.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &self.endpoint_url {
            loader = loader.endpoint_url(u.clone());
        }
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p.clone());
        }
        if let (Some(ak), Some(sk)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                ak.clone(),
                sk.clone(),
                self.session_token.clone(),
                None,
                "joint-config",
            ));
        }
        let cfg = loader.load().await;
        if cfg.region().is_none() {
            return Err(bad(
                "region",
                "no AWS region: set `region` or AWS_REGION".into(),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let mut c = AwsConnection::new();
        assert!(c.with_config("access_key_id", "AKIDEXAMPLE"));
        assert!(c.with_config("secret_access_key", "wJalrXUtnFEMI/K7MDENG"));
        assert!(c.with_config("session_token", "TOKEN123"));
        assert!(!c.with_config("tabel", "x"));
        let d = format!("{c:?}");
        assert!(d.contains("AKIDEXAMPLE"));
        assert!(
            !d.contains("wJalrXUtnFEMI") && !d.contains("TOKEN123"),
            "{d}"
        );
    }

    #[tokio::test]
    async fn half_credentials_and_bad_urls_are_refused() {
        let mut c = AwsConnection::new();
        c.with_config("region", "us-east-1");
        c.with_config("access_key_id", "AKID");
        let e = c.load("dynamodb").await.expect_err("half credentials");
        assert_eq!(e.target(), "secret_access_key");
        let mut c = AwsConnection::new();
        c.with_config("region", "us-east-1");
        c.with_config("endpoint_url", "localhost:4566");
        let e = c.load("dynamodb").await.expect_err("bad url");
        assert_eq!(e.target(), "endpoint_url");
    }
}
