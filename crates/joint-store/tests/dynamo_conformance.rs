//! The coordination-store conformance suite on DynamoDB, against every configured emulator
//! (ministack and moto server), plus GC-path and table checks.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use joint_shim::CoordStore;
use joint_store::dynamo::{TableStatus, create_table};

#[tokio::test]
async fn conformance_on_emulators() {
    for (name, url) in common::emulators() {
        eprintln!("conformance on {name}");
        let store = common::fresh_store(&url).await;
        joint_shim::conformance::coord_store(
            Arc::new(store.clone()),
            &format!("conf-{}/", common::uniq()),
        )
        .await;
        // Creating the table again is idempotent.
        assert_eq!(
            create_table(store.client(), store.table())
                .await
                .expect("again"),
            TableStatus::Existed,
            "{name}"
        );
    }
}

#[tokio::test]
async fn run_records_and_wide_gc_are_exact() {
    for (name, url) in common::emulators() {
        let store = common::fresh_store(&url).await;
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        // A run with more items than one BatchWriteItem and its run record.
        for i in 0..60 {
            store
                .create(&format!("r1/F_{i}"), b("x"))
                .await
                .expect("create");
        }
        store
            .create("_runs/r1/record", b("rec"))
            .await
            .expect("rec");
        store
            .create("_runs/r10/record", b("rec10"))
            .await
            .expect("rec10");
        store
            .join("r1/J-join@0", "0", b("m"), 2, 2)
            .await
            .expect("join");
        assert_eq!(store.list("r1/").await.expect("list").len(), 60, "{name}");
        assert_eq!(store.delete_prefix("r1/").await.expect("gc"), 61, "{name}");
        assert_eq!(
            store.delete_prefix("_runs/r1/").await.expect("gc record"),
            1,
            "{name}: only r1's record"
        );
        assert!(store.get("_runs/r10/record").await.expect("get").is_some());
        // A prefix spanning partitions still works (Scan fallback) and is exact.
        store.create("r2/A_0", b("a")).await.expect("create");
        store.create("r20/A_0", b("a")).await.expect("create");
        let listed = store.list("r2").await.expect("list across partitions");
        assert_eq!(listed.len(), 2, "{name}");
        assert_eq!(store.delete_prefix("_runs/").await.expect("all records"), 1);
    }
}
