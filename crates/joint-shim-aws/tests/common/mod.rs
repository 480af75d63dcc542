//! Shared by the AWS emulator tests.
#![allow(dead_code)]

pub mod serve;

use std::time::{SystemTime, UNIX_EPOCH};

use joint_shim_aws::{AwsBuilder, AwsCloud};

/// Whether a skipped emulator test is a failure (`scripts/test.sh` sets `JOINT_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("JOINT_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// The emulator URL in `var`, or None after printing why the test is skipped (a panic under
/// `JOINT_TEST_STRICT=1`).
pub fn emulator(name: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !strict(),
                "{name}: {var} is not set, but JOINT_TEST_STRICT=1"
            );
            eprintln!("skipped {name}: set {var} (scripts/test.sh starts it)");
            None
        }
    }
}

/// A unique suffix.
pub fn uniq() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}{}", std::process::id(), n % 1_000_000_000)
}

/// Settings of an AWS cloud on the emulator at `url`.
pub fn settings(url: &str, cloud: &str, table: &str, bucket: &str) -> Vec<(String, String)> {
    [
        ("region", "us-east-1"),
        ("endpoint_url", url),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
        ("cloud", cloud),
        ("table", table),
        ("bucket", bucket),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An AWS cloud on the emulator with a fresh table and bucket.
pub async fn fresh_cloud(url: &str, cloud: &str, extra: &[(&str, &str)]) -> AwsCloud {
    let id = uniq();
    let table = format!("joint-{cloud}-{id}");
    let bucket = format!("joint-{cloud}-{id}").to_lowercase();
    let mut b = AwsBuilder::new();
    for (k, v) in settings(url, cloud, &table, &bucket) {
        b = b.with_config(&k, v);
    }
    for (k, v) in extra {
        b = b.with_config(k, *v);
    }
    let c = b.build().await.expect("aws cloud config");
    joint_store::dynamo::create_table(c.coord.client(), c.coord.table())
        .await
        .expect("create table");
    c.blob.create_bucket().await.expect("create bucket");
    c
}

/// The example function binary (built by `cargo test --workspace --all-targets`).
pub fn bootstrap_exe() -> Option<Vec<u8>> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("examples").join("joint-lambda");
        if let Ok(b) = std::fs::read(&p) {
            return Some(b);
        }
    }
    assert!(
        !strict(),
        "the example function target/debug/examples/joint-lambda is not built, but JOINT_TEST_STRICT=1 (cargo build --workspace --all-targets builds it)"
    );
    eprintln!("skipped: build the example function first (cargo build --workspace --all-targets)");
    None
}

/// A Lambda client on the emulator at `url` (test credentials, us-east-1).
pub async fn lambda_client(url: &str) -> aws_sdk_lambda::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test",
            "test",
            None,
            None,
            "joint-test",
        ))
        .load()
        .await;
    aws_sdk_lambda::Client::new(&conf)
}
