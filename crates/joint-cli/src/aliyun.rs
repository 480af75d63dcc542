//! The `aliyun` backend of the deployment config, and `joint aliyun …` admin commands.
//!
//! ```yaml
//! clouds:
//!   aliyun:
//!     backend: aliyun
//!     region: cn-hangzhou
//!     account_id: "1234567890123456"
//!     bucket: joint-bucket
//!     instance: joint
//!     table: joint
//!     # optional endpoints (default: the public ones of the region)
//!     fc_endpoint: https://1234567890123456.cn-hangzhou.fc.aliyuncs.com
//!     oss_endpoint: https://oss-cn-hangzhou.aliyuncs.com
//!     ots_endpoint: https://joint.cn-hangzhou.ots.aliyuncs.com
//!     ots_sign_version: v2           # or v4 (Tablestore SignV4, scoped to `region`)
//! ```
//! Credentials come from `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and
//! the optional `ALIBABA_CLOUD_SECURITY_TOKEN`; they are never read from the config file.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use joint_shim::Cloud;
use joint_shim_aliyun::ots::OtsClient;
use joint_shim_aliyun::{Credential, FcFaas, OssBlobStore};
use joint_store::tablestore::{TablestoreCoordStore, create_table};

/// Setting keys of an `aliyun` cloud, with the component(s) each one configures.
pub const SETTINGS: &[(&str, &str)] = &[
    ("region", "fc, oss, tablestore"),
    ("account_id", "fc"),
    ("fc_endpoint", "fc"),
    ("qualifier", "fc"),
    ("async_payload_limit", "fc"),
    ("oss_endpoint", "oss"),
    ("bucket", "oss"),
    ("path_style", "oss"),
    ("ots_endpoint", "tablestore"),
    ("instance", "tablestore"),
    ("table", "tablestore"),
    ("ots_sign_version", "tablestore"),
    ("timeout_ms", "fc, oss, tablestore"),
];

/// Build the `aliyun`-backed cloud `name`: FC 3.0 for invocations, Tablestore for the
/// coordination store, OSS for spilled payloads. A key not in [`SETTINGS`] is an error
/// naming it.
pub async fn build_cloud(name: &str, settings: &BTreeMap<String, String>) -> Result<Cloud, String> {
    if let Some(k) = settings
        .keys()
        .find(|k| !SETTINGS.iter().any(|(key, _)| key == k))
    {
        return Err(format!(
            "cloud '{name}' (aliyun): unknown setting '{k}' (known: {})",
            SETTINGS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let cred = Credential::from_env().map_err(|e| {
        format!("cloud '{name}' (aliyun): {e} (credentials come from the environment)")
    })?;
    let mut fc = FcFaas::builder().cloud(name).credential(cred.clone());
    let mut oss = OssBlobStore::builder().cloud(name).credential(cred.clone());
    let mut ots = TablestoreCoordStore::builder().cloud(name).credential(cred);
    for (k, v) in settings {
        let Some((_, to)) = SETTINGS.iter().find(|(key, _)| key == k) else {
            continue; // unreachable: checked above
        };
        if to.contains("fc") {
            fc = fc.with_config(k, v);
        }
        if to.contains("oss") {
            oss = oss.with_config(k, v);
        }
        if to.contains("tablestore") {
            ots = ots.with_config(k, v);
        }
    }
    let wrap = |e: String| format!("cloud '{name}' (aliyun): {e}");
    Ok(Cloud {
        name: name.to_string(),
        faas: Arc::new(fc.build().map_err(wrap)?),
        coord: Arc::new(ots.build().map_err(wrap)?),
        blob: Arc::new(oss.build().map_err(wrap)?),
    })
}

/// `joint aliyun …`.
#[derive(clap::Args)]
pub struct AliyunArgs {
    #[command(subcommand)]
    cmd: AliyunCmd,
}

#[derive(clap::Subcommand)]
enum AliyunCmd {
    /// Create the Tablestore coordination table `(p STRING, k STRING)` with a TTL (idempotent).
    CreateTable {
        /// Tablestore endpoint, e.g. https://joint.cn-hangzhou.ots.aliyuncs.com.
        #[arg(long)]
        endpoint: String,
        /// Instance name.
        #[arg(long)]
        instance: String,
        /// Table name.
        #[arg(long, default_value = "joint")]
        table: String,
        /// Time to live of rows in seconds (-1: keep forever): the retention of a run's working state
        /// (ADR 0009); it must cover Function Compute's redelivery window (up to 7 days).
        #[arg(long, default_value_t = 8 * 86_400, allow_negative_numbers = true)]
        ttl_secs: i32,
        /// Sign with Tablestore SignV4 scoped to this region (default: SignV2).
        #[arg(long, value_name = "REGION")]
        sign_v4_region: Option<String>,
    },
}

/// Run `joint aliyun …`.
pub async fn run(a: AliyunArgs) -> ExitCode {
    match a.cmd {
        AliyunCmd::CreateTable {
            endpoint,
            instance,
            table,
            ttl_secs,
            sign_v4_region,
        } => match create(&endpoint, &instance, &table, ttl_secs, sign_v4_region).await {
            Ok(created) => {
                println!(
                    "{}",
                    serde_json::json!({"table": table, "instance": instance, "created": created, "ttl_secs": ttl_secs})
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

async fn create(
    endpoint: &str,
    instance: &str,
    table: &str,
    ttl: i32,
    sign_v4_region: Option<String>,
) -> Result<bool, String> {
    if ttl == 0 || ttl < -1 {
        return Err(format!(
            "--ttl-secs {ttl}: use a positive number of seconds or -1"
        ));
    }
    let cred = Credential::from_env()?;
    let mut b = OtsClient::builder()
        .endpoint(endpoint)
        .instance(instance)
        .credential(cred);
    if let Some(region) = sign_v4_region {
        b = b.sign_version(joint_shim_aliyun::sign::ots::SignVersion::V4 { region });
    }
    let client = b.build()?;
    create_table(&client, table, ttl)
        .await
        .map_err(|e| format!("CreateTable '{table}' on instance '{instance}' at {endpoint}: {e}"))
}

/// The `aliyun` backend of `--clouds` files: Function Compute 3.0, Tablestore and OSS.
pub struct AliyunBackend;

#[async_trait::async_trait]
impl joint_shim::Backend for AliyunBackend {
    fn name(&self) -> &str {
        "aliyun"
    }
    async fn build(
        &self,
        cloud: &str,
        settings: &BTreeMap<String, String>,
    ) -> joint_shim::Result<Cloud> {
        build_cloud(cloud, settings).await.map_err(|e| {
            joint_shim::Error::new(
                joint_shim::ErrorKind::InvalidInput,
                "aliyun",
                "config",
                cloud,
                e,
            )
        })
    }
}
