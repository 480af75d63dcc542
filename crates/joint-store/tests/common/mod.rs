//! Shared by the emulator tests: which emulators are configured, and fresh tables on them.

use joint_store::dynamo::create_table;
use joint_store::{DynamoCoordStore, DynamoStoreBuilder};

/// The emulators configured through the environment: (name, endpoint URL).
pub fn emulators() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, var) in [
        ("ministack", "JOINT_TEST_MINISTACK_URL"),
        ("moto", "JOINT_TEST_MOTO_URL"),
    ] {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => out.push((name, url)),
            _ => {
                assert!(
                    std::env::var("JOINT_TEST_STRICT").as_deref() != Ok("1"),
                    "{name}: {var} is not set, but JOINT_TEST_STRICT=1"
                );
                eprintln!("skipped {name}: set {var} (scripts/test.sh starts it)")
            }
        }
    }
    out
}

/// A unique suffix.
pub fn uniq() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A store on `table` of the emulator at `url`, with extra store settings.
#[allow(dead_code)] // not every test file uses every helper
pub async fn store_on(url: &str, table: &str, settings: &[(&str, &str)]) -> DynamoCoordStore {
    let mut b = DynamoStoreBuilder::new()
        .with_config("region", "us-east-1")
        .with_config("endpoint_url", url)
        .with_config("access_key_id", "test")
        .with_config("secret_access_key", "test")
        .with_table(table);
    for (k, v) in settings {
        b = b.with_config(k, *v);
    }
    b.build().await.expect("store config")
}

/// A store on a fresh table of the emulator at `url`.
#[allow(dead_code)] // not every test file uses every helper
pub async fn fresh_store(url: &str) -> DynamoCoordStore {
    let store = store_on(url, &format!("joint-test-{}", uniq()), &[]).await;
    create_table(store.client(), store.table())
        .await
        .expect("create table");
    store
}
