//! The blob-store conformance suite on S3, against ministack and moto server.

mod common;

use std::sync::Arc;

use joint_shim::{BlobStore, ErrorKind};

#[tokio::test]
async fn s3_conformance_on_emulators() {
    for (name, var) in [
        ("ministack", "JOINT_TEST_MINISTACK_URL"),
        ("moto", "JOINT_TEST_MOTO_URL"),
    ] {
        let Some(url) = common::emulator(name, var) else {
            continue;
        };
        eprintln!("S3 conformance on {name}");
        let c = common::fresh_cloud(&url, "aws", &[]).await;
        joint_shim::conformance::blob_store(
            Arc::new(c.blob.clone()),
            &format!("conf-{}/", common::uniq()),
        )
        .await;
        // Over one ListObjectsV2 page (1000) is paginated.
        let p = format!("wide-{}/", common::uniq());
        let puts = (0..1005).map(|i| {
            let b = c.blob.clone();
            let k = format!("{p}k{i}");
            async move { b.put_new(&k, bytes::Bytes::from_static(b"x")).await }
        });
        for r in futures::future::join_all(puts).await {
            r.expect("put");
        }
        assert_eq!(
            c.blob.delete_prefix(&p).await.expect("delete"),
            1005,
            "{name}"
        );
        // A missing bucket is a configuration/outage error, not NotFound.
        let gone = joint_shim_aws::S3BlobStore::new(
            c.blob.client().clone(),
            "no-such-bucket-joint",
            "",
            true,
            "aws",
        );
        let e = gone.get("k").await.expect_err("no bucket");
        assert_ne!(e.kind(), ErrorKind::NotFound, "{name}: {e}");
    }
}
