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

/// A zip archive holding `bootstrap` (mode 0755) — stored, uncompressed.
pub fn zip_bootstrap(exe: &[u8]) -> Vec<u8> {
    let name = b"bootstrap";
    let crc = crc32fast::hash(exe);
    let size = exe.len() as u32;
    let mut z = Vec::with_capacity(exe.len() + 200);
    // local file header
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    z.extend_from_slice(&20u16.to_le_bytes()); // version needed
    z.extend_from_slice(&0u16.to_le_bytes()); // flags
    z.extend_from_slice(&0u16.to_le_bytes()); // stored
    z.extend_from_slice(&0u32.to_le_bytes()); // time, date
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(exe);
    let cd_start = z.len() as u32;
    // central directory
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix
    z.extend_from_slice(&20u16.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&size.to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes()); // extra
    z.extend_from_slice(&0u16.to_le_bytes()); // comment
    z.extend_from_slice(&0u16.to_le_bytes()); // disk
    z.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
    z.extend_from_slice(&((0o100755u32) << 16).to_le_bytes()); // external attrs
    z.extend_from_slice(&0u32.to_le_bytes()); // offset of local header
    z.extend_from_slice(name);
    let cd_len = z.len() as u32 - cd_start;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
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
