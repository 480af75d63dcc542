//! [`AwsBuilder`]: one AWS cloud — Lambda, S3 and the DynamoDB coordination table — from
//! configuration keys, the environment, or both. Validation happens only in `build`.

use std::collections::BTreeMap;
use std::sync::Arc;

use joint_shim::{Cloud, Error, ErrorKind, FaasCapabilities, Result};
use joint_store::{AwsConnection, DynamoCoordStore, DynamoStoreBuilder};

use crate::faas::{DEFAULT_ASYNC_LIMIT, DEFAULT_REDELIVERY_WINDOW, DEFAULT_SYNC_LIMIT, LambdaFaas};
use crate::s3::S3BlobStore;

/// Keys of an AWS cloud besides the connection keys (`region`, `endpoint_url`,
/// `access_key_id`, `secret_access_key`, `session_token`, `profile`).
pub const AWS_KEYS: &[&str] = &[
    "table",
    "bucket",
    "key_prefix",
    "function_prefix",
    "qualifier",
    "async_payload_limit",
    "sync_payload_limit",
    "force_path_style",
    "conditional_put",
    "ttl_seconds",
    "item_limit",
    "redelivery_window_seconds",
    "join_value_limit",
    "wide_join_above",
    "cloud",
];

/// Environment variables read by [`AwsBuilder::from_env`], with their keys.
pub const AWS_ENV: &[(&str, &str)] = &[
    ("JOINT_AWS_TABLE", "table"),
    ("JOINT_AWS_BUCKET", "bucket"),
    ("JOINT_AWS_KEY_PREFIX", "key_prefix"),
    ("JOINT_AWS_FUNCTION_PREFIX", "function_prefix"),
    ("JOINT_AWS_QUALIFIER", "qualifier"),
    ("JOINT_AWS_ASYNC_PAYLOAD_LIMIT", "async_payload_limit"),
    ("JOINT_AWS_FORCE_PATH_STYLE", "force_path_style"),
    ("JOINT_AWS_CONDITIONAL_PUT", "conditional_put"),
    ("JOINT_AWS_TTL_SECONDS", "ttl_seconds"),
    (
        "JOINT_AWS_REDELIVERY_WINDOW_SECONDS",
        "redelivery_window_seconds",
    ),
];

/// Builds an [`AwsCloud`].
///
/// ```no_run
/// # async fn f() -> joint_shim::Result<()> {
/// let cloud = joint_shim_aws::AwsBuilder::from_env()
///     .with_config("cloud", "aws")
///     .with_config("table", "joint")
///     .with_config("bucket", "joint-data")
///     .build()
///     .await?
///     .into_cloud();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AwsBuilder {
    conn: AwsConnection,
    settings: BTreeMap<String, String>,
}

/// The three backends of one AWS cloud.
#[derive(Debug, Clone)]
pub struct AwsCloud {
    /// The cloud's name.
    pub name: String,
    /// Lambda.
    pub faas: LambdaFaas,
    /// The DynamoDB coordination table.
    pub coord: DynamoCoordStore,
    /// The S3 bucket.
    pub blob: S3BlobStore,
}

impl AwsCloud {
    /// As a runtime cloud.
    pub fn into_cloud(self) -> Cloud {
        Cloud {
            name: self.name,
            faas: Arc::new(self.faas),
            coord: Arc::new(self.coord),
            blob: Arc::new(self.blob),
        }
    }
}

impl AwsBuilder {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The standard AWS variables plus the `JOINT_AWS_*` variables of [`AWS_ENV`].
    pub fn from_env() -> Self {
        let mut b = AwsBuilder {
            conn: AwsConnection::from_env(),
            settings: BTreeMap::new(),
        };
        for (var, key) in AWS_ENV {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                b.settings.insert((*key).to_string(), v);
            }
        }
        b
    }

    /// Set a key (a connection key or one of [`AWS_KEYS`]); unknown keys and bad values fail
    /// `build` naming the key.
    pub fn with_config(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !self.conn.with_config(key, &value) {
            self.settings.insert(key.to_string(), value);
        }
        self
    }

    /// Every pair of `settings`.
    pub fn with_settings<'a>(
        mut self,
        settings: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        for (k, v) in settings {
            self = self.with_config(k, v.clone());
        }
        self
    }

    fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Validate and build the three clients. Makes no request.
    pub async fn build(self) -> Result<AwsCloud> {
        let cloud = self.setting("cloud").unwrap_or("aws").to_string();
        let backend = format!("aws({cloud})");
        let bad = |key: &str, msg: String| {
            Error::new(
                ErrorKind::InvalidInput,
                backend.as_str(),
                "config",
                key,
                msg,
            )
        };
        for key in self.settings.keys() {
            if !AWS_KEYS.contains(&key.as_str()) {
                return Err(bad(
                    key,
                    format!(
                        "unknown AWS setting '{key}' (known: region, endpoint_url, \
                         access_key_id, secret_access_key, session_token, profile, {})",
                        AWS_KEYS.join(", ")
                    ),
                ));
            }
        }
        let num = |key: &str, default: u64| -> Result<u64> {
            match self.setting(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(key, format!("'{v}' is not a positive integer"))),
            }
        };
        let flag = |key: &str, default: bool| -> Result<bool> {
            match self.setting(key) {
                None => Ok(default),
                Some("true" | "1" | "yes") => Ok(true),
                Some("false" | "0" | "no") => Ok(false),
                Some(v) => Err(bad(key, format!("'{v}' is not true or false"))),
            }
        };
        let caps = FaasCapabilities {
            async_payload_limit: num("async_payload_limit", DEFAULT_ASYNC_LIMIT)?,
            sync_payload_limit: num("sync_payload_limit", DEFAULT_SYNC_LIMIT)?,
            redelivery_window: std::time::Duration::from_secs(num(
                "redelivery_window_seconds",
                DEFAULT_REDELIVERY_WINDOW.as_secs(),
            )?),
        };
        let retention = std::time::Duration::from_secs(num(
            "ttl_seconds",
            joint_shim::caps::DEFAULT_RETENTION.as_secs(),
        )?);
        // Emulators and most S3-compatible stores want path-style addressing.
        let path_style = flag("force_path_style", self.conn.endpoint_url.is_some())?;
        let conditional_put = flag("conditional_put", true)?;
        let bucket = self
            .setting("bucket")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                bad(
                    "bucket",
                    "no bucket: set `bucket` or JOINT_AWS_BUCKET".into(),
                )
            })?
            .to_string();
        let table = self
            .setting("table")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("table", "no table: set `table` or JOINT_AWS_TABLE".into()))?
            .to_string();
        let sdk = self.conn.load(&backend).await?;
        let mut store = DynamoStoreBuilder::new()
            .with_sdk_config(sdk.clone())
            .with_table(table)
            .with_cloud(cloud.clone());
        for key in [
            "ttl_seconds",
            "item_limit",
            "join_value_limit",
            "wide_join_above",
        ] {
            if let Some(v) = self.setting(key) {
                store = store.with_config(key, v);
            }
        }
        let coord = store.build().await?;
        let s3cfg = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .build();
        let blob = S3BlobStore::new(
            aws_sdk_s3::Client::from_conf(s3cfg),
            bucket,
            self.setting("key_prefix").unwrap_or_default(),
            conditional_put,
            &cloud,
        )
        .with_retention(Some(retention));
        let faas = LambdaFaas::new(
            aws_sdk_lambda::Client::new(&sdk),
            self.setting("function_prefix").unwrap_or_default(),
            self.setting("qualifier").map(str::to_string),
            caps,
            &cloud,
        );
        Ok(AwsCloud {
            name: cloud,
            faas,
            coord,
            blob,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AwsBuilder {
        AwsBuilder::new()
            .with_config("region", "us-east-1")
            .with_config("table", "joint")
            .with_config("bucket", "joint-data")
    }

    #[tokio::test]
    async fn builds_and_names_bad_keys() {
        let c = base()
            .with_config("cloud", "aws-east")
            .with_config("function_prefix", "wf-")
            .with_config("async_payload_limit", "262144")
            .with_config("secret_access_key", "SECRETSECRET")
            .with_config("access_key_id", "AKID")
            .build()
            .await
            .expect("valid");
        assert_eq!(c.name, "aws-east");
        assert_eq!(c.faas.function_name("A"), "wf-A");
        use joint_shim::Faas;
        assert_eq!(c.faas.capabilities().async_payload_limit, 262_144);
        assert!(!format!("{c:?}").contains("SECRETSECRET"));
        for (k, v) in [
            ("buckt", "x"),
            ("async_payload_limit", "big"),
            ("force_path_style", "maybe"),
        ] {
            let e = base().with_config(k, v).build().await.expect_err(k);
            assert_eq!(e.target(), k, "{e}");
        }
        let e = AwsBuilder::new()
            .with_config("region", "us-east-1")
            .with_config("table", "joint")
            .build()
            .await
            .expect_err("no bucket");
        assert_eq!(e.target(), "bucket");
    }
}
