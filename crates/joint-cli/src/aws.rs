//! The `aws` backend of the deployment config, and `joint aws …` admin commands.
//!
//! ```yaml
//! clouds:
//!   aws:
//!     backend: aws
//!     region: us-east-1
//!     table: joint            # DynamoDB coordination table (`joint aws create-table`)
//!     bucket: joint-data      # S3 bucket for spilled payloads (`joint aws create-bucket`)
//!     function_prefix: "wf-"  # Lambda function of F is `wf-F`
//!     # endpoint_url: http://127.0.0.1:4566   # an emulator such as ministack
//! ```
//! Credentials come from the default AWS chain (environment, profile, instance role) unless
//! `access_key_id`/`secret_access_key` are set.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use joint_shim::Cloud;
use joint_shim_aws::AwsBuilder;
use joint_store::dynamo::{TableStatus, create_table};

/// `joint aws …`.
#[derive(Args)]
pub struct AwsArgs {
    #[command(subcommand)]
    cmd: AwsCmd,
    /// Connection and cloud settings, `KEY=VALUE` (region, endpoint_url, table, bucket, …);
    /// unset keys come from the environment (`AWS_*`, `JOINT_AWS_*`).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum AwsCmd {
    /// Create the DynamoDB coordination table (pk/sk, on-demand) and enable its TTL.
    CreateTable,
    /// Create the S3 bucket for spilled payloads.
    CreateBucket,
}

fn builder(set: &[String]) -> Result<AwsBuilder, String> {
    let mut b = AwsBuilder::from_env();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
        b = b.with_config(k, v);
    }
    Ok(b)
}

/// Run `joint aws …`.
pub async fn run(args: AwsArgs) -> ExitCode {
    let result = async {
        let b = builder(&args.set)?;
        let b = match args.cmd {
            // The other resource need not be named for this command.
            AwsCmd::CreateTable => b.with_config("bucket", "unused"),
            AwsCmd::CreateBucket => b.with_config("table", "unused"),
        };
        let cloud = b.build().await.map_err(|e| e.to_string())?;
        match args.cmd {
            AwsCmd::CreateTable => {
                let t = cloud.coord.table().to_string();
                match create_table(cloud.coord.client(), &t)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    TableStatus::Created => println!("created table {t} (TTL on `expires`)"),
                    TableStatus::Existed => println!("table {t} exists (TTL on `expires`)"),
                }
            }
            AwsCmd::CreateBucket => {
                let bucket = cloud.blob.bucket().to_string();
                cloud
                    .blob
                    .create_bucket()
                    .await
                    .map_err(|e| format!("create bucket {bucket}: {e}"))?;
                println!("created bucket {bucket}");
            }
        }
        Ok::<(), String>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Build an `aws` cloud named `name` from its deployment settings.
pub async fn build_cloud(name: &str, settings: &BTreeMap<String, String>) -> Result<Cloud, String> {
    let cloud = AwsBuilder::from_env()
        .with_config("cloud", name)
        .with_settings(settings)
        .build()
        .await
        .map_err(|e| format!("cloud '{name}': {e}"))?;
    Ok(cloud.into_cloud())
}

/// The `aws` backend of `--clouds` files: Lambda, DynamoDB and S3 (see [`AwsBuilder`]).
pub struct AwsBackend;

#[async_trait::async_trait]
impl joint_shim::Backend for AwsBackend {
    fn name(&self) -> &str {
        "aws"
    }
    async fn build(
        &self,
        cloud: &str,
        settings: &BTreeMap<String, String>,
    ) -> joint_shim::Result<Cloud> {
        build_cloud(cloud, settings).await.map_err(|e| {
            joint_shim::Error::new(
                joint_shim::ErrorKind::InvalidInput,
                "aws",
                "config",
                cloud,
                e,
            )
        })
    }
}
