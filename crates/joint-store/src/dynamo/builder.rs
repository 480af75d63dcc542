//! [`DynamoStoreBuilder`]: configuration of a [`DynamoCoordStore`], validated only in `build`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use joint_shim::{Error, ErrorKind, Result};

use super::connection::{AwsConnection, CONNECTION_KEYS};
use super::store::DynamoCoordStore;

/// Default largest value of one item: DynamoDB's 400 KB item limit minus 16 KiB for the key,
/// the invoked set and the other attributes.
pub const DEFAULT_ITEM_LIMIT: u64 = 400 * 1024 - 16 * 1024;

/// Default lifetime of an item after its last write before DynamoDB's TTL deletes it: the
/// retention of a run's working state (ADR 0009), 8 days.
pub const DEFAULT_TTL: Duration = joint_shim::caps::DEFAULT_RETENTION;

/// Default largest join member value: 4 KiB (the runtime passes larger branch outputs by
/// reference).
pub const DEFAULT_JOIN_VALUE_LIMIT: u64 = 4 * 1024;

/// Default widest join kept in one item: wider joins (and narrower ones whose item could
/// outgrow 400 KB) keep one item per member (ADR 0101).
pub const DEFAULT_WIDE_JOIN_ABOVE: u32 = 16;

/// The size limits a store is built with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub item: u64,
    pub join_value: u64,
    pub wide_join_above: u32,
}

/// Configuration keys of the store (besides the connection keys `region`, `endpoint_url`,
/// `access_key_id`, `secret_access_key`, `session_token`, `profile`).
pub const STORE_KEYS: &[&str] = &[
    "table",
    "ttl_seconds",
    "item_limit",
    "join_value_limit",
    "wide_join_above",
    "cloud",
];

/// Builds a [`DynamoCoordStore`].
///
/// ```no_run
/// # async fn f() -> joint_shim::Result<()> {
/// use joint_store::DynamoStoreBuilder;
/// let store = DynamoStoreBuilder::from_env()
///     .with_config("table", "joint")
///     .with_config("endpoint_url", "http://127.0.0.1:4566")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct DynamoStoreBuilder {
    conn: AwsConnection,
    settings: BTreeMap<String, String>,
    sdk_config: Option<SdkConfig>,
    client: Option<Client>,
}

impl DynamoStoreBuilder {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The standard AWS variables (see [`AwsConnection::from_env`]) plus
    /// `JOINT_DYNAMODB_TABLE` and `JOINT_DYNAMODB_TTL_SECONDS`.
    pub fn from_env() -> Self {
        let mut b = DynamoStoreBuilder {
            conn: AwsConnection::from_env(),
            ..Self::default()
        };
        for (var, key) in [
            ("JOINT_DYNAMODB_TABLE", "table"),
            ("JOINT_DYNAMODB_TTL_SECONDS", "ttl_seconds"),
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                b.settings.insert(key.to_string(), v);
            }
        }
        b
    }

    /// Set a configuration key (a connection key or one of [`STORE_KEYS`]); an unknown key or a
    /// bad value fails `build` with an error naming the key.
    pub fn with_config(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !self.conn.with_config(key, &value) {
            self.settings.insert(key.to_string(), value);
        }
        self
    }

    /// The table name.
    pub fn with_table(self, table: impl Into<String>) -> Self {
        self.with_config("table", table)
    }

    /// The cloud this store belongs to (names the backend in errors: `dynamodb(aws)`).
    pub fn with_cloud(self, cloud: impl Into<String>) -> Self {
        self.with_config("cloud", cloud)
    }

    /// Use a loaded SDK configuration instead of the connection settings (shares credentials
    /// and HTTP client with other AWS clients).
    pub fn with_sdk_config(mut self, cfg: SdkConfig) -> Self {
        self.sdk_config = Some(cfg);
        self
    }

    /// Use this client (tests with `aws-smithy-mocks`, custom interceptors).
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Validate the configuration and make the store. Makes no request.
    pub async fn build(self) -> Result<DynamoCoordStore> {
        let cloud = self
            .settings
            .get("cloud")
            .cloned()
            .unwrap_or_else(|| "aws".into());
        let backend = format!("dynamodb({cloud})");
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
            if !STORE_KEYS.contains(&key.as_str()) {
                return Err(bad(
                    key,
                    format!(
                        "unknown DynamoDB store setting '{key}' (known: {}, {})",
                        CONNECTION_KEYS.join(", "),
                        STORE_KEYS.join(", ")
                    ),
                ));
            }
        }
        let table = self
            .settings
            .get("table")
            .cloned()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                bad(
                    "table",
                    "no table: set `table` or JOINT_DYNAMODB_TABLE".into(),
                )
            })?;
        if !(3..=255).contains(&table.len())
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(bad(
                "table",
                format!("'{table}' is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .)"),
            ));
        }
        let num = |key: &str, default: u64| -> Result<u64> {
            match self.settings.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(key, format!("'{v}' is not a positive integer"))),
            }
        };
        let ttl = Duration::from_secs(num("ttl_seconds", DEFAULT_TTL.as_secs())?);
        let item_limit = num("item_limit", DEFAULT_ITEM_LIMIT)?;
        if item_limit > 400 * 1024 {
            return Err(bad(
                "item_limit",
                format!("{item_limit} is over DynamoDB's 400 KB item limit"),
            ));
        }
        let join_value = num("join_value_limit", DEFAULT_JOIN_VALUE_LIMIT)?;
        // A wide join's member item holds the value next to its key (up to 1 KB) and a few
        // attributes; it must fit DynamoDB's 400 KB too.
        if join_value > 400 * 1024 - 2 * 1024 {
            return Err(bad(
                "join_value_limit",
                format!(
                    "{join_value} leaves no room for a member item's key within DynamoDB's 400 KB item limit (at most {})",
                    400 * 1024 - 2 * 1024
                ),
            ));
        }
        let wide_join_above = match self.settings.get("wide_join_above") {
            None => DEFAULT_WIDE_JOIN_ABOVE,
            Some(v) => v.parse::<u32>().map_err(|_| {
                bad(
                    "wide_join_above",
                    format!("'{v}' is not a join width (0 makes every join wide)"),
                )
            })?,
        };
        let client = match (self.client, self.sdk_config) {
            (Some(c), _) => c,
            (None, Some(cfg)) => Client::new(&cfg),
            (None, None) => Client::new(&self.conn.load(&backend).await?),
        };
        Ok(DynamoCoordStore::new(
            client,
            table,
            backend,
            ttl,
            Limits {
                item: item_limit,
                join_value,
                wide_join_above,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_keys_are_named() {
        let e = DynamoStoreBuilder::new()
            .with_config("region", "us-east-1")
            .with_config("tabel", "joint")
            .build()
            .await
            .expect_err("unknown key");
        assert_eq!(e.target(), "tabel");
        let e = DynamoStoreBuilder::new()
            .with_config("region", "us-east-1")
            .build()
            .await
            .expect_err("no table");
        assert_eq!(e.target(), "table");
        let e = DynamoStoreBuilder::new()
            .with_config("region", "us-east-1")
            .with_table("joint")
            .with_config("ttl_seconds", "soon")
            .build()
            .await
            .expect_err("bad ttl");
        assert_eq!(e.target(), "ttl_seconds");
        let e = DynamoStoreBuilder::new()
            .with_config("region", "us-east-1")
            .with_table("a b")
            .build()
            .await
            .expect_err("bad table name");
        assert_eq!(e.target(), "table");
    }
}
