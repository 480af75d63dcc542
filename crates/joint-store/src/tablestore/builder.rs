//! Builder of [`TablestoreCoordStore`].

use std::collections::BTreeMap;
use std::time::Duration;

use joint_shim_aliyun::Credential;
use joint_shim_aliyun::ots::OtsClient;

use super::store::TablestoreCoordStore;

/// Builds a [`TablestoreCoordStore`]. Keys for [`TablestoreStoreBuilder::with_config`]:
/// `ots_endpoint` (alias `tablestore_endpoint`), `instance`, `region`, `table`,
/// `item_limit`, `join_value_limit`, `timeout_ms`, `ttl_seconds` (the table's time to live as
/// created, `-1` for none; default 8 days, what `joint aliyun create-table` sets),
/// `access_key_id`, `access_key_secret`, `security_token`, `ots_sign_version` (`v2`, the
/// default, or `v4`: SignV4 scoped to `region`, which it needs).
/// Unknown keys are errors naming the key.
#[derive(Debug, Clone, Default)]
pub struct TablestoreStoreBuilder {
    cloud: Option<String>,
    endpoint: Option<String>,
    instance: Option<String>,
    region: Option<String>,
    table: Option<String>,
    item_limit: Option<u64>,
    ttl: Option<Option<Duration>>,
    join_value_limit: Option<u64>,
    timeout: Option<Duration>,
    credential: Option<Credential>,
    sign_v4: bool,
    settings: BTreeMap<String, String>,
}

impl TablestoreStoreBuilder {
    /// Empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Credential (`ALIBABA_CLOUD_*`) and region (`ALIBABA_CLOUD_REGION`) from the environment.
    pub fn from_env() -> Self {
        TablestoreStoreBuilder {
            credential: Credential::from_env().ok(),
            region: std::env::var("ALIBABA_CLOUD_REGION").ok(),
            ..Self::default()
        }
    }
    /// Set a key; validated in `build`.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }
    /// Cloud name in errors (default `aliyun`).
    pub fn cloud(mut self, c: &str) -> Self {
        self.cloud = Some(c.into());
        self
    }
    /// Endpoint (default `https://{instance}.{region}.ots.aliyuncs.com`).
    pub fn endpoint(mut self, e: &str) -> Self {
        self.endpoint = Some(e.into());
        self
    }
    /// Instance name.
    pub fn instance(mut self, i: &str) -> Self {
        self.instance = Some(i.into());
        self
    }
    /// Table name.
    pub fn table(mut self, t: &str) -> Self {
        self.table = Some(t.into());
        self
    }
    /// Credential.
    pub fn credential(mut self, c: Credential) -> Self {
        self.credential = Some(c);
        self
    }

    /// Validate and build.
    pub fn build(mut self) -> Result<TablestoreCoordStore, String> {
        let (mut id, mut secret, mut token) = (None, None, None);
        for (k, v) in std::mem::take(&mut self.settings) {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("tablestore: setting '{k}' must be a number, got '{v}'"))
            };
            match k.as_str() {
                "ots_endpoint" | "tablestore_endpoint" => self.endpoint = Some(v),
                "instance" => self.instance = Some(v),
                "region" => self.region = Some(v),
                "table" => self.table = Some(v),
                "item_limit" => self.item_limit = Some(num(&v)?),
                "join_value_limit" => self.join_value_limit = Some(num(&v)?),
                "timeout_ms" => self.timeout = Some(Duration::from_millis(num(&v)?)),
                "ttl_seconds" => {
                    self.ttl = Some(match v.trim() {
                        "-1" => None,
                        t => Some(Duration::from_secs(num(t)?).max(Duration::from_secs(1))),
                    })
                }
                "access_key_id" => id = Some(v),
                "access_key_secret" => secret = Some(v),
                "security_token" => token = Some(v),
                "ots_sign_version" => {
                    self.sign_v4 = match v.to_ascii_lowercase().as_str() {
                        "v2" => false,
                        "v4" => true,
                        _ => {
                            return Err(format!(
                                "tablestore: setting 'ots_sign_version' must be v2 or v4, got '{v}'"
                            ));
                        }
                    }
                }
                other => return Err(format!("tablestore: unknown setting '{other}'")),
            }
        }
        if let (Some(i), Some(s)) = (id, secret) {
            let mut c = Credential::new(i, s);
            if let Some(t) = token {
                c = c.with_security_token(t);
            }
            self.credential = Some(c);
        }
        let instance = self.instance.ok_or("tablestore: 'instance' is required")?;
        let endpoint = match (self.endpoint, &self.region) {
            (Some(e), _) => e,
            (None, Some(r)) => format!("https://{instance}.{r}.ots.aliyuncs.com"),
            (None, None) => return Err("tablestore: set 'ots_endpoint' or 'region'".into()),
        };
        let mut b = OtsClient::builder()
            .endpoint(endpoint)
            .instance(instance)
            .credential(self.credential.ok_or("tablestore: no credential")?);
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if self.sign_v4 {
            let region = self
                .region
                .clone()
                .ok_or("tablestore: ots_sign_version v4 needs 'region'")?;
            b = b.sign_version(joint_shim_aliyun::sign::ots::SignVersion::V4 { region });
        }
        let client = b.build()?;
        let limit = self.item_limit.unwrap_or(super::store::ITEM_LIMIT);
        if limit > super::store::ITEM_LIMIT {
            return Err(format!(
                "tablestore: item_limit {limit} is over Tablestore's {}-byte cell limit",
                super::store::ITEM_LIMIT
            ));
        }
        let join_limit = self
            .join_value_limit
            .unwrap_or(super::store::DEFAULT_JOIN_VALUE_LIMIT);
        if join_limit > super::store::ITEM_LIMIT {
            return Err(format!(
                "tablestore: join_value_limit {join_limit} is over Tablestore's {}-byte cell limit",
                super::store::ITEM_LIMIT
            ));
        }
        let store = TablestoreCoordStore::new(
            client,
            self.table.unwrap_or_else(|| "joint".into()),
            &self.cloud.unwrap_or_else(|| "aliyun".into()),
            limit,
        )
        .with_join_value_limit(join_limit);
        Ok(match self.ttl {
            Some(ttl) => store.with_retention(ttl),
            None => store,
        })
    }
}
