//! A joint function as a Function Compute 3.0 custom runtime.
//!
//! FC starts the binary (as `bootstrap`, or any command you configure) and sends each event
//! to `POST /invoke` on `FC_SERVER_PORT` (default 9000); the adapter hands it to
//! `Runtime::handle`, which verifies the envelope, checkpoints in Tablestore, runs the user
//! function and invokes the successors through FC — with no orchestrator.
//!
//! ```text
//! cargo build --release --example fc_function --target x86_64-unknown-linux-musl
//! cp target/x86_64-unknown-linux-musl/release/examples/fc_function bootstrap
//! zip code.zip bootstrap workflow.yaml
//! ```
//! and create one FC 3.0 function per joint function of the workflow (same name, runtime
//! `custom.debian10`, handler anything, command `./bootstrap`), each with the environment
//!
//! | variable | meaning |
//! |---|---|
//! | `JOINT_DEFINITION` | workflow definition in the code package (default `workflow.yaml`) |
//! | `JOINT_CLOUD` | the cloud name these functions have in the definition (default `aliyun`) |
//! | `JOINT_ALIYUN_BUCKET` | OSS bucket for spilled payloads |
//! | `JOINT_ALIYUN_INSTANCE`, `JOINT_ALIYUN_TABLE` | Tablestore instance and table |
//! | `JOINT_ALIYUN_REGION`, `JOINT_ALIYUN_ACCOUNT_ID` | default: FC's `FC_REGION`, `FC_ACCOUNT_ID` |
//! | `JOINT_ALIYUN_FC_ENDPOINT`, `…_OSS_ENDPOINT`, `…_OTS_ENDPOINT` | optional endpoints (e.g. `-internal` ones) |
//! | `JOINT_ALIYUN_OTS_SIGN_VERSION` | Tablestore signature: `v2` (default) or `v4` (scoped to the region) |
//! | `JOINT_KEYS`, `JOINT_INVOKE_DEADLINE_SECS` | deployment keys and the lost-event deadline ([`RuntimeConfig::from_env`]) |
//!
//! A timer trigger whose payload is `{"joint": "sweep"}` makes the function run one sweeper pass
//! (re-driving runs whose events were lost).
//!
//! Credentials: FC passes the function role's STS credentials as `ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and `ALIBABA_CLOUD_SECURITY_TOKEN`.
//!
//! Every cloud of the definition is reached through the same Aliyun account here; a workflow
//! that spans AWS as well builds its `aws` cloud with `joint-shim-aws` in the same way.
//! The user functions are the example handlers of `joint-examples` (`inc`, `square`, `sum`…).

use std::collections::BTreeMap;
use std::sync::Arc;

use joint_shim::{Cloud, Clouds, Deliver, Runtime, RuntimeConfig};
use joint_shim_aliyun::fc::adapter;
use joint_shim_aliyun::{Credential, FcFaas, OssBlobStore};
use joint_store::TablestoreCoordStore;

const KEYS: &[&str] = &[
    "region",
    "account_id",
    "fc_endpoint",
    "oss_endpoint",
    "bucket",
    "ots_endpoint",
    "instance",
    "table",
    "ots_sign_version",
];

fn settings() -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    for k in KEYS {
        if let Ok(v) = std::env::var(format!("JOINT_ALIYUN_{}", k.to_ascii_uppercase())) {
            s.insert(k.to_string(), v);
        }
    }
    for (k, fc_var) in [("region", "FC_REGION"), ("account_id", "FC_ACCOUNT_ID")] {
        if !s.contains_key(k)
            && let Ok(v) = std::env::var(fc_var)
        {
            s.insert(k.to_string(), v);
        }
    }
    s
}

/// One Aliyun cloud: FC invoker, Tablestore coordination store, OSS blob store.
fn aliyun_cloud(name: &str, s: &BTreeMap<String, String>) -> Result<Cloud, String> {
    let cred = Credential::from_env()?;
    let mut fc = FcFaas::builder().cloud(name).credential(cred.clone());
    let mut oss = OssBlobStore::builder().cloud(name).credential(cred.clone());
    let mut ots = TablestoreCoordStore::builder().cloud(name).credential(cred);
    for (k, v) in s {
        match k.as_str() {
            "account_id" | "fc_endpoint" => fc = fc.with_config(k, v),
            "oss_endpoint" | "bucket" => oss = oss.with_config(k, v),
            "ots_endpoint" | "instance" | "table" | "ots_sign_version" => {
                ots = ots.with_config(k, v)
            }
            _ => {
                fc = fc.with_config(k, v);
                oss = oss.with_config(k, v);
                ots = ots.with_config(k, v);
            }
        }
    }
    Ok(Cloud {
        name: name.to_string(),
        faas: Arc::new(fc.build()?),
        coord: Arc::new(ots.build()?),
        blob: Arc::new(oss.build()?),
    })
}

async fn main_inner() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("JOINT_DEFINITION").ok())
        .unwrap_or_else(|| "workflow.yaml".into());
    let src = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let workflow = joint_core::compile::load(&path, &src).map_err(|d| format!("{path}: {d:?}"))?;
    let cloud = std::env::var("JOINT_CLOUD").unwrap_or_else(|_| "aliyun".into());
    if !workflow.clouds.contains(&cloud) {
        return Err(format!(
            "JOINT_CLOUD '{cloud}' is not a cloud of '{}' (clouds: {})",
            workflow.name,
            workflow.clouds.join(", ")
        ));
    }
    let s = settings();
    let mut clouds = Clouds::new();
    for name in &workflow.clouds {
        clouds.insert(aliyun_cloud(name, &s).map_err(|e| format!("cloud '{name}': {e}"))?);
    }
    let runtime = Runtime::new(
        Arc::new(workflow),
        clouds,
        joint_examples::builtin_handlers(),
        RuntimeConfig::from_env()?,
        None,
    )
    .map_err(|e| e.to_string())?;
    let addr = adapter::listen_addr()?;
    eprintln!("joint FC adapter for cloud '{cloud}' listening on {addr}");
    adapter::serve(Arc::new(runtime) as Arc<dyn Deliver>, &cloud, addr, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match main_inner().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
